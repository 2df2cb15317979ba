"""Global tables: every worker holds every partition.

A :class:`GlobalTable` is written like any table (inside an agent, to the
changelog partition of the event being processed), but every worker keeps
all of its rows: on ``kafka://`` it reads its changelog from every
partition at start, whatever partitions the agents were assigned, and then
follows the partitions this worker does not write, so rows written by the
other workers show up here too. On the embedded brokers (one process owns
the data) it is an ordinary table.

Example::

    currencies = app.GlobalTable("currencies", default=float)

    @app.agent(rates)
    async def update(stream):
        async for rate in stream:
            currencies[rate.currency] = rate.value      # visible on every worker

A partition this worker is assigned is first read to its end (so it holds
what the previous owner wrote), then written here and no longer followed;
when the partition goes, following resumes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any, TypeVar

from ..transport.base import TP, Transport
from .recovery import SLICE, STEP, load_pairs, log_restore
from .state.base import PlainState
from .state.event_time import EventTimeState
from .stores import MEMORY
from .stores.rocksdb import RocksDBStore
from .table import Table

__all__ = ["GlobalTable"]

logger = logging.getLogger("streamnb")

K = TypeVar("K")
V = TypeVar("V")


class GlobalTable(Table[K, V]):
    """A table every worker holds in full. Create with :meth:`App.GlobalTable`.

    >>> from streamnb import App
    >>> rates = App("demo", broker="memory://").GlobalTable("rates", default=float)
    >>> rates["EUR"], rates.is_global
    (0.0, True)

    Every worker holds every partition, so two workers on one machine would
    share its store folders (one process owns a store): ``App(store=...)``
    does not apply to global tables, they stay in memory unless given
    ``store="rocksdb://"`` themselves (then give each worker its own
    ``datadir=``).
    """

    is_global = True
    follow_interval: float = 0.2
    """Seconds between reads of the changelog partitions other workers write (Kafka)."""

    def __init__(self, app: Any, name: str, **options: Any) -> None:
        if options.get("store") is None:  # App(store=...) does not apply: see the class docstring
            options["store"] = MEMORY
        super().__init__(app, name, **options)
        self.changes.complete = False  # (other workers' writes arrive through the changelog)
        if self.persistence is not None:  # rows in memory (every partition), loaded from the stores at a restart
            self.use_state(PlainState())
        self.positions: dict[int, int] = {}
        """Next changelog offset to read, per partition."""
        self.stream_time_positions: dict[int, int] = {}
        """Next offset of the stream-time topic to read, per partition (windowed global tables)."""
        self.written_here: set[int] = set()
        """Partitions this worker is assigned (it writes them; they are not followed)."""
        self._reading = asyncio.Lock()

    def _stored_windows(self, window: Any, merge: Any) -> Any:
        """A global table keeps its windows in memory too (every partition, loaded from the stores)."""
        return None

    def take_over(self, old: Table[Any, Any]) -> None:
        """Keep the rows (and read positions) of ``old``, the table this one redefines."""
        super().take_over(old)
        if isinstance(old, GlobalTable):
            self.positions = old.positions
            self.stream_time_positions = old.stream_time_positions
            self.written_here = old.written_here

    async def recover(self, partitions: Iterable[int] | None = None) -> int:
        """Read the changelog to its end: every partition (``None``), or the ones just assigned.

        Assigned partitions are then written by this worker and no longer followed.
        """
        transport = await self.app.connect()
        count = await self.changelog.declare()
        if self.stream_times is not None:
            await self.stream_times.declare(count)
        wanted = list(range(count)) if partitions is None else [p for p in partitions if p < count]
        total, started = 0, time.monotonic()
        persistence = self.persistence
        stored = None if persistence is None else persistence.loaded_rows
        for p in wanted:
            total += await self.catch_up(transport, p)
        if persistence is not None and stored is not None:
            stored = persistence.loaded_rows - stored
        # Reading every partition is a restore; an assignment only catches up with what was followed.
        log_restore(self.name, self.changelog.name, wanted, total, started,
                    logging.INFO if partitions is None else logging.DEBUG, stored=stored)
        self.recovered_partitions.update(wanted)
        if partitions is not None and transport.distributed:
            self.written_here.update(wanted)
        return total

    def drop_partitions(self, partitions: set[int]) -> None:
        """This worker no longer writes ``partitions``: follow them again (the rows stay)."""
        self.written_here -= partitions

    def reset_recovery(self) -> None:
        """The app stopped: read everything again at the next start."""
        super().reset_recovery()
        self.positions.clear()
        self.stream_time_positions.clear()
        self.written_here.clear()

    async def catch_up(
        self, transport: Transport, partition: int, *, following: bool = False, end: int | None = None
    ) -> int:
        """Apply the changelog records of ``partition`` written since the last read; returns how many.

        With ``following``, a partition this worker writes is left alone (its
        rows here are newer than the changelog until the next commit).
        ``end``: the partition's end offset, when the caller knows it.
        """
        async with self._reading:
            if following and partition in self.written_here:
                return 0
            tp = TP(self.changelog.name, partition)
            start, store, loaded = await self._start(transport, partition)
            if end is None:
                end = (await transport.end_offsets([tp]))[tp]
            read = 0
            since = time.monotonic()
            while start < end:
                msgs = await transport.read(tp, start, end, 50_000)
                if not msgs:
                    break
                for at in range(0, len(msgs), STEP):
                    load_pairs(self.state, self.changelog, ((m.key, m.value) for m in msgs[at : at + STEP]), partition)
                    if time.monotonic() - since >= SLICE:  # (the loop runs during a large restore)
                        await asyncio.sleep(0)
                        since = time.monotonic()
                read += len(msgs)
                start = msgs[-1].offset + 1
                if store is not None and self.persistence is not None:
                    self.persistence.mirror(store, msgs, start, None, partition)
            self.positions[partition] = max(start, end)
            if store is not None and (store.resume is None or store.resume < end):
                store.apply((), end)  # (markers, aborted records)
            times, state = self.stream_times, self.state
            if (read or loaded) and times is not None and isinstance(state, EventTimeState):  # written with the rows
                done, after = await times.read(transport, partition, state, self.stream_time_positions.get(partition))
                read += done
                if after is not None:
                    self.stream_time_positions[partition] = after
            if read or loaded:
                self.state.loaded()
                self.version += 1
            return read

    async def _start(self, transport: Transport, partition: int) -> tuple[int, RocksDBStore | None, int]:
        """Where reading ``partition`` resumes, its store, and rows loaded from it (``rocksdb://``, at first)."""
        start = self.positions.get(partition)
        persistence = self.persistence
        if persistence is None:
            if start is None:
                tp = TP(self.changelog.name, partition)
                start = (await transport.beginning_offsets([tp]))[tp]
            return start, None, 0
        store = persistence.stores.get(partition)
        loaded = 0
        if store is None or start is None:
            store, start, _end = await persistence.checked(transport, partition)
            if partition not in persistence.stores:
                loaded = await persistence.load(store, self.state, partition)
                persistence.stores[partition] = store
        elif store.resume is not None and store.resume > start:
            start = store.resume  # written here since: the rows hold it already
        return start, store, loaded

    async def follow(self) -> None:
        """Keep reading the partitions other workers write, while this is the app's table of that name.

        Started by the app on ``kafka://``; stops when the app stops or the
        table is redefined.
        """
        while getattr(self.app, "tables", {}).get(self.name) is self:
            await asyncio.sleep(self.follow_interval)
            transport = getattr(self.app, "transport", None)
            if transport is None:
                continue
            try:
                name = self.changelog.name
                followed = [p for p in range(self.changelog.partition_count) if p not in self.written_here]
                ends = await transport.end_offsets([TP(name, p) for p in followed])
                for p in followed:
                    end = ends[TP(name, p)]
                    if self.positions.get(p, -1) < end:
                        await self.catch_up(transport, p, following=True, end=end)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("global table %r could not read its changelog; trying again", self.name)

    def __repr__(self) -> str:
        return f"<GlobalTable {self.name!r} rows={len(self.data)}>"
