"""Record batches: how ``local://`` packs a run of one partition's messages into one sqlite row.

Like Kafka's log, the ``local://`` log stores record batches, not single
messages: each commit appends at most one row per partition it touches (split
every :data:`BATCH_MAX` messages). A row costs sqlite the same whether it
holds one message or thousands, and, more importantly here, the sqlite3
module releases and re-takes the GIL around every row it writes or reads. With
the event loop's thread busy, one row per message made the writer thread wait
for the GIL on every message (about 50,000 rows/s instead of sqlite's 250,000);
one row per batch waits once.

A batch blob (all integers little-endian)::

    count: uint32, flags: uint8
    [offset deltas: uint32 x count]      if flags & GAPS (compacted batches)
    timestamps: float64 x count
    key lengths: int32 x count           -1 = None
    value lengths: int32 x count         -1 = None (a tombstone)
    [header lengths: int32 x count]      if flags & HEADERS; 0 = no headers
    keys, values, headers: the bytes, concatenated in this order

Headers are stored as JSON ``[[name, latin-1 text], ...]``. The first
message's offset is the row's ``base_offset``, so its delta is always 0.

Example::

    >>> blob = encode([(b"k", b"v", 1.5, ()), (None, None, 2.0, ())])
    >>> [m[2:6] for m in decode(blob, 10, "t", 0, 0, 100, 100)]
    [(10, 1.5, b'k', b'v'), (11, 2.0, None, None)]
"""

from __future__ import annotations

import json
import struct
import sys
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Sequence

from ..base import Headers, Message

__all__ = ["BATCH_MAX", "GAPS", "HEADERS", "Columns", "Item", "decode", "encode", "encode_columns", "timestamps"]

BATCH_MAX = 2048
"""Most messages in one batch row (a commit of more is split)."""

GAPS = 1
"""Flag: offsets are not contiguous (compaction removed some); a delta per message follows."""
HEADERS = 2
"""Flag: some message has headers; a header length per message follows."""

Item = tuple[bytes | None, bytes | None, float, Headers]
"""(key, value, timestamp, headers) of one message."""

Columns = tuple[list[bytes | None], list[bytes | None], list[float], list[Headers]]
"""(keys, values, timestamps, headers) of a run of messages, one list per field."""

_HEAD = struct.Struct("<IB")
_BIG_ENDIAN = sys.byteorder == "big"
_EMPTY: Headers = ()
_new = tuple.__new__


def _packed(typecode: str, values: Iterable[int] | Iterable[float]) -> bytes:
    packed = array(typecode, values)
    if _BIG_ENDIAN:
        packed.byteswap()
    return packed.tobytes()


def _unpacked(typecode: str, blob: bytes, start: int, count: int) -> tuple[array, int]:  # type: ignore[type-arg]
    values = array(typecode)
    end = start + values.itemsize * count
    values.frombytes(blob[start:end])
    if _BIG_ENDIAN:
        values.byteswap()
    return values, end


def encode_headers(headers: Headers) -> bytes:
    """Headers as stored in a batch (JSON; bytes as latin-1 text)."""
    return json.dumps(
        [[name, value.decode("latin-1")] for name, value in headers],
        separators=(",", ":"),
    ).encode()


def decode_headers(blob: bytes) -> Headers:
    """The inverse of :func:`encode_headers`."""
    return tuple((name, text.encode("latin-1")) for name, text in json.loads(blob))


def encode(items: Sequence[Item], deltas: Sequence[int] | None = None) -> bytes:
    """Pack ``items`` into one batch; ``deltas`` are their offsets minus the first one's, if not 0, 1, 2...

    Example::

        >>> len(encode([(b"k", b"v", 0.0, ())]))
        23
    """
    return encode_columns(
        [item[0] for item in items], [item[1] for item in items], [item[2] for item in items],
        [item[3] for item in items], deltas,
    )


