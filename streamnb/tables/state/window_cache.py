"""The cache and the reads of a windowed table whose windows live in its stores (``rocksdb://``).

:class:`WindowCache` is what :class:`~streamnb.tables.state.stored_windows.StoredWindowedState`
(tumbling and hopping windows) and :class:`~streamnb.tables.state.stored_sessions.StoredSessionState`
read through: the stores of the partitions served (windows by key and by
time, :mod:`~streamnb.tables.stores.windowkeys`) and a bounded cache of the
hot keys, each with *all* its windows and their newest values (a key
written and not yet flushed is never evicted). One window is a point read,
a key's windows one range scan, scans (``items()``, ``len()``, DataFrames)
read the stores as they go, the cache overriding what it holds.
At a commit, the windows due to close or expire are one range scan of the
windows by time (:meth:`WindowCache.due`).

A window is known by its *id* in the cache (a key's windows are ``{id:
value}``): its start for tumbling and hopping windows (the end follows from
it), ``(start, end)`` in milliseconds for sessions; the subclass says how an
id is written in the store's keys and which times it stands for.

Example (what the table's views do)::

    cache.get("ann", (60.0, 120.0))          # one window: cache, else a point read
    list(cache.items())                      # every window, from the stores
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ...timeunits import ms
from ...transaction import MISSING
from ..stores.rocksdb import RocksDBStore
from ..stores.windowkeys import (
    BY_KEY,
    BY_TIME,
    END_BY_KEY,
    END_BY_TIME,
    LAYOUT,
    WindowKeys,
    key_prefix,
    split_key,
    successor,
    time_bytes,
    time_of,
)
from .event_time import NEVER, STREAM_TIME_KEY, EventTimeState, WindowRows

__all__ = ["Marks", "WindowCache"]


class Marks:
    """Watermarks per partition a commit moves on, put back (by ``restore_popped``) when it fails."""

    def __init__(self) -> None:
        self.marks: dict[int, int] = {}

    def add(self, partition: int, at: int, item: Any) -> None:
        """Put back the mark ``item`` (None: none) of ``partition`` (the oldest wins)."""
        if item is None:
            self.marks.pop(partition, None)
        else:
            self.marks[partition] = min(self.marks.get(partition, item), item)

class WindowCache(EventTimeState):
    """The windows of the partitions served, read from their stores through a cache (see the module docstring)."""

    cache_size: int = 200_000
    """Windows kept decoded in memory, plus one per cached key (the hot keys', each with all its windows:
    a key whose windows all expired or were refused still counts)."""

    layout = LAYOUT
    """The layout of the stores (:attr:`RocksDBStore.layout <streamnb.tables.stores.rocksdb.RocksDBStore.layout>`)."""

    def __init__(
        self,
        window: Any,
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
        self.keys_of = self.keys_class(encode_key, decode_key)
        """How the changelog records of the table go to its stores (``keys_of.ops(records)``)."""
        self.by_key: dict[Any, dict[Any, Any]] = {}
        """Cached keys: every window of the key (window id -> newest value)."""
        self.home: dict[Any, int] = {}
        """The partition of every cached key (the one that wrote it last)."""
        self.elsewhere: dict[Any, set[int]] = {}
        """Cached keys whose windows are in other stores too (a key written from several partitions): those."""
        self.moved: dict[tuple[Any, Any], tuple[int, ...]] = {}
        """Windows written in the open transaction from another partition than the stores that may hold them."""
        self._leaving: list[tuple[Any, Any, int]] = []
        self.pending: dict[Any, int] = {}
        """Keys written since the store last caught up (-> the generation of their last write): never evicted."""
        self.fresh: dict[tuple[Any, Any], tuple[int, int]] = {}
        """Windows created since the store last caught up -> (generation, partition): not in the store's time keys."""
        self.closed = Marks()
        """Per partition: windows whose ``end + grace`` is at or before this (ms) have closed."""
        self.expired = Marks()
        """Per partition: windows whose ``end + expires`` is at or before this (ms) were deleted."""
        self._gen = 0
        self._flushing = -1
        self._cached = 0
        self._limit = self.cache_size
        self.rewindow(window)
        self.rows = WindowRows(self)
        """``(key, (start, end)) -> value``, read from the stores (a read-only mapping)."""

    keys_class: type[WindowKeys] = WindowKeys
    """How the table's changelog records go to its stores."""

    def rewindow(self, window: Any) -> None:
        """Keep the windows under ``window``'s rules from now on (a table redefined with other settings)."""
        self.window = window
        self._grace = window.grace
        self._grace_ms = ms(window.grace)
        self._expires_ms = ms(window.expires)
        self._ranges = window.ranges
        self.close_lag = self._grace_ms
        """A window closes once stream time reaches its end plus this (ms)."""
        self.expire_lag = self._expires_ms
        """A closed window is deleted once stream time reaches its end plus this (ms)."""

    def _end(self, start: float) -> float:
        return float(round(start + self.window.size, 9))

    # -- window ids (tumbling and hopping: the start; sessions override these) ---------------

    def id_of(self, window: tuple[float, float]) -> Any:
        """The id of the window ``(start, end)`` in the cache."""
        return float(window[0])

    def bounds(self, wid: Any) -> tuple[float, float]:
        """``(start, end)`` in seconds of the window whose id is ``wid``."""
        return wid, self._end(wid)

    def id_bytes(self, wid: Any) -> bytes:
        """How the window ``wid`` follows its key's bytes in the store's keys by key."""
        return time_bytes(wid)

    def id_from(self, data: bytes) -> Any:
        """The window id that :meth:`id_bytes` wrote as ``data``."""
        return time_of(data)

    def time_key(self, kb: bytes, wid: Any) -> bytes:
        """The window-by-time key of key bytes ``kb``'s window ``wid`` (what :meth:`split_time` reads)."""
        return BY_TIME + time_bytes(wid) + kb

    def split_time(self, raw: bytes) -> tuple[Any, bytes]:
        """``(window id, key bytes)`` of a window-by-time key."""
        return time_of(raw[1:9]), raw[9:]

    def time_floor(self, due: int, lag: int) -> bytes:
        """A by-time key at or before every window due (end plus ``lag``) after ``due`` ms."""
        return BY_TIME + time_bytes((due - lag) / 1000 - self.window.size - 1.0)

    # -- the cache --------------------------------------------------------------------------

    def _fetch(self, key: Any, partition: int) -> dict[Any, Any]:
        """``key``'s windows, cached (one range scan of each store on a miss)."""
        inner = self.by_key.get(key)
        if inner is not None:
            return inner
        inner, homes = self._scan_key(key)
        if self._cached + len(self.by_key) >= self._limit:  # (a key counts too: its windows may all be gone)
            self._evict()
        self.by_key[key] = inner
        self.home[key] = homes[0] if homes else partition
        if len(homes) > 1:
            self.elsewhere[key] = set(homes[1:])
        self._cached += len(inner)
        return inner

    def _scan_key(self, key: Any) -> tuple[dict[Any, Any], list[int]]:
        """``key``'s windows in the stores, and the partitions whose stores hold them."""
        prefix = key_prefix(self.encode_key(key))
        upper, decode = successor(prefix), self.decode_value
        inner: dict[Any, Any] = {}
        homes: list[int] = []
        id_from = self.id_from
        for partition, store in list(self.stores.items()):
            for raw, value in store.scan(prefix, upper):
                inner[id_from(split_key(raw)[1])] = decode(value)
                if not homes or homes[-1] != partition:
                    homes.append(partition)
        return inner, homes

    def rehome(self, key: Any, partition: int) -> None:
        """``key`` is written from ``partition``: its windows in the store of its old partition stay known."""
        old = self.home.get(key)
        if old is not None and old != partition:
            self.elsewhere.setdefault(key, set()).add(old)
        self.home[key] = partition

    def _evict(self) -> None:
        """Forget the oldest cached keys that are not pending, down to nine tenths of :attr:`cache_size`."""
        target, by_key, pending, home = self.cache_size * 9 // 10, self.by_key, self.pending, self.home
        for key in list(by_key):
            if self._cached + len(by_key) <= target:
                break
            if key not in pending:
                self._cached -= len(by_key.pop(key))
                home.pop(key, None)
                self.elsewhere.pop(key, None)
        self._cached = max(self._cached, 0)
        self._limit = max(self.cache_size, self._cached + len(by_key) + self.cache_size // 10)

    # -- reads ------------------------------------------------------------------------------

    def get(self, key: Any, window: tuple[float, float]) -> Any:
        """The value of ``key`` in ``window``, or MISSING (a point read when the key is not cached)."""
        wid = self.id_of(window)  # (tumbling, hopping: the end follows from the start, as in memory)
        inner = self.by_key.get(key)
        if inner is not None:
            return inner.get(wid, MISSING)
        found = self._stored(key, wid)
        return MISSING if found is None else self.decode_value(found[1])

    def _stored(self, key: Any, wid: Any) -> tuple[int, bytes] | None:
        raw = key_prefix(self.encode_key(key)) + self.id_bytes(wid)
        for partition, store in list(self.stores.items()):
            found = store.fetch(raw)
            if found is not None:
                return partition, found
        return None

    def window_at(self, key: Any, ts: float) -> tuple[float, float] | None:
        """The window reads at time ``ts`` pick: the newest one holding it."""
        ranges = self.window.ranges(ts)
        return tuple(ranges[-1]) if ranges else None

    def is_closed(self, key: Any, window: tuple[float, float]) -> bool:
        """True when ``key``'s window ``(start, end)`` has closed."""
        inner, wid = self.by_key.get(key), self.id_of(window)
        partition = None if inner is None or wid not in inner else self.home.get(key)
        if partition is None:
            found = self._stored(key, wid)
            if found is None:
                return False
            partition = found[0]
        return self._closed_in(partition, window[1])

    def _closed_in(self, partition: int, end: float) -> bool:
        now = self.stream_time.get(partition, NEVER)
        return now != NEVER and ms(end) + self.close_lag <= ms(now)

    def window_items(self) -> Iterator[tuple[Any, Any, Any, int]]:
        """``(key, window id, value, partition)`` of every window, read from the stores as it goes."""
        by_key, decode_key, decode_value, id_from = self.by_key, self.decode_key, self.decode_value, self.id_from
        for partition, store in list(self.stores.items()):
            current, key, skip = b"", None, False
            for raw, value in store.scan(BY_KEY, END_BY_KEY):
                kb, rest = split_key(raw)
                if kb != current:
                    current, key = kb, decode_key(kb)
                    skip = key in by_key
                if not skip:
                    yield key, id_from(rest), decode_value(value), partition
        stores, home = self.stores, self.home
        for key, inner in list(by_key.items()):
            partition = home.get(key, -1)
            if partition in stores:
                for start, value in list(inner.items()):
                    yield key, start, value, partition

    def items(self) -> Iterator[tuple[tuple[Any, tuple[float, float]], Any]]:
        """``((key, (start, end)), value)`` for every window, read from the stores as it goes."""
        bounds = self.bounds
        return (((key, bounds(wid)), value) for key, wid, value, _p in self.window_items())

    def frame_rows(self) -> Iterator[tuple[Any, float, float, Any, bool]]:
        """``(key, start, end, value, closed)`` of every window (``as_dataframe``)."""
        bounds, closed = self.bounds, self._closed_in
        for key, wid, value, partition in self.window_items():
            start, stop = bounds(wid)
            yield key, start, stop, value, closed(partition, stop)

    def has_key(self, key: Any) -> bool:
        """True when ``key`` has at least one window (the cache, else one seek per store)."""
        inner = self.by_key.get(key)
        if inner is not None:
            return bool(inner)
        prefix = key_prefix(self.encode_key(key))
        upper = successor(prefix)
        return any(next(store.scan(prefix, upper), None) is not None for store in list(self.stores.values()))

    def estimate(self) -> int:
        """About the number of windows, without a scan (RocksDB's estimate: two keys a window)."""
        return sum(store.estimate_rows() for store in list(self.stores.values())) // 2 + len(self.fresh)

    def keys(self) -> set[Any]:
        """Keys with at least one window (a scan of the stores)."""
        return {key for key, _start, _value, _p in self.window_items()}

    def __len__(self) -> int:
        return sum(1 for _ in self.window_items())

    # -- serving partitions ------------------------------------------------------------------

    def serve(self, partition: int, store: RocksDBStore) -> None:
        """Serve the windows of ``partition`` from ``store`` (its changelog and stream time were read to the end)."""
        self.stores[partition] = store
        if partition not in self.stream_time:  # (a changelog of a version before stream time: as in memory,
            for raw, _empty in store.scan(BY_TIME, END_BY_TIME, backwards=True):  # its newest start, or end)
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
            self.elsewhere.pop(key, None)
            self.pending.pop(key, None)
        for window in [w for w, (_g, p) in self.fresh.items() if p in partitions]:
            del self.fresh[window]
        self.drop_stream_time(partitions)
        return dropped

    def close(self) -> None:
        """The app stopped: the stores are opened again for reading only (windows stay readable, no lock held)."""
        for store in list(self.stores.values()):
            store.reopen_read_only()
        self.closed.marks.clear()
        self.expired.marks.clear()
        self.by_key.clear()
        self.home.clear()
        self.elsewhere.clear()
        self.pending.clear()
        self.fresh.clear()
        self._cached = 0

    # -- the commit protocol (shared) ---------------------------------------------------------

    def due(self, partition: int, after: int | None, upto: int, lag: int) -> list[tuple[Any, Any, Any]]:
        """``(key, window id, value)`` of ``partition``'s windows with ``after < ms(end) + lag <= upto``, by end.

        One range scan of the windows by time, plus the windows created since
        the store last caught up (not in it yet); those created in the current
        transaction are due at ``after`` too (a session may close at the very
        stream time it was made at, which the last commit reached already). Windows of cached keys read their value from
        the cache, which may have deleted them (skipped).
        """
        found: dict[tuple[int, bytes, Any], Any] = {}
        bounds, split_time = self.bounds, self.split_time
        store = self.stores.get(partition)
        if store is not None:
            lower = BY_TIME if after is None else self.time_floor(after, lag)
            for raw, _empty in store.scan(lower, END_BY_TIME):
                wid, kb = split_time(raw)
                at = ms(bounds(wid)[1]) + lag
                if at > upto:
                    break
                if after is None or at > after:
                    found[(at, kb, wid)] = None
        encode, now = self.encode_key, self._gen
        for (key, wid), (gen, p) in list(self.fresh.items()):
            if p == partition:
                at = ms(bounds(wid)[1]) + lag
                if at <= upto and (after is None or at > after or (at == after and gen == now)):
                    found[(at, encode(key), wid)] = key
        out = []
        by_key, decode_key = self.by_key, self.decode_key
        for (_at, kb, wid), known in sorted(found.items(), key=lambda item: item[0][:2]):
            key = decode_key(kb) if known is None else known
            inner = by_key.get(key)
            if inner is not None:
                value = inner.get(wid, MISSING)
            else:
                raw_value = None if store is None else store.fetch(key_prefix(kb) + self.id_bytes(wid))
                value = MISSING if raw_value is None else self.decode_value(raw_value)
            if value is not MISSING:
                out.append((key, wid, value))
        return out

    def note_move(self, key: Any, wid: Any, partition: int) -> None:
        """``key``'s stored window ``wid`` is written from ``partition``: if another partition's store holds it
        (a table written under another key than the stream's), that copy goes once the commit lands."""
        made = self.fresh.get((key, wid))
        if made is None:
            home = self.home.get(key, partition)
            others = self.elsewhere.get(key)
            if others:  # (the key's windows are in several stores: the window may be in any of them)
                was = tuple(p for p in {home, *others} if p != partition)
                if was:
                    self.moved[(key, wid)] = was
                return
        elif made[0] > self._flushing:
            return  # made in this transaction: in no store yet
        else:
            home = made[1]  # (in the commit being written now)
        if home != partition:
            self.moved[(key, wid)] = (home,)

    def forget_moves(self) -> None:
        """The transaction was rolled back: no window leaves its store."""
        self.moved.clear()
        self._leaving.clear()

    def leaving_home(self, window: tuple[Any, Any], partition: int) -> None:
        """``window`` (key, id) is committed to ``partition``: its old partition's copy goes at the flush."""
        was = self.moved.pop(window, None)
        if was is not None:
            leaving = self._leaving
            for old in was:
                if old != partition:
                    leaving.append((*window, old))
            self.rehome(window[0], partition)

    def leave(self) -> None:
        """Delete from their old partition's store the windows the last commit wrote to another partition.

        A key written from events of several partitions (a table not
        partitioned by the stream's key) keeps one copy of each window, in
        the store of the partition that wrote it last, as in memory.
        """
        stores, encode = self.stores, self.encode_key
        for key, wid, partition in self._leaving:
            store = stores.get(partition)
            if store is not None and not store.read_only:
                kb = encode(key)
                by_key = key_prefix(kb) + self.id_bytes(wid)
                store.write([(by_key, None), (self.time_key(kb, wid), None)], None)
        self._leaving.clear()

    def flushed(self) -> None:
        """The records the last commit's ``changes`` gave are in the store: what they wrote is clean now."""
        self.leave()
        done = self._flushing
        if done < 0:
            return
        for key in [k for k, gen in self.pending.items() if gen <= done]:
            del self.pending[key]
        for window in [w for w, (gen, _p) in self.fresh.items() if gen <= done]:
            del self.fresh[window]
        self._limit = self.cache_size  # (the next miss evicts what a large commit kept beyond the size)

    def after_commit(self) -> None:
        """The table applies the records to the store, then calls :meth:`flushed`."""

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
