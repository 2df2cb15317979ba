"""Names of the topics and consumer groups streamnb makes for an app, in one place.

Every internal name starts with the app id, so two apps never share one,
and a Faust user finds the names Faust would use (``<app id>-<table>-changelog``).

>>> changelog_topic("page-views", "counts")
'page-views-counts-changelog'
>>> consumer_group("page-views", "count")
'page-views-count'
>>> dead_letter_topic("page-views", "count")
'page-views-count-dlq'
>>> repartition_topic("page-views", "count", "page_views", "page")
'page-views-count-page_views-page-repartition'
"""

from __future__ import annotations

__all__ = [
    "CHANGELOG_SUFFIX",
    "FORK_TOPIC",
    "RECORDING_TOPIC",
    "agent_topic",
    "changelog_topic",
    "channel_topic",
    "consumer_group",
    "dead_letter_topic",
    "fork_state_topic",
    "is_changelog",
    "late_topic",
    "repartition_topic",
    "stream_owner",
    "stream_time_topic",
    "transactional_id",
    "web_workers_topic",
]

CHANGELOG_SUFFIX = "-changelog"

RECORDING_TOPIC = "__streamnb-recordings"
"""The topic of a ``local://`` folder that says what ``streamnb.record`` copied into it (and from where)."""

FORK_TOPIC = "__streamnb-forks"
"""The topic of a folder made by ``app.fork()``: from which moment, and where each agent goes on."""


def fork_state_topic(changelog: str) -> str:
    """Where a fork keeps the state a table starts from (its changelog is rebuilt from it at each replay).

    >>> fork_state_topic("shop-totals-changelog")
    '__streamnb-fork-shop-totals-changelog'
    """
    return f"__streamnb-fork-{changelog}"


def changelog_topic(app_id: str, table: str) -> str:
    """The compacted topic holding every write of ``table``."""
    return f"{app_id}-{table}{CHANGELOG_SUFFIX}"


def stream_time_topic(app_id: str, table: str) -> str:
    """The compacted topic holding a windowed table's stream time per partition (kept out of its changelog).

    >>> stream_time_topic("shop", "per_minute")
    'shop-per_minute-streamtime'
    """
    return f"{app_id}-{table}-streamtime"


def is_changelog(topic: str) -> bool:
    """True for a name made by :func:`changelog_topic`.

    >>> is_changelog("shop-totals-changelog"), is_changelog("orders")
    (True, False)
    """
    return topic.endswith(CHANGELOG_SUFFIX)


def agent_topic(app_id: str, agent: str) -> str:
    """The topic of an agent defined without a channel (``@app.agent()``)."""
    return f"{app_id}-{agent}"


def stream_owner(channel: str) -> str:
    """The owner name of a stream iterated outside any agent (``async for x in topic``)."""
    return f"stream-{channel}"


def consumer_group(app_id: str, owner: str) -> str:
    """The consumer group of an agent (or of a stream outside agents): one per agent."""
    return f"{app_id}-{owner}"


def dead_letter_topic(app_id: str, owner: str) -> str:
    """Where messages an agent cannot process go, with the reason in their headers."""
    return f"{app_id}-{owner}-dlq"


def repartition_topic(app_id: str, owner: str, source: str, label: str) -> str:
    """The internal topic ``group_by(label)`` of ``owner`` re-keys ``source`` into."""
    return f"{app_id}-{owner}-{source}-{label}-repartition"


def late_topic(app_id: str, table: str) -> str:
    """Where a windowed table sends events that arrived after all their windows closed.

    >>> late_topic("shop", "per_minute")
    'shop-per_minute-late'
    """
    return f"{app_id}-{table}-late"


def transactional_id(app_id: str, owner: str, topic: str, partition: int) -> str:
    """The Kafka transactional id of the producer for one input partition of one agent.

    >>> transactional_id("shop", "count", "orders", 3)
    'shop-count-orders-3'
    """
    return f"{app_id}-{owner}-{topic}-{partition}"


def web_workers_topic(app_id: str) -> str:
    """Where the workers of an app record their web URL and the partitions they own.

    >>> web_workers_topic("shop")
    'shop-web-workers'
    """
    return f"{app_id}-web-workers"


def channel_topic(app_id: str, number: int) -> str:
    """The topic behind the ``number``-th ``app.channel()`` of an app (counting from 0).

    >>> channel_topic("shop", 0)
    'shop-channel-0'
    """
    return f"{app_id}-channel-{number}"