def encode_columns(
    keys: Sequence[bytes | None],
    values: Sequence[bytes | None],
    stamps: Sequence[float],
    headers: Sequence[Headers],
    deltas: Sequence[int] | None = None,
) -> bytes:
    """:func:`encode` from one list per field (no tuple per message: what recording appends).

    Example::

        >>> encode_columns([b"k"], [b"v"], [0.0], [()]) == encode([(b"k", b"v", 0.0, ())])
        True
    """
    packed_headers = [encode_headers(h) if h else b"" for h in headers] if any(headers) else None
    flags = (HEADERS if packed_headers else 0) | (GAPS if deltas is not None else 0)
    parts = [_HEAD.pack(len(keys), flags)]
    if deltas is not None:
        parts.append(_packed("I", deltas))
    parts.append(_packed("d", stamps))
    parts.append(_packed("i", [-1 if k is None else len(k) for k in keys]))
    parts.append(_packed("i", [-1 if v is None else len(v) for v in values]))
    if packed_headers:
        parts.append(_packed("i", [len(h) for h in packed_headers]))
    # filter(None, ...) leaves out None and b"": neither adds a byte.
    parts += [b"".join(filter(None, keys)), b"".join(filter(None, values))]
    if packed_headers:
        parts.append(b"".join(packed_headers))
    return b"".join(parts)


def timestamps(blob: bytes) -> list[float]:
    """The timestamps of a batch's messages, in offset order."""
    count, flags = _HEAD.unpack_from(blob)
    start = _HEAD.size + (4 * count if flags & GAPS else 0)
    return _unpacked("d", blob, start, count)[0].tolist()


def decode(
    blob: bytes,
    base: int,
    topic: str,
    partition: int,
    start: int,
    stop: int,
    limit: int,
) -> list[Message]:
    """The messages of a batch with ``start <= offset < stop``, at most ``limit`` of them.

    Only the messages returned are sliced out of the blob: reading the tail
    of a large batch costs about as much as reading a small one.
    """
    count, flags = _HEAD.unpack_from(blob)
    at = _HEAD.size
    if flags & GAPS:
        deltas, at = _unpacked("I", blob, at, count)
        first = bisect_left(deltas, start - base)
        last = min(bisect_left(deltas, stop - base), first + limit)
        offsets: Iterable[int] = [base + d for d in deltas[first:last]]
    else:
        first = min(max(start - base, 0), count)
        last = max(min(stop - base, count, first + limit), first)
        offsets = range(base + first, base + last)
    if first >= last:
        return []
    stamps, at = _unpacked("d", blob, at, count)
    key_lengths, at = _unpacked("i", blob, at, count)
    value_lengths, at = _unpacked("i", blob, at, count)
    header_lengths = None
    if flags & HEADERS:
        header_lengths, at = _unpacked("i", blob, at, count)
    # Where the first wanted key, value and header start: past the bytes of the ones before.
    key_at = at + _stored(key_lengths, 0, first)
    value_at = at + _stored(key_lengths, 0, count) + _stored(value_lengths, 0, first)
    keys = _slices(blob, key_at, key_lengths[first:last])
    values = _slices(blob, value_at, value_lengths[first:last])
    if header_lengths is None:
        headers: Iterable[Headers] = [_EMPTY] * (last - first)
    else:
        header_at = value_at + _stored(value_lengths, first, count) + sum(header_lengths[:first])
        headers = [decode_headers(h) if h else _EMPTY for h in _slices(blob, header_at, header_lengths[first:last])]
    return [
        _new(Message, (topic, partition, o, ts, k, v, h))
        for o, ts, k, v, h in zip(offsets, stamps[first:last], keys, values, headers)
    ]


def _stored(lengths: array, first: int, last: int) -> int:  # type: ignore[type-arg]
    """Bytes stored for messages ``first..last-1`` (a None stores none)."""
    part = lengths[first:last]
    total: int = sum(part) + part.count(-1)
    return total


def _slices(blob: bytes, at: int, lengths: Iterable[int]) -> list[bytes | None]:
    out: list[bytes | None] = []
    append = out.append
    for length in lengths:
        if length < 0:
            append(None)
        else:
            end = at + length
            append(blob[at:end])
            at = end
    return out
