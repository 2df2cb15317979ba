"""The state of a table of session windows (Kafka Streams' ``SessionWindows``).

A session of a key is ``[first, last]`` event time (inclusive, whole
milliseconds). An event at ``t`` merges every session of its key that ends
at ``t - gap`` or later and starts at ``t + gap`` or earlier -- so one event
can join two sessions -- unless that session had already closed before the
event came. The merged session's value is the merged values (``+`` for
numbers, else the table's ``merge=``) with the event applied; the sessions
it replaced are deleted (tombstones in the changelog). A session closes
once stream time reaches ``end + gap + grace`` (its final value is emitted
then) and is deleted at ``end + gap + expires``. An event whose merged
session would already be closed is late.

Changelog records: ``[key, [start, end]]`` (seconds) -> value (stream time
goes to the table's stream-time topic).

>>> import operator
>>> from streamnb.tables.windows import SessionWindow
>>> state = SessionState(SessionWindow(5, grace=30), operator.add)
>>> dirty: Dirty[SessionWrites] = Dirty()
>>> for ts in (0.0, 3.0, 20.0, 8.0):
...     _ = state.update(dirty, "k", operator.add, 1, 1000 + ts, 0, int)
>>> sorted(state.items())
[(('k', (1000.0, 1008.0)), 3), (('k', (1020.0, 1020.0)), 1)]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from functools import reduce
from typing import Any, NamedTuple

from ...timeunits import ms, seconds
from ...transaction import MISSING, Transaction
from ..windows import SessionWindow, WindowRange
from .base import Change, Closed, Dirty
from .event_time import NEVER, EventTimeState, TimeIndex, WindowRows, replace

__all__ = ["SessionMerge", "SessionState", "SessionWrites", "merge_sessions", "merged_value"]

SessionWrites = dict[tuple[int, int], list[Any]]
"""A key's entry in ``Dirty.rows``: ``(start, end) in ms -> [partition, value before, event time of the last write]``
for every session made, changed, merged away or deleted."""


class SessionMerge(NamedTuple):
    """What an event does to its key's sessions (:func:`merge_sessions`); times in milliseconds."""

    merged: list[tuple[int, int]]
    """The sessions it joins (replaced by the merged one), in order."""
    start: int
    """The merged session's start."""
    end: int
    """The merged session's end."""
    late: bool
    """True when the merged session would be closed already: the event is late (nothing changes)."""


def merge_sessions(
    sessions: Iterable[tuple[int, int]], t: int, window: SessionWindow, before: int | None, now: int
) -> SessionMerge:
    """The session rule of Kafka Streams: an event at ``t`` joins every session within the gap that had not closed.

    ``sessions``: the key's sessions ``(start, end)``; ``before``: the
    partition's stream time before the event (None: none yet); ``now``: after
    it. A session joins when it ends at ``t - gap`` or later and starts at
    ``t + gap`` or earlier, unless it had closed before the event came
    (``end + gap + grace <= before``).

    >>> from streamnb.tables.windows import SessionWindow
    >>> merge_sessions([(0, 3000), (20000, 20000)], 8000, SessionWindow(5, grace=30), 20000, 20000)
    SessionMerge(merged=[(0, 3000)], start=0, end=8000, late=False)
    >>> merge_sessions([(0, 3000)], 8000, SessionWindow(5), 20000, 20000)  # (no grace: it had closed, too late)
    SessionMerge(merged=[], start=8000, end=8000, late=True)
    """
    reach_end, reach_start = window.reaches(t)
    closes_at = window.closes_at
    merged = sorted(
        (s, e) for (s, e) in sessions
        if e >= reach_end and s <= reach_start and (before is None or closes_at(e) > before)
    )
    start = min([t, *(s for s, _ in merged)])
    end = max([t, *(e for _, e in merged)])
    return SessionMerge(merged, start, end, closes_at(end) < now)


def merged_value(
    merge: Callable[[Any, Any], Any], key: Any, values: list[Any], op: Callable[[Any, Any], Any], operand: Any,
    ts: float, default: Callable[[], Any] | None,
) -> Any:
    """The value of the session an event makes: the merged ``values`` of the sessions it joins, with it applied.

    >>> import operator
    >>> add = operator.add
    >>> merged_value(add, "k", [2, 3], add, 1, 10.0, int), merged_value(add, "k", [], replace, 7, 10.0, None)
    (6, 7)
    """
    if values:
        value = reduce(merge, values)
        return operand if op is replace else op(value, operand)
    if default is not None:
        return op(default(), operand)
    if op is replace:
        return operand
    raise KeyError(f"{key!r} has no session at {ts} and the table has no default")


