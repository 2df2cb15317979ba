"""Session windows in a persistent store behind a write-back cache (``store="rocksdb://"``).

A session table's windows live in the RocksDB of their partition, keyed by
table key, start and end (a key's sessions are one range scan) and by end
(the sessions that close or expire at a commit are one range scan:
:mod:`~streamnb.tables.stores.windowkeys`, layout ``"sessions"``). Memory
holds the stream time per partition and the bounded cache of
:class:`~streamnb.tables.state.window_cache.WindowCache`: the hot keys, each
with all its sessions. An event reads its key's sessions from the cache (on
a miss, one range scan), merges those within the gap exactly as
:class:`~streamnb.tables.state.sessions.SessionState` does on ``memory://``
(whose semantics, pinned against Kafka Streams, are this state's too), and
the commit's changelog records go to the store once the commit landed. A
restart loads nothing: it reads the changelog's tail into the stores.

Example (a table's own use)::

    state = StoredSessionState(SessionWindow(30), operator.add, stores, encode_key, decode_key, decode_value)
    state.serve(0, store)                                   # after its changelog was read to the end
    state.update(dirty, "ann", operator.add, 1, 12.5, 0, int)
    list(state.changes(dirty))                              # the commit's changelog records
    store.write(state.keys_of.ops(records), resume)         # after the commit landed (the table does this)
    state.flushed()
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from ...timeunits import ms, seconds
from ...transaction import MISSING, Transaction
from ..stores.rocksdb import RocksDBStore
from ..stores.windowkeys import BY_TIME, SESSIONS, SessionKeys, WindowKeys, time_bytes, time_of
from ..windows import SessionWindow, WindowRange
from .base import Change, Closed, Dirty
from .event_time import NEVER
from .sessions import SessionWrites, merge_sessions, merged_value
from .window_cache import WindowCache

__all__ = ["StoredSessionState"]

Session = tuple[int, int]
"""A session's id in the cache: ``(start, end)`` in milliseconds."""


