"""The cache and the reads of a tumbling or hopping table whose windows live in its stores (``rocksdb://``).

:class:`WindowCache` is what :class:`~streamnb.tables.state.stored_windows.StoredWindowedState`
reads through: the stores of the partitions served (windows by key and by
time, :mod:`~streamnb.tables.stores.windowkeys`) and a bounded cache of the
hot keys, each with *all* its windows and their newest values (a key
written and not yet flushed is never evicted). One window is a point read,
a key's windows one range scan, scans (``items()``, ``len()``, DataFrames)
read the stores as they go, the cache overriding what it holds.

Example (what the table's views do)::

    cache.get("ann", (60.0, 120.0))          # one window: cache, else a point read
    list(cache.items())                      # every window, from the stores
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from ...timeunits import ms
from ...transaction import MISSING
from ..stores.rocksdb import RocksDBStore
from ..stores.windowkeys import (
    BY_KEY,
    BY_TIME,
    END_BY_KEY,
    END_BY_TIME,
    WindowKeys,
    key_prefix,
    split_time_key,
    split_window_key,
    successor,
    window_key,
)
from ..windows import Window
from .event_time import NEVER, EventTimeState, WindowRows

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
        self.keys_of = WindowKeys(encode_key, decode_key)
        """How the changelog records of the table go to its stores (``keys_of.ops(records)``)."""
        self.by_key: dict[Any, dict[float, Any]] = {}
        """Cached keys: every window of the key (start -> newest value)."""
        self.home: dict[Any, int] = {}
        """The partition of every cached key."""
        self.pending: dict[Any, int] = {}
        """Keys written since the store last caught up (-> the generation of their last write): never evicted."""
        self.fresh: dict[tuple[Any, float], tuple[int, int]] = {}
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

    def rewindow(self, window: Window) -> None:
        """Keep the windows under ``window``'s rules from now on (a table redefined with other settings)."""
        self.window = window
        self._grace = window.grace
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
        upper, decode = successor(prefix), self.decode_value
        inner: dict[float, Any] = {}
        home = None
        for partition, store in list(self.stores.items()):
            for raw, value in store.scan(prefix, upper):
                inner[split_window_key(raw)[1]] = decode(value)
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
        start = float(window[0])  # (the end follows from the start, as in memory)
        inner = self.by_key.get(key)
        if inner is not None:
            return inner.get(start, MISSING)
        found = self._stored(key, start)
        return MISSING if found is None else self.decode_value(found[1])

    def _stored(self, key: Any, start: float) -> tuple[int, bytes] | None:
        raw = window_key(self.encode_key(key), start)
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
        inner = self.by_key.get(key)
        partition = None if inner is None or float(window[0]) not in inner else self.home.get(key)
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
            for raw, value in store.scan(BY_KEY, END_BY_KEY):
                kb, start = split_window_key(raw)
                if kb != current:
                    current, key = kb, decode_key(kb)
                    skip = key in by_key
                if not skip:
                    yield key, start, decode_value(value), partition
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
        if partition not in self.stream_time:  # (a changelog of a version before stream time: its newest start)
            for raw, _empty in store.scan(BY_TIME, END_BY_TIME, backwards=True):
                self.stream_time[partition] = split_time_key(raw)[0]
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
        """The app stopped: the stores are opened again for reading only (windows stay readable, no lock held)."""
        for store in list(self.stores.values()):
            store.reopen_read_only()
        self.closed.marks.clear()
        self.expired.marks.clear()
        self.by_key.clear()
        self.home.clear()
        self.pending.clear()
        self.fresh.clear()
        self._cached = 0
