"""Topics: named, partitioned, typed channels of messages.

Example::

    app = streamnb.App("shop", broker="memory://")
    orders = app.topic("orders", value_type=Order)

    await orders.send(key="alice", value=Order(item="book", qty=1))
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator, Mapping, Sequence
from functools import lru_cache
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from aiokafka.partitioner import murmur2

from .codecs.base import Codec, Serde, get_codec, serde
from .errors import AppNotRunningError, ConfigurationError, SchemaRegistryUnavailableError
from .events import Event, event_time
from .metrics.sink import Monitor
from .transaction import current_transaction
from .transport.base import Headers, Message, ProducerRecord, TopicSpec, Transport

__all__ = ["RecordMetadata", "Topic", "TopicHost", "partition_for_key"]

logger = logging.getLogger("streamnb")

K = TypeVar("K")
V = TypeVar("V")

Decoder = Callable[[bytes | None], Any]
Encoder = Callable[[Any], bytes | None]


@lru_cache(maxsize=65536)
def _hash_partition(key: bytes, partitions: int) -> int:
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


def partition_for_key(key: bytes | None, partitions: int, counter: list[int] | None = None) -> int:
    """The partition a key goes to: Kafka's default (murmur2) partitioner.

    The same key always lands on the same partition, on every backend and in
    every Kafka client that uses the default partitioner. Keyless messages
    are spread round robin.

    >>> partition_for_key(b"alice", 8) == partition_for_key(b"alice", 8)
    True
    """
    if key is None:
        if counter is None:
            return 0
        counter[0] += 1
        return counter[0] % partitions
    return _hash_partition(key, partitions)


class RecordMetadata(NamedTuple):
    """Where :meth:`Topic.send` put a message; awaiting it gives itself (Faust's send future, already done).

    >>> meta = RecordMetadata("orders", 2, 1700000000.0)
    >>> meta.partition
    2
    """

    topic: str
    """The topic."""
    partition: int
    """The partition the message went to."""
    timestamp: float
    """The message's timestamp (epoch seconds)."""

    def __await__(self) -> Generator[Any, None, RecordMetadata]:
        return self
        yield  # a generator: awaiting it returns at once


class TopicHost(Protocol):
    """What a topic needs from the app that owns it (:class:`~streamnb.app.App` implements it).

    Defaults for topics defined without them, the broker connection, and a
    way to run work in the background and to iterate the topic.
    """

    topic_partitions: int
    key_serializer: str
    value_serializer: str
    monitor: Monitor
    """Where sends, commits and the like are counted (:mod:`streamnb.metrics`)."""

    async def connect(self) -> Transport:
        """The app's broker connection, opened on first use."""
        ...

    def require_transport(self) -> Transport:
        """The open broker connection; raises :class:`AppNotRunningError` without one."""
        ...

    def spawn(self, coro: Coroutine[Any, Any, Any], what: str) -> asyncio.Task[Any] | None:
        """Run ``coro`` in the background on the running loop, logging a failure as ``what``."""
        ...

    def stream(self, channel: Any) -> Any:
        """A stream (async iterable of values) over ``channel``."""
        ...

    def now(self) -> float:
        """The app's current time in epoch seconds (the timestamp of a message sent without one)."""
        ...


class Topic(Generic[K, V]):
    """A named stream of messages with a key and a value type.

    Create topics with :meth:`App.topic`; defining the same name again
    replaces the definition (a notebook cell can be run twice).

    Keys and values are encoded and decoded by ``key_serde``/``value_serde``,
    built by :func:`streamnb.codecs.serde` from the serializer and the
    declared type; ``encode_key``/``encode_value``/``decode_key``/``decode_value``
    are their functions.

    >>> from streamnb import App
    >>> orders = App("shop", broker="memory://").topic("orders", partitions=4)
    >>> orders.name, orders.partition_count, orders.declared
    ('orders', 4, False)
    """

    def __init__(
        self,
        app: TopicHost,
        name: str,
        *,
        key_type: Any = None,
        value_type: Any = None,
        partitions: int | None = None,
        key_serializer: str | Codec | None = None,
        value_serializer: str | Codec | None = None,
        compacting: bool = False,
        retention: float | None = None,
        internal: bool = False,
    ) -> None:
        if not name or not isinstance(name, str):
            raise ConfigurationError(f"a topic needs a non-empty string name, got {name!r}")
        if partitions is not None and (not isinstance(partitions, int) or partitions < 1):
            raise ConfigurationError(f"topic {name!r}: partitions must be a positive int, got {partitions!r}")
        self.app = app
        self.name = name
        self.key_type = key_type
        self.value_type = value_type
        self.partitions = partitions
        self.key_serializer = (
            key_serializer or getattr(key_type, "_options", {}).get("serializer") or app.key_serializer
        )
        self.value_serializer = (
            value_serializer or _record_serializer(value_type) or app.value_serializer
        )
        self.key_codec = _for_app(get_codec(self.key_serializer), app)
        self.value_codec = _for_app(get_codec(self.value_serializer), app)
        self.compacting = compacting
        self.retention = _seconds(retention)
        self.internal = internal
        self._actual_partitions: int | None = None
        self.round_robin = [0]
        """Counter spreading keyless messages over the partitions (shared with forwarders)."""
        # The one place a topic's (codec, type) pairs become encoders/decoders (see streamnb.codecs).
        self.key_serde: Serde = serde(self.key_codec, key_type, "key", topic=name)
        self.value_serde: Serde = serde(self.value_codec, value_type, "value", topic=name)
        self.encode_key: Encoder = self.key_serde.encode
        """Key to bytes, checked against ``key_type`` (``None`` stays ``None``)."""
        self.encode_value: Encoder = self.value_serde.encode
        """Value to bytes, checked against ``value_type`` (``None`` stays ``None``: a tombstone)."""
        self.decode_key: Decoder = self.key_serde.decode
        """Key bytes to a ``key_type`` value; raises ValidationError when they do not fit."""
        self.decode_value: Decoder = self.value_serde.decode
        """Value bytes to a ``value_type`` value; raises ValidationError when they do not fit."""
        serdes = (self.key_serde, self.value_serde)
        self._prepares = [p for s in serdes if (p := getattr(s, "prepare", None)) is not None]
        self._prefetches = [
            (index, f) for index, s in ((4, self.key_serde), (5, self.value_serde))
            if (f := getattr(s, "prefetch", None)) is not None
        ]
        self.prepared = not self._prepares
        """False until :meth:`prepare` got what encoding needs (an Avro schema id); True for most codecs."""
        self.needs_prefetch = bool(self._prefetches)
        """True when decoding needs :meth:`prefetch` first (Avro with a schema registry)."""

    # -- metadata ---------------------------------------------------------------------------

    @property
    def spec(self) -> TopicSpec:
        """How the broker should create this topic."""
        return TopicSpec(self.name, self.partitions or self.app.topic_partitions, self.compacting, self.retention)

    @property
    def partition_count(self) -> int:
        """Partitions the topic actually has (known once the app is connected)."""
        return self._actual_partitions or self.partitions or self.app.topic_partitions

    @property
    def declared(self) -> bool:
        """True once the broker reported the topic's partition count (:meth:`declare`)."""
        return self._actual_partitions is not None

    def adopt(self, old: Topic[Any, Any]) -> None:
        """Keep what the broker told ``old``, a topic of the same name this one redefines."""
        if old.name == self.name and self._actual_partitions is None:
            self._actual_partitions = old._actual_partitions  # noqa: SLF001 - same class

    async def declare(self) -> int:
        """Create the topic on the broker if missing; returns its partition count."""
        transport = await self.app.connect()
        self._actual_partitions = await transport.create_topic(self.spec)
        return self._actual_partitions

    async def maybe_declare(self) -> int:
        """Declare the topic unless that was done already (Faust's name); returns its partition count."""
        if self._actual_partitions is None:
            return await self.declare()
        return self._actual_partitions

    # -- encoding ---------------------------------------------------------------------------

    async def prepare(self) -> None:
        """Get what encoding needs before the first send: the Avro schema's id from the registry.

        ``send`` calls it. Inside an agent a registry outage is waited out
        with backoff (the event is neither dropped nor dead-lettered);
        elsewhere :class:`~streamnb.errors.SchemaRegistryUnavailableError`
        is raised at once. Nothing to do for codecs without a registry.

        >>> await orders.prepare()  # doctest: +SKIP
        """
        for prepare in self._prepares:
            await _retrying(prepare, f"topic {self.name!r}: registering its schema",
                            lambda: current_transaction() is not None)
        self.prepared = True

    async def prefetch(self, messages: Sequence[Message]) -> None:
        """Fetch what decoding ``messages`` of this topic needs: unseen Avro writer schemas.

        The agents' consumers call it on every batch (waiting out a registry
        outage); raises :class:`~streamnb.errors.SchemaRegistryUnavailableError`.

        >>> await orders.prefetch(batch)  # doctest: +SKIP
        """
        name = self.name
        mine = [m for m in messages if m[0] == name]
        if mine:
            for index, prefetch in self._prefetches:
                await prefetch([m[index] for m in mine])

    def decode(self, message: Message) -> Event[Any, Any]:
        """Raw message to :class:`Event` (raises SerializationError/ValidationError)."""
        key = message.key
        return Event(
            None if key is None else self.decode_key(key), self.decode_value(message.value), message
        )

    def record(
        self,
        key: Any = None,
        value: Any = None,
        partition: int | None = None,
        timestamp: float | None = None,
        headers: Headers | Mapping[str, bytes | str] | Sequence[tuple[str, bytes]] | None = None,
        *,
        raw_key: bytes | None = None,
    ) -> ProducerRecord:
        """Build the :class:`ProducerRecord` that ``send`` would append."""
        kb = raw_key if raw_key is not None else self.encode_key(key)
        if partition is None:
            partition = partition_for_key(kb, self.partition_count, self.round_robin)
        elif not 0 <= partition < self.partition_count:
            raise ConfigurationError(
                f"topic {self.name!r} has partitions 0..{self.partition_count - 1}, got partition={partition}"
            )
        when = self.app.now() if timestamp is None else event_time(timestamp)
        return ProducerRecord(self.name, partition, kb, self.encode_value(value), when, _headers(headers))

    # -- sending ----------------------------------------------------------------------------

    async def send(
        self,
        *,
        key: Any = None,
        value: Any = None,
        partition: int | None = None,
        timestamp: float | None = None,
        headers: Any = None,
    ) -> RecordMetadata:
        """Send one message; returns where it went (awaitable, as Faust's send future).

        Inside an agent the message joins the agent's transaction and is
        written with its next commit (so it is sent exactly once on the
        embedded brokers); elsewhere it is written at once. ``timestamp``:
        epoch seconds (a finite number >= 0) or a datetime; without it, the
        app's clock; anything else raises :class:`~streamnb.errors.EventTimeError`.

        >>> await topic.send(key="alice", value={"page": "/"})  # doctest: +SKIP
        """
        if self._actual_partitions is None:
            await self.declare()
        if not self.prepared:
            await self.prepare()
        record = self.record(key, value, partition, timestamp, headers)
        txn = current_transaction()
        if txn is not None:
            txn.records.append(record)
        else:
            await self.app.require_transport().send([record])
            self.app.monitor.sent(record[0], 1)
        return RecordMetadata(record[0], record[1], record[4])

    async def send_dataframe(
        self, df: Any, *, key: str | None = None, timestamp: str | None = None, columns: list[str] | None = None,
    ) -> int:
        """Send a DataFrame's rows, one message each; returns how many.

        The value is the row as a dict of ``columns`` (default: every column),
        or the column ``value`` alone when that is the only one; ``key`` and
        ``timestamp`` name the columns holding the key and the event time
        (datetimes, or epoch seconds). Values are checked as ``send()`` checks
        them (a Record-typed topic refuses rows missing a field).

        >>> await page_views.send_dataframe(df, key="user", timestamp="time")  # doctest: +SKIP
        300
        """
        import pandas as pd

        named = [c for c in (key, timestamp, *(columns or ())) if c is not None]
        missing = [c for c in named if c not in df.columns]
        if missing:
            raise ConfigurationError(
                f"send_dataframe(): no column {', '.join(map(repr, missing))}; "
                f"columns are {', '.join(map(str, df.columns))}"
            )
        keys = df[key].tolist() if key is not None else [None] * len(df)
        times: list[Any] = [None] * len(df)
        if timestamp is not None:
            column = df[timestamp]
            if pd.api.types.is_numeric_dtype(column):
                times = column.astype("float64").tolist()
            else:
                moments = pd.to_datetime(column, utc=True)
                times = ((moments - pd.Timestamp(0, tz="UTC")).dt.total_seconds()).tolist()
        if list(df.columns) == ["value"] and columns is None:
            values = df["value"].tolist()
        else:
            values = df[columns or list(df.columns)].to_dict("records")
        for k, v, t in zip(keys, values, times, strict=True):
            await self.send(key=k, value=v, timestamp=t)
        return len(values)

    def send_soon(
        self,
        *,
        key: Any = None,
        value: Any = None,
        partition: int | None = None,
        timestamp: float | None = None,
        headers: Any = None,
    ) -> None:
        """Send without awaiting: inside an agent it joins the transaction,
        elsewhere it is scheduled on the running loop.

        >>> topic.send_soon(value={"n": 1})  # doctest: +SKIP
        """
        txn = current_transaction()
        if txn is not None and self._actual_partitions is not None and self.prepared:
            txn.records.append(self.record(key, value, partition, timestamp, headers))
            return
        if timestamp is not None:
            event_time(timestamp)  # (refused here, not in the background)
        coro = self.send(key=key, value=value, partition=partition, timestamp=timestamp, headers=headers)
        if self.app.spawn(coro, f"send_soon({self.name})") is None:
            raise AppNotRunningError(
                f"topic {self.name!r}: send_soon() schedules the send on the running event loop and none runs "
                "here; use `await topic.send(...)` inside async code, or call send_soon() from a running app"
            )

    # -- consuming --------------------------------------------------------------------------

    def stream(self) -> Any:
        """A :class:`~streamnb.processing.streams.Stream` over this topic (for use inside tasks).

        >>> async for value in orders.stream():  # doctest: +SKIP
        ...     print(value)
        """
        return self.app.stream(self)

    def __aiter__(self) -> AsyncIterator[V]:
        it: AsyncIterator[V] = self.stream().__aiter__()
        return it

    def __repr__(self) -> str:
        return f"<Topic {self.name!r} partitions={self.partition_count}>"


def _for_app(codec: Codec, app: TopicHost) -> Codec:
    """The codec as ``app`` uses it: a codec with ``for_app(app)`` binds itself (Avro: the app's registry)."""
    bind = getattr(codec, "for_app", None)
    return codec if bind is None else bind(app)


async def _retrying(step: Callable[[], Awaitable[None]], what: str, wait: Callable[[], bool]) -> None:
    """Run ``step``; while the schema registry is unreachable and ``wait()``, retry with backoff."""
    delay, since = 0.05, 0.0
    while True:
        try:
            await step()
        except SchemaRegistryUnavailableError as exc:
            if not wait():
                raise
            if not since:
                since = time.monotonic()
                logger.warning("%s: %s; retrying with backoff", what, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
            continue
        if since:
            logger.info("%s: the schema registry answers again after %.1f s", what, time.monotonic() - since)
        return


def _record_serializer(value_type: Any) -> str | None:
    options = getattr(value_type, "_options", None)
    if isinstance(options, Mapping):
        return options.get("serializer")
    return None


def _headers(headers: Any) -> Headers:
    if not headers:
        return ()
    items = headers.items() if isinstance(headers, Mapping) else headers
    out = []
    for name, value in items:
        if isinstance(value, str):
            value = value.encode()
        elif not isinstance(value, bytes):
            raise ConfigurationError(f"header {name!r} must be str or bytes, got {type(value).__name__}")
        out.append((str(name), value))
    return tuple(out)


def _seconds(value: Any) -> float | None:
    if value is None:
        return None
    if hasattr(value, "total_seconds"):
        return float(value.total_seconds())
    return float(value)


