"""Table states that keep every change: one changelog record per write, not per key and commit.

An ordinary table writes, at each commit, one changelog record per key it
changed (with the event time of the last write): enough to recover the
table, not to know what it held between two commits. A table of an app made
with ``history=True`` (the default under a virtual clock) keeps a
:class:`PlainHistoryState` or :class:`WindowedHistoryState` (on ``rocksdb://``:
:class:`StoredHistoryState`, and :class:`StoredWindowedHistoryState` for tumbling and
hopping windows) instead: every
write becomes its own changelog record, stamped with the event time of the
write, in the order the agent made them. Its changelog topic is not
compacted, so :meth:`~streamnb.tables.timetravel.TimeTravel.at` and
``history()`` can answer for any moment.

>>> state = PlainHistoryState()
>>> dirty: Dirty[list[Any]] = Dirty()
>>> state.write(dirty, "a", 1, partition=0, timestamp=1.0)
>>> state.write(dirty, "a", 2, partition=0, timestamp=2.0)
>>> [tuple(change) for change in state.changes(dirty)]
[('a', 0, 1, 1.0), ('a', 0, 2, 2.0)]
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from ...transaction import MISSING
from ..stores.rocksdb import RocksDBStore
from ..windows import Window, WindowRange
from .base import Change, Dirty, PlainState, Undo
from .fixed import KeyWrites, WindowedState
from .stored import StoredState
from .stored_windows import StoredWindowedState

__all__ = ["PlainHistoryState", "StoredHistoryState", "StoredWindowedHistoryState", "WindowedHistoryState"]

_new = tuple.__new__  # Change(...) without its Python-level __new__ (a write of a history table logs one)


def _log(dirty: Dirty[Any]) -> list[Change]:
    log = dirty.log
    if log is None:
        log = dirty.log = []
    return log


class PlainHistoryState(PlainState):
    """A plain table's rows, with every write of a transaction logged for the changelog."""

    def write(
        self, dirty: Dirty[Undo], key: Any, value: Any, partition: int, timestamp: float | None = None
    ) -> None:
        """Set ``key`` and log the write."""
        log = _log(dirty)
        super().write(dirty, key, value, partition, timestamp)
        log.append(_new(Change, (key, partition, value, timestamp)))

    def changes(self, dirty: Dirty[Undo]) -> Iterator[Change]:
        """Every write, in order (not one per key)."""
        log, dirty.log = dirty.log or [], None
        for _ in super().changes(dirty):  # keeps the partition of each key up to date
            pass
        yield from log

    def restore(self, dirty: Dirty[Undo]) -> None:
        """Undo the transaction (its log goes too)."""
        dirty.log = None
        super().restore(dirty)


class StoredHistoryState(StoredState):
    """A plain table's rows in the stores (``rocksdb://``), with every write of a transaction logged for the changelog.

    The stores keep each key's newest value (the changelog's records applied
    in order): a restart loads nothing; ``at()`` and ``history()`` read the
    changelog, as on ``memory://``. A key written from several partitions
    (a table not co-partitioned with its stream, common in replays) keeps
    one row, in the store of the partition that wrote it last: the copy an
    earlier partition's store holds, or gets from an earlier write of the
    same commit, is deleted once the commit lands (see :class:`StoredState`).
    """

    def __init__(
        self,
        encode_key: Callable[[Any], bytes],
        decode_key: Callable[[bytes], Any],
        decode_value: Callable[[bytes], Any],
        stores: dict[int, RocksDBStore] | None = None,
    ) -> None:
        super().__init__(encode_key, decode_key, decode_value, stores)
        self._crossed: dict[Dirty[list[Any]], set[tuple[Any, int]]] = {}
        """Per open transaction: ``(key, partition)`` of writes followed by one of the key from another partition."""

    def write(
        self, dirty: Dirty[list[Any]], key: Any, value: Any, partition: int, timestamp: float | None = None
    ) -> None:
        """Set ``key`` and log the write."""
        log = _log(dirty)
        entry = dirty.rows.get(key)
        if entry is not None and entry[0] != partition:  # (its earlier record goes to that partition's store)
            self._crossed.setdefault(dirty, set()).add((key, entry[0]))
        super().write(dirty, key, value, partition, timestamp)
        log.append(_new(Change, (key, partition, value, timestamp)))

    def changes(self, dirty: Dirty[list[Any]]) -> Iterator[Change]:
        """Every write, in order (not one per key)."""
        log, dirty.log = dirty.log or [], None
        for _ in super().changes(dirty):  # (what the store keeps once the commit landed)
            pass
        crossed = self._crossed.pop(dirty, None)
        if crossed:
            rows = dirty.rows
            for key, partition in crossed:
                if partition != rows[key][0]:  # (not the partition that wrote it last)
                    self.leaving(key, partition)
        yield from log

    def restore(self, dirty: Dirty[list[Any]]) -> None:
        """Undo the transaction (its log goes too)."""
        dirty.log = None
        self._crossed.pop(dirty, None)
        super().restore(dirty)


