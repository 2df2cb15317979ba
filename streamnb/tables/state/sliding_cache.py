"""The cache and the reads of a sliding table whose buckets live in its stores (``rocksdb://``).

:class:`SlidingCache` is the read side of
:class:`~streamnb.tables.state.stored_sliding.StoredSlidingState`: a
:class:`~streamnb.tables.state.window_cache.WindowCache` whose window ids
are a key's *buckets* (their event time in ms) and frozen finals (``(start,
end)`` in ms), stored in layout ``"sliding"``
(:class:`~streamnb.tables.stores.windowkeys.SlidingKeys`). A key's windows
follow from its buckets by the rules of
:mod:`~streamnb.tables.state.sliding_rules`: one window is merged from one
range scan of the key (or the cache), scans (``items()``, ``len()``,
DataFrames) read the stores key by key as they go.

Example (what the table's views do)::

    cache.get("ann", (50.0, 60.0))           # one window: merged from the key's buckets
    list(cache.items())                      # every window, from the stores
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from typing import Any

from ...timeunits import ms, seconds
from ...transaction import MISSING
from ..stores.rocksdb import RocksDBStore
from ..stores.windowkeys import (
    BUCKET,
    BY_KEY,
    BY_TIME,
    END_BY_KEY,
    FINAL,
    SLIDING,
    SlidingKeys,
    WindowKeys,
    split_key,
    time_bytes,
    time_of,
)
from ..windows import SlidingWindow
from .event_time import TimeIndex
from .sliding_rules import Win, derived, fold
from .window_cache import WindowCache

__all__ = ["SlidingCache"]


class SlidingCache(WindowCache):
    """The buckets and frozen finals of the partitions served, read through a cache (see the module docstring).

    A key's windows in the cache are ``{t: bucket, (start, end): frozen final}`` (ms).
    """

    layout = SLIDING
    keys_class: type[WindowKeys] = SlidingKeys

    def __init__(
        self,
        window: SlidingWindow,
        merge: Callable[[Any, Any], Any],
        stores: dict[int, RocksDBStore],
        encode_key: Callable[[Any], bytes],
        decode_key: Callable[[bytes], Any],
        decode_value: Callable[[bytes], Any],
    ) -> None:
        self.merge = merge
        super().__init__(window, stores, encode_key, decode_key, decode_value)
        self.times: dict[Any, list[int]] = {}
        """Cached keys: their sorted bucket times."""
        self.refused: dict[Any, set[Win]] = {}
        """``key -> windows`` an event would have made, closed when it came: never made (in memory, as there)."""
        self.extra: dict[Any, set[Win]] = {}
        """``key -> windows`` made by an event that went into no window (in memory, as there)."""
        self.made: list[tuple[Any, int, int, int]] = []
        """Windows made in the open transaction ``(key, start, end, partition)``: they close at the next commit
        if they are due (even at the stream time the last commit reached)."""
        self.closing_extra = TimeIndex()  # (key, window) of self.extra, to close
        self.expiring_extra = TimeIndex()  # and to forget

    def rewindow(self, window: SlidingWindow) -> None:
        """Keep the buckets under ``window``'s rules from now on."""
        self.window = window
        self.close_lag = window.closes_at(0)
        self.expire_lag = window.expires_at(0)
        self._keep = 2 * window.size_ms + max(window.expires_ms, window.grace_ms) + 2  # how long a bucket is kept

    # -- ids: a bucket's time, a final's (start, end), in ms -------------------------------

    def id_of(self, window: tuple[float, float]) -> Win:
        """The id of a frozen final ``(start, end)`` (seconds)."""
        return ms(window[0]), ms(window[1])

    def bounds(self, wid: Any) -> tuple[float, float]:
        """``(start, end)`` in seconds of a final; a bucket's time twice."""
        if isinstance(wid, tuple):
            return seconds(wid[0]), seconds(wid[1])
        return seconds(wid), seconds(wid)

    def id_bytes(self, wid: Any) -> bytes:
        """A bucket's time, or a final's start and end, after the key's bytes."""
        if isinstance(wid, tuple):
            return time_bytes(seconds(wid[0])) + time_bytes(seconds(wid[1]))
        return time_bytes(seconds(wid))

    def id_from(self, data: bytes) -> Any:
        """The bucket or final :meth:`id_bytes` wrote as ``data``."""
        if len(data) > 8:
            return ms(time_of(data[:8])), ms(time_of(data[8:16]))
        return ms(time_of(data))

    def time_key(self, kb: bytes, wid: Any) -> bytes:
        """The by-time key of key bytes ``kb``'s bucket or final ``wid``."""
        if isinstance(wid, tuple):
            return BY_TIME + time_bytes(seconds(wid[1])) + FINAL + time_bytes(seconds(wid[0])) + kb
        return BY_TIME + time_bytes(seconds(wid)) + BUCKET + kb

    def split_time(self, raw: bytes) -> tuple[Any, bytes]:
        """``(bucket or final, key bytes)`` of a by-time key."""
        if raw[9:10] == FINAL:
            return (ms(time_of(raw[10:18])), ms(time_of(raw[1:9]))), raw[18:]
        return ms(time_of(raw[1:9])), raw[10:]

    # -- the cache: a key's buckets and finals, and its bucket times ----------------------

    def _fetch(self, key: Any, partition: int) -> dict[Any, Any]:
        inner = self.by_key.get(key)
        if inner is None:
            inner = super()._fetch(key, partition)
            self.times[key] = sorted(w for w in inner if not isinstance(w, tuple))
        return inner

    def _evict(self) -> None:
        super()._evict()
        self._forget_uncached()

    def _forget_uncached(self) -> None:
        by_key = self.by_key
        for key in [k for k in self.times if k not in by_key]:
            del self.times[key]

    def _view(self, key: Any) -> tuple[dict[Any, Any], list[int], int | None]:
        """``key``'s buckets and finals, its bucket times and partition: cached, else read (not cached)."""
        inner = self.by_key.get(key)
        if inner is not None:
            return inner, self.times[key], self.home.get(key)
        inner, homes = self._scan_key(key)
        return inner, sorted(w for w in inner if not isinstance(w, tuple)), homes[0] if homes else None

    # -- reads ------------------------------------------------------------------------------

    def get(self, key: Any, window: tuple[float, float]) -> Any:
        """``key``'s value over ``window`` (``(start, end)``, inclusive): a frozen final, else merged now."""
        start, end = ms(window[0]), ms(window[1])
        inner, times, _home = self._view(key)
        final = inner.get((start, end), MISSING)
        return final if final is not MISSING else fold(self.merge, times, inner, start, end)

    def window_at(self, key: Any, ts: float) -> tuple[float, float] | None:
        """The window ending at ``ts``: ``[ts - size, ts]``."""
        start, end = self.window.left(ms(ts))
        return seconds(start), seconds(end)

    def is_closed(self, key: Any, window: tuple[float, float]) -> bool:
        """True once stream time passed the window's end plus grace."""
        home = self._view(key)[2]
        return self._closed_in(0 if home is None else home, window[1])

    def _key_rows(
        self, key: Any, inner: dict[Any, Any], times: list[int]
    ) -> Iterator[tuple[Win, Any]]:
        """``key``'s windows with their values (a frozen final where there is one), as ``items()`` on memory."""
        seen: set[Win] = set()
        for win in derived(self.window, times, self.refused.get(key, ()), self.extra.get(key, ())):
            if win in seen:
                continue
            seen.add(win)
            value = inner.get(win, MISSING)
            if value is MISSING:
                value = fold(self.merge, times, inner, *win)
            if value is not MISSING:
                yield win, value
        for wid, value in list(inner.items()):
            if isinstance(wid, tuple) and wid not in seen:
                yield wid, value

    def window_rows(self) -> Iterator[tuple[Any, Win, Any, int]]:
        """``(key, (start, end) in ms, value, partition)`` of every window, read from the stores as it goes.

        The stores are read together, in key order, so that a key whose buckets several partitions' stores
        hold (a table written under another key than the stream's) has its windows merged from all of them.
        """
        by_key, decode_key, decode_value, id_from = self.by_key, self.decode_key, self.decode_value, self.id_from
        scans = [
            ((raw, value, partition) for raw, value in store.scan(BY_KEY, END_BY_KEY))
            for partition, store in list(self.stores.items())
        ]
        current, key, skip, home = b"", None, False, -1
        inner: dict[Any, Any] = {}
        for raw, value, partition in heapq.merge(*scans, key=_first):
            kb, rest = split_key(raw)
            if kb != current:
                if inner and not skip:
                    yield from self._rows_of(key, inner, home)
                current, key, inner, home = kb, decode_key(kb), {}, partition
                skip = key in by_key
            if not skip:
                inner[id_from(rest)] = decode_value(value)
        if inner and not skip:
            yield from self._rows_of(key, inner, home)
        stores, homes = self.stores, self.home
        for key, inner in list(by_key.items()):
            partition = homes.get(key, -1)
            if partition in stores:
                yield from self._rows_of(key, inner, partition, self.times[key])

    def _rows_of(
        self, key: Any, inner: dict[Any, Any], partition: int, times: list[int] | None = None
    ) -> Iterator[tuple[Any, Win, Any, int]]:
        if times is None:
            times = sorted(w for w in inner if not isinstance(w, tuple))
        for win, value in self._key_rows(key, inner, times):
            yield key, win, value, partition

    def items(self) -> Iterator[tuple[tuple[Any, tuple[float, float]], Any]]:
        """``((key, (start, end)), value)`` for every window, read from the stores as it goes."""
        return (((key, (seconds(s), seconds(e))), value) for key, (s, e), value, _p in self.window_rows())

    def frame_rows(self) -> Iterator[tuple[Any, float, float, Any, bool]]:
        """``(key, start, end, value, closed)`` of every window (``as_dataframe``)."""
        closed = self._closed_in
        for key, (s, e), value, partition in self.window_rows():
            yield key, seconds(s), seconds(e), value, closed(partition, seconds(e))

    def keys(self) -> set[Any]:
        """Keys with buckets or frozen finals kept (a scan of the stores)."""
        return {key for key, _w, _v, _p in self.window_rows()}

    def __len__(self) -> int:
        return sum(1 for _ in self.window_rows())

    # -- serving partitions ------------------------------------------------------------------

    def drop_partitions(self, partitions: set[int]) -> bool:
        """Stop serving ``partitions``: their stores close, the cache forgets their keys."""
        for key in [k for k, p in self.home.items() if p in partitions]:
            self.refused.pop(key, None)
            self.extra.pop(key, None)
        dropped = super().drop_partitions(partitions)
        self._forget_uncached()
        self.closing_extra.drop(partitions)
        self.expiring_extra.drop(partitions)
        return dropped

    def close(self) -> None:
        """The app stopped: the stores are opened again for reading only, the cache is emptied."""
        super().close()
        self.times.clear()
        self.made.clear()


def _first(row: tuple[bytes, bytes, int]) -> bytes:
    return row[0]
