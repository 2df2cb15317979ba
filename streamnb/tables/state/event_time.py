"""What every windowed state shares: stream time per partition, late counts, time indexes.

*Stream time* is the newest event time a table has been written with on a
partition (as Kafka Streams' stream time per task): windows close when it
passes their end (plus grace), never by the wall clock. It advances before
the event that moves it is judged, is undone with the transaction that
moved it, and is written with each commit on each partition it advanced on
-- to the table's stream-time topic, not its changelog (see
:mod:`~streamnb.tables.streamtime`) -- so a restarted worker closes exactly
the windows it would have closed.

Subclasses (:mod:`~streamnb.tables.state.fixed` for tumbling and hopping
windows, :mod:`~streamnb.tables.state.sliding`, :mod:`~streamnb.tables.state.sessions`)
keep the windows themselves.

>>> state = EventTimeState()
>>> dirty: Dirty[Any] = Dirty()
>>> state.advance(dirty, 0, 12.5), state.advance(dirty, 0, 3.0), state.stream_time_of(0)
(12.5, 12.5, 12.5)
>>> dirty.stream_time
{0: -inf}
>>> state.restore(dirty); state.stream_time_of(0)
-inf
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol

from ...transaction import MISSING
from .base import Change, Dirty, Popped

__all__ = [
    "NEVER",
    "STREAM_TIME_KEY",
    "EventTimeState",
    "TimeIndex",
    "WindowRows",
    "first_write",
    "replace",
]

NEVER = float("-inf")
"""Stream time of a partition that has seen no event."""

STREAM_TIME_KEY = "__stream_time__"
"""The changelog key under which versions before the stream-time topic wrote stream time.

Such records are still read, and deleted (:meth:`EventTimeState.old_record_deletions`);
a windowed table's own keys are ``[key, ...]`` arrays, so it never names a row."""


def replace(_old: Any, new: Any) -> Any:
    """The operation of ``table[key] = value`` on a windowed table (the new value wins)."""
    return new


def first_write(
    inner: dict[Any, Any], undo: dict[Any, list[Any]], key: Any, window: Any, partition: int,
    op: Callable[[Any, Any], Any], operand: Any, default: Callable[[], Any] | None,
) -> Any:
    """The first write of ``key``'s window ``window`` (a range ``(start, end)``): its value and undo entry.

    The value is ``op(default(), operand)``, or ``operand`` for ``table[key] = value``
    (:func:`replace`); without a default any other operation is a ``KeyError``.
    It goes to ``inner`` (the key's windows, by start), and ``undo`` (the key's
    writes in the transaction) notes that the window did not exist. Returns the start.

    >>> inner, undo = {}, {}
    >>> first_write(inner, undo, "k", (10.0, 20.0), 0, replace, 7, None), inner, undo[10.0][1] is MISSING
    (10.0, {10.0: 7}, True)
    """
    if default is not None:
        value = op(default(), operand)
    elif op is replace:
        value = operand
    else:
        raise KeyError(f"{key!r} has no value in window {tuple(window)} and the table has no default")
    start = window[0]
    if start not in undo:
        undo[start] = [partition, MISSING]
    inner[start] = value
    return start


class _Windows(Protocol):
    """What :class:`WindowRows` reads: a state whose windows are computed (sliding, sessions)."""

    def get(self, key: Any, window: tuple[float, float]) -> Any: ...

    def items(self) -> Iterable[tuple[tuple[Any, tuple[float, float]], Any]]: ...

    def __len__(self) -> int: ...


class WindowRows(Mapping[Any, Any]):
    """A live, read-only ``(key, (start, end)) -> value`` view of a state's windows.

    What ``table.data`` of a sliding or session table is: it reads the state
    on every access, so it is never stale (the windows are computed, not stored).
    """

    def __init__(self, state: _Windows) -> None:
        self.state = state

    def __getitem__(self, wk: Any) -> Any:
        try:
            key, window = wk
            value = self.state.get(key, (float(window[0]), float(window[1])))
        except (TypeError, ValueError):
            raise KeyError(wk) from None
        if value is MISSING:
            raise KeyError(wk)
        return value

    def __iter__(self) -> Iterator[Any]:
        return iter([wk for wk, _value in self.state.items()])

    def __len__(self) -> int:
        return len(self.state)

    def items(self) -> Any:
        """``((key, (start, end)), value)`` pairs (a list, or read as they go from a store)."""
        return self.state.items()


