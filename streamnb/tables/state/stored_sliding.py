"""Sliding windows in a persistent store behind a write-back cache (``store="rocksdb://"``).

A sliding table keeps what :class:`~streamnb.tables.state.sliding.SlidingState`
keeps on ``memory://`` -- one *bucket* per key and event time (the events of
that millisecond, folded) and the frozen finals of closed windows a late
event changed -- in the RocksDB of their partition, by key (a key's buckets
are one range scan) and by time (:mod:`~streamnb.tables.stores.windowkeys`,
layout ``"sliding"``). Memory holds the stream time per partition, the
bounded cache of :class:`~streamnb.tables.state.window_cache.WindowCache`
(the hot keys, each with all its buckets and finals) and, as in memory, the
few windows late events refused or made without a bucket. Which windows
exist, their values and what a late event misses are the rules of
:mod:`~streamnb.tables.state.sliding_rules`, the same as on ``memory://``.

At a commit, the windows that close are found by range scans of the buckets
by time: the left window of an event at ``t`` closes at ``t + grace``, its
right window at ``t + 1ms + size + grace``; expired buckets and finals are
range scans too. A restart loads nothing: it reads the changelog's tail into
the stores.

Example (a table's own use)::

    state = StoredSlidingState(SlidingWindow(60), operator.add, stores, encode_key, decode_key, decode_value)
    state.serve(0, store)                                   # after its changelog was read to the end
    state.update(dirty, "ann", operator.add, 1, 12.5, 0, int)
    list(state.changes(dirty))                              # the commit's changelog records
    store.write(state.keys_of.ops(records), resume)         # after the commit landed (the table does this)
    state.flushed()
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Callable, Iterator
from typing import Any

from ...timeunits import ms, seconds
from ...transaction import MISSING, Transaction
from ..stores.windowkeys import BUCKET, BY_TIME, FINAL, time_bytes
from ..windows import WindowRange
from .base import Change, Closed, Dirty
from .event_time import replace
from .sliding import BucketWrites
from .sliding_cache import SlidingCache
from .sliding_rules import fold, judge_late, new_windows, note_write, window_exists

__all__ = ["StoredSlidingState"]

Candidate = tuple[Any, int, int]
"""A window that may close: ``(key, start, end)`` in ms."""


class StoredSlidingState(SlidingCache):
    """Buckets and frozen finals kept in the stores of the partitions served (see the module docstring).

    ``dirty.rows`` holds a :data:`~streamnb.tables.state.sliding.BucketWrites` per written key,
    as :class:`~streamnb.tables.state.sliding.SlidingState` does.
    """

    # -- writes -----------------------------------------------------------------------------

    def update(
        self,
        dirty: Dirty[BucketWrites],
        key: Any,
        op: Callable[[Any, Any], Any],
        operand: Any,
        ts: float,
        partition: int,
        default: Callable[[], Any] | None,
    ) -> list[WindowRange] | None:
        """Add an event at ``ts`` to ``key``'s bucket at that time, unless every window it falls in closed."""
        now = ms(self.advance(dirty, partition, ts))
        w = self.window
        grace = w.grace_ms
        t = ms(ts)
        close = now - grace  # a window ending before this is closed
        if t + w.size_ms < close:  # every window holding t ended before: the event is late
            self.count_late(partition, 1, whole_event=True)
            return [WindowRange(*map(seconds, w.left(t)))]
        inner = self._fetch(key, partition)
        times = self.times[key]
        self.home[key] = partition
        i = bisect_left(times, t)
        exists = i < len(times) and times[i] == t
        if t + grace < now:  # out of order by more than grace: some windows holding t may be closed
            if not self._late_but_accepted(dirty, key, inner, times, i, exists, t, close, partition, now):
                return [WindowRange(*map(seconds, w.left(t)))]
        elif not exists:
            self.made.extend((key, s, e, partition) for s, e in new_windows(w, times, i, t))
        old = inner.get(t, MISSING)
        note_write(dirty, key, t, partition, old, ts)
        if old is MISSING:
            if default is None:
                if op is not replace:
                    raise KeyError(f"{key!r} has no value at {ts} and the table has no default")
                value = operand
            else:
                value = op(default(), operand)
            times.insert(i, t)
            self._cached += 1
            self.fresh[(key, t)] = (self._gen, partition)
        else:
            value = operand if op is replace else op(old, operand)
        inner[t] = value
        self.home[key] = partition
        self.pending[key] = self._gen
        return None

    def _late_but_accepted(
        self, dirty: Dirty[BucketWrites], key: Any, inner: dict[Any, Any], times: list[int], i: int, exists: bool,
        t: int, close: int, partition: int, now: float,
    ) -> bool:
        """An event later than grace: count the closed windows it misses, freeze them; False if all closed."""
        w = self.window
        verdict = judge_late(w, times, i, exists, t, close, self.refused.get(key, ()))
        new, closed, refused_new, refused, accepted = verdict
        for win in new:
            if win in refused_new:
                self.refused.setdefault(key, set()).add(win)
                continue
            self.made.append((key, win[0], win[1], partition))
            if not accepted and win[0] > t:  # made by an event that gets no bucket
                self.extra.setdefault(key, set()).add(win)
                self.closing_extra.add(partition, w.closes_at(win[1]), (key, win))
                self.expiring_extra.add(partition, w.expires_at(win[1]), (key, win))
        if not accepted:
            self.count_late(partition, refused, whole_event=True)
            return False
        if refused:
            self.count_late(partition, refused, whole_event=False)
        for win in closed:  # the closed windows holding it keep their value (frozen) before its bucket changes
            if win not in inner:
                value = fold(self.merge, times, inner, *win)
                if value is not MISSING:
                    note_write(dirty, key, win, partition, MISSING, now)
                    inner[win] = value
                    self._cached += 1
                    self.fresh[(key, win)] = (self._gen, partition)
        self.pending[key] = self._gen
        return True

    # -- the commit protocol ----------------------------------------------------------------

    def changes(self, dirty: Dirty[BucketWrites]) -> Iterator[Change]:
        """A change per bucket (key ``(key, t)``) and frozen final (key ``(key, (start, end))``) that changed."""
        self._flushing = self._gen
        self._gen += 1
        by_key = self.by_key
        new = tuple.__new__
        for key, entries in dirty.rows.items():
            inner = by_key.get(key) or {}
            for where, (partition, old, when) in entries.items():
                value = inner.get(where, MISSING)
                if value is MISSING and old is MISSING:
                    continue  # made and undone within the transaction
                name = (key, (seconds(where[0]), seconds(where[1]))) if isinstance(where, tuple) else (
                    key, seconds(where))
                yield new(Change, (name, partition, value, when))  # (fast Change(...))
        yield from self.old_record_deletions(dirty)

    def restore(self, dirty: Dirty[BucketWrites]) -> None:
        """Undo buckets, frozen finals and stream times ``dirty`` records (and closings and expiries)."""
        super().restore(dirty)
        self.made.clear()
        fresh = self.fresh
        for key, entries in dirty.rows.items():
            inner = self.by_key.get(key)
            if inner is None:  # (pending keys stay cached: only if the commit's flush raced it)
                continue
            times = self.times[key]
            for where, (partition, old, _ts) in entries.items():
                bucket = not isinstance(where, tuple)
                if old is MISSING:
                    if inner.pop(where, MISSING) is not MISSING:
                        self._cached -= 1
                        if bucket:
                            times.pop(bisect_left(times, where))
                    fresh.pop((key, where), None)
                else:
                    if where not in inner:
                        self._cached += 1
                        fresh[(key, where)] = (self._gen, partition)  # (its store row may be gone)
                        if bucket:
                            insort(times, where)
                    inner[where] = old
            if not times:
                self.refused.pop(key, None)

    def before_commit(self, txn: Transaction | None, dirty: Dirty[BucketWrites]) -> list[Closed]:
        """Close the windows stream time passed (their final values merged now), drop expired buckets and finals.

        Returns the closed windows, per partition in order of window end.
        """
        closed: list[Closed] = []
        undo = self.undo_log(dirty)
        made, self.made = self.made, []
        for partition, now in list(self.stream_time.items()):
            now_ms = ms(now)
            before = self.closed.marks.get(partition)
            due: dict[Candidate, None] = {}
            if before is None or now_ms > before:
                self._closing(partition, before, now_ms, due)
                undo.append((self.closed, partition, 0, before))
                self.closed.marks[partition] = now_ms
            closes_at = self.window.closes_at
            for key, start, end, p in made:  # (made now: due even at the stream time the last commit reached)
                if p == partition and closes_at(end) <= now_ms:
                    due[(key, start, end)] = None
            for key, win in self.closing_extra.pop_due(partition, now_ms, undo):
                due[(key, *win)] = None
            self._close(partition, sorted(due, key=lambda c: c[2]), closed)
            before = self.expired.marks.get(partition)
            for key, wid in self._expiring(partition, before, now_ms):  # (new ones due even when time stood still)
                self._expire(dirty, key, wid, partition, now)
            if before is None or now_ms > before:
                undo.append((self.expired, partition, 0, before))
                self.expired.marks[partition] = now_ms
            for key, win in self.expiring_extra.pop_due(partition, now_ms, undo):
                extra = self.extra.get(key)
                if extra is not None:
                    extra.discard(win)
                    if not extra:
                        del self.extra[key]
        return closed

    def _close(self, partition: int, due: list[Candidate], closed: list[Closed]) -> None:
        """Append to ``closed`` the windows of ``due`` that exist, with their final values."""
        w, merge = self.window, self.merge
        for key, start, end in due:
            inner = self._fetch(key, partition)
            times = self.times[key]
            if not window_exists(w, times, self.refused.get(key, ()), self.extra.get(key, ()), start, end):
                continue  # undone, refused, or a right window with no later event within size
            value = inner.get((start, end), MISSING)
            if value is MISSING:
                value = fold(merge, times, inner, start, end)
            if value is not MISSING:
                closed.append(Closed(key, (seconds(start), seconds(end)), value, partition))

    def _scan_times(self, partition: int, lo: int | None, hi: int, tag: bytes) -> Iterator[tuple[Any, bytes]]:
        """``(bucket or final, key bytes)`` of ``partition``'s store with time (a bucket's, a final's end) in
        ``[lo, hi)`` ms (``lo`` None: from the oldest)."""
        store = self.stores.get(partition)
        if store is None or (lo is not None and lo >= hi):
            return
        lower = BY_TIME if lo is None else BY_TIME + time_bytes(seconds(lo))
        split = self.split_time
        for raw, _empty in store.scan(lower, BY_TIME + time_bytes(seconds(hi))):
            if raw[9:10] == tag:
                yield split(raw)

    def _closing(self, partition: int, before: int | None, now: int, due: dict[Candidate, None]) -> None:
        """Add to ``due`` the windows of ``partition`` whose close time is in ``(before, now]`` (if they exist)."""
        w, decode = self.window, self.decode_key
        size, grace = w.size_ms, w.grace_ms

        def in_range(at: int) -> bool:
            return (before is None or at > before) and at <= now

        lo = None if before is None else before - grace
        for t, kb in self._scan_times(partition, lo, now - grace, BUCKET):  # left windows, closing at t + grace
            start, end = w.left(t)
            if in_range(w.closes_at(end)):
                due[(decode(kb), start, end)] = None
        if in_range(w.closes_at(size)):  # the window of events earlier than size
            for _t, kb in self._scan_times(partition, 0, size, BUCKET):
                due[(decode(kb), 0, size)] = None
        lo = None if before is None else before - grace - size - 1
        for p, kb in self._scan_times(partition, lo, now - grace - size - 1, BUCKET):  # right windows
            due[(decode(kb), p + 1, p + 1 + size)] = None
        for (key, wid), (_gen, p) in list(self.fresh.items()):  # buckets not in the store yet
            if p == partition and not isinstance(wid, tuple):
                for start, end in (w.left(wid), w.right(wid)):
                    if in_range(w.closes_at(end)):
                        due[(key, start, end)] = None

    def _expiring(self, partition: int, before: int | None, now: int) -> list[tuple[Any, Any]]:
        """``(key, bucket or final)`` of ``partition`` whose expiry stream time reached in ``(before, now]``."""
        w, decode, keep = self.window, self.decode_key, self._keep
        late = w.expires_at(0)
        found: dict[tuple[Any, Any], None] = {}
        lo = None if before is None else before - keep + 1
        for t, kb in self._scan_times(partition, lo, now - keep + 1, BUCKET):
            found[(decode(kb), t)] = None
        lo = None if before is None else before - late + 1
        for win, kb in self._scan_times(partition, lo, now - late + 1, FINAL):
            found[(decode(kb), win)] = None
        for (key, wid), (_gen, p) in list(self.fresh.items()):
            # (not in the store yet: due now even when its time passed before the last commit, as a final a
            # late event froze for a window already expired, which memory:// drops at once too)
            if p == partition:
                at = w.expires_at(wid[1]) if isinstance(wid, tuple) else wid + keep
                if at <= now:
                    found[(key, wid)] = None
        return list(found)

    def _expire(self, dirty: Dirty[BucketWrites], key: Any, wid: Any, partition: int, now: float) -> None:
        """Delete an expired bucket or frozen final (a tombstone in the changelog)."""
        inner = self._fetch(key, partition)
        old = inner.pop(wid, MISSING)
        if old is MISSING:
            return
        self._cached -= 1
        self.fresh.pop((key, wid), None)
        self.pending[key] = self._gen
        note_write(dirty, key, wid, partition, old, now)
        if isinstance(wid, tuple):
            return
        times = self.times[key]
        times.pop(bisect_left(times, wid))
        refused = self.refused.get(key)
        if refused is not None:  # refused windows older than the kept buckets no longer matter
            for win in [win for win in refused if win[1] < wid]:
                refused.discard(win)
            if not times:
                del self.refused[key]
