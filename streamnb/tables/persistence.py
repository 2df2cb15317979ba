"""A table whose rows live in RocksDB: restores that read only the changelog's tail, commits that flush.

:class:`TableStore` is what a :class:`~streamnb.tables.table.Table` with
``store="rocksdb://"`` delegates to: it opens one
:class:`~streamnb.tables.stores.rocksdb.RocksDBStore` per partition the
worker serves, under ``<datadir>/<app id>/<table>/<partition>``.

- **Restore** reads the changelog partition from the store's resume offset
  to its end, copying records byte for byte in batches that each move the
  resume offset on; a restart after a clean stop reads nothing. The local
  state is wiped and rebuilt, with a warning that says why, whenever it
  cannot be trusted: the resume offset is past the changelog's end (a
  recreated topic, or the volatile ``memory://`` broker after a restart),
  the changelog now starts after it (retention, a deleted topic), the
  on-disk format differs, or the files cannot be read.
- **Commits**: the changelog records a commit writes are kept
  (:meth:`TableStore.committing`) and applied to the store once the commit
  landed (:meth:`TableStore.committed`), with the resume offset moved on by
  as many offsets as they took: one per record, plus, on Kafka with
  exactly-once, the commit marker the transaction wrote after them (one
  transaction per input partition writes the changelog partition of the
  same number, once per commit). Nothing reaches the store that the
  changelog does not hold. A ``kill -9`` between the two leaves the store
  one commit behind, and the next restore reads that commit again.

Example (what the table does)::

    tstore = TableStore(app, "totals", table.changelog)
    await tstore.recover(transport, 0)        # the tail since the last commit
    tstore.committing(records)                # at a commit ...
    tstore.committed()                        # ... once it landed
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from ..errors import StoreLockedError
from ..runtime import Runtime
from ..topics import Topic
from ..transport.base import TP, ProducerRecord, Transport
from .recovery import hashable
from .state.stored import StoredState
from .stores.rocksdb import RocksDBStore

__all__ = ["TableStore"]

logger = logging.getLogger("streamnb")

_READ_BATCH = 50_000


class TableStore:
    """The RocksDB side of one table: its partitions' stores and how they follow the changelog."""

    def __init__(self, app: Runtime, table: str, changelog: Topic[Any, Any]) -> None:
        self.table = table
        self.changelog = changelog
        self.folder = app.datadir / app.id / table
        """Where the table's partitions keep their stores."""
        self.memory_bytes = app.store_memory
        loads = changelog.key_codec.loads
        self.state = StoredState(
            changelog.key_codec.dumps, lambda data: hashable(loads(data)), changelog.decode_value
        )
        self._flushing: list[ProducerRecord] | None = None
        self.app = app
        self.markers = 0
        """Offsets a commit's transaction adds after a changelog partition's records (Kafka exactly-once: 1)."""

    def __repr__(self) -> str:
        return f"<TableStore {self.table!r} in {str(self.folder)!r}>"

    lock_wait: float = 30.0
    """Seconds :meth:`open` waits for another worker to let go of a partition's store (a rebalance)."""

    async def open(self, partition: int) -> RocksDBStore:
        """The store of ``partition``, opened.

        Another process holding it is usually a worker on the same machine
        that just lost the partition in a rebalance and lets go of it once
        its own assignment arrives: wait for that (:attr:`lock_wait` s at
        most), then raise :class:`~streamnb.errors.StoreLockedError`.
        """
        store = self.state.stores.get(partition)
        if store is not None:
            return store
        store = RocksDBStore(self.folder / str(partition), self.memory_bytes, table=self.table)
        deadline, delay = time.monotonic() + self.lock_wait, 0.05
        while True:
            try:
                store.open()
                return store
            except StoreLockedError:
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def recover(self, transport: Transport, partition: int) -> int:
        """Bring ``partition``'s store up to the changelog's end and serve it; returns records read."""
        store = await self.open(partition)
        self.markers = int(transport.distributed and self.app.processing_guarantee == "exactly_once")
        tp = TP(self.changelog.name, partition)
        begin = (await transport.beginning_offsets([tp]))[tp]
        end = (await transport.end_offsets([tp]))[tp]
        resume = store.resume
        reason = None
        if resume is not None and resume > end:
            reason = f"its store read the changelog to offset {resume}, past its end ({end}): the topic was recreated"
        elif resume is not None and begin > resume:
            reason = (
                f"its changelog now starts at offset {begin}, after where its store stopped ({resume}): "
                "records were deleted (retention or a recreated topic)"
            )
        if reason is not None:
            logger.warning("table %r partition %d: rebuilding its store from the changelog: %s",
                           self.table, partition, reason)
            store.destroy()
            store.open()
            resume = None
        start = begin if resume is None else resume
        read = 0
        while start < end:
            msgs = await transport.read(tp, start, end, _READ_BATCH)
            if not msgs:
                break
            start = msgs[-1].offset + 1
            store.apply(((m[4], m[5]) for m in msgs if m[4] is not None), start)
            read += len(msgs)
            await asyncio.sleep(0)  # a long restore lets the kernel answer between batches
        if store.resume != end:
            store.apply((), end)  # read to the end (markers, aborted records and all)
        self.state.serve(partition, store)
        return read

    def committing(self, records: list[ProducerRecord]) -> None:
        """A commit is about to write these changelog records."""
        self._flushing = records

    def committed(self) -> None:
        """The commit landed: apply its records to the stores, moving each resume offset on by as many."""
        records, self._flushing = self._flushing, None
        if records:
            by_partition: dict[int, list[tuple[bytes, bytes | None]]] = {}
            for r in records:
                if r[2] is None:  # (a changelog record always has a key)
                    continue
                found = by_partition.get(r[1])
                if found is None:
                    found = by_partition[r[1]] = []
                found.append((r[2], r[3]))
            stores = self.state.stores
            for partition, changes in by_partition.items():
                store = stores.get(partition)
                if store is None:  # not served here any more: its next restore reads the changelog
                    continue
                resume = None if store.resume is None else store.resume + len(changes) + self.markers
                store.apply(changes, resume)
        self.state.flushed()

    def rolled_back(self) -> None:
        """The commit failed or the transaction was aborted: nothing reaches the stores."""
        self._flushing = None

    def close(self) -> None:
        """Close every partition's store (the app stopped)."""
        self.state.close()