class TimeIndex:
    """Per partition: items due at a time (integer milliseconds), popped in time order.

    Most items come in time order (events mostly arrive in order), so they
    queue up in a FIFO; only items due earlier than the last one queued go
    to a heap. Items due at the same time come out in the order they were added.

    >>> index = TimeIndex()
    >>> for at, item in [(10, "a"), (20, "b"), (15, "c"), (20, "d")]:
    ...     index.add(0, at, item)
    >>> list(index.pop_due(0, 20)), len(index)
    (['a', 'c', 'b', 'd'], 0)
    """

    def __init__(self) -> None:
        self.fifo: dict[int, deque[tuple[int, Any]]] = {}
        self.heaps: dict[int, list[tuple[int, int, Any]]] = {}
        self._seq = 0

    def add(self, partition: int, at: int, item: Any) -> None:
        """Schedule ``item`` at ``at`` on ``partition``."""
        fifo = self.fifo.get(partition)
        if fifo is None:
            fifo = self.fifo[partition] = deque()
            self.heaps[partition] = []
        if not fifo or at >= fifo[-1][0]:
            fifo.append((at, item))
        else:
            self._seq += 1
            heapq.heappush(self.heaps[partition], (at, self._seq, item))

    def pop_due(self, partition: int, now: int, undo: list[Popped] | None = None) -> Iterator[Any]:
        """Items of ``partition`` due at or before ``now``, oldest first (removed).

        With ``undo``, each popped item is noted there so that :meth:`EventTimeState.restore`
        can schedule it again if the commit that popped it fails.
        """
        fifo = self.fifo.get(partition)
        if fifo is None:
            return
        heap = self.heaps[partition]
        while True:
            if heap and heap[0][0] <= now and (not fifo or heap[0][0] < fifo[0][0]):
                at, _seq, item = heapq.heappop(heap)
            elif fifo and fifo[0][0] <= now:
                at, item = fifo.popleft()
            else:
                return
            if undo is not None:
                undo.append((self, partition, at, item))
            yield item

    def drop(self, partitions: set[int]) -> None:
        """Forget ``partitions``."""
        for p in partitions:
            self.fifo.pop(p, None)
            self.heaps.pop(p, None)

    def clear(self) -> None:
        """Forget everything."""
        self.fifo.clear()
        self.heaps.clear()

    def __len__(self) -> int:
        return sum(len(q) for q in self.fifo.values()) + sum(len(h) for h in self.heaps.values())


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
        self.old_records: set[int] = set()
        """Partitions whose changelog still holds a ``"__stream_time__"`` record of an older version
        (the next commit that writes their stream time deletes it)."""

    def advance(self, dirty: Dirty[Any], partition: int, ts: float) -> float:
        """Move stream time of ``partition`` to ``ts`` if it is newer; return the stream time."""
        newest = self.stream_time.get(partition, NEVER)
        if ts > newest:
            saved = dirty.stream_time
            if saved is None:
                saved = dirty.stream_time = {}
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

    def stream_time_changes(self, dirty: Dirty[Any]) -> Iterator[tuple[int, float | None]]:
        """``(partition, stream time or None)`` for each partition whose stream time ``dirty`` advanced.

        The table writes them to its stream-time topic (``None``: the
        partition has no stream time any more, a tombstone).
        """
        stream_time = self.stream_time
        for partition in dirty.stream_time or ():
            now = stream_time.get(partition, NEVER)
            yield partition, None if now == NEVER else now

    def old_record_deletions(self, dirty: Dirty[Any]) -> Iterator[Change]:
        """Tombstones of older versions' ``"__stream_time__"`` changelog records, on partitions ``dirty`` advanced.

        Each windowed state's :meth:`changes` ends with them: they are changelog records.
        """
        old_records = self.old_records
        saved = dirty.stream_time
        if not saved or not old_records:
            return
        for partition in saved:
            if partition in old_records:
                # (Not put back if the commit fails: the record is then deleted after the next recovery.)
                old_records.discard(partition)
                now = self.stream_time.get(partition, NEVER)
                yield Change(STREAM_TIME_KEY, partition, MISSING, None if now == NEVER else now)

    def restore(self, dirty: Dirty[Any]) -> None:
        """Undo the stream-time advances ``dirty`` records, and put back what its commit popped.

        (Subclasses undo their windows too.)
        """
        saved = dirty.stream_time
        if saved is not None:
            stream_time = self.stream_time
            for partition, old in saved.items():
                if old == NEVER:
                    stream_time.pop(partition, None)
                else:
                    stream_time[partition] = old
        self.restore_popped(dirty)

    @staticmethod
    def undo_log(dirty: Dirty[Any]) -> list[Popped]:
        """Where a commit notes what it takes off the time indexes (``TimeIndex.pop_due(undo=)``)."""
        log = dirty.popped
        if log is None:
            log = dirty.popped = []
        return log

    @staticmethod
    def restore_popped(dirty: Dirty[Any]) -> None:
        """Put back on the time indexes what a failed commit took off them (the windows close again)."""
        popped, dirty.popped = dirty.popped, None
        for index, partition, at, item in popped or ():
            index.add(partition, at, item)

    def load_stream_time(self, key: Any, value: Any, partition: int) -> bool:
        """Apply an older version's stream-time changelog record; False when ``key`` is not one."""
        if key != STREAM_TIME_KEY:
            return False
        if value is MISSING or value is None:
            self.stream_time.pop(partition, None)
            self.old_records.discard(partition)
        else:
            self.stream_time[partition] = float(value)
            self.old_records.add(partition)
        return True

    def load_stream_time_record(self, partition: int, value: float | None) -> None:
        """Apply a record of the stream-time topic (``None``: a tombstone).

        Stream time never goes back, so a value older than the one known
        (from an older version's changelog record) is ignored.
        """
        if value is None:
            self.stream_time.pop(partition, None)
        elif value > self.stream_time.get(partition, NEVER):
            self.stream_time[partition] = value

    def drop_stream_time(self, partitions: set[int]) -> None:
        """Forget stream time of ``partitions``."""
        for p in partitions:
            self.stream_time.pop(p, None)
            self.old_records.discard(p)
