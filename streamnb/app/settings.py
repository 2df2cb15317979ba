"""Faust's settings: which ones streamnb honours, which have no meaning here, and ``app.conf``.

A Faust program passes settings to ``App(...)`` and reads or sets them on
``app.conf``. streamnb takes every setting of Faust's ``Settings``:

* settings it honours (``broker``, ``topic_partitions``, ``version``,
  ``broker_commit_interval``, ``web_port``, ...) act as in Faust; on
  ``kafka://`` the consumer settings (``broker_session_timeout``, ...)
  become the matching aiokafka options;
* settings without meaning here (``table_cleanup_interval``,
  ``stream_buffer_maxsize``, ...) are accepted with one logged note that
  says what streamnb does instead;
* a setting that would swap one of Faust's classes (``Stream=``,
  ``PartitionAssignor=``, ...) raises :class:`ConfigurationError`, since
  streamnb has no such class to swap;
* a name that is neither Faust's nor streamnb's raises
  :class:`ConfigurationError` naming the closest valid one.

Example::

    >>> from streamnb import App
    >>> app = App("orders", broker="memory://", version=2, broker_commit_interval=0.5)
    >>> app.id, app.conf.broker_commit_interval, app.conf.name
    ('orders-v2', 0.5, 'orders')
    >>> App("orders", broker="memory://", topic_partition=4)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    streamnb.errors.ConfigurationError: unknown setting 'topic_partition' ...; did you mean 'topic_partitions'? ...
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any, NamedTuple

from ..errors import ConfigurationError
from ..timeunits import ms

__all__ = [
    "APP_SETTINGS",
    "DEFAULT_BATCH_MAX_BYTES",
    "FAUST_DEFAULT_WEB_PORT",
    "GUARANTEES",
    "KAFKA_SETTINGS",
    "NOTES",
    "UNSUPPORTED",
    "Resolved",
    "batch_max_bytes",
    "check_guarantee",
    "check_topic_partitions",
    "closest",
    "commit_interval_of",
    "event_time_skew",
    "fetch_sizes",
    "kafka_client_options",
    "resolve",
    "seconds",
    "standby_replicas",
    "unknown",
]

logger = logging.getLogger("streamnb")

FAUST_DEFAULT_WEB_PORT = 6066
"""Faust's default ``web_port``; streamnb's too."""

GUARANTEES = ("at_least_once", "exactly_once")
"""The values of ``App(processing_guarantee=...)``."""


DEFAULT_BATCH_MAX_BYTES = 16 * 1024 * 1024
"""``stream_batch_max_bytes``: 16 MB (MiB) of keys, values and headers per batch an agent reads."""


def event_time_skew(value: Any) -> float | None:
    """``App(max_event_time_skew=...)``: ``None`` (off) or seconds > 0 (a number or a timedelta).

    >>> event_time_skew(timedelta(hours=1)), event_time_skew(None)
    (3600.0, None)
    >>> event_time_skew(-5)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    streamnb.errors.ConfigurationError: max_event_time_skew=-5: give seconds > 0 ...
    """
    if value is None:
        return None
    span = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(span, bool) or not isinstance(span, (int, float)) or not 0 < span < float("inf"):
        raise ConfigurationError(
            f"max_event_time_skew={value!r}: give seconds > 0 (a number or a timedelta) by which an event "
            "may be ahead of the clock, e.g. 3600, or None (the default) for no limit"
        )
    return float(span)


def batch_max_bytes(value: Any) -> int:
    """``App(stream_batch_max_bytes=...)``: a positive int.

    >>> batch_max_bytes(4 * 1024 * 1024)
    4194304
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(
            f"stream_batch_max_bytes={value!r}: give a positive number of bytes (default 16 MB, "
            f"{DEFAULT_BATCH_MAX_BYTES}); a single larger message still goes through alone"
        )
    return value


def fetch_sizes(broker: str, options: Mapping[str, Any], max_bytes: int) -> dict[str, Any]:
    """On ``kafka://``: aiokafka's fetch sizes within ``stream_batch_max_bytes``, unless the options set them.

    What the agents' consumers buffer stays about one batch: ``fetch_max_bytes``
    (64 MB by default) and ``max_partition_fetch_bytes`` (1 MB) at most
    ``max_bytes`` (Kafka still returns a single larger message).

    >>> fetch_sizes("kafka://127.0.0.1:9092", {}, 4 * 1024 * 1024)
    {'fetch_max_bytes': 4194304, 'max_partition_fetch_bytes': 1048576}
    """
    out = dict(options)
    if broker.startswith("kafka://"):
        out.setdefault("fetch_max_bytes", min(64 * 1024 * 1024, max_bytes))
        out.setdefault("max_partition_fetch_bytes", min(1024 * 1024, max_bytes))
    return out


