"""Tumbling and hopping windows in a persistent store behind a write-back cache (``store="rocksdb://"``).

The windows of a table partition live in its RocksDB
(:class:`~streamnb.tables.stores.rocksdb.RocksDBStore`) under two kinds of key:

- ``b"w" + len(key) + key + start``: a window's value (the changelog value,
  byte for byte), so a key's windows are one range scan, in window order;
- ``b"x" + start + key``: the same window by time (empty value), so the
  windows that close or expire at a commit are one range scan too.

``key`` is the changelog key codec's bytes of the table key, ``start`` the
window start as 8 bytes that sort as the float does. Memory holds the
stream time per partition, and a bounded cache (:attr:`StoredWindowedState.cache_size`
windows) of the hot keys: each cached key with *all* its windows, newest values
first (what was written and not yet flushed is never evicted). As with plain
rows (:mod:`~streamnb.tables.state.stored`), the commit's changelog records
are applied to the store in one batch once the commit landed, and a restart
reads only the changelog written since. Closing is a scan of the time keys
between the stream time of the last commit and the current one (plus the
windows created since the last flush), in window order; expiry is a scan
from the last expiry on. Reads of one window are point reads; scans
(``items()``, ``len()``, DataFrames) read the stores as they go.

Semantics are those of :class:`~streamnb.tables.state.fixed.WindowedState`
(the in-memory state), which the table suite checks on both stores.

>>> time_of(time_bytes(-12.5)), time_bytes(-1.0) < time_bytes(0.0) < time_bytes(0.5) < time_bytes(10.0)
(-12.5, True)
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ...timeunits import ms
from ...transaction import MISSING, Transaction
from ..stores.rocksdb import RocksDBStore
from ..windows import Window, WindowRange
from .base import Change, Closed, Dirty
from .event_time import NEVER, STREAM_TIME_KEY, EventTimeState, WindowRows
from .fixed import KeyWrites

__all__ = ["LAYOUT", "StoredWindowedState", "time_bytes", "time_of"]

LAYOUT = "windows"
"""The layout name the stores of such a table carry (:attr:`RocksDBStore.layout`)."""

_BY_KEY = b"w"
_BY_TIME = b"x"
_END_BY_KEY = b"x"  # (the first byte after b"w")
_END_BY_TIME = b"y"
_F = struct.Struct(">d")
_Q = struct.Struct(">Q")
_SIGN = 1 << 63
_ALL = (1 << 64) - 1
_TIE = 1e-4
_add = operator.add


def time_bytes(t: float) -> bytes:
    """``t`` as 8 bytes that sort as the floats do (negative ones too)."""
    (bits,) = _Q.unpack(_F.pack(t))
    return _Q.pack(bits ^ _ALL if bits & _SIGN else bits | _SIGN)


def time_of(data: bytes) -> float:
    """The float :func:`time_bytes` gave ``data`` for."""
    (bits,) = _Q.unpack(data)
    return float(_F.unpack(_Q.pack(bits ^ _SIGN if bits & _SIGN else bits ^ _ALL))[0])


def key_prefix(kb: bytes) -> bytes:
    """Where the windows of the key whose bytes are ``kb`` begin (``b"w"`` keys)."""
    return _BY_KEY + len(kb).to_bytes(4, "big") + kb


def _successor(prefix: bytes) -> bytes:
    """The smallest bytes after every key that starts with ``prefix``."""
    return (int.from_bytes(prefix, "big") + 1).to_bytes(len(prefix), "big")


class _Marks:
    """Watermarks per partition a commit moves on, put back (by ``restore_popped``) when it fails."""

    def __init__(self) -> None:
        self.marks: dict[int, int] = {}

    def add(self, partition: int, at: int, item: Any) -> None:
        """Put back the mark ``item`` (None: none) of ``partition`` (the oldest wins)."""
        if item is None:
            self.marks.pop(partition, None)
        else:
            self.marks[partition] = min(self.marks.get(partition, item), item)


class StoredWindowedState(EventTimeState):
    """Tumbling or hopping windows kept in the stores of the partitions served (see the module docstring).

    ``dirty.rows`` holds a :class:`~streamnb.tables.state.fixed.KeyWrites` per
    written key, as :class:`~streamnb.tables.state.fixed.WindowedState` does.
    """

    cache_size: int = 200_000
    """Windows kept decoded in memory (the hot keys', each with all its windows)."""

    def __init__(
        self,
        window: Window,
        stores: dict[int, RocksDBStore],
        encode_key: Callable[[Any], bytes],
        decode_key: Callable[[bytes], Any],
        decode_value: Callable[[bytes], Any],
    ) -> None:
        super().__init__()
        self.window = window
        self.stores = stores
        """The open store of every partition served (shared with the table's :class:`TableStore`)."""
        self.encode_key, self.decode_key, self.decode_value = encode_key, decode_key, decode_value
        self.by_key: dict[Any, dict[float, Any]] = {}
        """Cached keys: every window of the key (start -> newest value)."""
        self.home: dict[Any, int] = {}
        """The partition of every cached key."""
        self.pending: dict[Any, int] = {}
        """Keys written since the store last caught up (-> the generation of their last write): never evicted."""
        self.fresh: dict[tuple[Any, float], tuple[int, int]] = {}
        """Windows created since the store last caught up -> (generation, partition): not in the store's time keys."""
        self.closed = _Marks()
        """Per partition: windows whose ``end + grace`` is at or before this (ms) have closed."""
        self.expired = _Marks()
        """Per partition: windows whose ``end + expires`` is at or before this (ms) were deleted."""
        self._gen = 0
        self._flushing = -1
        self._cached = 0
        self._limit = self.cache_size
        self.rewindow(window)
        self.rows = WindowRows(self)
        """``(key, (start, end)) -> value``, read from the stores (a read-only mapping)."""

    def rewindow(self, window: Window) -> None:
        """Keep the windows under ``window``'s rules from now on (a table redefined with other settings)."""
        self.window = window
        self._grace_ms = ms(window.grace)
        self._expires_ms = ms(window.expires)
        self._ranges = window.ranges

    def _end(self, start: float) -> float:
        return float(round(start + self.window.size, 9))

    # -- the cache --------------------------------------------------------------------------

    def _fetch(self, key: Any, partition: int) -> dict[float, Any]:
        """``key``'s windows, cached (one range scan of each store on a miss)."""
        inner = self.by_key.get(key)
        if inner is not None:
            return inner
        inner, home = self._scan_key(key)
        if self._cached >= self._limit:
            self._evict()
        self.by_key[key] = inner
        self.home[key] = partition if home is None else home
        self._cached += len(inner)
        return inner

    def _scan_key(self, key: Any) -> tuple[dict[float, Any], int | None]:
        prefix = key_prefix(self.encode_key(key))
        upper, n, decode = _successor(prefix), len(prefix), self.decode_value
        inner: dict[float, Any] = {}
        home = None
        for partition, store in list(self.stores.items()):
            for raw, value in store.scan(prefix, upper):
                inner[time_of(raw[n:])] = decode(value)
                if home is None:
                    home = partition
        return inner, home

    def _evict(self) -> None:
        """Forget the oldest cached keys that are not pending, down to nine tenths of :attr:`cache_size`."""
        target, by_key, pending, home = self.cache_size * 9 // 10, self.by_key, self.pending, self.home
        for key in list(by_key):
            if self._cached <= target:
                break
            if key not in pending:
                self._cached -= len(by_key.pop(key))
                home.pop(key, None)
        self._cached = max(self._cached, 0)
        self._limit = max(self.cache_size, self._cached + self.cache_size // 10)

    # -- reads ------------------------------------------------------------------------------

    def get(self, key: Any, window: tuple[float, float]) -> Any:
        """The value of ``key`` in ``window``, or MISSING (a point read when the key is not cached)."""
        start = float(window[0])
        if self._end(start) != float(window[1]):
            return MISSING
        inner = self.by_key.get(key)
        if inner is not None:
            return inner.get(start, MISSING)
        found = self._stored(key, start)
        return MISSING if found is None else self.decode_value(found[1])

    def _stored(self, key: Any, start: float) -> tuple[int, bytes] | None:
        raw = key_prefix(self.encode_key(key)) + time_bytes(start)
        for partition, store in list(self.stores.items()):
            found = store.fetch(raw)
            if found is not None:
                return partition, found
        return None

    def window_at(self, key: Any, ts: float) -> tuple[float, float] | None:
        """The window reads at time ``ts`` pick: the newest one holding it."""
        ranges = self.window.ranges(ts)
        return tuple(ranges[-1]) if ranges else None  # type: ignore[return-value]

    def is_closed(self, key: Any, window: tuple[float, float]) -> bool:
        """True when ``key``'s window ``(start, end)`` has closed."""
        partition = self.home.get(key)
        if partition is None:
            found = self._stored(key, float(window[0]))
            if found is None:
                return False
            partition = found[0]
        return self._closed_in(partition, window[1])

    def _closed_in(self, partition: int, end: float) -> bool:
        now = self.stream_time.get(partition, NEVER)
        return now != NEVER and ms(end) + self._grace_ms <= ms(now)

    def window_items(self) -> Iterator[tuple[Any, float, Any, int]]:
        """``(key, start, value, partition)`` of every window, read from the stores as it goes."""
        by_key, decode_key, decode_value = self.by_key, self.decode_key, self.decode_value
        for partition, store in list(self.stores.items()):
            current, key, skip = b"", None, False
            for raw, value in store.scan(_BY_KEY, _END_BY_KEY):
                n = int.from_bytes(raw[1:5], "big")
                kb = raw[5 : 5 + n]
                if kb != current:
                    current, key = kb, decode_key(kb)
                    skip = key in by_key
                if not skip:
                    yield key, time_of(raw[5 + n :]), decode_value(value), partition
        stores, home = self.stores, self.home
        for key, inner in list(by_key.items()):
            partition = home.get(key, -1)
            if partition in stores:
                for start, value in list(inner.items()):
                    yield key, start, value, partition

    def items(self) -> Iterator[tuple[tuple[Any, tuple[float, float]], Any]]:
        """``((key, (start, end)), value)`` for every window, read from the stores as it goes."""
        end = self._end
        return (((key, (start, end(start))), value) for key, start, value, _p in self.window_items())

    def frame_rows(self) -> Iterator[tuple[Any, float, float, Any, bool]]:
        """``(key, start, end, value, closed)`` of every window (``as_dataframe``)."""
        end, closed = self._end, self._closed_in
        for key, start, value, partition in self.window_items():
            stop = end(start)
            yield key, start, stop, value, closed(partition, stop)

    def keys(self) -> set[Any]:
        """Keys with at least one window (a scan of the stores)."""
        return {key for key, _start, _value, _p in self.window_items()}

    def __len__(self) -> int:
        return sum(1 for _ in self.window_items())

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

        As :meth:`WindowedState.update <streamnb.tables.state.fixed.WindowedState.update>` does, on the cache.
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
        horizon = newest - self.window.grace + _TIE  # a window ending after this is open
        inner = self.by_key.get(key)
        if inner is None:
            inner = self._fetch(key, partition)
        rows = dirty.rows
        undo = rows.get(key)
        if undo is None:
            undo = rows[key] = KeyWrites()
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
        if refused < len(windows):
            self.pending[key] = self._gen
            if not refused:
                return None
        return self._missed(rows, key, windows, refused, partition)

    def _missed(
        self, rows: dict[Any, KeyWrites], key: Any, windows: list[WindowRange], refused: int, partition: int
    ) -> list[WindowRange] | None:
        """Count the ``refused`` windows of the event (closed); when it got none, it is late: return them all."""
        if refused < len(windows):
            self.count_late(partition, refused, whole_event=False)
            return None
        if not rows[key]:  # the key was not written before in the transaction
            del rows[key]
        self.count_late(partition, refused, whole_event=True)
        return windows

    def _create(
        self, inner: dict[float, Any], undo: dict[float, list[Any]], key: Any, w: WindowRange, partition: int,
        op: Callable[[Any, Any], Any], operand: Any, default: Callable[[], Any] | None,
    ) -> None:
        from .event_time import replace

        if default is not None:
            value = op(default(), operand)
        elif op is replace:
            value = operand
        else:
            raise KeyError(f"{key!r} has no value in window {tuple(w)} and the table has no default")
        start = w[0]
        if start not in undo:
            undo[start] = [partition, MISSING]
        inner[start] = value
        self._cached += 1
        self.home[key] = partition
        self.fresh[(key, start)] = (self._gen, partition)

    # -- the commit protocol ----------------------------------------------------------------

    def changes(self, dirty: Dirty[KeyWrites]) -> Iterator[Change]:
        """A change for every window written or deleted, key ``(key, (start, end))``."""
        by_key, end = self.by_key, self._end
        self._flushing = self._gen
        self._gen += 1
        windows: dict[float, tuple[float, float]] = {}
        new = tuple.__new__
        for key, writes in dirty.rows.items():
            inner = by_key.get(key)
            timestamp = writes.last_write
            for start, (partition, _old) in writes.items():
                value = MISSING if inner is None else inner.get(start, MISSING)
                window = windows.get(start)
                if window is None:
                    window = windows[start] = (start, end(start))
                yield new(Change, ((key, window), partition, value, timestamp))
        yield from self.old_record_deletions(dirty)

    def restore(self, dirty: Dirty[KeyWrites]) -> None:
        """Undo the writes (and stream-time advances, and closings) ``dirty`` records."""
        super().restore(dirty)
        for key, writes in dirty.rows.items():
            inner = self.by_key.get(key)
            if inner is None:  # (pending keys stay cached: only if the commit's flush raced it)
                continue
            for start, (partition, old) in writes.items():
                if old is MISSING:
                    if inner.pop(start, MISSING) is not MISSING:
                        self._cached -= 1
                    self.fresh.pop((key, start), None)
                else:
                    if start not in inner:
                        self._cached += 1
                        self.fresh[(key, start)] = (self._gen, partition)  # (its store row may be gone)
                    inner[start] = old

    def flushed(self) -> None:
        """The records :meth:`changes` gave the last commit are in the store: what they wrote is clean now."""
        done = self._flushing
        if done < 0:
            return
        for key in [k for k, gen in self.pending.items() if gen <= done]:
            del self.pending[key]
        for window in [w for w, (gen, _p) in self.fresh.items() if gen <= done]:
            del self.fresh[window]

    def before_commit(self, txn: Transaction | None, dirty: Dirty[KeyWrites]) -> list[Closed]:
        """Close the windows stream time passed the close time of; delete expired ones.

        Returns the closed windows, per partition in order of window end.
        """
        closed: list[Closed] = []
        same = self._grace_ms == self._expires_ms
        undo = self.undo_log(dirty)
        end = self._end
        for partition, now in list(self.stream_time.items()):
            now_ms = ms(now)
            before = self.closed.marks.get(partition)
            if before is None or now_ms > before:
                for key, start, value in self._due(partition, before, now_ms, self._grace_ms):
                    closed.append(Closed(key, (start, end(start)), value, partition))
                    if same:
                        self._delete(dirty, key, start, partition, value, now)
                undo.append((self.closed, partition, 0, before))
                self.closed.marks[partition] = now_ms
            if same:
                continue
            before = self.expired.marks.get(partition)
            if before is None or now_ms > before:
                for key, start, value in self._due(partition, before, now_ms, self._expires_ms):
                    self._delete(dirty, key, start, partition, value, now)
                undo.append((self.expired, partition, 0, before))
                self.expired.marks[partition] = now_ms
        return closed

    def _due(self, partition: int, after: int | None, upto: int, lag: int) -> list[tuple[Any, float, Any]]:
        """``(key, start, value)`` of ``partition``'s windows with ``after < ms(end) + lag <= upto``, by start."""
        size, end = self.window.size, self._end
        found: dict[tuple[float, bytes], Any] = {}
        store = self.stores.get(partition)
        if store is not None:
            lower = _BY_TIME if after is None else _BY_TIME + time_bytes((after - lag) / 1000 - size - 1.0)
            for raw, _empty in store.scan(lower, _END_BY_TIME):
                start = time_of(raw[1:9])
                due = ms(end(start)) + lag
                if due > upto:
                    break
                if after is None or due > after:
                    found[(start, raw[9:])] = None
        encode = self.encode_key
        for (key, start), (_gen, p) in list(self.fresh.items()):
            if p == partition:
                due = ms(end(start)) + lag
                if due <= upto and (after is None or due > after):
                    found[(start, encode(key))] = key
        out = []
        by_key, decode_key = self.by_key, self.decode_key
        for (start, kb), known in sorted(found.items(), key=lambda item: item[0]):
            key = decode_key(kb) if known is None else known
            inner = by_key.get(key)
            if inner is not None:
                value = inner.get(start, MISSING)
            else:
                raw_value = None if store is None else store.fetch(key_prefix(kb) + time_bytes(start))
                value = MISSING if raw_value is None else self.decode_value(raw_value)
            if value is not MISSING:
                out.append((key, start, value))
        return out

    def _delete(self, dirty: Dirty[KeyWrites], key: Any, start: float, partition: int, value: Any, now: float) -> None:
        inner = self._fetch(key, partition)
        writes = dirty.rows.get(key)
        if writes is None:
            writes = dirty.rows[key] = KeyWrites()
            writes.last_write = now
        if start not in writes:
            writes[start] = [partition, value]
        if inner.pop(start, MISSING) is not MISSING:
            self._cached -= 1
        self.pending[key] = self._gen

    def after_commit(self) -> None:
        """The table applies the records to the store, then calls :meth:`flushed`."""

    # -- the store side ---------------------------------------------------------------------

    def store_ops(
        self, pairs: Iterable[tuple[bytes | None, bytes | None]]
    ) -> Iterator[tuple[bytes, bytes | None]]:
        """The store writes of changelog records ``(key, value or None)``: the window by key and by time."""
        decode_key, encode_key = self.decode_key, self.encode_key
        for kb, vb in pairs:
            if kb is None:
                continue
            try:
                key, (start, _end) = decode_key(kb)
                at = time_bytes(float(start))
            except (TypeError, ValueError):
                continue  # not a window (an older version's stream time): see :meth:`legacy_stream_time`
            k = encode_key(key)
            yield key_prefix(k) + at, vb
            yield _BY_TIME + at + k, None if vb is None else b""

    def legacy_stream_time(self, pairs: Iterable[tuple[bytes | None, bytes | None]], partition: int) -> None:
        """Apply the ``"__stream_time__"`` changelog records of older versions among ``pairs``."""
        import json

        for kb, vb in pairs:
            if kb is not None and kb.startswith(b'"__') and self.decode_key(kb) == STREAM_TIME_KEY:
                self.load_stream_time(STREAM_TIME_KEY, MISSING if vb is None else json.loads(vb), partition)

    def load(self, key: Any, value: Any, partition: int) -> None:
        """Recovery applies changelog records to the store instead (see the table's :class:`TableStore`)."""
        raise NotImplementedError("a stored table recovers through its store")

    def loaded(self) -> None:
        """Nothing to rebuild: the stores are the index."""

    def serve(self, partition: int, store: RocksDBStore) -> None:
        """Serve the windows of ``partition`` from ``store`` (its changelog and stream time were read to the end)."""
        self.stores[partition] = store
        if partition not in self.stream_time:  # (a changelog of a version before stream time: its newest start)
            for raw, _empty in store.scan(_BY_TIME, _END_BY_TIME, backwards=True):
                self.stream_time[partition] = time_of(raw[1:9])
                break
        now = self.stream_time.get(partition)
        if now is None:
            self.closed.marks.pop(partition, None)
        else:
            self.closed.marks[partition] = ms(now)  # (windows closed before are not closed again)
        self.expired.marks.pop(partition, None)  # (the first commit looks from the oldest window on)

    def drop_partitions(self, partitions: set[int]) -> bool:
        """Stop serving ``partitions``: their stores close (the windows stay on disk), the cache forgets them."""
        dropped = False
        for partition in partitions:
            store = self.stores.pop(partition, None)
            if store is not None:
                store.close()
                dropped = True
            self.closed.marks.pop(partition, None)
            self.expired.marks.pop(partition, None)
        for key in [k for k, p in self.home.items() if p in partitions]:
            self._cached -= len(self.by_key.pop(key, ()))
            del self.home[key]
            self.pending.pop(key, None)
        for window in [w for w, (_g, p) in self.fresh.items() if p in partitions]:
            del self.fresh[window]
        self.drop_stream_time(partitions)
        return dropped

    def close(self) -> None:
        """Stop serving every partition (the app stopped)."""
        self.drop_partitions(set(self.stores))
        self.by_key.clear()
        self.home.clear()
        self.pending.clear()
        self.fresh.clear()
        self._cached = 0
