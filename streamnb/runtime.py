"""What streams, sources and tables need from the app that runs them.

The parts below the :class:`~streamnb.app.App` never import it: they are
given a :class:`Runtime`, a small protocol the App implements, the way
Faust's ``types/`` and Quix Streams' ``state/types.py`` keep interface and
implementation apart. A test double only has to provide these members.

Example (any object with these members will do)::

    >>> from streamnb import App
    >>> app = App("shop", broker="memory://")
    >>> isinstance(app, Runtime)
    True
    >>> app.dead_letter_topic("count").name
    'shop-count-dlq'
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .topics import Topic, TopicHost
from .transport.base import TP, LocalState

__all__ = ["Clock", "Gate", "Runtime"]


class Gate(Protocol):
    """What a gated feed (:mod:`streamnb.processing.feed`) needs from a virtual clock (:mod:`streamnb.playback.clock`).

    The clock works in *rounds*: at the start of each it notes where every
    partition its feeds read ends; in the round each feed hands its source
    the messages up to those ends whose time is at most :attr:`horizon`,
    in one deterministic order, then reports back. When a round brought
    nothing anywhere the clock is at rest at the horizon: timers due then
    run, and the horizon moves on.
    """

    @property
    def horizon(self) -> float:
        """Messages whose (running maximum) timestamp is at most this are released."""
        ...

    @property
    def floor(self) -> float:
        """The horizon of the previous rest: the virtual time of processing an older message."""
        ...

    async def join(self, feed: Any) -> None:
        """A feed starts reading (it takes part from the current round on)."""
        ...

    def leave(self, feed: Any) -> None:
        """A feed stops reading."""
        ...

    def round_end(self, tp: TP) -> int:
        """Where ``tp`` ended when the current round began (the feed reads no further this round)."""
        ...

    async def round_done(self, feed: Any, released: int) -> None:
        """The feed handed out everything it may this round (``released`` messages); wait for the next."""
        ...


class Clock(Protocol):
    """The time an app runs on: the wall clock, or a virtual clock driven by event time."""

    virtual: bool
    """True for a virtual clock (replays)."""

    def now(self) -> float:
        """The current time in epoch seconds."""
        ...

    async def sleep_until(self, when: float) -> None:
        """Return once the clock reached ``when`` (epoch seconds)."""
        ...

    @property
    def gate(self) -> Gate | None:
        """What sources read through under a virtual clock; ``None`` on the wall clock."""
        ...


@runtime_checkable
class Runtime(TopicHost, Protocol):
    """The app as streams, sources and tables see it.

    Besides what a topic needs (:class:`~streamnb.topics.TopicHost`): the
    app id that prefixes every internal name, the commit policy, topic
    lookup and creation, and the partition-ownership callbacks a consumer
    reports rebalances through.
    """

    id: str
    processing_guarantee: str
    """``at_least_once`` or ``exactly_once``."""
    stream_batch_size: int
    """Most messages handed to an agent at once."""
    stream_batch_max_bytes: int
    """Most bytes (keys, values, headers) handed to an agent at once (a larger message comes alone)."""
    max_event_time_skew: float | None
    """Seconds an event time may be ahead of the clock before it is dead-lettered (``None``: no limit)."""
    commit_interval: float
    """Seconds between processing commits while events keep coming."""
    commit_records: int
    """Pending records that force a commit before ``commit_interval`` passed."""
    poll_interval: float
    """Seconds an idle consumer waits for new messages per poll."""
    store: str
    """Where tables keep their rows unless told otherwise: ``memory://`` or ``rocksdb://``."""
    datadir: Path
    """The folder under which ``rocksdb://`` tables keep their files."""
    store_memory: int
    """Bytes one table's ``rocksdb://`` store may hold in memory (block cache and write buffers)."""
    @property
    def clock(self) -> Clock:
        """The app's clock: the wall clock, or a virtual one (replays)."""
        ...

    def now(self) -> float:
        """The current time of the app's clock (inside an agent under a virtual clock: the event's)."""
        ...

    @property
    def topics(self) -> Mapping[str, Topic[Any, Any]]:
        """Topics defined so far, by name."""
        ...

    def resolve_topic(self, channel: Any) -> Topic[Any, Any]:
        """A topic from a :class:`Topic`, a topic name, or an agent (its topic)."""
        ...

    def internal_topic(self, name: str, **options: Any) -> Topic[Any, Any]:
        """Define (or redefine) a topic streamnb itself needs (changelog, repartition, ...)."""
        ...

    def dead_letter_topic(self, owner: str) -> Topic[Any, Any]:
        """The dead-letter topic of an agent (``<app id>-<owner>-dlq``)."""
        ...

    async def partitions_assigned(self, owner: object, tps: set[TP]) -> None:
        """A consumer of ``owner`` got ``tps``: make their table partitions ready."""
        ...

    async def partitions_revoked(self, owner: object, tps: set[TP], *, final: bool = False) -> None:
        """A consumer of ``owner`` lost ``tps`` (``final``: it is closing)."""
        ...

    def standby_hooks(self, owner: object) -> LocalState | None:
        """What ``owner``'s consumer tells its group about this worker's table state (Kafka; else None)."""
        ...
