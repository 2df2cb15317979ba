"""How a tumbling or hopping table's windows are keyed in its RocksDB (``rocksdb://``).

Two keys per window, in the store of its partition:

- ``b"w" + len(key) + key + start`` -> the window's value (the changelog
  value, byte for byte): a key's windows are one range scan, in window order;
- ``b"x" + start + key`` -> nothing: the windows in time order, so those
  that close or expire at a commit are one range scan too.

``key`` is the table key as the changelog's key codec writes it (4 bytes
of length before it keep one key's prefix from matching a longer key),
``start`` the window start as 8 bytes that sort as the float does.

Session windows (layout ``"sessions"``, :class:`SessionKeys`) have no end
that follows from their start, so both are in the keys: ``b"w" + len(key)
+ key + start + end`` (a key's sessions in order) and ``b"x" + end + start
+ key`` (in order of end, which is what their closing and expiry follow).

Sliding windows (layout ``"sliding"``, :class:`SlidingKeys`) keep their
*buckets* (the events of one millisecond, folded) and the frozen finals of
closed windows: ``b"w" + len(key) + key + t`` (a bucket) or ``+ start + end``
(a final), and by time ``b"x" + t + b"b" + key`` or ``b"x" + end + b"f" +
start + key`` (closing and expiry follow the bucket times and final ends).

>>> time_of(time_bytes(-12.5)), time_bytes(-1.0) < time_bytes(0.0) < time_bytes(0.5) < time_bytes(10.0)
(-12.5, True)
>>> split_window_key(window_key(b'"ann"', 60.0)), split_time_key(time_key(60.0, b'"ann"'))
((b'"ann"', 60.0), (60.0, b'"ann"'))
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator
from typing import Any

__all__ = [
    "BY_KEY", "BY_TIME", "END_BY_KEY", "END_BY_TIME", "LAYOUT", "SESSIONS", "SLIDING", "SessionKeys", "SlidingKeys",
    "WindowKeys",
    "key_prefix", "split_key", "split_time_key", "split_window_key", "successor", "time_bytes", "time_key",
    "time_of", "window_key",
]

LAYOUT = "windows"
"""The layout name the stores of such a table carry (``RocksDBStore.layout``)."""

SESSIONS = "sessions"
"""The layout name of a session table's stores (windows keyed by key, start and end)."""

SLIDING = "sliding"
"""The layout name of a sliding table's stores (buckets and frozen finals)."""

BUCKET = b"b"
"""After the time of a bucket in the keys by time."""
FINAL = b"f"
"""After the end of a frozen final in the keys by time."""

BY_KEY = b"w"
"""The first byte of the windows by key."""
END_BY_KEY = b"x"
"""The first byte after them."""
BY_TIME = b"x"
"""The first byte of the windows by time."""
END_BY_TIME = b"y"
"""The first byte after them."""

_F = struct.Struct(">d")
_Q = struct.Struct(">Q")
_SIGN = 1 << 63
_ALL = (1 << 64) - 1


def time_bytes(t: float) -> bytes:
    """``t`` as 8 bytes that sort as the floats do (negative ones too)."""
    (bits,) = _Q.unpack(_F.pack(t))
    return _Q.pack(bits ^ _ALL if bits & _SIGN else bits | _SIGN)


def time_of(data: bytes) -> float:
    """The float :func:`time_bytes` gave ``data`` for."""
    (bits,) = _Q.unpack(data)
    return float(_F.unpack(_Q.pack(bits ^ _SIGN if bits & _SIGN else bits ^ _ALL))[0])


def key_prefix(kb: bytes) -> bytes:
    """Where the windows of the key whose bytes are ``kb`` begin."""
    return BY_KEY + len(kb).to_bytes(4, "big") + kb


def window_key(kb: bytes, start: float) -> bytes:
    """The key of one window by key."""
    return BY_KEY + len(kb).to_bytes(4, "big") + kb + time_bytes(start)


def split_window_key(raw: bytes) -> tuple[bytes, float]:
    """``(key bytes, start)`` of a window-by-key key."""
    n = int.from_bytes(raw[1:5], "big")
    return raw[5 : 5 + n], time_of(raw[5 + n :])


def split_key(raw: bytes) -> tuple[bytes, bytes]:
    """``(key bytes, what follows them)`` of a window-by-key key (the window's times, 8 bytes each)."""
    n = int.from_bytes(raw[1:5], "big")
    return raw[5 : 5 + n], raw[5 + n :]


def time_key(start: float, kb: bytes) -> bytes:
    """The key of one window by time."""
    return BY_TIME + time_bytes(start) + kb


def split_time_key(raw: bytes) -> tuple[float, bytes]:
    """``(start, key bytes)`` of a window-by-time key."""
    return time_of(raw[1:9]), raw[9:]


def successor(prefix: bytes) -> bytes:
    """The smallest bytes after every key that starts with ``prefix``."""
    return (int.from_bytes(prefix, "big") + 1).to_bytes(len(prefix), "big")