class _LoggedWindows:
    """What both windowed history states do with their log at a commit (a mixin before the window state)."""

    def changes(self, dirty: Dirty[KeyWrites]) -> Iterator[Change]:
        """Every logged write in order, then the deletions of the commit (expired windows)."""
        log, dirty.log = dirty.log or [], None
        rest = list(super().changes(dirty))  # type: ignore[misc]
        yield from log
        for change in rest:
            if change.value is MISSING:
                yield change

    def restore(self, dirty: Dirty[KeyWrites]) -> None:
        """Undo the transaction (its log goes too)."""
        dirty.log = None
        super().restore(dirty)  # type: ignore[misc]


class WindowedHistoryState(_LoggedWindows, WindowedState):
    """A windowed table's windows, with every window write of a transaction logged for the changelog.

    Windows closed or expired at a commit, and the stream time, follow the
    writes as in an ordinary windowed table.
    """

    def __init__(self, window: Window) -> None:
        super().__init__(window)
        self._window_ranges: Callable[[float], list[WindowRange]] | None = getattr(window, "ranges", None)

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
        """Apply the write (see :meth:`WindowedState.update`) and log each window it changed."""
        inner = self.store.by_key.get(key)
        ranges = self._window_ranges
        if ranges is not None:
            starts = [w[0] for w in ranges(ts)]
            before = {s: (MISSING if inner is None else inner.get(s, MISSING)) for s in starts}
        else:
            before = dict(inner) if inner else {}
        log = _log(dirty)
        missed = super().update(dirty, key, op, operand, ts, partition, default)
        if missed is None:
            after = self.store.by_key.get(key) or {}
            end = self.store.end
            for start in before if ranges is not None else after:
                value = after.get(start, MISSING)
                if value is not MISSING and (before.get(start, MISSING) is MISSING or before[start] != value):
                    log.append(_new(Change, ((key, (start, end(start))), partition, value, ts)))
        return missed



class StoredWindowedHistoryState(_LoggedWindows, StoredWindowedState):
    """Tumbling or hopping windows in the stores (``rocksdb://``), with every window write logged for the changelog.

    As :class:`WindowedHistoryState` on the windows of
    :class:`~streamnb.tables.state.stored_windows.StoredWindowedState`: the
    stores keep each window's newest value, a restart loads nothing.
    """

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
        """Apply the write (see :meth:`StoredWindowedState.update`) and log each window it changed."""
        inner = self._fetch(key, partition)
        starts = [w[0] for w in self._ranges(ts)]
        before = [inner.get(start, MISSING) for start in starts]
        log = _log(dirty)
        missed = super().update(dirty, key, op, operand, ts, partition, default)
        if missed is None:
            after = self.by_key.get(key) or {}
            end = self._end
            for start, old in zip(starts, before, strict=True):
                value = after.get(start, MISSING)
                if value is not MISSING and (old is MISSING or old != value):
                    log.append(_new(Change, ((key, (start, end(start))), partition, value, ts)))
        return missed