def seconds(value: Any) -> float:
    """A duration in seconds, from a number or a ``timedelta``.

    >>> seconds(timedelta(minutes=1)), seconds(2.5)
    (60.0, 2.5)
    """
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise ConfigurationError(f"expected seconds (a number or a timedelta), got {value!r}")


def _ms(value: Any) -> int:
    return ms(seconds(value))


def _same(value: Any) -> Any:
    return value


class KafkaSetting(NamedTuple):
    """A Faust setting that becomes an option of streamnb's Kafka clients."""

    option: str
    """The ``KafkaTransport`` / ``AIOKafkaConsumer`` keyword argument."""
    convert: Callable[[Any], Any]
    """From Faust's unit (seconds) to the option's (milliseconds, ...)."""


KAFKA_SETTINGS: Mapping[str, KafkaSetting] = {
    "broker_session_timeout": KafkaSetting("session_timeout_ms", _ms),
    "broker_heartbeat_interval": KafkaSetting("heartbeat_interval_ms", _ms),
    "broker_max_poll_interval": KafkaSetting("max_poll_interval_ms", _ms),
    "broker_max_poll_records": KafkaSetting("max_poll_records", _same),
    "broker_rebalance_timeout": KafkaSetting("rebalance_timeout_ms", _ms),
    "broker_request_timeout": KafkaSetting("request_timeout", seconds),
    "broker_check_crcs": KafkaSetting("check_crcs", _same),
    "consumer_max_fetch_size": KafkaSetting("max_partition_fetch_bytes", _same),
    "consumer_auto_offset_reset": KafkaSetting("auto_offset_reset", _same),
    "consumer_metadata_max_age_ms": KafkaSetting("metadata_max_age_ms", _same),
    "consumer_connections_max_idle_ms": KafkaSetting("connections_max_idle_ms", _same),
}
"""Faust's consumer settings streamnb passes to aiokafka on ``kafka://`` (a note elsewhere)."""

APP_SETTINGS: frozenset[str] = frozenset({
    # App keyword arguments of the same name.
    "broker", "topic_partitions", "key_serializer", "value_serializer", "processing_guarantee", "ssl_context",
    # Honoured under Faust's name (see ``resolve``).
    "url", "version", "id_format", "broker_commit_interval", "broker_commit_every", "broker_client_id",
    "web_enabled", "web_port", "web_bind", "web_host", "canonical_url",
    # Where tables keep their rows (streamnb.tables.stores); store_memory is streamnb's own.
    "store", "datadir", "store_memory",
    # Kafka: workers that follow the changelogs of rocksdb:// table partitions they do not own.
    "table_standby_replicas",
    # The zone of @app.crontab jobs given none (UTC by default, as in Faust).
    "timezone",
    # Agent RPC (streamnb.processing.replies): the reply topic, how long replies count; topics are made on demand.
    "reply_to", "reply_expires", "reply_create_topic",
})
"""Faust settings streamnb honours as Faust does (besides :data:`KAFKA_SETTINGS`)."""

_TABLES = "tables keep their rows in memory:// or rocksdb:// (store=), rebuilt from their changelog topics"
_PRODUCER = "streamnb's producer is idempotent with acks=all and sends at each commit"
_WEB = "the worker serves @app.page views with aiohttp on web_bind:web_port, nothing else"

