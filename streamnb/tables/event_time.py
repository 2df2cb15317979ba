"""What every windowed state shares: stream time per partition, late counts, time indexes.

*Stream time* is the newest event time a table has been written with on a
partition (as Kafka Streams' stream time per task): windows close when it
passes their end (plus grace), never by the wall clock. It advances before
the event that moves it is judged, is undone with the transaction that
moved it, and goes to the changelog with each commit (key
``"__stream_time__"`` on each partition it advanced on), so a restarted
worker closes exactly the windows it would have closed.

Subclasses (:mod:`~streamnb.tables.window_state` for tumbling and hopping
windows, :mod:`~streamnb.tables.sliding`, :mod:`~streamnb.tables.sessions`)
keep the windows themselves.

>>> state = EventTimeState()
>>> dirty: dict = {}
>>> state.advance(dirty, 0, 12.5), state.advance(dirty, 0, 3.0), state.stream_time_of(0)
(12.5, 12.5, 12.5)
>>> state.restore(dirty); state.stream_time_of(0)
-inf
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from typing import Any

from ..transaction import MISSING

__all__ = ["NEVER", "STREAM_TIME", "STREAM_TIME_KEY", "EventTimeState", "TimeIndex", "replace"]

NEVER = float("-inf")
"""Stream time of a partition that has seen no event."""

STREAM_TIME_KEY = "__stream_time__"
"""Changelog key of the stream-time record (a windowed table's own keys are ``[key, ...]`` arrays)."""

STREAM_TIME: Any = object()
"""The entry of a table's ``dirty`` bookkeeping holding stream times from before the transaction."""


def replace(_old: Any, new: Any) -> Any:
    """The operation of ``table[key] = value`` on a windowed table (the new value wins)."""
    return new


class TimeIndex:
    """Per partition: items due at a time (integer milliseconds), popped in time order."""

    def __init__(self) -> None:
        self.heaps: dict[int, list[int]] = {}
        self.due: dict[int, dict[int, list[Any]]] = {}

    def add(self, partition: int, at: int, item: Any) -> None:
        """Schedule ``item`` at ``at`` on ``partition``."""
        due = self.due.get(partition)
        if due is None:
            due = self.due[partition] = {}
            self.heaps[partition] = []
        bucket = due.get(at)
        if bucket is None:
            due[at] = [item]
            heapq.heappush(self.heaps[partition], at)
        else:
            bucket.append(item)

    def pop_due(self, partition: int, now: int) -> Iterator[Any]:
        """Items of ``partition`` due at or before ``now``, oldest first (removed)."""
        heap = self.heaps.get(partition)
        if not heap:
            return
        due = self.due[partition]
        while heap and heap[0] <= now:
            yield from due.pop(heapq.heappop(heap), ())

    def drop(self, partitions: set[int]) -> None:
        """Forget ``partitions``."""
        for p in partitions:
            self.heaps.pop(p, None)
            self.due.pop(p, None)

    def clear(self) -> None:
        """Forget everything."""
        self.heaps.clear()
        self.due.clear()

    def __len__(self) -> int:
        return sum(len(items) for due in self.due.values() for items in due.values())


class EventTimeState:
    """Stream time and late-event counts per partition (the base of every windowed state)."""

    supports_delta = True
    """Whether ``table[key].delta(seconds)`` makes sense for this kind of window."""

    def __init__(self) -> None:
        self.stream_time: dict[int, float] = {}
        """Stream time per partition: the newest event time written."""
        self.late: dict[int, int] = {}
        """Late events per partition: events that went into no window (all were closed)."""
        self.late_windows: dict[int, int] = {}
        """Window updates refused because the window had closed, per partition (what Kafka
        Streams counts as dropped records: one per event and closed window)."""

    def advance(self, dirty: dict[Any, Any], partition: int, ts: float) -> float:
        """Move stream time of ``partition`` to ``ts`` if it is newer; return the stream time."""
        newest = self.stream_time.get(partition, NEVER)
        if ts > newest:
            saved = dirty.get(STREAM_TIME)
            if saved is None:
                saved = dirty[STREAM_TIME] = {}
            if partition not in saved:
                saved[partition] = newest
            self.stream_time[partition] = newest = ts
        return newest

    def count_late(self, partition: int, windows: int, whole_event: bool) -> None:
        """Count ``windows`` refused updates (and a late event when ``whole_event``)."""
        if windows:
            self.late_windows[partition] = self.late_windows.get(partition, 0) + windows
        if whole_event:
            self.late[partition] = self.late.get(partition, 0) + 1

    def stream_time_of(self, partition: int | None = None) -> float:
        """Stream time of ``partition``, or the oldest over all partitions (``NEVER`` if none)."""
        if partition is not None:
            return self.stream_time.get(partition, NEVER)
        return min(self.stream_time.values(), default=NEVER)

    def newest(self) -> float:
        """The newest event time seen on any partition (``NEVER`` if none)."""
        return max(self.stream_time.values(), default=NEVER)

    def stream_time_changes(self, saved: dict[int, float]) -> Iterator[tuple[Any, int, Any, float | None]]:
        """Changelog changes for the stream times of the partitions in ``saved``."""
        for partition in saved:
            now = self.stream_time.get(partition, NEVER)
            if now == NEVER:
                yield STREAM_TIME_KEY, partition, MISSING, None
            else:
                yield STREAM_TIME_KEY, partition, now, now

    def restore_stream_time(self, saved: dict[int, float]) -> None:
        """Put back stream times from before the transaction."""
        for partition, old in saved.items():
            if old == NEVER:
                self.stream_time.pop(partition, None)
            else:
                self.stream_time[partition] = old

    def restore(self, dirty: dict[Any, Any]) -> None:
        """Undo the stream-time advances ``dirty`` records (subclasses undo their windows too)."""
        saved = dirty.get(STREAM_TIME)
        if saved is not None:
            self.restore_stream_time(saved)

    def load_stream_time(self, key: Any, value: Any, partition: int) -> bool:
        """Apply a stream-time changelog record; False when ``key`` is not one."""
        if key != STREAM_TIME_KEY:
            return False
        if value is MISSING or value is None:
            self.stream_time.pop(partition, None)
        else:
            self.stream_time[partition] = float(value)
        return True

    def drop_stream_time(self, partitions: set[int]) -> None:
        """Forget stream time and late counts of ``partitions``."""
        for p in partitions:
            self.stream_time.pop(p, None)
