"""The state of a table of tumbling or hopping windows: windows per key, closing and expiry.

A :class:`WindowedState` keeps ``{key: {window start: value}}`` (a
:class:`~streamnb.tables.state.store.WindowStore`) and two time indexes: when each
window closes (``end + grace``) and when it is deleted (``end + expires``).
Stream time and late counts come from :class:`~streamnb.tables.state.event_time.EventTimeState`.
The window kind (:mod:`streamnb.tables.windows`) is the pure rule; this
module applies it:

* a write updates every window of the event's time that is still open; an
  event whose windows are all closed is *late*: nothing is written, it is
  counted per partition and returned to the caller;
* at a commit, windows whose close time stream time reached are closed
  (returned once, for ``on_window_close`` and final results), and windows
  past their expiry are deleted (a tombstone goes to the changelog).

Times are compared in whole milliseconds (as Kafka Streams does), so a tie
exactly at ``end + grace`` decides the same way for floats such as 0.1.

>>> from streamnb.tables.windows import TumblingWindow
>>> state = WindowedState(TumblingWindow(10, grace=5))
>>> dirty: dict = {}
>>> state.update(dirty, "k", _add, 1, 12.0, 0, int)        # window [10, 20)
>>> state.update(dirty, "k", _add, 1, 26.0, 0, int)        # stream time 26 >= 20 + 5
>>> [(c.key, c.window, c.value) for c in state.before_commit(None, dirty)]
[('k', (10.0, 20.0), 1)]
>>> state.update(dirty, "k", _add, 1, 13.0, 0, int)        # late: returns the windows it missed
[WindowRange(start=10.0, end=20.0)]
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator
from typing import Any

from ...transaction import MISSING, Transaction
from ..windows import Window, WindowRange, ms
from .base import Closed
from .event_time import NEVER, POPPED, STREAM_TIME, EventTimeState, TimeIndex, replace
from .store import WindowStore

__all__ = ["LAST_WRITE", "WindowedState", "replace"]

LAST_WRITE: Any = object()
"""The entry of a key's bookkeeping holding the event time of its last write (the changelog timestamp)."""

_TIE = 1e-4  # below this distance from a boundary, times are compared in whole milliseconds
_add = operator.add


