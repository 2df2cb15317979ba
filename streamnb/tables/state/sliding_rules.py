"""The rules of sliding windows over one key's buckets, shared by the state in memory and the one in the stores.

A key's events are kept as *buckets*: the events at one millisecond, folded
(``times``: the sorted bucket times in ms, ``buckets``: ``time -> value``).
Which windows exist, what they hold and which of them an event that comes
late misses follow from the bucket times alone (plus the windows an event
would have made that had already closed, ``refused``, and the right windows
made by an event that went into no window, ``extra``): these functions say
it, for :class:`~streamnb.tables.state.sliding.SlidingState` (``memory://``)
and :class:`~streamnb.tables.state.stored_sliding.StoredSlidingState`
(``rocksdb://``) alike.

>>> from streamnb.tables.windows import SlidingWindow
>>> w = SlidingWindow(10)
>>> times, buckets = [1000, 5000, 12000], {1000: 1, 5000: 1, 12000: 1}
>>> sorted(set(derived(w, times, (), ())))  # (the early window [0, 10 s] holds both first events)
[(0, 10000), (1001, 11001), (2000, 12000), (5001, 15001)]
>>> fold(operator.add, times, buckets, 2000, 12000), window_exists(w, times, (), (), 5001, 15001)
(2, True)
"""

from __future__ import annotations

import operator
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Collection, Iterator, Mapping
from functools import reduce
from typing import Any, NamedTuple

from ...transaction import MISSING
from ..windows import SlidingWindow
from .base import Dirty

__all__ = ["LateVerdict", "derived", "fold", "judge_late", "new_windows", "note_write", "window_exists"]

Win = tuple[int, int]
"""A window ``(start, end)`` in ms, both inclusive."""

_add = operator.add


def fold(merge: Callable[[Any, Any], Any], times: list[int], buckets: Mapping[Any, Any], start: int, end: int) -> Any:
    """The merged buckets in ``[start, end]`` (MISSING when there are none)."""
    if not times:
        return MISSING
    lo, hi = bisect_left(times, start), bisect_right(times, end)
    if lo >= hi:
        return MISSING
    values = [buckets[t] for t in times[lo:hi]]
    if merge is _add:
        try:
            return sum(values[1:], values[0])
        except TypeError:
            pass
    return reduce(merge, values)


def window_exists(
    window: SlidingWindow, times: list[int], refused: Collection[Win], extra: Collection[Win], start: int, end: int
) -> bool:
    """True when ``[start, end]`` is a window of the key (by its bucket times, unless refused)."""
    if (start, end) in extra:
        return True
    if not times or (start, end) in refused:
        return False
    size = window.size_ms
    if end - start != size:
        return False
    i = bisect_left(times, end)
    if i < len(times) and times[i] == end and end >= size:
        return True  # the left window of the event at `end`
    if start == 0 and times[0] < size:
        return True  # the window of events earlier than size
    j = bisect_left(times, start - 1)
    return j < len(times) and times[j] == start - 1 and j + 1 < len(times) and times[j + 1] <= start - 1 + size


def derived(window: SlidingWindow, times: list[int], refused: Collection[Win], extra: Collection[Win]) -> Iterator[Win]:
    """The windows the bucket ``times`` make (less the refused ones), and the ``extra`` ones."""
    yield from extra
    size = window.size_ms
    left, right = window.left, window.right
    for i, t in enumerate(times):
        win = left(t)
        if win not in refused:
            yield win
        if i + 1 < len(times) and times[i + 1] <= t + size:
            win = right(t)
            if win not in refused:
                yield win


def new_windows(window: SlidingWindow, times: list[int], i: int, t: int) -> list[Win]:
    """Windows a new event time ``t`` (to go at ``times[i]``) makes: its left one, the previous event's right
    one, its own right one."""
    size = window.size_ms
    new = [window.left(t)]
    if i > 0 and t <= times[i - 1] + size and not (i < len(times) and times[i] <= times[i - 1] + size):
        new.append(window.right(times[i - 1]))  # the previous event had no later one within size until now
    if i < len(times) and times[i] <= t + size:
        new.append(window.right(t))
    if t < size and times and times[0] < size:
        new = [win for win in new if win != (0, size)]  # the early window exists already
    return new


class LateVerdict(NamedTuple):
    """What an event later than grace does to its key's windows (:func:`judge_late`)."""

    new: list[Win]
    """The windows its time makes (none if it has a bucket already)."""
    closed: list[Win]
    """Existing windows holding it that closed: their value is frozen before its bucket changes."""
    refused_new: list[Win]
    """Windows it would make that closed already: never made."""
    refused: int
    """Window updates refused (closed windows it misses)."""
    accepted: int
    """Windows it goes into (0: the event is late as a whole)."""


def judge_late(
    window: SlidingWindow, times: list[int], i: int, exists: bool, t: int, close: int, refused_made: Collection[Win]
) -> LateVerdict:
    """Judge an event at ``t`` (its bucket at ``times[i]``, ``exists`` already) that came after its time plus
    grace; windows ending before ``close`` are closed."""
    size = window.size_ms
    new = [] if exists else new_windows(window, times, i, t)
    existing = set()
    for u in times[bisect_left(times, t): bisect_right(times, t + size)]:
        existing.add(window.left(u))  # left windows of events at t..t+size hold t
    for j in range(bisect_left(times, t - size - 1), bisect_left(times, t)):
        p = times[j]  # right windows of earlier events within size
        if j + 1 < len(times) and times[j + 1] <= p + size:
            existing.add(window.right(p))
    existing -= set(refused_made)
    holding = [win for win in existing if win[0] <= t <= win[1]]
    closed = [win for win in holding if win[1] < close]
    refused_new = [win for win in new if win[1] < close and win[0] <= t]
    refused = len(closed) + len(refused_new)
    accepted = len(holding) - len(closed) + len(new) - len(refused_new)
    return LateVerdict(new, closed, refused_new, refused, accepted)


def note_write(dirty: Dirty[Any], key: Any, where: Any, partition: int, old: Any, when: float) -> None:
    """Note the change of ``key``'s bucket or final ``where`` in ``dirty.rows[key]`` (``old``: its value before,
    kept from the first change in the transaction; ``when``: the event time of the last)."""
    pending = dirty.rows.get(key)
    if pending is None:
        pending = dirty.rows[key] = {}
    entry = pending.get(where)
    if entry is None:
        pending[where] = [partition, old, when]
    else:
        entry[2] = when