NOTES: Mapping[str, str] = {
    "autodiscover": "the worker imports only the module given to -A; import your other modules from it",
    "tabledir": _TABLES,
    "debug": "use the worker's -l debug for debug logs",
    "env_prefix": "settings are read from App(...) arguments only (and BROKER_URL when no broker is given)",
    "origin": "the worker command finds the app with -A module[:attribute]",
    "agent_supervisor": "each agent is supervised alone: it restarts from its last commit with backoff",
    "blocking_timeout": "there is no blocking detector",
    "broker_api_version": "aiokafka negotiates the API version",
    "consumer_api_version": "aiokafka negotiates the API version",
    "producer_api_version": "aiokafka negotiates the API version",
    "broker_consumer": "one broker URL serves consumers and producers",
    "broker_producer": "one broker URL serves consumers and producers",
    "broker_commit_livelock_soft_timeout": "there is no livelock detector",
    "consumer_group_instance_id": "each agent has its own consumer group; static membership is not used",
    "cython_optimizations": "there is no Cython",
    "logging_config": "the worker command sets up logging (-l LEVEL)",
    "loghandlers": "the worker command sets up logging (-l LEVEL)",
    "producer_acks": _PRODUCER,
    "producer_compression_type": _PRODUCER,
    "producer_linger": _PRODUCER,
    "producer_linger_ms": _PRODUCER,
    "producer_max_batch_size": _PRODUCER,
    "producer_max_request_size": _PRODUCER,
    "producer_partitioner": "keys are partitioned with Kafka's murmur2 partitioner on every broker",
    "producer_request_timeout": _PRODUCER,
    "producer_threaded": _PRODUCER,
    "producer_metadata_max_age_ms": _PRODUCER,
    "producer_connections_max_idle_ms": _PRODUCER,
    "reply_to_prefix": "the reply topic is <app id>-reply (one per app, read from its end by each asker), "
    "or the one reply_to= names",
    "stream_buffer_maxsize": "agents receive batches of up to stream_batch_size messages",
    "stream_processing_timeout": "an agent that crashes restarts from its last commit",
    "stream_publish_on_commit": "sends inside an agent are always written at its next commit",
    "stream_recovery_delay": "tables are recovered as soon as partitions are assigned",
    "stream_wait_empty": "a stopping agent commits what it processed and stops",
    "stream_ack_cancelled_tasks": "a stopping agent commits what it processed and stops",
    "stream_ack_exceptions": "an event that crashes an agent is retried, then dead-lettered",
    "table_cleanup_interval": "windows close and expire at each commit, in event time",
    "table_key_index_size": _TABLES,
    "recovery_consistency_check": "recovery reads every changelog partition to its end offset",
    "store_check_exists": _TABLES,
    "crash_app_on_aerospike_exception": _TABLES,
    "aerospike_retries_on_exception": _TABLES,
    "aerospike_sleep_seconds_between_retries_on_exception": _TABLES,
    "topic_allow_declare": "streamnb creates the topics an app uses at start",
    "topic_disable_leader": "the leader is the worker holding partition 0 of the first agent's topic",
    "topic_replication_factor": "topics are created with the cluster's size as replication factor, at most 3",
    "cache": "there is no cache backend; keep state in tables",
    "web": _WEB,
    "web_application_options": _WEB,
    "web_cors_options": _WEB,
    "web_graph_enabled": _WEB,
    "web_in_thread": "the web server runs on the app's event loop",
    "web_metrics_enabled": _WEB,
    "web_router_enabled": _WEB,
    "web_ssl_context": "the web server speaks plain HTTP on a loopback address; put a proxy in front for TLS",
    "web_stats_enabled": _WEB,
    "web_tables_enabled": _WEB,
    "web_transport": _WEB,
    "worker_redirect_stdouts": "the worker leaves stdout and stderr alone",
    "worker_redirect_stdouts_level": "the worker leaves stdout and stderr alone",
    # App(...) arguments that are not settings in Faust.
    "loop": "streamnb runs on the event loop running when the app starts",
    "monitor": "app.dashboard() and streamnb.testing.lag() show what the app does",
    "beacon": "there is no beacon",
}
"""Faust settings streamnb accepts without effect, with what it does instead."""

UNSUPPORTED: Mapping[str, str] = {
    **{
        name: "streamnb has no pluggable class of that name; subclass or wrap its public API instead"
        for name in (
            "Agent", "ConsumerScheduler", "Event", "Schema", "Stream", "Table", "SetTable", "GlobalTable",
            "SetGlobalTable", "TableManager", "Serializers", "Worker", "PartitionAssignor", "LeaderAssignor",
            "Router", "Topic", "HttpClient", "Monitor",
        )
    },
    "broker_credentials": "use security_protocol=, sasl_mechanism=, sasl_plain_username=, "
    "sasl_plain_password= and ssl_context= instead",
    "config_source": "pass settings to App(...) as keyword arguments",
}
"""Faust settings streamnb refuses (they would change behaviour it cannot give), with what to use."""

_STREAMNB_OPTIONS = frozenset({
    "broker", "topic_partitions", "key_serializer", "value_serializer", "processing_guarantee",
    "commit_interval", "stream_batch_size", "stream_batch_max_bytes", "max_event_time_skew", "tune_gc",
    "security_protocol", "sasl_mechanism",
    "sasl_plain_username", "sasl_plain_password", "ssl_context", "request_timeout", "client_id",
})

