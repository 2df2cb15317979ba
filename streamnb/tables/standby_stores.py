"""The standby side of a table's stores: following changelogs of partitions served elsewhere (Kafka).

A mixin of :class:`~streamnb.tables.persistence.TableStore`: a standby store
follows its partition's changelog into RocksDB, is never served, and says how
far behind it is (:mod:`streamnb.tables.standby` decides which partitions).

>>> sorted(name for name in vars(StandbyStores) if not name.startswith("_"))  # doctest: +NORMALIZE_WHITESPACE
['follow', 'mirror', 'offsets', 'release_standbys', 'standby_positions', 'standby_progress']
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import StoreLockedError
from ..topics import Topic
from ..transport.base import TP, Message, Transport
from .progress import StandbyProgress
from .state.base import TableState
from .stores.rocksdb import RocksDBStore

__all__ = ["READ_BATCH", "StandbyStores"]

READ_BATCH = 50_000
"""Changelog records read at a time (restores and standbys)."""


class StandbyStores:
    """Standby replicas of a table's partitions, beside the stores it serves."""

    table: str
    changelog: Topic[Any, Any]
    folder: Path
    memory_bytes: int
    stores: dict[int, RocksDBStore]
    standbys: dict[int, RocksDBStore]
    standby_ends: dict[int, int]

    def _trusted(self, store: RocksDBStore, transport: Transport, partition: int, begin: int, end: int) -> int | None:
        raise NotImplementedError  # (the table store's check of a store against its changelog)

    def mirror(
        self, store: RocksDBStore, msgs: list[Message], resume: int, held: TableState | None, partition: int
    ) -> None:
        raise NotImplementedError  # (the table store's: changelog records into a store)

    async def follow(self, transport: Transport, partition: int) -> int:
        """Read the next batch of ``partition``'s changelog into its standby store (never served); returns records.

        The store is opened the first time (checked as for a restore, and
        left alone while another process holds it); 0 when it caught up,
        or when the partition is served here.
        """
        served = self.stores.get(partition)
        if served is not None and not served.read_only:
            return 0
        store = self.standbys.get(partition)
        tp = TP(self.changelog.name, partition)
        if store is None:
            store = RocksDBStore(self.folder / str(partition), self.memory_bytes, table=self.table)
            try:
                store.open()
            except StoreLockedError:
                return 0
            self.standbys[partition] = store
            begin = (await transport.beginning_offsets([tp]))[tp]
            end = (await transport.end_offsets([tp]))[tp]
            if self.standbys.get(partition) is not store:
                return 0  # (it became the partition's store meanwhile: its restore checks it)
            if self._trusted(store, transport, partition, begin, end) is None:
                store.apply((), begin)
        start = store.resume or 0
        end = (await transport.end_offsets([tp]))[tp]
        self.standby_ends[partition] = end
        if start >= end:
            return 0
        msgs = await transport.read(tp, start, end, READ_BATCH)
        if self.standbys.get(partition) is not store:
            return 0  # served (or released) while reading: the restore reads on from the store's offset
        self.mirror(store, msgs, msgs[-1].offset + 1 if msgs else end, None, partition)
        return len(msgs)

    def offsets(self) -> dict[int, int]:
        """``{partition: resume offset}`` of every store open here, served or standby."""
        out = {p: s.resume for p, s in self.standbys.items() if s.resume is not None}
        out.update({p: s.resume for p, s in self.stores.items() if s.resume is not None})
        return out

    def standby_positions(self) -> dict[int, int]:
        """``{partition: changelog offset}`` each standby store has read to."""
        return {p: s.resume or 0 for p, s in self.standbys.items()}

    def standby_progress(self) -> dict[int, StandbyProgress]:
        """``{partition: StandbyProgress(offset, behind)}`` of each standby store (behind: to the end last seen)."""
        out = {}
        for partition, store in list(self.standbys.items()):
            end = self.standby_ends.get(partition)
            if end is not None:  # (else just opened: its changelog's end is being asked for)
                offset = store.resume or 0
                out[partition] = StandbyProgress(offset, max(end - offset, 0))
        return out

    def release_standbys(self, keep: set[int]) -> None:
        """Close the standby stores of partitions not in ``keep`` (their rows stay on disk)."""
        for partition in [p for p in self.standbys if p not in keep]:
            self.standbys.pop(partition).close()
            self.standby_ends.pop(partition, None)
