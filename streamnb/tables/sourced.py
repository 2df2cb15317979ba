"""Tables that follow a topic: ``app.Table(name, source=topic)`` and ``app.GlobalTable(name, source=topic)``.

A sourced table holds the latest value of each key of ``topic`` (a record
with a ``None`` value, a tombstone, deletes the key): Kafka Streams'
``builder.table()`` and ``builder.globalTable()``. Its changelog is the topic
itself (no second copy); it is read-only: writing it raises
:class:`~streamnb.errors.TableWriteError`.

How it keeps up with the topic:

- ``GlobalTable(source=)`` reads every partition to its end before any agent
  runs, then follows the topic as it grows (every ``follow_interval`` seconds),
  on every broker.
- ``Table(source=)`` is partitioned like its topic. A stream joined with it
  (``stream.join(table)``, :mod:`streamnb.processing.joins`) moves it: before
  each event of partition ``p`` at time ``t`` the join applies the records of
  the table's partition ``p`` with a timestamp ``<= t`` (in offset order, up
  to the first later one): the two partitions are read together in timestamp
  order, Kafka Streams' rule for one task, so results do not depend on timing.
  A sourced table no join reads is followed like a global one.

Example::

    customers = app.Table("customers", source=app.topic("customers", value_type=Customer))

    @app.agent(orders)
    async def enrich(stream):
        async for order, customer in stream.join(customers, how="left"):
            ...

>>> from streamnb import App
>>> app = App("demo", broker="memory://")
>>> rates = app.GlobalTable("rates", source=app.topic("rates"))
>>> rates.source.name, rates.changelog is rates.source, rates.read_only
('rates', True, True)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any, TypeVar

from ..errors import ConfigurationError, StreamnbError, TableWriteError
from ..timeunits import ms
from ..topics import Topic
from ..transaction import MISSING
from ..transport.base import TP, Message, Transport
from .changelog import ChangelogEncoder
from .global_table import GlobalTable
from .joins import JoinedTable
from .recovery import hashable, log_restore
from .state.base import PlainState
from .stores import MEMORY
from .table import Table
from .versions import TableVersions, versioning

__all__ = ["SourceReader", "SourcedGlobalTable", "SourcedTable", "check_source_options"]

logger = logging.getLogger("streamnb")

K = TypeVar("K")
V = TypeVar("V")

_NOT_WITH_SOURCE = ("partitions", "on_window_close", "on_late", "late_topic", "emit_final", "key_serializer",
                    "value_serializer", "key_type", "value_type")


def check_source_options(name: str, options: dict[str, Any]) -> None:
    """Refuse the table options that do not apply to a table following a topic (the topic decides them)."""
    given = [o for o in _NOT_WITH_SOURCE if options.get(o) not in (None, "")]
    if given:
        raise ConfigurationError(
            f"table {name!r} follows a topic (source=): {', '.join(given)} do(es) not apply; the topic's "
            "partitions, key and value types decide them (give them to app.topic(...) instead)"
        )
    if options.get("store") not in (None, "memory://"):
        raise ConfigurationError(
            f"table {name!r} follows a topic (source=) and keeps its rows in memory (re-read from the topic at "
            "a restart): leave out store="
        )
    for option in _NOT_WITH_SOURCE:
        options.pop(option, None)
    options.pop("store", None)


class SourceReader:
    """Applies one topic's records, partition by partition and in offset order, to a table's rows.

    ``held`` keeps records read ahead of the time asked for (a join stops at
    the first record later than its event).
    """

    recheck_interval = 0.05
    """Seconds before a partition read to its end is asked for new records again (per partition)."""

    def __init__(self, table: Table[Any, Any], topic: Topic[Any, Any]) -> None:
        self.table = table
        self.topic = topic
        self.positions: dict[int, int] = {}
        """Next offset to read, per partition."""
        self.held: dict[int, list[Message]] = {}
        """Records read but not applied yet (later than the time asked for), per partition."""
        self.checked: dict[int, float] = {}
        """When a partition was last found read to its end (monotonic seconds)."""
        self.applied = 0
        self.undecodable = 0
        """Records of the topic whose key or value could not be decoded (skipped, logged)."""

    def reset(self) -> None:
        """Forget the read positions (the app stopped; the next start reads from the beginning)."""
        self.positions.clear()
        self.held.clear()
        self.checked.clear()

    def due(self, partition: int, until: float) -> bool:
        """Whether :meth:`read` of ``partition`` up to ``until`` could apply anything (else it would return 0 at once).

        What a join asks before each event, without the cost of a coroutine:
        a partition is due when a record read ahead is at or before
        ``until``, or when nothing is read ahead and the partition was not
        found read to its end in the last :attr:`recheck_interval` seconds.
        """
        held = self.held.get(partition)
        if held:
            return held[0].timestamp <= until
        checked = self.checked.get(partition)
        return checked is None or time.monotonic() - checked >= self.recheck_interval

    async def read(self, transport: Transport, partition: int, until: float | None = None) -> int:
        """Apply the records of ``partition`` with timestamp ``<= until`` (all: None); returns how many.

        Stops before the first record later than ``until`` (kept for the next call).
        """
        done = 0
        held = self.held.get(partition)
        while True:
            if not held:
                held = await self._fetch(transport, partition)
                if not held:
                    break
            i = 0
            if until is None:
                i = len(held)
            else:
                while i < len(held) and held[i].timestamp <= until:
                    i += 1
            for msg in held[:i]:
                self._apply(msg, partition)
            done += i
            held = held[i:]
            if held:
                break
        self.held[partition] = held or []
        if done:
            self.applied += done
            self.table.version += 1
        return done

    async def _fetch(self, transport: Transport, partition: int) -> list[Message]:
        tp = TP(self.topic.name, partition)
        start = self.positions.get(partition)
        if start is None:
            start = (await transport.beginning_offsets([tp]))[tp]
            self.positions[partition] = start
        elif time.monotonic() - self.checked.get(partition, -1e9) < self.recheck_interval:
            return []
        end = (await transport.end_offsets([tp]))[tp]
        if start >= end:
            self.checked[partition] = time.monotonic()
            return []
        msgs = await transport.read(tp, start, end, 10_000)
        if msgs:
            self.positions[partition] = msgs[-1].offset + 1
        else:
            self.checked[partition] = time.monotonic()
        return msgs

    def _apply(self, msg: Message, partition: int) -> None:
        topic = self.topic
        try:
            key = hashable(topic.decode_key(msg.key)) if msg.key is not None else None
            value = MISSING if msg.value is None else topic.decode_value(msg.value)
        except StreamnbError as exc:
            self.undecodable += 1
            logger.warning("table %r skips %s[%d]@%d: %s", self.table.name, msg.topic, partition, msg.offset, exc)
            return
        versions: TableVersions | None = getattr(self.table, "versions", None)
        if versions is not None:
            kept = versions.partition(partition)
            newest = kept.latest(key)
            ts = ms(msg.timestamp)
            if not kept.put(key, ts, value) or (newest is not None and newest[0] > ts):
                return  # refused (beyond the retention), or out of order: the history only
        self.table.state.load(key, value, partition)


class _FollowsSource:
    """What both sourced tables share: read-only, the topic as changelog, a reader."""

    name: str
    app: Any
    state: Any
    source: Topic[Any, Any]
    reader: SourceReader
    read_only = True
    follow_interval: float = 0.2
    versions: TableVersions | None = None
    """Every version of each key (``history=True`` or ``versioned=``): lookups as of a time (:mod:`.versions`)."""

    def _use_source(self, source: Topic[Any, Any]) -> None:
        self.source = source
        self.changelog = source
        self._encoder = ChangelogEncoder(source)
        self.reader = SourceReader(self, source)  # type: ignore[arg-type]
        self.changes.complete = False  # type: ignore[attr-defined]  # (it changes as its topic is read)
        self._following = False
        self.driven = False
        """True once a join moves this table in step with its stream (the follower leaves it alone)."""

    def _refuse(self) -> TableWriteError:
        return TableWriteError(
            f"table {self.name!r} follows topic {self.source.name!r} (source=) and is read-only: send a record "
            f"to {self.source.name!r} to change it (a value of None deletes the key)"
        )

    def __setitem__(self, key: Any, value: Any) -> None:
        raise self._refuse()

    def __delitem__(self, key: Any) -> None:
        raise self._refuse()

    def topics(self) -> list[Topic[Any, Any]]:
        """The topic it follows (declared with the app's topics)."""
        return [self.source]

    def keep_history(self) -> None:
        """A sourced table keeps the topic's latest values only (``App(history=True)`` leaves it as it is)."""
        logger.info("table %r follows topic %r: it keeps no history of its own", self.name, self.source.name)

    def _windowed(self, window: Any, merge: Any = None) -> Any:
        raise ConfigurationError(
            f"table {self.name!r} follows topic {self.source.name!r} (source=) and cannot be windowed: "
            "aggregate the topic in an agent into a windowed table instead"
        )

    def join(self, other: Any, how: str = "inner", emit: Topic[Any, Any] | str | None = None) -> JoinedTable:
        """A read-only table of ``(left, right)`` per key, as Kafka Streams' KTable–KTable join (:mod:`.joins`).

        ``emit=topic``: each change also goes there as ``{"left": ..., "right": ...}`` or a tombstone.
        """
        if isinstance(other, Topic) or isinstance(other, str):
            raise ConfigurationError(
                f"table {self.name!r}.join({other!r}): a table joins another table (source=); "
                "join a stream with a table inside an agent: stream.join(table)"
            )
        return JoinedTable(self.app, self, other, how, emit)

    async def follow(self) -> None:
        """Read what is new in the topic, every ``follow_interval`` seconds, while this is the app's table.

        A table a join moves (``driven``) is left to the join. One follower
        per table: a second call returns at once.
        """
        if self._following:
            return
        self._following = True
        try:
            await self._follow()
        finally:
            self._following = False

    async def _follow(self) -> None:
        while getattr(self.app, "tables", {}).get(self.name) is self:
            await asyncio.sleep(self.follow_interval)
            transport = getattr(self.app, "transport", None)
            if transport is None or self.driven:
                continue
            try:
                for p in range(self.source.partition_count):
                    await self.reader.read(transport, p)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("table %r could not read topic %r; trying again", self.name, self.source.name)

    async def _read_all(self, partitions: Iterable[int] | None) -> int:
        transport = await self.app.connect()
        count = await self.source.declare()
        wanted = list(range(count)) if partitions is None else [p for p in partitions if p < count]
        total, started = 0, time.monotonic()
        for p in wanted:
            total += await self.reader.read(transport, p)
        log_restore(self.name, self.source.name, wanted, total, started)
        return total


class SourcedTable(_FollowsSource, Table[K, V]):
    """A read-only, partitioned table of a topic's latest values. Create with ``app.Table(name, source=topic)``.

    >>> from streamnb import App
    >>> app = App("demo", broker="memory://")
    >>> customers = app.Table("customers", source=app.topic("customers"))
    >>> customers["ann"] = 1
    Traceback (most recent call last):
    ...
    streamnb.errors.TableWriteError: table 'customers' follows topic 'customers' (source=) and is read-only: \
send a record to 'customers' to change it (a value of None deletes the key)
    """

    is_global = False

    def __init__(
        self, app: Any, name: str, *, source: Topic[Any, Any], history: bool = False,
        versioned: Any = None, **options: Any,
    ) -> None:
        check_source_options(name, options)
        super().__init__(
            app, name, key_type=source.key_type, value_type=source.value_type, store=MEMORY, **options
        )
        self._use_source(source)
        self.versions = versioning(name, history, versioned)
        # Followed while the app runs, on every broker (Kafka assigns no partitions to a table no agent writes).
        app.task(self.follow, name=f"follow table {name}")

    async def recover(self, partitions: Iterable[int] | None = None) -> int:
        """Start following the topic from its beginning.

        Nothing is read here: a join reads the table in step with its stream
        (from the beginning), and the follower reads a table no join moves.
        """
        await self.source.declare()
        self.recovered_partitions.update(range(self.source.partition_count))
        if not self._following:
            self.app.spawn(self.follow(), f"follow table {self.name}")
        return 0

    def drop_partitions(self, partitions: set[int]) -> None:
        """Nothing to drop: the table keeps following every partition it read (its rows stay)."""

    def reset_recovery(self) -> None:
        """The app stopped: the next start reads the topic again."""
        super().reset_recovery()
        self.reader.reset()
        self.state.drop_partitions(set(range(self.source.partition_count)))
        if self.versions is not None:
            self.versions.clear()

    def as_of(self, key: Any, ts: int, partition: int) -> Any:
        """``key``'s value as of ``ts`` (ms) in ``partition`` (None: absent); a versioned table only."""
        if self.versions is None:
            raise ConfigurationError(f"table {self.name!r} keeps no versions: make it with history=True")
        return self.versions.partition(partition).as_of(key, ts)

    def __repr__(self) -> str:
        kept = "" if self.versions is None else f" versions={len(self.versions)}"
        return f"<Table {self.name!r} source={self.source.name!r} rows={len(self.data)}{kept}>"


class SourcedGlobalTable(_FollowsSource, GlobalTable[K, V]):
    """A read-only table of a topic's latest values, all partitions on every worker.

    Create with ``app.GlobalTable(name, source=topic)``; read to the end of
    the topic before any agent runs, then followed.
    """

    def __init__(self, app: Any, name: str, *, source: Topic[Any, Any], **options: Any) -> None:
        check_source_options(name, options)
        super().__init__(
            app, name, key_type=source.key_type, value_type=source.value_type, store=MEMORY, **options
        )
        if not isinstance(self.state, PlainState):
            self.use_state(PlainState())
        self._use_source(source)

    async def recover(self, partitions: Iterable[int] | None = None) -> int:
        """Read every partition of the topic to its end (an assignment reads nothing more)."""
        if partitions is not None and self.recovered_partitions:
            return 0
        total = await self._read_all(None)
        self.recovered_partitions.update(range(self.source.partition_count))
        if not self._following:
            self.app.spawn(self.follow(), f"follow table {self.name}")
        return total

    def drop_partitions(self, partitions: set[int]) -> None:
        """Nothing to do: every partition is followed."""

    def reset_recovery(self) -> None:
        """The app stopped: read everything again at the next start."""
        super().reset_recovery()
        self.reader.reset()
        self.state.drop_partitions(set(range(self.source.partition_count)))

    def __repr__(self) -> str:
        return f"<GlobalTable {self.name!r} source={self.source.name!r} rows={len(self.data)}>"
