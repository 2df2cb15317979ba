"""Rebuilding a table partition from its changelog.

The changelog holds every write with its key, partition and value; a
tombstone (no value) deletes. A windowed table's stream time is in its
stream-time topic (:mod:`~streamnb.tables.streamtime`; changelogs of older
versions hold it under ``"__stream_time__"``). :func:`read_changelog`
applies the records of one partition to the table's state, in offset order,
then its stream time, then lets the state rebuild its indexes, letting the
event loop run every :data:`SLICE` seconds (a million records never freeze
a kernel); :func:`log_restore` writes the operator's one line per restore.

Example (on a running loop)::

    records = await read_changelog(transport, table.changelog, 3, table.state, table.stream_times)
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Collection, Iterable
from typing import Any, Protocol

from ..ranges import ranges
from ..runtime import Runtime
from ..topics import Topic
from ..transaction import MISSING
from ..transport.base import TP, Transport
from .progress import RestoreTracker
from .state.base import TableState
from .state.event_time import STREAM_TIME_KEY, EventTimeState
from .streamtime import StreamTimeTopic

__all__ = ["SLICE", "STEP", "Persistence", "Recovering", "hashable", "load_pairs", "log_restore", "read_changelog"]

STEP = 1_000
"""Changelog records applied at a time during a restore (then it checks whether :data:`SLICE` passed)."""
SLICE = 0.005
"""Seconds a restore applies records before it lets the event loop run."""

logger = logging.getLogger("streamnb")


def hashable(obj: Any) -> Any:
    """JSON arrays back to tuples, so decoded keys can be dict keys.

    >>> hashable(["a", [1.0, 2.0]])
    ('a', (1.0, 2.0))
    """
    if isinstance(obj, list):
        return tuple(hashable(x) for x in obj)
    return obj


def load_pairs(
    state: TableState, changelog: Topic[Any, Any], pairs: Iterable[tuple[bytes | None, bytes | None]], partition: int
) -> None:
    """Apply changelog records ``(key bytes, value bytes or None)`` of ``partition`` to ``state``, decoded."""
    loads_key = changelog.key_codec.loads
    decode_value = changelog.decode_value
    load = state.load
    windowed = isinstance(state, EventTimeState)
    for kb, vb in pairs:
        key = hashable(loads_key(kb)) if kb is not None else None
        if vb is None:
            load(key, MISSING, partition)
        elif windowed and key == STREAM_TIME_KEY:  # written by an older version
            load(key, json.loads(vb), partition)
        else:
            load(key, decode_value(vb), partition)


async def read_changelog(
    transport: Transport,
    changelog: Topic[Any, Any],
    partition: int,
    state: TableState,
    stream_times: StreamTimeTopic | None = None,
    progress: RestoreTracker | None = None,
) -> int:
    """Apply partition ``partition`` of ``changelog`` (then of ``stream_times``) to ``state``; returns records read."""
    tp = TP(changelog.name, partition)
    start = (await transport.beginning_offsets([tp]))[tp]
    end = (await transport.end_offsets([tp]))[tp]
    read = 0
    since = time.monotonic()
    if progress is not None:
        progress.begin(partition, end - start)
    try:
        while start < end:
            msgs = await transport.read(tp, start, end, 50_000)
            if not msgs:
                break
            for at in range(0, len(msgs), STEP):
                load_pairs(state, changelog, ((m.key, m.value) for m in msgs[at : at + STEP]), partition)
                if time.monotonic() - since >= SLICE:  # a large restore lets the loop (a kernel) run
                    await asyncio.sleep(0)
                    since = time.monotonic()
            read += len(msgs)
            if progress is not None:
                progress.advance(partition, msgs[-1].offset + 1 - start)
            start = msgs[-1].offset + 1
    finally:
        if progress is not None:
            progress.finish(partition)
    if stream_times is not None and isinstance(state, EventTimeState):
        read += (await stream_times.read(transport, partition, state))[0]
    state.loaded()
    return read


def log_restore(
    table: str, changelog: str, partitions: Collection[int], records: int, started: float,
    level: int = logging.INFO, stored: int | None = None,
) -> None:
    """Log one line for a restore of ``partitions`` that began at ``started`` (``time.monotonic()``).

    Nothing when no partition was read (they were all held already).
    ``stored``: rows loaded from the table's local store (``rocksdb://``), not read from the changelog.
    """
    if partitions:
        local = "" if stored is None else f" after {stored} rows from its store"
        logger.log(level, "table %r restored partitions %s from %s: %d records%s in %.2f s",
                   table, ranges(partitions), changelog, records, local, time.monotonic() - started)


class Persistence(Protocol):
    """What recovery needs of a table's stores (:class:`~streamnb.tables.persistence.TableStore`)."""

    loaded_rows: int
    held: TableState | None

    async def recover(self, transport: Any, partition: int, stream_times: StreamTimeTopic | None = None) -> int: ...

    def close(self) -> None: ...

    def drop(self, partitions: set[int]) -> None: ...


class Recovering:
    """Recovery of a :class:`~streamnb.tables.table.Table` (a base class of it): rebuild and forget partitions."""

    app: Runtime
    name: str
    version: int
    changelog: Topic[Any, Any]
    stream_times: StreamTimeTopic | None
    persistence: Persistence | None
    state: TableState
    restore_tracker: RestoreTracker
    _recovered: set[int]
    _recovering: dict[int, asyncio.Future[None]]

    async def recover(self, partitions: Iterable[int] | None = None) -> int:
        """Rebuild the given partitions (default: all) from the changelog; returns records read."""
        transport = await self.app.connect()
        count = await self.changelog.declare()
        if self.stream_times is not None:
            await self.stream_times.declare(count)
        wanted = range(count) if partitions is None else [p for p in partitions if p < count]
        total, read, started = 0, [], time.monotonic()
        persistence = self.persistence
        stored = None if persistence is None else persistence.loaded_rows
        for p in wanted:
            if p in self._recovered:
                continue
            pending = self._recovering.get(p)
            if pending is not None:
                await pending
                continue
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._recovering[p] = fut
            try:
                total += await self._recover_partition(transport, p)
                self._recovered.add(p)
                read.append(p)
            finally:
                del self._recovering[p]
                fut.set_result(None)
        if total:
            self.version += 1
        if persistence is not None and stored is not None:  # (rows a table held in memory loaded from its store)
            stored = persistence.loaded_rows - stored if persistence.held is not None else None
        log_restore(self.name, self.changelog.name, read, total, started, stored=stored)
        return total

    async def _recover_partition(self, transport: Any, partition: int) -> int:
        if self.persistence is not None:
            return await self.persistence.recover(transport, partition, self.stream_times)
        return await read_changelog(
            transport, self.changelog, partition, self.state, self.stream_times, self.restore_tracker
        )

    def reset_recovery(self) -> None:
        """Forget which partitions were recovered (the app stopped; the next start reads again)."""
        self._recovered.clear()
        if self.persistence is not None:
            self.persistence.close()  # the stores' folders are free for the next process

    def drop_partitions(self, partitions: set[int]) -> None:
        """Forget rows of partitions this worker no longer owns (Kafka rebalance)."""
        if self.state.drop_partitions(partitions):
            self.version += 1
        if self.persistence is not None:
            self.persistence.drop(partitions)
        self._recovered -= partitions
