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
>>> dirty: Dirty[KeyWrites] = Dirty()
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

from ...timeunits import ms
from ...transaction import MISSING, Transaction
from ..windows import Window, WindowRange
from .base import Change, Closed, Dirty
from .event_time import NEVER, EventTimeState, TimeIndex, first_write, replace
from .store import WindowStore

__all__ = ["KeyWrites", "WindowedState", "replace"]

_TIE = 1e-4  # below this distance from a boundary, times are compared in whole milliseconds
_add = operator.add


class KeyWrites(dict[float, list[Any]]):
    """What one transaction wrote of one key's windows (its entry in ``Dirty.rows``).

    ``start -> [partition, value before the transaction]`` of every window
    written or deleted, and :attr:`last_write`. (A dict, not a dict in an
    object: one is made per key and transaction, and read on every write.)
    """

    __slots__ = ("last_write",)

    last_write: float
    """Event time of the key's last write in the transaction: the changelog timestamp of its windows."""


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
        dirty: Dirty[KeyWrites],
        key: Any,
        op: Callable[[Any, Any], Any],
        operand: Any,
        ts: float,
        partition: int,
        default: Callable[[], Any] | None,
    ) -> list[WindowRange] | None:
        """Apply ``op(value, operand)`` to every open window of ``key`` holding ``ts``.

        Returns ``None``, or the windows the event missed when all of them
        were closed (a late event: nothing written). Runs for every event:
        the stream-time advance is inlined, first writes of a window and
        closed windows are handled apart.
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
        by_key = self.store.by_key
        inner = by_key.get(key)
        if inner is None:
            inner = by_key[key] = {}
        undo = dirty.rows.get(key)
        if undo is None:
            undo = dirty.rows[key] = KeyWrites()
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
            inner[start] = old + operand if add else op(old, operand)
        if refused or not windows:
            return self._missed(dirty, key, windows, refused, partition)
        return None

    def _create(
        self, inner: dict[float, Any], undo: dict[float, list[Any]], key: Any, w: WindowRange, partition: int,
        op: Callable[[Any, Any], Any], operand: Any, default: Callable[[], Any] | None,
    ) -> None:
        """The first write of ``key``'s window ``w``: its value, its undo entry, when it closes."""
        start = first_write(inner, undo, key, w, partition, op, operand, default)
        self.store.count(1)
        self.partition_of[(key, start)] = partition
        self.closing.add(partition, ms(w[1]) + self._grace_ms, (key, start))

    def _missed(
        self, dirty: Dirty[KeyWrites], key: Any, windows: list[WindowRange], refused: int, partition: int
    ) -> list[WindowRange] | None:
        """Count the ``refused`` windows of the event (closed); when it got none, it is late: return them all."""
        if refused < len(windows):
            self.count_late(partition, refused, whole_event=False)
            return None
        by_key = self.store.by_key
        if not by_key[key]:
            del by_key[key]
        if not dirty.rows[key]:  # the key was not written before in the transaction
            del dirty.rows[key]
        self.count_late(partition, refused, whole_event=True)
        return windows

    # -- the commit protocol ----------------------------------------------------------------

    def changes(self, dirty: Dirty[KeyWrites]) -> Iterator[Change]:
        """A change for every window written or deleted, key ``(key, (start, end))``."""
        by_key = self.store.by_key
        end = self.store.end
        windows: dict[float, tuple[float, float]] = {}  # (start, end) by start: most keys share a few windows
        partition_of = self.partition_of
        new = tuple.__new__
        for key, writes in dirty.rows.items():
            inner = by_key.get(key)
            if inner is not None and not inner:
                del by_key[key]  # every window of the key was undone or expired
                inner = None
            timestamp = writes.last_write
            for start, (partition, _old) in writes.items():
                value = MISSING if inner is None else inner.get(start, MISSING)
                if value is MISSING:
                    partition_of.pop((key, start), None)
                window = windows.get(start)
                if window is None:
                    window = windows[start] = (start, end(start))
                yield new(Change, ((key, window), partition, value, timestamp))  # (fast Change(...))
        yield from self.old_record_deletions(dirty)

    def restore(self, dirty: Dirty[KeyWrites]) -> None:
        """Undo the writes (and stream-time advances) ``dirty`` records."""
        super().restore(dirty)
        store = self.store
        partition_of = self.partition_of
        for key, writes in dirty.rows.items():
            for start, (_partition, old) in writes.items():
                if old is MISSING:
                    store.discard(key, start)
                    partition_of.pop((key, start), None)
                else:
                    store.put(key, start, old)

    def before_commit(self, txn: Transaction | None, dirty: Dirty[KeyWrites]) -> list[Closed]:
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

    def _delete(self, dirty: Dirty[KeyWrites], key: Any, start: float, partition: int, value: Any, now: float) -> None:
        writes = dirty.rows.get(key)
        if writes is None:
            writes = dirty.rows[key] = KeyWrites()
            writes.last_write = now
        if start not in writes:
            writes[start] = [partition, value]
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