class SessionState(EventTimeState):
    """Sessions per key (see the module docstring)."""

    supports_delta = False

    def __init__(self, window: SessionWindow, merge: Callable[[Any, Any], Any]) -> None:
        super().__init__()
        self.window = window
        self.merge = merge
        self.sessions: dict[Any, dict[tuple[int, int], Any]] = {}
        """``key -> {(start, end) in ms: value}``."""
        self.partition_of: dict[Any, int] = {}
        self.born: dict[Any, dict[tuple[int, int], int]] = {}
        """``key -> {(start, end): serial}`` of the session now under those bounds (index entries carry it)."""
        self.closing = TimeIndex()  # (key, start, end, serial) sessions to close (stale entries skipped)
        self.expiring = TimeIndex()  # (key, start, end) closed sessions to delete
        self.overwritten: list[Closed] = []
        """Closed sessions a new session with the same bounds replaced before the commit emitted them."""
        self._serial = 0

    # -- reads ------------------------------------------------------------------------------

    def get(self, key: Any, window: tuple[float, float]) -> Any:
        """The value of ``key``'s session ``(start, end)``, or MISSING."""
        return self.sessions.get(key, {}).get((ms(window[0]), ms(window[1])), MISSING)

    def window_at(self, key: Any, ts: float) -> tuple[float, float] | None:
        """The session of ``key`` holding ``ts`` (the newest, if several), or None."""
        t = ms(ts)
        found = [w for w in self.sessions.get(key, {}) if w[0] <= t <= w[1]]
        if not found:
            return None
        start, end = max(found)
        return seconds(start), seconds(end)

    def items(self) -> list[tuple[tuple[Any, tuple[float, float]], Any]]:
        """``((key, (start, end)), value)`` for every session kept."""
        return [
            ((key, (seconds(s), seconds(e))), value)
            for key, sessions in list(self.sessions.items())
            for (s, e), value in list(sessions.items())
        ]

    @property
    def rows(self) -> WindowRows:
        """``(key, (start, end)) -> value``: a live view (what ``table.data`` is)."""
        return WindowRows(self)

    def is_closed(self, key: Any, window: tuple[float, float]) -> bool:
        """True once stream time reached the session's end plus gap plus grace."""
        now = self.stream_time.get(self.partition_of.get(key, 0), NEVER)
        return now != NEVER and self.window.closes_at(ms(window[1])) <= ms(now)

    def keys(self) -> set[Any]:
        """Keys with at least one session."""
        return set(self.sessions)

    def __len__(self) -> int:
        return sum(len(s) for s in self.sessions.values())

    # -- writes -----------------------------------------------------------------------------

    def update(
        self,
        dirty: Dirty[SessionWrites],
        key: Any,
        op: Callable[[Any, Any], Any],
        operand: Any,
        ts: float,
        partition: int,
        default: Callable[[], Any] | None,
    ) -> list[WindowRange] | None:
        """Merge the event at ``ts`` into ``key``'s sessions within the gap (or start one)."""
        before = self.stream_time.get(partition, NEVER)
        now = ms(self.advance(dirty, partition, ts))
        sessions = self.sessions.get(key)
        if sessions is None:
            sessions = self.sessions[key] = {}
        before_ms = None if before == NEVER else ms(before)
        merged, start, end, late = merge_sessions(sessions, ms(ts), self.window, before_ms, now)
        if late:  # the session it would make is closed already
            if not sessions:
                del self.sessions[key]
            self.count_late(partition, 1, whole_event=True)
            return [WindowRange(seconds(start), seconds(end))]
        self.partition_of[key] = partition
        value = merged_value(self.merge, key, [sessions[m] for m in merged], op, operand, ts, default)
        self._put_session(dirty, key, merged, (start, end), value, partition, ts)
        return None

    def _put_session(
        self, dirty: Dirty[SessionWrites], key: Any, merged: list[tuple[int, int]], window: tuple[int, int],
        value: Any, partition: int, ts: float,
    ) -> None:
        """Replace the ``merged`` sessions of ``key`` by ``window`` with ``value``, noting how to undo it."""
        sessions = self.sessions[key]
        pending = dirty.rows.get(key)
        if pending is None:
            pending = dirty.rows[key] = {}
        born = self.born.get(key)
        for m in merged:
            if m not in pending:
                pending[m] = [partition, sessions[m], ts]
            else:
                pending[m][2] = ts
            del sessions[m]
            if born is not None and m != window:
                born.pop(m, None)  # merged away (an undo schedules it again)
        entry = pending.get(window)
        previous = sessions.get(window, MISSING)
        if entry is None:
            pending[window] = [partition, previous, ts]
        else:
            entry[2] = ts
        start, end = window
        if previous is not MISSING and window not in merged:
            # A closed session with these bounds (an event exactly at the boundary starts a new one,
            # as in Kafka Streams): it closed with its own value before this one replaces it.
            self.overwritten.append(Closed(key, (seconds(start), seconds(end)), previous, partition))
        sessions[window] = value
        if window not in merged:
            self._serial += 1
            self.born.setdefault(key, {})[window] = self._serial
            self.closing.add(partition, self.window.closes_at(end), (key, start, end, self._serial))

    # -- the commit protocol ----------------------------------------------------------------

    def changes(self, dirty: Dirty[SessionWrites]) -> Iterator[Change]:
        """One change per session made, changed or merged away, key ``(key, (start, end))``."""
        new = tuple.__new__
        for key, entries in dirty.rows.items():
            sessions = self.sessions.get(key, {})
            for (s, e), (partition, old, when) in entries.items():
                value = sessions.get((s, e), MISSING)
                if value is MISSING and old is MISSING:
                    continue  # made and merged away within the transaction
                yield new(Change, ((key, (seconds(s), seconds(e))), partition, value, when))  # (fast Change(...))
        yield from self.old_record_deletions(dirty)

    def restore(self, dirty: Dirty[SessionWrites]) -> None:
        """Undo the sessions made, merged and changed (and stream times).

        Sessions put back (merged away, changed, or closed and deleted in the
        undone transaction) are scheduled to close (or expire) again. (The
        time index keeps entries of undone sessions; they are skipped when due.)
        """
        self.overwritten.clear()
        back: list[tuple[Any, tuple[int, int], int]] = []
        super().restore(dirty)
        for key, entries in dirty.rows.items():
            sessions = self.sessions.setdefault(key, {})
            for window, (partition, old, _ts) in entries.items():
                if old is MISSING:
                    sessions.pop(window, None)
                    self.born.get(key, {}).pop(window, None)
                else:
                    sessions[window] = old
                    back.append((key, window, partition))
            if not sessions:
                del self.sessions[key]
        for key, (start, end), partition in back:
            if (start, end) in self.sessions.get(key, {}):
                self._schedule(key, start, end, partition)

    def before_commit(self, txn: Transaction | None, dirty: Dirty[SessionWrites]) -> list[Closed]:
        """Close sessions stream time reached the close time of; delete expired ones."""
        closed, self.overwritten = self.overwritten, []
        w = self.window
        undo = self.undo_log(dirty)
        for partition, now in self.stream_time.items():
            now_ms = ms(now)
            for key, start, end, serial in self.closing.pop_due(partition, now_ms, undo):
                value = self.sessions.get(key, {}).get((start, end), MISSING)
                if value is MISSING or self.born.get(key, {}).get((start, end)) != serial:
                    continue  # merged into a longer session, replaced, or undone
                closed.append(Closed(key, (seconds(start), seconds(end)), value, partition))
                self.expiring.add(partition, w.expires_at(end), (key, start, end))
            for key, start, end in self.expiring.pop_due(partition, now_ms, undo):
                sessions = self.sessions.get(key, {})
                value = sessions.get((start, end), MISSING)
                if value is MISSING:
                    continue
                pending = dirty.rows.setdefault(key, {})
                entry = pending.get((start, end))
                if entry is None:
                    pending[(start, end)] = [partition, value, now]
                del sessions[(start, end)]
                born = self.born.get(key, {})
                born.pop((start, end), None)
                if not sessions:
                    del self.sessions[key]
                    self.born.pop(key, None)
        closed.sort(key=lambda c: c.window[1])  # per partition in order of window end (stable)
        return closed

    def after_commit(self) -> None:
        """Nothing to do."""

    # -- recovery and rebalancing -----------------------------------------------------------

    def load(self, key: Any, value: Any, partition: int) -> None:
        """Apply one changelog record: a session, a tombstone, or a stream time."""
        if self.load_stream_time(key, value, partition):
            return
        try:
            k, (start, end) = key
        except (TypeError, ValueError):
            return
        window = (ms(start), ms(end))
        self.partition_of[k] = partition
        if value is MISSING:
            sessions = self.sessions.get(k, {})
            sessions.pop(window, None)
            if not sessions:
                self.sessions.pop(k, None)
        else:
            self.sessions.setdefault(k, {})[window] = value

    def loaded(self) -> None:
        """Schedule closing and expiry again from the recovered sessions."""
        self.closing.clear()
        self.expiring.clear()
        for key, sessions in self.sessions.items():
            partition = self.partition_of.get(key, 0)
            if partition not in self.stream_time and sessions:
                self.stream_time[partition] = seconds(max(e for _, e in sessions))
            for start, end in sessions:
                self._schedule(key, start, end, partition)

    def _schedule(self, key: Any, start: int, end: int, partition: int) -> None:
        """Schedule a session to close (a new serial), or, closed already, to expire."""
        w = self.window
        now = self.stream_time.get(partition, NEVER)
        if now != NEVER and w.closes_at(end) <= ms(now):
            self.expiring.add(partition, w.expires_at(end), (key, start, end))
        else:
            self._serial += 1
            self.born.setdefault(key, {})[(start, end)] = self._serial
            self.closing.add(partition, w.closes_at(end), (key, start, end, self._serial))

    def drop_partitions(self, partitions: set[int]) -> bool:
        """Forget the keys of ``partitions``."""
        drop = [k for k, p in self.partition_of.items() if p in partitions]
        for key in drop:
            self.sessions.pop(key, None)
            self.born.pop(key, None)
            del self.partition_of[key]
        self.drop_stream_time(partitions)
        self.closing.drop(partitions)
        self.expiring.drop(partitions)
        return bool(drop)