class WindowedState(EventTimeState):
    """Windows per key for tumbling and hopping windows (see the module docstring)."""

    def __init__(self, window: Window) -> None:
        super().__init__()
        self.window = window
        self.store = WindowStore(window.size)
        self.partition_of: dict[tuple[Any, float], int] = {}
        """The changelog partition of every window, by ``(key, start)``."""
        self.closing = TimeIndex()
        self.expiring = TimeIndex()
        self._grace = window.grace
        self._ranges = window.ranges
        self._grace_ms = ms(window.grace)
        self._expires_ms = ms(window.expires)

    # -- reads ------------------------------------------------------------------------------

    @property
    def rows(self) -> WindowStore:
        """``(key, (start, end)) -> value``."""
        return self.store

    def is_closed(self, key: Any, window: tuple[float, float]) -> bool:
        """True when ``key``'s window ``(start, end)`` has closed."""
        partition = self.partition_of.get((key, window[0]))
        if partition is None:
            return False
        now = self.stream_time.get(partition, NEVER)
        return now != NEVER and ms(window[1]) + self._grace_ms <= ms(now)

    def get(self, key: Any, window: tuple[float, float]) -> Any:
        """The value of ``key`` in ``window``, or MISSING."""
        return self.store.get((key, (float(window[0]), float(window[1]))), MISSING)

    def window_at(self, key: Any, ts: float) -> tuple[float, float] | None:
        """The window reads at time ``ts`` pick: the newest one holding it."""
        ranges = self.window.ranges(ts)
        return tuple(ranges[-1]) if ranges else None  # type: ignore[return-value]

    def items(self) -> list[tuple[tuple[Any, tuple[float, float]], Any]]:
        """``((key, (start, end)), value)`` for every window kept."""
        return self.store.items()  # type: ignore[no-any-return]

    def keys(self) -> set[Any]:
        """Keys with at least one window."""
        return set(self.store.by_key)

    def __len__(self) -> int:
        return len(self.store)

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
        """Apply ``op(value, operand)`` to every open window of ``key`` holding ``ts``.

        Returns ``None``, or the windows the event missed when all of them
        were closed (a late event: nothing written). ``dirty`` maps
        ``key -> {start: [partition, value before], LAST_WRITE: event time}``.
        """
        stream_time = self.stream_time
        newest = stream_time.get(partition, NEVER)
        if ts > newest:
            saved = dirty.get(STREAM_TIME)
            if saved is None:
                saved = dirty[STREAM_TIME] = {}
            if partition not in saved:
                saved[partition] = newest
            stream_time[partition] = newest = ts
        horizon = newest - self._grace + _TIE  # a window ending after this is open
        store = self.store
        by_key = store.by_key
        inner = by_key.get(key)
        if inner is None:
            inner = by_key[key] = {}
        pending = dirty.get(key)
        if pending is None:
            pending = dirty[key] = {}
        pending[LAST_WRITE] = ts
        add = op is _add
        written = False
        refused = 0
        windows = self._ranges(ts)
        for w in windows:
            if w[1] <= horizon and ms(w[1]) + self._grace_ms <= ms(newest):
                refused += 1  # closed
                continue
            written = True
            start = w[0]
            old = inner.get(start, MISSING)
            if start not in pending:
                pending[start] = [partition, old]
            if old is MISSING:
                if default is None:
                    if op is not replace:
                        del pending[start]
                        raise KeyError(f"{key!r} has no value in window {tuple(w)} and the table has no default")
                    self._new_window(key, w, partition)
                    inner[start] = operand
                    store.count(1)
                    continue
                self._new_window(key, w, partition)
                store.count(1)
                old = default()
            inner[start] = old + operand if add else op(old, operand)
        if written:
            if refused:
                self.count_late(partition, refused, whole_event=False)
            return None
        if not inner:
            del by_key[key]
        if len(pending) == 1:  # only LAST_WRITE
            del dirty[key]
        self.count_late(partition, refused, whole_event=True)
        return windows

    def _new_window(self, key: Any, w: WindowRange, partition: int) -> None:
        self.partition_of[(key, w[0])] = partition
        self.closing.add(partition, ms(w[1]) + self._grace_ms, (key, w[0]))

    # -- the commit protocol ----------------------------------------------------------------

    def changes(self, dirty: dict[Any, Any]) -> Iterator[tuple[Any, int, Any, float | None]]:
        """Changelog changes: ``((key, (start, end)), partition, value, event time)`` and stream times."""
        by_key = self.store.by_key
        end = self.store.end
        partition_of = self.partition_of
        for key, starts in dirty.items():
            if key is POPPED:
                continue
            if key is STREAM_TIME:
                yield from self.stream_time_changes(starts)
                continue
            inner = by_key.get(key)
            if inner is not None and not inner:
                del by_key[key]  # every window of the key was undone or expired
                inner = None
            timestamp = starts.get(LAST_WRITE)
            for start, entry in starts.items():
                if start is LAST_WRITE:
                    continue
                partition = entry[0]
                value = MISSING if inner is None else inner.get(start, MISSING)
                if value is MISSING:
                    partition_of.pop((key, start), None)
                yield (key, (start, end(start))), partition, value, timestamp

    def restore(self, dirty: dict[Any, Any]) -> None:
        """Undo the writes (and stream-time advances) ``dirty`` records."""
        store = self.store
        self.restore_popped(dirty)
        for key, starts in dirty.items():
            if key is STREAM_TIME:
                self.restore_stream_time(starts)
                continue
            for start, entry in starts.items():
                if start is LAST_WRITE:
                    continue
                old = entry[1]
                if old is MISSING:
                    store.discard(key, start)
                    self.partition_of.pop((key, start), None)
                else:
                    store.put(key, start, old)

    def before_commit(self, txn: Transaction | None, dirty: dict[Any, Any]) -> list[Closed]:
        """Close the windows stream time passed the close time of; delete expired ones.

        Returns the closed windows, per partition in order of window end.
        """
        store = self.store
        by_key = store.by_key
        end = store.end
        closed: list[Closed] = []
        same = self._grace_ms == self._expires_ms
        undo = self.undo_log(dirty)
        for partition, now in self.stream_time.items():
            now_ms = ms(now)
            for key, start in self.closing.pop_due(partition, now_ms, undo):
                inner = by_key.get(key)
                value = MISSING if inner is None else inner.get(start, MISSING)
                if value is MISSING:
                    continue  # undone, or deleted already
                closed.append(Closed(key, (start, end(start)), value, partition))
                if same:
                    self._delete(dirty, key, start, partition, value, now)
                else:
                    self.expiring.add(partition, ms(end(start)) + self._expires_ms, (key, start))
            for key, start in self.expiring.pop_due(partition, now_ms, undo):
                inner = by_key.get(key)
                value = MISSING if inner is None else inner.get(start, MISSING)
                if value is not MISSING:
                    self._delete(dirty, key, start, partition, value, now)
        return closed

    def _delete(self, dirty: dict[Any, Any], key: Any, start: float, partition: int, value: Any, now: float) -> None:
        pending = dirty.get(key)
        if pending is None:
            pending = dirty[key] = {}
        pending.setdefault(LAST_WRITE, now)
        if start not in pending:
            pending[start] = [partition, value]
        self.store.discard(key, start)

    def after_commit(self) -> None:
        """Nothing to do: stream time and windows are already current."""

    # -- recovery and rebalancing -----------------------------------------------------------

    def load(self, key: Any, value: Any, partition: int) -> None:
        """Apply one changelog record (a window, a tombstone, or a stream time)."""
        if self.load_stream_time(key, value, partition):
            return
        try:
            k, (start, _end) = key
        except (TypeError, ValueError):
            return  # not a window key: written by something else
        start = float(start)
        if value is MISSING:
            self.store.discard(k, start)
            self.partition_of.pop((k, start), None)
        else:
            self.store.put(k, start, value)
            self.partition_of[(k, start)] = partition

    def loaded(self) -> None:
        """Rebuild the time indexes (and stream times written by older versions)."""
        self.closing.clear()
        self.expiring.clear()
        for (_key, start), partition in self.partition_of.items():
            if partition not in self.stream_time or self.stream_time[partition] < start:
                # A changelog written before stream time was recorded: its newest window start.
                self.stream_time[partition] = start
        for (key, start), partition in self.partition_of.items():
            end_ms = ms(self.store.end(start))
            if end_ms + self._grace_ms <= ms(self.stream_time[partition]):
                self.expiring.add(partition, end_ms + self._expires_ms, (key, start))
            else:
                self.closing.add(partition, end_ms + self._grace_ms, (key, start))

    def drop_partitions(self, partitions: set[int]) -> bool:
        """Forget the windows, stream time and late counts of ``partitions``."""
        drop = [ks for ks, p in self.partition_of.items() if p in partitions]
        for key, start in drop:
            self.store.discard(key, start)
            del self.partition_of[(key, start)]
        self.drop_stream_time(partitions)
        self.closing.drop(partitions)
        self.expiring.drop(partitions)
        return bool(drop)