_noted: set[tuple[str, str]] = set()


class Resolved(NamedTuple):
    """``App(...)`` keyword arguments sorted out by :func:`resolve`."""

    id: str
    """The app id after ``version``/``id_format`` (``orders-v2`` for version 2)."""
    broker: str
    """The broker URL (``BROKER_URL`` from the environment when none was given, as in Faust)."""
    app: dict[str, Any]
    """Honoured Faust settings by their Faust names (web, version, commit settings, ...)."""
    kafka: dict[str, Any]
    """Options for the transport (aiokafka's names), to be checked against the broker."""
    noted: dict[str, Any]
    """Accepted settings without effect, by name."""


def closest(name: str, extra: Iterable[str]) -> str:
    """``did you mean ...?`` for a misspelt setting name (``""`` when nothing is close)."""
    names = sorted(APP_SETTINGS | set(KAFKA_SETTINGS) | set(NOTES) | _STREAMNB_OPTIONS | set(extra))
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}? " if close else ""


def unknown(app_id: str, name: str, extra: Iterable[str]) -> ConfigurationError:
    """The error for a setting streamnb does not know, naming the closest one."""
    return ConfigurationError(
        f"unknown setting {name!r} for App({app_id!r}); {closest(name, extra)}"
        "App takes Faust's settings (see docs/faust.md, Migrating from Faust), streamnb's own "
        "(commit_interval, stream_batch_size, stream_batch_max_bytes, max_event_time_skew, tune_gc, ...) "
        "and, on kafka://, aiokafka consumer options"
    )


def resolve(
    app_id: str, broker: str | None, options: Mapping[str, Any], transport_options: Callable[[], Iterable[str]]
) -> Resolved:
    """Sort ``App(...)`` keyword arguments into honoured, Kafka, noted and unknown ones.

    ``transport_options()`` gives the option names some broker's transport
    takes (asked only for a name that is not one of Faust's settings).

    >>> options = {"table_key_index_size": 1000, "broker_session_timeout": 6}
    >>> r = resolve("shop", "kafka://127.0.0.1:9092", options, lambda: ())
    >>> r.kafka, r.noted
    ({'session_timeout_ms': 6000}, {'table_key_index_size': 1000})
    """
    broker = _broker_url(broker, options.get("url"))
    app, kafka, noted = _sort_options(app_id, options, broker.startswith("kafka://"), transport_options)
    full_id = _versioned_id(app_id, app)
    if "broker_commit_interval" in app:
        app["broker_commit_interval"] = seconds(app["broker_commit_interval"])
    if "broker_client_id" in app:
        kafka["client_id"] = str(app["broker_client_id"])
    return Resolved(full_id, broker, app, kafka, noted)


def _broker_url(broker: Any, url: Any) -> str:
    """The one broker URL: ``broker``, else Faust's ``url``, ``$BROKER_URL`` or ``local://.streamnb``.

    >>> _broker_url(["aiokafka://"], None)
    'kafka://localhost:9092'
    """
    if broker is None:
        broker = url or os.environ.get("BROKER_URL") or "local://.streamnb"
    if isinstance(broker, (list, tuple)):
        if len(broker) != 1:
            raise ConfigurationError(
                f"broker={broker!r}: streamnb connects to one broker URL; for several Kafka hosts write "
                "kafka://HOST1:PORT,HOST2:PORT"
            )
        broker = str(broker[0])
    if str(broker).startswith("aiokafka://"):  # Faust's other name for its Kafka transport
        broker = "kafka://" + (str(broker)[len("aiokafka://"):] or "localhost:9092")
    return str(broker)


