"""The state of a table of sliding windows (Kafka Streams' ``SlidingWindows``, KIP-450).

Every event at ``t`` has a window ``[t - size, t]`` ending at it, and a
window ``[t + 1ms, t + 1ms + size]`` starting just after it when a later
event of the key lies within ``size``; a window's value is its events merged
(``+`` for numbers). Materializing every window on every event costs one
update per window an event falls in -- one per event of the key in the last
``size`` seconds. This state keeps instead one *bucket* per key and distinct
event time (the events at that millisecond, folded with the table's
operation) and merges the buckets of a window when the window is read or
closes, so an event costs a bucket update, and each window one merge.

Which windows exist follows from the bucket times, except windows an event
would have made that had already closed when it came (they are never made,
as in Kafka Streams; noted in ``refused``). A window closes once stream time
passes ``end + grace`` (its end is inclusive, so it still accepts an event at
exactly ``end + grace``); its final value is merged then. A closed window's
value stays what its buckets say -- unless an event late for it but on time
for another window changes one of its buckets: then its value is *frozen*
first (kept, and written to the changelog, until it expires).

Changelog records: ``[key, t]`` -> a bucket, ``[key, [start, end]]`` -> a
frozen final value (stream time goes to the table's stream-time topic).

>>> import operator
>>> from streamnb.tables.windows import SlidingWindow
>>> state = SlidingState(SlidingWindow(10, grace=60), operator.add)
>>> dirty: Dirty[BucketWrites] = Dirty()
>>> for ts in (1.0, 5.0, 12.0):
...     _ = state.update(dirty, "k", operator.add, 1, 1000 + ts, 0, int)
>>> for (_key, window), value in sorted(state.items(), key=lambda item: item[0][1]):
...     print(window, value)
(991.0, 1001.0) 1
(995.0, 1005.0) 2
(1001.001, 1011.001) 1
(1002.0, 1012.0) 2
(1005.001, 1015.001) 1
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Any

from ...timeunits import ms, seconds
from ...transaction import MISSING, Transaction
from ..windows import SlidingWindow, WindowRange
from .base import Change, Closed, Dirty, Popped
from .event_time import NEVER, EventTimeState, TimeIndex, WindowRows, replace
from .sliding_rules import derived, fold, judge_late, new_windows, note_write, window_exists

__all__ = ["BucketWrites", "SlidingState"]

_BUCKET_DROP = object()  # expiring entries: (_BUCKET_DROP, key, t); frozen finals: (key, start, end)
_EXTRA_DROP = object()  # expiring entries: (_EXTRA_DROP, key, window)

BucketWrites = dict[Any, list[Any]]
"""A key's entry in ``Dirty.rows``: ``where -> [partition, value before, event time of the last change]``
for every bucket (``where``: its time in ms) and frozen final (``where``: ``(start, end)`` in ms) that changed."""


class SlidingState(EventTimeState):
    """Buckets per key and event time, from which sliding windows are merged (module docstring)."""

    def __init__(self, window: SlidingWindow, merge: Callable[[Any, Any], Any]) -> None:
        super().__init__()
        self.window = window
        self.merge = merge
        self.buckets: dict[Any, dict[int, Any]] = {}
        """``key -> {event time in ms: the events at that time, folded}``."""
        self.times: dict[Any, list[int]] = {}
        """``key -> sorted bucket times``."""
        self.finals: dict[Any, dict[tuple[int, int], Any]] = {}
        """``key -> {(start, end) in ms: value}`` of closed windows frozen before a late event changed a bucket."""
        self.refused: dict[Any, set[tuple[int, int]]] = {}
        """``key -> windows (start, end)`` an event would have made, closed when it came: never made."""
        self.extra: dict[Any, set[tuple[int, int]]] = {}
        """``key -> windows`` made by an event that went into no window (its right window: as Kafka Streams)."""
        self.partition_of: dict[Any, int] = {}
        self.closing = TimeIndex()  # (key, start, end) windows to close: windows ending at an event
        self.closing_right = TimeIndex()  # and windows starting just after one (each mostly in time order)
        self.expiring = TimeIndex()  # (_BUCKET_DROP, key, t) buckets, (key, start, end) frozen finals
        w = window
        self._size, self._grace = w.size_ms, w.grace_ms
        self._keep = 2 * w.size_ms + max(w.expires_ms, w.grace_ms) + 2  # how long a bucket is kept

    # -- reads ------------------------------------------------------------------------------

    def _fold(self, key: Any, start: int, end: int) -> Any:
        """The merged buckets of ``key`` in ``[start, end]`` (MISSING when there are none)."""
        times = self.times.get(key)
        return MISSING if not times else fold(self.merge, times, self.buckets[key], start, end)

    def _exists(self, key: Any, start: int, end: int) -> bool:
        """True when ``[start, end]`` is a window of ``key`` (by its bucket times, unless refused)."""
        times = self.times.get(key, [])
        return window_exists(self.window, times, self.refused.get(key, ()), self.extra.get(key, ()), start, end)

    def get(self, key: Any, window: tuple[float, float]) -> Any:
        """``key``'s value over ``window`` (``(start, end)``, inclusive): a frozen final, else merged now."""
        start, end = ms(window[0]), ms(window[1])
        final = self.finals.get(key, {}).get((start, end), MISSING)
        return final if final is not MISSING else self._fold(key, start, end)

    def window_at(self, key: Any, ts: float) -> tuple[float, float] | None:
        """The window ending at ``ts``: ``[ts - size, ts]``."""
        start, end = self.window.left(ms(ts))
        return seconds(start), seconds(end)

    def _derived(self, key: Any) -> Iterator[tuple[int, int]]:
        """The windows ``key``'s bucket times make (less the refused ones)."""
        return derived(self.window, self.times.get(key, []), self.refused.get(key, ()), self.extra.get(key, ()))

    def items(self) -> list[tuple[tuple[Any, tuple[float, float]], Any]]:
        """Every window kept, with its value (a frozen final where there is one)."""
        rows: dict[tuple[Any, tuple[int, int]], Any] = {}
        for key in list(self.times):
            finals = self.finals.get(key, {})
            for win in self._derived(key):
                value = finals.get(win, MISSING)
                if value is MISSING:
                    value = self._fold(key, *win)
                if value is not MISSING:
                    rows[(key, win)] = value
        for key, finals in list(self.finals.items()):
            for win, value in finals.items():
                rows.setdefault((key, win), value)
        return [((key, (seconds(s), seconds(e))), value) for (key, (s, e)), value in rows.items()]

    @property
    def rows(self) -> WindowRows:
        """``(key, (start, end)) -> value``: a live, read-only view."""
        return WindowRows(self)

    def is_closed(self, key: Any, window: tuple[float, float]) -> bool:
        """True once stream time passed the window's end plus grace."""
        now = self.stream_time.get(self.partition_of.get(key, 0), NEVER)
        return now != NEVER and self.window.closes_at(ms(window[1])) <= ms(now)

    def keys(self) -> set[Any]:
        """Keys with events or frozen windows kept."""
        return set(self.times) | set(self.finals)

    def __len__(self) -> int:
        return len(self.items())

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
        size, grace = self._size, self._grace
        t = ms(ts)
        close = now - grace  # a window ending before this is closed
        if t + size < close:  # every window holding t ended before: the event is late
            self.count_late(partition, 1, whole_event=True)
            start, end = self.window.left(t)
            return [WindowRange(seconds(start), seconds(end))]
        times = self.times.get(key)
        if times is None:
            times = self.times[key] = []
            self.buckets[key] = {}
        self.partition_of[key] = partition
        i = bisect_left(times, t)
        exists = i < len(times) and times[i] == t
        if t + grace < now:  # out of order by more than grace: some windows holding t may be closed
            if not self._late_but_accepted(dirty, key, times, i, exists, t, close, partition, now):
                start, end = self.window.left(t)
                return [WindowRange(seconds(start), seconds(end))]
        elif not exists:
            self._schedule(key, times, i, t, partition)
        buckets = self.buckets[key]
        old = buckets.get(t, MISSING)
        self._note(dirty, key, t, partition, old, ts)
        if old is MISSING:
            if default is None:
                if op is not replace:
                    raise KeyError(f"{key!r} has no value at {ts} and the table has no default")
                value = operand
            else:
                value = op(default(), operand)
            times.insert(i, t)
            self.expiring.add(partition, t + self._keep, (_BUCKET_DROP, key, t))
        else:
            value = operand if op is replace else op(old, operand)
        buckets[t] = value
        return None

    def _schedule(self, key: Any, times: list[int], i: int, t: int, partition: int) -> None:
        closes_at = self.window.closes_at
        for start, end in new_windows(self.window, times, i, t):
            index = self.closing_right if start > t else self.closing
            index.add(partition, closes_at(end), (key, start, end))

    def _late_but_accepted(
        self, dirty: Dirty[BucketWrites], key: Any, times: list[int], i: int, exists: bool,
        t: int, close: int, partition: int, now: float,
    ) -> bool:
        """An event later than grace: count the closed windows it misses, freeze them; False if all closed."""
        w = self.window
        verdict = judge_late(w, times, i, exists, t, close, self.refused.get(key, ()))
        new, closed, refused_new, refused, accepted = verdict
        for win in new:
            if win in refused_new:
                self.refused.setdefault(key, set()).add(win)
            else:
                index = self.closing_right if win[0] > t else self.closing
                index.add(partition, w.closes_at(win[1]), (key, win[0], win[1]))
                if not accepted and win[0] > t:  # made by an event that gets no bucket
                    self.extra.setdefault(key, set()).add(win)
                    self.expiring.add(partition, w.expires_at(win[1]), (_EXTRA_DROP, key, win))
        if not accepted:
            self.count_late(partition, refused, whole_event=True)
            return False
        if refused:
            self.count_late(partition, refused, whole_event=False)
        self._freeze(dirty, key, closed, partition, now)
        return True

    def _freeze(
        self, dirty: Dirty[BucketWrites], key: Any, closed: list[tuple[int, int]], partition: int, now: float
    ) -> None:
        """A late event's bucket is about to change: the ``closed`` windows holding it keep their value (frozen)."""
        w = self.window
        finals = self.finals.setdefault(key, {})
        for win in closed:
            if win not in finals:
                value = self._fold(key, *win)
                if value is not MISSING:
                    self._note(dirty, key, win, partition, MISSING, now)
                    finals[win] = value
                    self.expiring.add(partition, w.expires_at(win[1]), (key, win[0], win[1]))
        if not finals:
            del self.finals[key]

    # -- the commit protocol ----------------------------------------------------------------

    def changes(self, dirty: Dirty[BucketWrites]) -> Iterator[Change]:
        """A change per bucket (key ``(key, t)``) and frozen final (key ``(key, (start, end))``) that changed."""
        new = tuple.__new__
        for key, entries in dirty.rows.items():
            buckets = self.buckets.get(key, {})
            for where, (partition, old, when) in entries.items():
                if isinstance(where, tuple):
                    value = self.finals.get(key, {}).get(where, MISSING)
                    name: Any = (key, (seconds(where[0]), seconds(where[1])))
                else:
                    value = buckets.get(where, MISSING)
                    name = (key, seconds(where))
                if value is MISSING and old is MISSING:
                    continue  # made and undone within the transaction
                yield new(Change, (name, partition, value, when))  # (fast Change(...))
        yield from self.old_record_deletions(dirty)

    def restore(self, dirty: Dirty[BucketWrites]) -> None:
        """Undo buckets, frozen finals and stream times ``dirty`` records.

        (The time indexes keep entries of undone windows; they are skipped when due.)
        """
        super().restore(dirty)
        for key, entries in dirty.rows.items():
            for where, (_partition, old, _ts) in entries.items():
                if isinstance(where, tuple):
                    self._put_final(key, where, old)
                else:
                    self._put_bucket(key, where, old)

    def _put_bucket(self, key: Any, t: int, value: Any) -> None:
        buckets = self.buckets.setdefault(key, {})
        times = self.times.setdefault(key, [])
        if value is MISSING:
            if buckets.pop(t, MISSING) is not MISSING:
                times.pop(bisect_left(times, t))
            if not buckets:
                self.buckets.pop(key, None)
                self.times.pop(key, None)
                self.refused.pop(key, None)
        else:
            if t not in buckets:
                times.insert(bisect_left(times, t), t)
            buckets[t] = value

    def _put_final(self, key: Any, window: tuple[int, int], value: Any) -> None:
        finals = self.finals.setdefault(key, {})
        if value is MISSING:
            finals.pop(window, None)
            if not finals:
                del self.finals[key]
        else:
            finals[window] = value

    _note = staticmethod(note_write)

    def before_commit(self, txn: Transaction | None, dirty: Dirty[BucketWrites]) -> list[Closed]:
        """Close the windows stream time passed (their final values merged now), drop expired buckets."""
        closed: list[Closed] = []
        undo = self.undo_log(dirty)
        for partition, now in self.stream_time.items():
            now_ms = ms(now)
            self._close_due(partition, now_ms, undo, closed)
            for item in self.expiring.pop_due(partition, now_ms, undo):
                self._expire(dirty, item, partition, now)
        return closed

    def _close_due(self, partition: int, now_ms: int, undo: list[Popped], closed: list[Closed]) -> None:
        """Append to ``closed`` the windows of ``partition`` due to close at ``now_ms``, in order of window end."""
        exists, fold = self._exists, self._fold
        seen: set[tuple[Any, int, int]] = set()
        due = [*self.closing.pop_due(partition, now_ms, undo), *self.closing_right.pop_due(partition, now_ms, undo)]
        due.sort(key=lambda item: item[2])  # per partition in order of window end
        for key, start, end in due:
            if (key, start, end) in seen or not exists(key, start, end):
                continue  # scheduled twice (undone and made again), or undone
            seen.add((key, start, end))
            value = self.finals.get(key, {}).get((start, end), MISSING)
            if value is MISSING:
                value = fold(key, start, end)
            if value is not MISSING:
                closed.append(Closed(key, (seconds(start), seconds(end)), value, partition))

    def _expire(self, dirty: Dirty[BucketWrites], item: tuple[Any, ...], partition: int, now: float) -> None:
        """Forget an expired item: an extra window, a bucket (``_BUCKET_DROP``) or a frozen final."""
        if item[0] is _EXTRA_DROP:
            extra = self.extra.get(item[1])
            if extra is not None:
                extra.discard(item[2])
                if not extra:
                    del self.extra[item[1]]
        elif item[0] is _BUCKET_DROP:
            self._drop_bucket(dirty, item[1], item[2], partition, now)
        else:
            key, start, end = item
            old = self.finals.get(key, {}).get((start, end), MISSING)
            if old is not MISSING:
                self._note(dirty, key, (start, end), partition, old, now)
                self._put_final(key, (start, end), MISSING)

    def _drop_bucket(self, dirty: Dirty[BucketWrites], key: Any, t: int, partition: int, now: float) -> None:
        old = self.buckets.get(key, {}).get(t, MISSING)
        if old is not MISSING:
            self._note(dirty, key, t, partition, old, now)
            self._put_bucket(key, t, MISSING)
            refused = self.refused.get(key)
            if refused:  # refused windows older than the kept buckets no longer matter
                for win in [win for win in refused if win[1] < t]:
                    refused.discard(win)

    def after_commit(self) -> None:
        """Nothing to do."""

    # -- recovery and rebalancing -----------------------------------------------------------

    def load(self, key: Any, value: Any, partition: int) -> None:
        """Apply one changelog record: a bucket, a frozen final, or a stream time."""
        if self.load_stream_time(key, value, partition):
            return
        try:
            k, where = key
        except (TypeError, ValueError):
            return
        self.partition_of[k] = partition
        if isinstance(where, tuple):
            self._put_final(k, (ms(where[0]), ms(where[1])), value)
        else:
            self._put_bucket(k, ms(where), value)

    def loaded(self) -> None:
        """Schedule closing and expiry again from the recovered buckets and finals."""
        self.closing.clear()
        self.closing_right.clear()
        self.expiring.clear()
        w = self.window
        for key, times in self.times.items():
            partition = self.partition_of.get(key, 0)
            now = self.stream_time.get(partition, NEVER)
            if now == NEVER and times:
                self.stream_time[partition] = seconds(times[-1])
            now_ms = ms(self.stream_time[partition])
            for start, end in set(self._derived(key)):
                if w.closes_at(end) > now_ms:
                    self.closing.add(partition, w.closes_at(end), (key, start, end))
            for t in times:
                self.expiring.add(partition, t + self._keep, (_BUCKET_DROP, key, t))
        for key, finals in self.finals.items():
            partition = self.partition_of.get(key, 0)
            for start, end in finals:
                self.expiring.add(partition, w.expires_at(end), (key, start, end))

    def drop_partitions(self, partitions: set[int]) -> bool:
        """Forget the keys of ``partitions``."""
        drop = [k for k, p in self.partition_of.items() if p in partitions]
        for key in drop:
            self.buckets.pop(key, None)
            self.times.pop(key, None)
            self.finals.pop(key, None)
            self.refused.pop(key, None)
            self.extra.pop(key, None)
            del self.partition_of[key]
        self.drop_stream_time(partitions)
        self.closing.drop(partitions)
        self.closing_right.drop(partitions)
        self.expiring.drop(partitions)
        return bool(drop)
