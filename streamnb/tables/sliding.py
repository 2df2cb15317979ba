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

A window closes once stream time passes ``end + grace`` (its end is
inclusive, so it still accepts an event at exactly ``end + grace``); its
final value is kept (and written to the changelog) until it expires.

Changelog records: ``[key, t]`` -> a bucket, ``[key, [start, end]]`` -> the
final value of a closed window, ``"__stream_time__"`` -> stream time.

>>> from streamnb.tables.windows import SlidingWindow
>>> state = SlidingState(SlidingWindow(10, grace=60), operator.add)
>>> dirty: dict = {}
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

import operator
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator
from functools import reduce
from typing import Any

from ..transaction import MISSING, Transaction
from .event_time import NEVER, STREAM_TIME, EventTimeState, TimeIndex, replace
from .state import Closed
from .windows import SlidingWindow, WindowRange, ms

__all__ = ["SlidingState"]

_add = operator.add


def _s(t: int) -> float:
    return t / 1000


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
        """``key -> {(start, end) in ms: final value}`` of closed windows not expired yet."""
        self.made: dict[Any, set[tuple[int, int]]] = {}
        """``key -> windows (start, end) in ms``: made when an event came (a window closed by then is not)."""
        self.partition_of: dict[Any, int] = {}
        self.closing = TimeIndex()  # (key, start, end) windows to close
        # (key, start, end) finals to forget, (key, start, end, None) windows to forget, (key, t) buckets to drop
        self.expiring = TimeIndex()

    # -- reads ------------------------------------------------------------------------------

    def _fold(self, key: Any, start: int, end: int) -> Any:
        """The merged buckets of ``key`` in ``[start, end]`` (MISSING when there are none)."""
        times = self.times.get(key)
        if not times:
            return MISSING
        lo, hi = bisect_left(times, start), bisect_right(times, end)
        if lo >= hi:
            return MISSING
        buckets = self.buckets[key]
        values = [buckets[t] for t in times[lo:hi]]
        if self.merge is _add:
            try:
                return sum(values[1:], values[0])
            except TypeError:
                pass
        return reduce(self.merge, values)

    def _exists(self, key: Any, start: int, end: int) -> bool:
        """True when ``[start, end]`` is a window of ``key`` (made when an event came, not refused)."""
        return (start, end) in self.made.get(key, ())

    def get(self, key: Any, window: tuple[float, float]) -> Any:
        """``key``'s value over ``window`` (``(start, end)``, inclusive): the final if closed, else merged now."""
        start, end = ms(window[0]), ms(window[1])
        final = self.finals.get(key, {}).get((start, end), MISSING)
        return final if final is not MISSING else self._fold(key, start, end)

    def window_at(self, key: Any, ts: float) -> tuple[float, float] | None:
        """The window ending at ``ts``: ``[ts - size, ts]``."""
        start, end = self.window.left(ms(ts))
        return _s(start), _s(end)

    def _derived(self, key: Any) -> Iterator[tuple[int, int]]:
        """The windows ``key``'s bucket times make (used after recovery)."""
        times = self.times.get(key, [])
        size = self.window.size_ms
        for i, t in enumerate(times):
            yield self.window.left(t)
            if i + 1 < len(times) and times[i + 1] <= t + size:
                yield self.window.right(t)

    def items(self) -> list[tuple[tuple[Any, tuple[float, float]], Any]]:
        """Open windows with their current values, and closed windows with their finals."""
        rows: dict[tuple[Any, tuple[int, int]], Any] = {}
        for key, made in list(self.made.items()):
            now = self.stream_time.get(self.partition_of.get(key, 0), NEVER)
            for start, end in list(made):
                if now == NEVER or self.window.closes_at(end) > ms(now):
                    value = self._fold(key, start, end)
                    if value is not MISSING:
                        rows[(key, (start, end))] = value
        for key, finals in list(self.finals.items()):
            for window, value in finals.items():
                rows[(key, window)] = value
        return [((key, (_s(s), _s(e))), value) for (key, (s, e)), value in rows.items()]

    @property
    def rows(self) -> dict[Any, Any]:
        """``(key, (start, end)) -> value`` (a snapshot)."""
        return dict(self.items())

    def is_closed(self, key: Any, window: tuple[float, float]) -> bool:
        """True once stream time passed the window's end plus grace."""
        now = self.stream_time.get(self.partition_of.get(key, 0), NEVER)
        return now != NEVER and self.window.closes_at(ms(window[1])) <= ms(now)

    def keys(self) -> set[Any]:
        """Keys with events or closed windows kept."""
        return set(self.made) | set(self.finals)

    def __len__(self) -> int:
        return len(self.items())

    # -- writes -----------------------------------------------------------------------------

    def update(
        self,
        dirty: dict[Any, Any],
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
        size, grace = w.size_ms, w.grace_ms
        t = ms(ts)
        close = now - grace  # a window ending before this is closed
        if t + size < close:  # every window holding t ended before: the event is late
            self.count_late(partition, 1, whole_event=True)
            start, end = w.left(t)
            return [WindowRange(_s(start), _s(end))]
        times = self.times.get(key)
        if times is None:
            times = self.times[key] = []
            self.buckets[key] = {}
        made = self.made.get(key)
        if made is None:
            made = self.made[key] = set()
        self.partition_of[key] = partition
        i = bisect_left(times, t)
        exists = i < len(times) and times[i] == t
        new = self._new_windows(made, times, i, exists, t)
        refused = 0
        accepted = True
        if t + grace < now:  # out of order by more than grace: some windows holding t may be closed
            holding = [win for win in (*made, *new) if win[0] <= t <= win[1]]
            refused = sum(1 for win in holding if win[1] < close)
            accepted = refused < len(holding)
        for win in new:
            if win[1] >= close or win[0] > t:  # a refused window is not made (a right one never is)
                made.add(win)
                self.closing.add(partition, w.closes_at(win[1]), (key, win[0], win[1]))
                self.expiring.add(partition, self._bucket_expiry(win[1]), (key, win[0], win[1], None))
        if not accepted:
            self.count_late(partition, refused, whole_event=True)
            start, end = w.left(t)
            return [WindowRange(_s(start), _s(end))]
        if refused:
            self.count_late(partition, refused, whole_event=False)
        buckets = self.buckets[key]
        old = buckets.get(t, MISSING)
        pending = dirty.get(key)
        if pending is None:
            pending = dirty[key] = {}
        entry = pending.get(t)
        if entry is None:
            pending[t] = [partition, old, ts]
        else:
            entry[2] = ts
        if old is MISSING:
            if default is None:
                if op is not replace:
                    raise KeyError(f"{key!r} has no value at {ts} and the table has no default")
                value = operand
            else:
                value = op(default(), operand)
            times.insert(i, t)
            self.expiring.add(partition, self._bucket_expiry(t), (key, t))
        else:
            value = operand if op is replace else op(old, operand)
        buckets[t] = value
        return None

    def _new_windows(
        self, made: set[tuple[int, int]], times: list[int], i: int, exists: bool, t: int
    ) -> list[tuple[int, int]]:
        """Windows an event at ``t`` makes: its left one, the previous event's right one, its own right one."""
        if exists:
            return []
        w = self.window
        size = w.size_ms
        new = [w.left(t)]
        if i > 0 and t <= times[i - 1] + size:
            new.append(w.right(times[i - 1]))
        if i < len(times) and times[i] <= t + size:
            new.append(w.right(t))
        return [win for win in new if win not in made]

    def _bucket_expiry(self, t: int) -> int:
        """When the bucket at ``t`` can go: no window holding it is open or kept for reads.

        Windows holding ``t`` end by ``t + size + 1ms``. A bucket is kept one
        more ``size`` so that an event refused by such a closed window is
        counted as Kafka Streams counts it (its store keeps windows that long).
        """
        w = self.window
        return t + 2 * w.size_ms + max(w.expires_ms, w.grace_ms) + 2

    # -- the commit protocol ----------------------------------------------------------------

    def changes(self, dirty: dict[Any, Any]) -> Iterator[tuple[Any, int, Any, float | None]]:
        """Buckets (``(key, t)``), finals (``(key, (start, end))``) and stream times that changed."""
        for key, entries in dirty.items():
            if key is STREAM_TIME:
                yield from self.stream_time_changes(entries)
                continue
            buckets = self.buckets.get(key, {})
            finals = self.finals.get(key, {})
            for where, (partition, old, when) in entries.items():
                if isinstance(where, tuple):
                    value = finals.get(where, MISSING)
                    name: Any = (key, (_s(where[0]), _s(where[1])))
                else:
                    value = buckets.get(where, MISSING)
                    name = (key, _s(where))
                if value is MISSING and old is MISSING:
                    continue  # made and undone within the transaction
                yield name, partition, value, when

    def restore(self, dirty: dict[Any, Any]) -> None:
        """Undo buckets, finals and stream times ``dirty`` records."""
        for key, entries in dirty.items():
            if key is STREAM_TIME:
                self.restore_stream_time(entries)
                continue
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

    def _note(self, dirty: dict[Any, Any], key: Any, where: Any, partition: int, old: Any, when: float) -> None:
        pending = dirty.get(key)
        if pending is None:
            pending = dirty[key] = {}
        entry = pending.get(where)
        if entry is None:
            pending[where] = [partition, old, when]
        else:
            entry[2] = when

    def before_commit(self, txn: Transaction | None, dirty: dict[Any, Any]) -> list[Closed]:
        """Close windows stream time passed (their finals are kept), drop what expired."""
        closed: list[Closed] = []
        w = self.window
        for partition, now in self.stream_time.items():
            now_ms = ms(now)
            for key, start, end in self.closing.pop_due(partition, now_ms):
                finals = self.finals.get(key, {})
                if (start, end) in finals or not self._exists(key, start, end):
                    continue  # closed already, or undone
                value = self._fold(key, start, end)
                if value is MISSING:
                    continue
                self._note(dirty, key, (start, end), partition, MISSING, now)
                self._put_final(key, (start, end), value)
                self.expiring.add(partition, w.expires_at(end), (key, start, end))
                closed.append(Closed(key, (_s(start), _s(end)), value, partition))
            for item in self.expiring.pop_due(partition, now_ms):
                if len(item) == 4:  # a window no longer needed to judge late events
                    made = self.made.get(item[0])
                    if made is not None:
                        made.discard((item[1], item[2]))
                        if not made:
                            del self.made[item[0]]
                elif len(item) == 3:
                    key, start, end = item
                    old = self.finals.get(key, {}).get((start, end), MISSING)
                    if old is not MISSING:
                        self._note(dirty, key, (start, end), partition, old, now)
                        self._put_final(key, (start, end), MISSING)
                else:
                    key, t = item
                    old = self.buckets.get(key, {}).get(t, MISSING)
                    if old is not MISSING:
                        self._note(dirty, key, t, partition, old, now)
                        self._put_bucket(key, t, MISSING)
        return closed

    def after_commit(self) -> None:
        """Nothing to do."""

    # -- recovery and rebalancing -----------------------------------------------------------

    def load(self, key: Any, value: Any, partition: int) -> None:
        """Apply one changelog record: a bucket, a final, or a stream time."""
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
        """Schedule closing and expiry again from the recovered buckets and finals.

        The windows are derived from the bucket times (a window refused when
        its event came, which was never made, is made again here: it only
        matters for counting later late events).
        """
        self.closing.clear()
        self.expiring.clear()
        self.made.clear()
        w = self.window
        for key, times in self.times.items():
            partition = self.partition_of.get(key, 0)
            now = self.stream_time.get(partition, NEVER)
            now_ms = ms(now) if now != NEVER else None
            if now_ms is None and times:
                self.stream_time[partition] = _s(times[-1])
                now_ms = times[-1]
            finals = self.finals.get(key, {})
            made = self.made.setdefault(key, set())
            for start, end in set(self._derived(key)):
                made.add((start, end))
                self.expiring.add(partition, self._bucket_expiry(end), (key, start, end, None))
                if (start, end) not in finals and (now_ms is None or w.closes_at(end) > now_ms):
                    self.closing.add(partition, w.closes_at(end), (key, start, end))
            for t in times:
                self.expiring.add(partition, self._bucket_expiry(t), (key, t))
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
            self.made.pop(key, None)
            del self.partition_of[key]
        self.drop_stream_time(partitions)
        self.closing.drop(partitions)
        self.expiring.drop(partitions)
        return bool(drop)