def _sort_options(
    app_id: str, options: Mapping[str, Any], kafka_broker: bool, transport_options: Callable[[], Iterable[str]]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``options`` sorted into honoured Faust settings, transport options and noted ones (see :class:`Resolved`)."""
    app: dict[str, Any] = {}
    kafka: dict[str, Any] = {}
    noted: dict[str, Any] = {}
    for name, value in options.items():
        if name in UNSUPPORTED:
            raise ConfigurationError(f"App({app_id!r}): {name}= is not supported by streamnb; {UNSUPPORTED[name]}")
        if name in KAFKA_SETTINGS:
            if kafka_broker:
                setting = KAFKA_SETTINGS[name]
                kafka[setting.option] = setting.convert(value)
            else:
                noted[name] = value
        elif name in APP_SETTINGS:
            app[name] = value
        elif name in NOTES:
            noted[name] = value
        elif name in (known := frozenset(transport_options())):
            kafka[name] = value
        else:
            raise unknown(app_id, name, known)
    return app, kafka, noted


def _versioned_id(app_id: str, app: Mapping[str, Any]) -> str:
    """The app id after Faust's ``version`` and ``id_format`` settings (unchanged for version 1).

    >>> _versioned_id("orders", {"version": 2})
    'orders-v2'
    """
    version = app.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ConfigurationError(f"version must be an int >= 1, got {version!r}")
    if version == 1:
        return app_id
    id_format = app.get("id_format", "{id}-v{self.version}")
    versioned: str = id_format.format(id=app_id, self=_Version(version))
    return versioned


def check_guarantee(processing_guarantee: Any) -> str:
    """``App(processing_guarantee=...)``, checked (whether the broker gives it is checked with the broker).

    >>> check_guarantee("exactly_once")
    'exactly_once'
    """
    if processing_guarantee not in GUARANTEES:
        raise ConfigurationError(f"processing_guarantee must be one of {GUARANTEES}, got {processing_guarantee!r}")
    return str(processing_guarantee)


def check_topic_partitions(topic_partitions: Any) -> int:
    """``App(topic_partitions=...)``, checked: a positive int.

    >>> check_topic_partitions(0)
    Traceback (most recent call last):
    ...
    streamnb.errors.ConfigurationError: topic_partitions must be a positive int, got 0
    """
    if not isinstance(topic_partitions, int) or topic_partitions < 1:
        raise ConfigurationError(f"topic_partitions must be a positive int, got {topic_partitions!r}")
    return topic_partitions


def commit_interval_of(commit_interval: Any, processing_guarantee: str) -> float:
    """Seconds between commits: as given, else 0.1 with ``exactly_once`` (as Kafka Streams) and 1.0 otherwise.

    >>> commit_interval_of(None, "exactly_once"), commit_interval_of(2, "at_least_once")
    (0.1, 2.0)
    """
    if commit_interval is None:
        commit_interval = 0.1 if processing_guarantee == "exactly_once" else 1.0
    if not isinstance(commit_interval, (int, float)) or commit_interval < 0:
        raise ConfigurationError(f"commit_interval must be a number of seconds >= 0, got {commit_interval!r}")
    return float(commit_interval)


def kafka_client_options(resolved: Mapping[str, Any], **given: Any) -> dict[str, Any]:
    """The options of the app's Kafka clients: the ``App(...)`` security arguments given, and ``resolved``'s.

    >>> kafka_client_options({"session_timeout_ms": 6000}, security_protocol="SSL", sasl_mechanism=None)
    {'security_protocol': 'SSL', 'session_timeout_ms': 6000}
    """
    return {k: v for k, v in dict(given, **resolved).items() if v is not None}


class _Version(NamedTuple):
    version: int


def note(app_id: str, settings: Mapping[str, Any]) -> None:
    """Log one note for the settings that have no effect (once per app id and setting in a process)."""
    fresh = {name: value for name, value in settings.items() if (app_id, name) not in _noted}
    if not fresh:
        return
    _noted.update((app_id, name) for name in fresh)
    lines = "; ".join(f"{name}={value!r}: {_reason(name)}" for name, value in fresh.items())
    logger.warning("App %r: Faust settings without effect in streamnb (%s)", app_id, lines)


def _reason(name: str) -> str:
    if name in KAFKA_SETTINGS:
        return "applies to kafka:// brokers only"
    return NOTES[name]


def standby_replicas(value: Any, distributed: bool) -> int:
    """``table_standby_replicas``: standby replicas per table partition (Faust's default, 1, on Kafka).

    A standby replica is another worker following the partition's changelog
    into its own ``rocksdb://`` store, so a partition that moves to it reads
    only the changelog's tail. On the embedded brokers one process holds
    every partition: asking for replicas there is an error.

    >>> standby_replicas(None, True), standby_replicas(None, False), standby_replicas(2, True)
    (1, 0, 2)
    >>> standby_replicas(1, False)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    streamnb.errors.ConfigurationError: table_standby_replicas=1 needs a kafka:// broker: ...
    """
    if value is None:
        return 1 if distributed else 0
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigurationError(f"table_standby_replicas must be an int >= 0, got {value!r}")
    if value and not distributed:
        raise ConfigurationError(
            f"table_standby_replicas={value} needs a kafka:// broker: on memory:// and local:// one process "
            "holds every table partition, so there is no other worker to keep a standby; drop the setting "
            "(or set it to 0)"
        )
    return value