class StoredSessionState(WindowCache):
    """Sessions kept in the stores of the partitions served (see the module docstring).

    ``dirty.rows`` holds a :data:`~streamnb.tables.state.sessions.SessionWrites` per written key,
    as :class:`~streamnb.tables.state.sessions.SessionState` does.
    """

    supports_delta = False
    layout = SESSIONS
    keys_class: type[WindowKeys] = SessionKeys

    def __init__(
        self,
        window: SessionWindow,
        merge: Callable[[Any, Any], Any],
        stores: dict[int, RocksDBStore],
        encode_key: Callable[[Any], bytes],
        decode_key: Callable[[bytes], Any],
        decode_value: Callable[[bytes], Any],
    ) -> None:
        self.merge = merge
        super().__init__(window, stores, encode_key, decode_key, decode_value)
        self.overwritten: list[Closed] = []
        """Closed sessions a new session with the same bounds replaced before the commit emitted them."""

    def rewindow(self, window: SessionWindow) -> None:
        """Keep the sessions under ``window``'s rules from now on."""
        self.window = window
        self.close_lag = window.closes_at(0)
        self.expire_lag = window.expires_at(0)

    # -- window ids: (start, end) in ms --------------------------------------------------------

    def id_of(self, window: tuple[float, float]) -> Session:
        """The id of the session ``(start, end)`` (seconds) in the cache."""
        return ms(window[0]), ms(window[1])

    def bounds(self, wid: Session) -> tuple[float, float]:
        """``(start, end)`` in seconds."""
        return seconds(wid[0]), seconds(wid[1])

    def id_bytes(self, wid: Session) -> bytes:
        """Start and end after the key's bytes in the keys by key."""
        return time_bytes(seconds(wid[0])) + time_bytes(seconds(wid[1]))

    def id_from(self, data: bytes) -> Session:
        """The session :meth:`id_bytes` wrote as ``data``."""
        return ms(time_of(data[:8])), ms(time_of(data[8:16]))

    def time_key(self, kb: bytes, wid: Session) -> bytes:
        """The by-time key of key bytes ``kb``'s session ``wid``: end, start, key."""
        return BY_TIME + time_bytes(seconds(wid[1])) + time_bytes(seconds(wid[0])) + kb

    def split_time(self, raw: bytes) -> tuple[Session, bytes]:
        """``(session, key bytes)`` of a by-time key (``b"x" + end + start + key``)."""
        return (ms(time_of(raw[9:17])), ms(time_of(raw[1:9]))), raw[17:]

    def time_floor(self, due: int, lag: int) -> bytes:
        """A by-time key at or before every session due (end plus ``lag``) after ``due`` ms."""
        return BY_TIME + time_bytes((due - lag) / 1000 - 1.0)

    # -- reads ------------------------------------------------------------------------------

    def window_at(self, key: Any, ts: float) -> tuple[float, float] | None:
        """The session of ``key`` holding ``ts`` (the newest, if several), or None."""
        t = ms(ts)
        sessions = self.by_key.get(key)
        if sessions is None:
            sessions = self._scan_key(key)[0]
        found = [w for w in sessions if w[0] <= t <= w[1]]
        return self.bounds(max(found)) if found else None

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
        """Merge the event at ``ts`` into ``key``'s sessions within the gap (or start one), as in memory."""
        before = self.stream_time.get(partition, NEVER)
        now = ms(self.advance(dirty, partition, ts))
        sessions = self._fetch(key, partition)
        before_ms = None if before == NEVER else ms(before)
        merged, start, end, late = merge_sessions(sessions, ms(ts), self.window, before_ms, now)
        if late:  # the session it would make is closed already
            self.count_late(partition, 1, whole_event=True)
            return [WindowRange(seconds(start), seconds(end))]
        value = merged_value(self.merge, key, [sessions[m] for m in merged], op, operand, ts, default)
        self._put(dirty, key, merged, (start, end), value, partition, ts)
        return None

    def _put(
        self, dirty: Dirty[SessionWrites], key: Any, merged: list[Session], window: Session,
        value: Any, partition: int, ts: float,
    ) -> None:
        """Replace the ``merged`` sessions of ``key`` by ``window`` with ``value``, noting how to undo it."""
        sessions = self.by_key[key]
        pending = dirty.rows.get(key)
        if pending is None:
            pending = dirty.rows[key] = {}
        fresh = self.fresh
        for m in merged:
            if m not in pending:
                pending[m] = [partition, sessions[m], ts]
                self.note_move(key, m, partition)  # (its copy may be in another partition's store)
            else:
                pending[m][2] = ts
            del sessions[m]
            self._cached -= 1
            if m != window:
                fresh.pop((key, m), None)  # merged away
        entry = pending.get(window)
        previous = sessions.get(window, MISSING)
        if entry is None:
            pending[window] = [partition, previous, ts]
            if previous is not MISSING:
                self.note_move(key, window, partition)
        else:
            entry[2] = ts
        if previous is MISSING:
            self._cached += 1
        elif window not in merged:
            # A closed session with these bounds (an event exactly at the boundary starts a new one,
            # as in Kafka Streams): it closed with its own value before this one replaces it.
            self.overwritten.append(Closed(key, self.bounds(window), previous, partition))
        sessions[window] = value
        if window not in merged:
            fresh[(key, window)] = (self._gen, partition)  # a new session: it closes at its own time
        self.rehome(key, partition)
        self.pending[key] = self._gen

    # -- the commit protocol ----------------------------------------------------------------

    def changes(self, dirty: Dirty[SessionWrites]) -> Iterator[Change]:
        """One change per session made, changed or merged away, key ``(key, (start, end))``."""
        self._flushing = self._gen
        self._gen += 1
        by_key, bounds = self.by_key, self.bounds
        new = tuple.__new__
        moved = self.moved
        for key, entries in dirty.rows.items():
            sessions = by_key.get(key) or {}
            for wid, (partition, old, when) in entries.items():
                if moved:  # (a session written from another partition than its store's leaves it at the flush)
                    self.leaving_home((key, wid), partition)
                value = sessions.get(wid, MISSING)
                if value is MISSING and old is MISSING:
                    continue  # made and merged away within the transaction
                yield new(Change, ((key, bounds(wid)), partition, value, when))  # (fast Change(...))
        yield from self.old_record_deletions(dirty)

    def restore(self, dirty: Dirty[SessionWrites]) -> None:
        """Undo the sessions made, merged and changed (and stream times, and closings)."""
        self.overwritten.clear()
        super().restore(dirty)
        self.forget_moves()
        for key, entries in dirty.rows.items():
            sessions = self.by_key.get(key)
            if sessions is None:
                continue
            for wid, (partition, old, _ts) in entries.items():
                if old is MISSING:
                    if sessions.pop(wid, MISSING) is not MISSING:
                        self._cached -= 1
                    self.fresh.pop((key, wid), None)
                else:
                    if wid not in sessions:
                        self._cached += 1
                        self.fresh[(key, wid)] = (self._gen, partition)  # (its store row may be gone)
                    sessions[wid] = old

    def before_commit(self, txn: Transaction | None, dirty: Dirty[SessionWrites]) -> list[Closed]:
        """Close the sessions stream time reached the close time of; delete expired ones.

        Returns the closed sessions in order of their end (as in memory).
        """
        closed, self.overwritten = self.overwritten, []
        undo = self.undo_log(dirty)
        bounds = self.bounds
        for partition, now in list(self.stream_time.items()):
            now_ms = ms(now)
            before = self.closed.marks.get(partition)
            for key, wid, value in self.due(partition, before, now_ms, self.close_lag):
                closed.append(Closed(key, bounds(wid), value, partition))
            undo.append((self.closed, partition, 0, before))
            self.closed.marks[partition] = now_ms
            before = self.expired.marks.get(partition)
            for key, wid, value in self.due(partition, before, now_ms, self.expire_lag):
                self._delete(dirty, key, wid, partition, value, now)
            undo.append((self.expired, partition, 0, before))
            self.expired.marks[partition] = now_ms
        closed.sort(key=lambda c: c.window[1])  # in order of session end (stable)
        return closed

    def _delete(
        self, dirty: Dirty[SessionWrites], key: Any, wid: Session, partition: int, value: Any, now: float
    ) -> None:
        sessions = self._fetch(key, partition)
        pending = dirty.rows.setdefault(key, {})
        if wid not in pending:
            pending[wid] = [partition, value, now]
        if sessions.pop(wid, MISSING) is not MISSING:
            self._cached -= 1
        self.fresh.pop((key, wid), None)
        self.pending[key] = self._gen