class WindowKeys:
    """Changelog records of a windowed table as store writes, given the changelog's key codec."""

    def __init__(self, encode_key: Callable[[Any], bytes], decode_key: Callable[[bytes], Any]) -> None:
        self.encode_key = encode_key
        self.decode_key = decode_key

    def ops(self, pairs: Iterable[tuple[bytes | None, bytes | None]]) -> Iterator[tuple[bytes, bytes | None]]:
        """The store writes (value None: a delete) of changelog records ``(key, value or None)``.

        Records whose key is not ``[key, [start, end]]`` (an older version's
        stream time) write nothing.

        >>> import json
        >>> keys = WindowKeys(lambda k: json.dumps(k).encode(), lambda b: json.loads(b))
        >>> [len(k) for k, _v in keys.ops([(b'["ann",[60.0,120.0]]', b"3")])], list(keys.ops([(b'"x"', None)]))
        ([18, 14], [])
        """
        split = self.split
        for kb, vb in pairs:
            if kb is None:
                continue
            k, start = split(kb)
            if k is None:
                continue
            at = time_bytes(start)
            yield BY_KEY + len(k).to_bytes(4, "big") + k + at, vb
            yield BY_TIME + at + k, None if vb is None else b""

    def split(self, kb: bytes) -> tuple[bytes | None, float]:
        """``(key bytes, window start)`` of a changelog key ``[key, [start, end]]`` (``None``: not a window).

        A plain string key is cut out of the JSON as it is (its bytes are what
        the codec writes); any other key is decoded and encoded again.

        >>> import json
        >>> keys = WindowKeys(lambda k: json.dumps(k).encode(), lambda b: json.loads(b))
        >>> keys.split(b'["ann",[60.0,120.0]]'), keys.split(b'[["a", 1],[60,120]]'), keys.split(b'"x"')
        ((b'"ann"', 60.0), (b'["a", 1]', 60.0), (None, 0.0))
        """
        cut = kb.rfind(b",[")
        if kb[:2] == b'["' and cut > 0 and kb[-2:] == b"]]":
            k = kb[1:cut]
            if k[-1:] == b'"' and k.count(b'"') == 2 and b"\\" not in k and k.isascii():
                bounds = kb[cut + 2 : -2].split(b",")
                if len(bounds) == 2:
                    try:
                        return k, float(bounds[0])
                    except ValueError:
                        pass
        try:
            key, (start, _end) = self.decode_key(kb)
            return self.encode_key(key), float(start)
        except (TypeError, ValueError):
            return None, 0.0


class SessionKeys(WindowKeys):
    """Changelog records of a session table as store writes: windows keyed by key, start and end.

    >>> import json
    >>> keys = SessionKeys(lambda k: json.dumps(k).encode(), lambda b: json.loads(b))
    >>> [(k[:1], len(k)) for k, _v in keys.ops([(b'["ann",[60.0,75.5]]', b"3")])]
    [(b'w', 26), (b'x', 22)]
    >>> [k for k, _v in keys.ops([(b'["ann",[60.0,75.5]]', b"3")])] == [
    ...     k for k, _v in keys.ops([(b'["ann", [60.0, 75.5]]', b"3")])]
    True
    """

    def ops(self, pairs: Iterable[tuple[bytes | None, bytes | None]]) -> Iterator[tuple[bytes, bytes | None]]:
        """The store writes (value None: a delete) of changelog records ``([key, [start, end]], value or None)``."""
        split = self.split
        for kb, vb in pairs:
            if kb is None:
                continue
            k, start = split(kb)  # (the key's bytes cut out of the JSON as they are, where they can be)
            if k is None:
                continue  # not a session: an older version's stream time
            try:
                end = float(kb[kb.rfind(b",") + 1 : -2])  # [key,[start,end]]
            except ValueError:
                end = float(self.decode_key(kb)[1][1])
            at = time_bytes(end)
            yield BY_KEY + len(k).to_bytes(4, "big") + k + time_bytes(start) + at, vb
            yield BY_TIME + at + time_bytes(start) + k, None if vb is None else b""


class SlidingKeys(WindowKeys):
    """Changelog records of a sliding table (``[key, t]``: a bucket, ``[key, [start, end]]``: a frozen final)
    as store writes.

    >>> import json
    >>> keys = SlidingKeys(lambda k: json.dumps(k).encode(), lambda b: json.loads(b))
    >>> [(k[:1], len(k)) for k, _v in keys.ops([(b'["ann",1000.5]', b"3"), (b'["ann",[990.0,1000.0]]', b"2")])]
    [(b'w', 18), (b'x', 15), (b'w', 26), (b'x', 23)]
    >>> list(keys.ops([(b'"__stream_time__"', b"1.0")]))
    []
    """

    def ops(self, pairs: Iterable[tuple[bytes | None, bytes | None]]) -> Iterator[tuple[bytes, bytes | None]]:
        """The store writes (value None: a delete) of changelog records of buckets and finals."""
        for kb, vb in pairs:
            if kb is None:
                continue
            k, times = self.split_sliding(kb)
            if k is None:
                continue  # an older version's stream time
            mark = None if vb is None else b""
            prefix = BY_KEY + len(k).to_bytes(4, "big") + k
            if len(times) == 1:
                at = time_bytes(times[0])
                yield prefix + at, vb
                yield BY_TIME + at + BUCKET + k, mark
            else:
                start, end = time_bytes(times[0]), time_bytes(times[1])
                yield prefix + start + end, vb
                yield BY_TIME + end + FINAL + start + k, mark

    def split_sliding(self, kb: bytes) -> tuple[bytes | None, tuple[float, ...]]:
        """``(key bytes, (t,) or (start, end))`` of a changelog key (``None``: not a bucket nor a final)."""
        if kb[:2] == b'["' and kb[-1:] == b"]":
            final = kb[-2:] == b"]]"
            cut = kb.rfind(b",[") if final else kb.rfind(b",")
            k = kb[1:cut]
            if cut > 0 and k[-1:] == b'"' and k.count(b'"') == 2 and b"\\" not in k and k.isascii():
                try:
                    if final:
                        start, end = kb[cut + 2 : -2].split(b",")
                        return k, (float(start), float(end))
                    return k, (float(kb[cut + 1 : -1]),)
                except ValueError:
                    pass
        try:
            key, where = self.decode_key(kb)
            if isinstance(where, (list, tuple)):
                return self.encode_key(key), (float(where[0]), float(where[1]))
            return self.encode_key(key), (float(where),)
        except (TypeError, ValueError):
            return None, ()
