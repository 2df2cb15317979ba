"""A table whose rows live in RocksDB: restores that read only the changelog's tail, commits that flush.

:class:`TableStore` is what a :class:`~streamnb.tables.table.Table` with
``store="rocksdb://"`` delegates to: it opens one
:class:`~streamnb.tables.stores.rocksdb.RocksDBStore` per partition the
worker serves, under ``<datadir>/<app id>/<table>/<partition>``.

- **Restore** reads the changelog partition from the store's resume offset
  to its end, copying records byte for byte in batches that each move the
  resume offset on; a restart after a clean stop reads nothing. Into an
  empty store (a cold restore) without RocksDB's log (:meth:`RocksDBStore.bulk
  <streamnb.tables.stores.rocksdb.RocksDBStore.bulk>`), a window batch cut
  apart at once (:mod:`~streamnb.tables.stores.bulk`). The local
  state is wiped and rebuilt, with a warning that says why, whenever it
  cannot be trusted: the resume offset is past the changelog's end (a
  recreated topic, or the volatile ``memory://`` broker after a restart),
  the changelog now starts after it (retention, a deleted topic), the
  store followed another broker's changelog (an app moved by ``fork()``,
  a datadir shared by two brokers), the on-disk format differs, or the
  files cannot be read.
- **Commits**: the changelog records a commit writes are kept
  (:meth:`TableStore.committing`) and applied to the store once the commit
  landed (:meth:`TableStore.committed`), with the resume offset moved on by
  as many offsets as they took: one per record, plus, on Kafka with
  exactly-once, the commit marker the transaction wrote after them (one
  transaction per input partition writes the changelog partition of the
  same number, once per commit). Nothing reaches the store that the
  changelog does not hold. A ``kill -9`` between the two leaves the store
  one commit behind, and the next restore reads that commit again. A store
  that cannot be written (a full disk) keeps its offset, the error is
  logged, and the next commit writes both commits' records.
- **Every kind of table.** A plain table's rows live in the stores
  (:class:`~streamnb.tables.state.stored.StoredState`, read as they go), and
  so do a tumbling or hopping table's windows, by key and by time
  (:class:`~streamnb.tables.state.stored_windows.StoredWindowedState`), a
  session table's sessions, by key and by end
  (:class:`~streamnb.tables.state.stored_sessions.StoredSessionState`), a
  sliding table's buckets, by key and by time
  (:class:`~streamnb.tables.state.stored_sliding.StoredSlidingState`), a
  set table's sets (:class:`~streamnb.tables.state.stored_sets.StoredSetState`)
  and, with ``history=True``, plain rows and tumbling and hopping windows (every
  change goes to the changelog: :mod:`~streamnb.tables.state.history`): a restart loads
  nothing from them (``history=True`` session tables too: they keep no
  history yet). Global tables and ``history=True`` sliding tables keep their
  state in memory as on ``memory://``
  (:attr:`TableStore.held`): the stores hold the same compacted image of
  their changelog, written at each commit the same way, and a restart loads
  the state from them and reads only the changelog's tail. A windowed
  table's stream time is kept with the offset of its stream-time topic. A
  store written in another layout than the table's (a table that changed
  kind) is rebuilt from the changelog.

Example (what the table does)::

    tstore = TableStore(app, "totals", table.changelog)
    await tstore.recover(transport, 0)        # the tail since the last commit
    tstore.committing(records)                # at a commit ...
    tstore.committed()                        # ... once it landed
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import operator
import shutil
import time
from collections.abc import Callable
from typing import Any

from ..errors import StoreLockedError, StoreWriteError
from ..runtime import Runtime
from ..topics import Topic
from ..transport.base import TP, Message, ProducerRecord, Transport
from .progress import RestoreTracker
from .recovery import SLICE, STEP, hashable, load_pairs
from .standby_stores import READ_BATCH as _READ_BATCH
from .standby_stores import StandbyStores
from .state.base import TableState
from .state.event_time import EventTimeState
from .state.history import StoredHistoryState
from .state.stored import StoredState
from .state.stored_sessions import StoredSessionState
from .state.stored_sets import StoredSetState
from .state.stored_windows import StoredWindowedState
from .state.window_cache import WindowCache
from .stores.bulk import session_columns, window_columns
from .stores.rocksdb import RocksDBStore
from .streamtime import StreamTimeTopic

__all__ = ["TableStore"]

logger = logging.getLogger("streamnb")

_KEY, _VALUE = operator.itemgetter(4), operator.itemgetter(5)


class TableStore(StandbyStores):
    """The RocksDB side of one table: its partitions' stores and how they follow the changelog."""

    def __init__(
        self, app: Runtime, table: str, changelog: Topic[Any, Any], progress: RestoreTracker | None = None
    ) -> None:
        self.table = table
        self.changelog = changelog
        self.folder = app.datadir / app.id / table
        """Where the table's partitions keep their stores."""
        self.memory_bytes = app.store_memory
        self.state = StoredState(*self.codecs())
        self.stores = self.state.stores
        """The open store of every partition served (shared with :attr:`state`)."""
        self.standbys: dict[int, RocksDBStore] = {}
        """Stores of the partitions this worker keeps standby replicas of: following the changelog, not served."""
        self.standby_ends: dict[int, int] = {}
        """The changelog's end offset each standby store last saw (how far behind it is: :meth:`standby_progress`)."""
        self.held: TableState | None = None
        """The in-memory state whose changelog the stores keep (global and ``history=True`` sliding tables),
        or None: the rows live in the stores (:attr:`rows`)."""
        self.rows: StoredState | WindowCache = self.state
        """The state whose rows live in the stores: :attr:`state` (plain rows, sets), or a tumbling,
        hopping, sliding or session table's windows."""
        self.progress = progress or RestoreTracker(table)
        self.loaded_rows = 0
        """Rows the last restores loaded from the stores into :attr:`held` (not read from the changelog)."""
        self._flushing: list[ProducerRecord] | None = None
        self._unflushed: dict[int, tuple[list[tuple[bytes, bytes | None]], int]] = {}
        self.app = app
        self.markers = 0
        """Offsets a commit's transaction adds after a changelog partition's records (Kafka exactly-once: 1)."""
        self.stream_topic: str | None = None
        """A windowed table's stream-time topic, whose records commits keep in the stores too."""

    def __repr__(self) -> str:
        return f"<TableStore {self.table!r} in {str(self.folder)!r}>"

    def hold(self, state: TableState) -> None:
        """Keep ``state``: in the stores (plain rows, tumbling, hopping, sliding and session windows), else in memory,
        loaded from the stores at a restart."""
        if isinstance(state, (StoredState, WindowCache)):
            self.rows, self.held = state, None
        else:
            self.rows, self.held = self.state, state

    def history(self) -> StoredHistoryState:
        """A state keeping plain rows in the stores, logging every write (``history=True``): the table's from now on."""
        state = self.state
        self.state = StoredHistoryState(state.encode_key, state.decode_key, state.decode_value, self.stores)
        if self.rows is state:
            self.rows = self.state
        return self.state

    def codecs(self) -> tuple[Callable[[Any], bytes], Callable[[bytes], Any], Callable[[bytes], Any]]:
        """``(encode key, decode key, decode value)`` of the changelog's records, as the stored states take them."""
        loads = self.changelog.key_codec.loads
        return self.changelog.key_codec.dumps, lambda data: hashable(loads(data)), self.changelog.decode_value

    def sets(self, members: Callable[[Any], set[Any]]) -> StoredSetState:
        """A state keeping a set table's sets in the stores; ``members`` decodes a record's members into a set."""
        encode_key, decode_key, decode_value = self.codecs()
        return StoredSetState(
            encode_key, decode_key, lambda data: members(decode_value(data)), self.stores,
            members_of=lambda data: _has_members(decode_value(data)),
        )

    @property
    def layout(self) -> str:
        """The layout the table's stores are written in (see :attr:`RocksDBStore.layout`)."""
        return self.rows.layout if isinstance(self.rows, WindowCache) else ""

    lock_wait: float = 30.0
    """Seconds :meth:`open` waits for another worker to let go of a partition's store (a rebalance)."""

    async def open(self, partition: int) -> RocksDBStore:
        """The store of ``partition``, opened.

        Another process holding it is usually a worker on the same machine
        that just lost the partition in a rebalance and lets go of it once
        its own assignment arrives: wait for that (:attr:`lock_wait` s at
        most), then raise :class:`~streamnb.errors.StoreLockedError`.
        """
        store = self.stores.get(partition)
        if store is not None and not store.read_only:
            return store
        if store is not None:  # (read only since the app stopped: opened again for writing below)
            del self.stores[partition]
            store.close()
        store = self.standbys.pop(partition, None)  # a standby replica becomes the partition's store
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

    async def checked(self, transport: Transport, partition: int) -> tuple[RocksDBStore, int, int]:
        """``partition``'s store, wiped when it cannot be trusted; and the changelog range to read after it."""
        store = await self.open(partition)
        self.markers = int(transport.distributed and self.app.processing_guarantee == "exactly_once")
        tp = TP(self.changelog.name, partition)
        begin = (await transport.beginning_offsets([tp]))[tp]
        end = (await transport.end_offsets([tp]))[tp]
        resume = self._trusted(store, transport, partition, begin, end)
        self._unflushed.pop(partition, None)
        return store, (begin if resume is None else resume), end

    def _trusted(self, store: RocksDBStore, transport: Transport, partition: int, begin: int, end: int) -> int | None:
        """``store``'s resume offset, after wiping it (loudly, returning None) when the changelog disowns it."""
        resume = store.resume
        reason = None
        if resume is not None and resume > end:
            reason = f"its store read the changelog to offset {resume}, past its end ({end}): the topic was recreated"
        elif resume is not None and begin > resume:
            reason = (
                f"its changelog now starts at offset {begin}, after where its store stopped ({resume}): "
                "records were deleted (retention or a recreated topic)"
            )
        elif resume is not None and store.origin not in (None, transport.url):
            reason = f"its store followed the changelog on {store.origin}, this app runs on {transport.url}"
        elif resume is not None and store.layout != self.layout:
            reason = (
                f"its store holds {store.layout or 'rows'}, the table now keeps {self.layout or 'rows'} "
                "(it changed kind, or a version that kept them another way wrote it)"
            )
        if reason is not None:
            logger.warning("table %r partition %d: rebuilding its store from the changelog: %s",
                           self.table, partition, reason)
            store.destroy()
            store.open()
            resume = None
        if store.origin != transport.url:
            store.origin = transport.url
        if store.layout != self.layout:
            store.layout = self.layout
        return resume

    async def recover(
        self, transport: Transport, partition: int, stream_times: StreamTimeTopic | None = None
    ) -> int:
        """Bring ``partition``'s store up to the changelog's end and serve it; returns changelog records read.

        A table held in memory (:attr:`held`) is loaded from the store first, then follows the tail.
        """
        store, start, end = await self.checked(transport, partition)
        held = self.held
        if held is not None:
            await self.load(store, held, partition)
        if store.resume is None and start < end:
            store.bulk()  # an empty store: written without RocksDB's log until it is whole (RocksDBStore.bulk)
        try:
            read = await self._copy(transport, store, start, end, held, partition)
            if store.resume != end:
                store.apply((), end)  # read to the end (markers, aborted records and all)
        finally:
            store.end_bulk()
        timed = held if held is not None else self.rows
        if stream_times is not None and isinstance(timed, EventTimeState):
            read += await self._stream_time(transport, store, stream_times, timed, partition)
        if held is not None:
            held.loaded()
        self.rows.serve(partition, store)
        return read

    async def _copy(
        self, transport: Transport, store: RocksDBStore, start: int, end: int, held: TableState | None,
        partition: int,
    ) -> int:
        """Copy changelog records ``[start, end)`` of ``partition`` into ``store``; returns how many were read.

        The next batch is being read (on ``local://``, by the broker's
        reader thread) while one is written.
        """
        tp = TP(self.changelog.name, partition)
        read = 0
        progress = self.progress
        progress.begin(partition, end - start)
        pending = asyncio.ensure_future(transport.read(tp, start, end, _READ_BATCH)) if start < end else None
        try:
            while pending is not None:
                msgs = await pending
                pending = None
                if not msgs:
                    break
                progress.advance(partition, msgs[-1].offset + 1 - start)
                start = msgs[-1].offset + 1
                if start < end:
                    pending = asyncio.ensure_future(transport.read(tp, start, end, _READ_BATCH))
                self.mirror(store, msgs, start, held, partition)
                read += len(msgs)
                await asyncio.sleep(0)  # a long restore lets the kernel answer between batches
        finally:
            if pending is not None:  # (an error or a cancellation: the read ahead is not wanted)
                pending.cancel()
                await asyncio.gather(pending, return_exceptions=True)
            progress.finish(partition)
        return read

    async def _stream_time(
        self, transport: Transport, store: RocksDBStore, times: StreamTimeTopic, held: EventTimeState, partition: int
    ) -> int:
        """A windowed table's stream time: the stored one, then the stream-time topic's tail; returns records read.

        The stored value is used only while the topic still holds where it
        stopped (else the whole topic is read, as on ``memory://``).
        """
        self.stream_topic = times.topic.name
        tp = TP(times.topic.name, partition)
        begin = (await transport.beginning_offsets([tp]))[tp]
        end = (await transport.end_offsets([tp]))[tp]
        stored, start = store.stream_time(), None
        if stored is not None and begin <= stored[0] <= end:
            start = stored[0]
            if stored[1] is not None:
                held.load_stream_time_record(partition, float(json.loads(stored[1])))
        read, _after = await times.read(transport, partition, held, start)
        now = held.stream_time.get(partition)
        store.apply((), None, (end, None if now is None else json.dumps(now).encode()))
        return read

    async def load(self, store: RocksDBStore, state: TableState, partition: int) -> int:
        """Apply the rows of ``store`` to ``state`` (a restart of a table held in memory); returns how many."""
        rows, count, since = store.rows(), 0, time.monotonic()
        while chunk := list(itertools.islice(rows, STEP)):
            load_pairs(state, self.changelog, chunk, partition)
            count += len(chunk)
            if time.monotonic() - since >= SLICE:
                await asyncio.sleep(0)
                since = time.monotonic()
        self.loaded_rows += count
        return count

    def mirror(
        self, store: RocksDBStore, msgs: list[Message], resume: int, held: TableState | None, partition: int
    ) -> None:
        """Apply changelog records read from the broker to ``store`` (and to ``held``), resuming at ``resume``."""
        rows = self.rows
        if isinstance(rows, WindowCache) and held is None:
            keys: list[bytes | None] = list(map(_KEY, msgs))
            values: list[bytes | None] = list(map(_VALUE, msgs))
            # (tumbling and hopping windows of plain string keys: no loop per record)
            columns = (window_columns(keys, values) if isinstance(rows, StoredWindowedState)
                       else session_columns(keys, values) if isinstance(rows, StoredSessionState) else None)
            if columns is not None:
                store.write_columns(columns, resume)
            else:
                store.write(rows.keys_of.ops(zip(keys, values)), resume)
                rows.legacy_stream_time(zip(keys, values), partition)
        else:
            pairs = ((m[4], m[5]) for m in msgs if m[4] is not None)
            store.apply(rows.to_store(pairs) if isinstance(rows, StoredState) else pairs, resume)
        if held is not None:
            load_pairs(held, self.changelog, ((m[4], m[5]) for m in msgs), partition)

    def committing(self, records: list[ProducerRecord]) -> None:
        """A commit is about to write these changelog records."""
        self._flushing = records

    def committed(self) -> None:
        """The commit landed: apply its records to the stores, moving each resume offset on by as many.

        A store that cannot be written (a full disk) is left as it was, with
        an error in the log: the changelog holds the commit, the rows stay in
        memory, and the next commit writes them together with its own.
        """
        records, self._flushing = self._flushing, None
        by_partition: dict[int, list[tuple[bytes, bytes | None]]] = {}
        times: dict[int, list[bytes | None]] = {}
        name, stream_topic = self.changelog.name, self.stream_topic
        for r in records or ():
            if r[0] != name:
                if r[0] == stream_topic:
                    times.setdefault(r[1], []).append(r[3])
                continue
            if r[2] is None:  # (a changelog record always has a key)
                continue
            found = by_partition.get(r[1])
            if found is None:
                found = by_partition[r[1]] = []
            found.append((r[2], r[3]))
        if times:
            self._stream_times(times)
        failed = False
        stores, unflushed = self.stores, self._unflushed
        for partition in [*by_partition, *(p for p in unflushed if p not in by_partition)]:
            changes = by_partition.get(partition, [])
            taken = len(changes) + self.markers if changes else 0
            earlier = unflushed.pop(partition, None)
            if earlier is not None:
                changes, taken = earlier[0] + changes, earlier[1] + taken
            store = stores.get(partition)
            if store is None:  # not served here any more: its next restore reads the changelog
                continue
            try:
                self._write(store, changes, taken)
            except StoreWriteError as exc:
                logger.error("%s", exc)
                unflushed[partition] = (changes, taken)
                failed = True
        if not failed:  # (else the rows stay pending in memory until the store has them)
            self.rows.flushed()

    def _stream_times(self, times: dict[int, list[bytes | None]]) -> None:
        """Keep a commit's stream-time records in the stores (each moves its topic's resume offset on)."""
        for partition, values in times.items():
            store = self.stores.get(partition)
            stored = None if store is None else store.stream_time()
            if store is None or stored is None:
                continue  # (not served here, or its stream time is read from the topic at the next restore)
            unflushed = self._unflushed.get(partition)
            if unflushed is not None:  # (a store that cannot be written: read from the topic at a restart)
                continue
            try:
                store.apply((), None, (stored[0] + len(values) + self.markers, values[-1]))
            except Exception as exc:
                logger.error("table %r: its store %s could not keep the stream time (%s)",
                             self.table, store.path, _first_line(exc))

    def _write(self, store: RocksDBStore, changes: list[tuple[bytes, bytes | None]], taken: int) -> None:
        resume = None if store.resume is None else store.resume + taken
        rows = self.rows
        try:
            if isinstance(rows, WindowCache):
                store.write(rows.keys_of.ops(changes), resume)
            else:
                store.apply(rows.to_store(changes), resume)
        except Exception as exc:
            raise StoreWriteError(
                f"table {self.table!r}: its store {store.path} could not be written ({_first_line(exc)}); "
                "the changelog holds the commit, the rows stay in memory and the next commit writes them: "
                "free disk space under datadir= (or move datadir= to a larger disk)"
            ) from exc

    def rolled_back(self) -> None:
        """The commit failed or the transaction was aborted: nothing reaches the stores."""
        self._flushing = None

    def drop(self, partitions: set[int]) -> None:
        """Stop serving ``partitions`` (a rebalance): their stores close, the rows stay on disk."""
        for partition in partitions:
            store = self.stores.pop(partition, None)
            if store is not None:
                store.close()
            self._unflushed.pop(partition, None)

    def wipe(self) -> None:
        """Delete every partition's store (a replay starts over: it recreated the changelog)."""
        self.close()
        for store in [*self.stores.values(), *self.standbys.values()]:
            store.destroy()
        self.stores.clear()
        self.standbys.clear()
        shutil.rmtree(self.folder, ignore_errors=True)

    def close(self) -> None:
        """Close every partition's store (the app stopped)."""
        self.state.close()
        if self.rows is not self.state:
            self.rows.close()
        self._unflushed.clear()
        self.release_standbys(set())


def _has_members(value: Any) -> bool:
    """Whether a set table's changelog value holds members (an empty set leaves the store)."""
    return isinstance(value, dict) and bool(value.get("members"))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
