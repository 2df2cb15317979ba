"""Tumbling and hopping windows in a persistent store behind a write-back cache (``store="rocksdb://"``).

The windows of a table partition live in its RocksDB
(:class:`~streamnb.tables.stores.rocksdb.RocksDBStore`), by key and by
time (:mod:`~streamnb.tables.stores.windowkeys`). Memory holds the stream
time per partition and a bounded cache (:attr:`StoredWindowedState.cache_size`
windows) of the hot keys: each cached key with *all* its windows, newest
values (what was written and not yet flushed is never evicted). As with
plain rows (:mod:`~streamnb.tables.state.stored`), the commit's changelog
records are applied to the store in one batch once the commit landed, and a
restart reads only the changelog written since: nothing is loaded. Closing
is a scan of the windows by time between the stream time of the last commit
and the current one (plus the windows created since the last flush), in
window order (then key order, as Kafka Streams); expiry a scan from the
last expiry on. Reads of one window are point reads; scans (``items()``,
``len()``, DataFrames) read the stores as they go.

Semantics are those of :class:`~streamnb.tables.state.fixed.WindowedState`
(the in-memory state), which the table suite checks on both stores.

Example (a table's own use)::

    state = StoredWindowedState(TumblingWindow(60), stores, encode_key, decode_key, decode_value)
    state.serve(0, store)                                   # after its changelog was read to the end
    state.update(dirty, "ann", operator.add, 1, 12.5, 0, int)
    list(state.changes(dirty))                              # the commit's changelog records
    store.write(state.keys_of.ops(records), resume)         # after the commit landed (the table does this)
    state.flushed()
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator
from typing import Any

from ...timeunits import ms
from ...transaction import MISSING, Transaction
from ..windows import WindowRange
from .base import Change, Closed, Dirty
from .event_time import NEVER, first_write
from .fixed import KeyWrites
from .window_cache import WindowCache

__all__ = ["StoredWindowedState"]

_TIE = 1e-4
_add = operator.add


class StoredWindowedState(WindowCache):
    """Tumbling or hopping windows kept in the stores of the partitions served (see the module docstring).

    ``dirty.rows`` holds a :class:`~streamnb.tables.state.fixed.KeyWrites` per
    written key, as :class:`~streamnb.tables.state.fixed.WindowedState` does.
    """

    # -- writes -----------------------------------------------------------------------------

    def update(
        self,
        dirty: Dirty[KeyWrites],
        key: Any,
        op: Callable[[Any, Any], Any],
        operand: Any,
        ts: float,
        partition: int,
        default: Callable[[], Any] | None,
    ) -> list[WindowRange] | None:
        """Apply ``op(value, operand)`` to every open window of ``key`` holding ``ts``.

        As :meth:`WindowedState.update <streamnb.tables.state.fixed.WindowedState.update>` does, on the cache.
        """
        stream_time = self.stream_time
        newest = stream_time.get(partition, NEVER)
        if ts > newest:
            saved = dirty.stream_time
            if saved is None:
                saved = dirty.stream_time = {}
            if partition not in saved:
                saved[partition] = newest
            stream_time[partition] = newest = ts
        horizon = newest - self._grace + _TIE  # a window ending after this is open
        inner = self.by_key.get(key)
        if inner is None:
            inner = self._fetch(key, partition)
        rows = dirty.rows
        undo = rows.get(key)
        if undo is None:
            undo = rows[key] = KeyWrites()
        undo.last_write = ts
        add = op is _add
        refused = 0
        windows = self._ranges(ts)
        for w in windows:
            if w[1] <= horizon and ms(w[1]) + self._grace_ms <= ms(newest):
                refused += 1  # closed
                continue
            start = w[0]
            old = inner.get(start, MISSING)
            if old is MISSING:
                self._create(inner, undo, key, w, partition, op, operand, default)
                continue
            if start not in undo:
                undo[start] = [partition, old]
                self.note_move(key, start, partition)
            inner[start] = old + operand if add else op(old, operand)
        if refused < len(windows):
            self.pending[key] = self._gen
            if not refused:
                return None
        return self._missed(rows, key, windows, refused, partition)

    def _missed(
        self, rows: dict[Any, KeyWrites], key: Any, windows: list[WindowRange], refused: int, partition: int
    ) -> list[WindowRange] | None:
        """Count the ``refused`` windows of the event (closed); when it got none, it is late: return them all."""
        if refused < len(windows):
            self.count_late(partition, refused, whole_event=False)
            return None
        if not rows[key]:  # the key was not written before in the transaction
            del rows[key]
        self.count_late(partition, refused, whole_event=True)
        return windows

    def _create(
        self, inner: dict[float, Any], undo: dict[float, list[Any]], key: Any, w: WindowRange, partition: int,
        op: Callable[[Any, Any], Any], operand: Any, default: Callable[[], Any] | None,
    ) -> None:
        """The first write of ``key``'s window ``w``: its value, its undo entry; it is fresh (not in the store)."""
        start = first_write(inner, undo, key, w, partition, op, operand, default)
        self._cached += 1
        self.rehome(key, partition)
        self.fresh[(key, start)] = (self._gen, partition)

    # -- the commit protocol ----------------------------------------------------------------

    def changes(self, dirty: Dirty[KeyWrites]) -> Iterator[Change]:
        """A change for every window written or deleted, key ``(key, (start, end))``."""
        by_key, end = self.by_key, self._end
        self._flushing = self._gen
        self._gen += 1
        windows: dict[float, tuple[float, float]] = {}
        new = tuple.__new__
        moved = self.moved
        for key, writes in dirty.rows.items():
            inner = by_key.get(key)
            timestamp = writes.last_write
            for start, (partition, _old) in writes.items():
                if moved:
                    self.leaving_home((key, start), partition)
                value = MISSING if inner is None else inner.get(start, MISSING)
                window = windows.get(start)
                if window is None:
                    window = windows[start] = (start, end(start))
                yield new(Change, ((key, window), partition, value, timestamp))
        yield from self.old_record_deletions(dirty)

    def restore(self, dirty: Dirty[KeyWrites]) -> None:
        """Undo the writes (and stream-time advances, and closings) ``dirty`` records."""
        super().restore(dirty)
        self.forget_moves()
        for key, writes in dirty.rows.items():
            inner = self.by_key.get(key)
            if inner is None:  # (pending keys stay cached: only if the commit's flush raced it)
                continue
            for start, (partition, old) in writes.items():
                if old is MISSING:
                    if inner.pop(start, MISSING) is not MISSING:
                        self._cached -= 1
                    self.fresh.pop((key, start), None)
                else:
                    if start not in inner:
                        self._cached += 1
                        self.fresh[(key, start)] = (self._gen, partition)  # (its store row may be gone)
                    inner[start] = old

    def before_commit(self, txn: Transaction | None, dirty: Dirty[KeyWrites]) -> list[Closed]:
        """Close the windows stream time passed the close time of; delete expired ones.

        Returns the closed windows, per partition in order of window end.
        """
        closed: list[Closed] = []
        same = self._grace_ms == self._expires_ms
        undo = self.undo_log(dirty)
        end = self._end
        for partition, now in list(self.stream_time.items()):
            now_ms = ms(now)
            before = self.closed.marks.get(partition)
            if before is None or now_ms > before:
                for key, start, value in self.due(partition, before, now_ms, self._grace_ms):
                    closed.append(Closed(key, (start, end(start)), value, partition))
                    if same:
                        self._delete(dirty, key, start, partition, value, now)
                undo.append((self.closed, partition, 0, before))
                self.closed.marks[partition] = now_ms
            if same:
                continue
            before = self.expired.marks.get(partition)
            if before is None or now_ms > before:
                for key, start, value in self.due(partition, before, now_ms, self._expires_ms):
                    self._delete(dirty, key, start, partition, value, now)
                undo.append((self.expired, partition, 0, before))
                self.expired.marks[partition] = now_ms
        return closed

    def _delete(self, dirty: Dirty[KeyWrites], key: Any, start: float, partition: int, value: Any, now: float) -> None:
        inner = self._fetch(key, partition)
        writes = dirty.rows.get(key)
        if writes is None:
            writes = dirty.rows[key] = KeyWrites()
            writes.last_write = now
        if start not in writes:
            writes[start] = [partition, value]
        if inner.pop(start, MISSING) is not MISSING:
            self._cached -= 1
        self.pending[key] = self._gen
