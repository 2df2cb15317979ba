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
from itertools import accumulate, repeat

from ..base import Headers, Message

__all__ = [
    "BATCH_MAX", "GAPS", "HEADERS", "BatchView", "Columns", "Item", "decode", "encode", "encode_columns", "timestamps",
]

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
    return BatchView(blob, base).messages(topic, partition, start, stop, limit)


class BatchView:
    """A batch with its columns unpacked once: any run of its messages is then cut out without parsing again.

    What the reader keeps of a batch read in part (a consumer's share of a
    fetch is often a tenth of a batch): the next read of the same batch
    starts here, with no sqlite query, checksum or unpacking.

    Example::

        >>> view = BatchView(encode([(b"a", b"1", 1.0, ()), (b"b", None, 2.0, ())]), 7)
        >>> [(m.offset, m.key, m.value) for m in view.messages("t", 0, 8, 100, 10)], view.last
        ([(8, b'b', None)], 8)
    """

    __slots__ = ("base", "blob", "count", "deltas", "header_ends", "headers", "key_ends", "key_nones", "last",
                 "stamps", "value_ends", "value_nones")

    def __init__(self, blob: bytes, base: int) -> None:
        count, flags = _HEAD.unpack_from(blob)
        at = _HEAD.size
        self.blob, self.base, self.count = blob, base, count
        self.deltas: array | None = None  # type: ignore[type-arg]
        if flags & GAPS:
            self.deltas, at = _unpacked("I", blob, at, count)
        self.stamps, at = _unpacked("d", blob, at, count)
        key_lengths, at = _unpacked("i", blob, at, count)
        value_lengths, at = _unpacked("i", blob, at, count)
        header_lengths = None
        if flags & HEADERS:
            header_lengths, at = _unpacked("i", blob, at, count)
        # Where each message's key and value end in the blob (a None stores no byte).
        # The stored lengths of a column with a None (-1) in it, to tell a None from b"".
        self.key_nones = key_lengths if -1 in key_lengths else None
        self.value_nones = value_lengths if -1 in value_lengths else None
        self.key_ends = list(accumulate(_bytes_of(key_lengths, self.key_nones), initial=at))
        self.value_ends = list(accumulate(_bytes_of(value_lengths, self.value_nones), initial=self.key_ends[-1]))
        self.headers = header_lengths is not None
        self.header_ends = (
            None if header_lengths is None else list(accumulate(header_lengths, initial=self.value_ends[-1])))
        self.last: int = base + (self.deltas[-1] if self.deltas is not None else count - 1)
        """The offset of the batch's last message."""

    def span(self, start: int, stop: int, limit: int) -> tuple[int, int]:
        """Indexes ``first, last`` of the messages with ``start <= offset < stop``, at most ``limit`` of them."""
        base, count, deltas = self.base, self.count, self.deltas
        if deltas is not None:
            first = bisect_left(deltas, start - base)
            return first, max(min(bisect_left(deltas, stop - base), first + limit), first)
        first = min(max(start - base, 0), count)
        return first, max(min(stop - base, count, first + limit), first)

    def offset(self, index: int) -> int:
        """The offset of message ``index`` (``index == count``: one past the last)."""
        if index >= self.count:
            return self.last + 1
        delta: int = self.deltas[index] if self.deltas is not None else index
        return self.base + delta

    def size(self, first: int, last: int) -> int | None:
        """Bytes of keys and values of messages ``first..last-1`` (``max_bytes``' measure); None with headers."""
        if self.headers:
            return None
        key_ends, value_ends = self.key_ends, self.value_ends
        return key_ends[last] - key_ends[first] + value_ends[last] - value_ends[first]

    def messages(self, topic: str, partition: int, start: int, stop: int, limit: int) -> list[Message]:
        """The messages with ``start <= offset < stop``, at most ``limit`` of them (:func:`decode`)."""
        first, last = self.span(start, stop, limit)
        return self.cut(topic, partition, first, last)

    def cut(self, topic: str, partition: int, first: int, last: int) -> list[Message]:
        """Messages ``first..last-1`` of the batch."""
        n = last - first
        if n <= 0:
            return []
        blob, base, deltas = self.blob, self.base, self.deltas
        offsets: Iterable[int] = (
            range(base + first, base + last) if deltas is None else [base + d for d in deltas[first:last]])
        keys = _cut(blob, self.key_ends, first, last, self.key_nones)
        values = _cut(blob, self.value_ends, first, last, self.value_nones)
        headers: Iterable[Headers]
        if self.header_ends is None:
            headers = repeat(_EMPTY, n)
        else:
            headers = [decode_headers(h) if h else _EMPTY
                       for h in _cut(blob, self.header_ends, first, last, None)]
        # One C-level pass: no Python-level step per message.
        return list(map(_new, repeat(Message, n), zip(
            repeat(topic, n), repeat(partition, n), offsets, self.stamps[first:last], keys, values, headers)))


def _bytes_of(lengths: array, nones: array | None) -> Iterable[int]:  # type: ignore[type-arg]
    """Bytes stored per message (-1, a None, stores none)."""
    return lengths if nones is None else [length if length > 0 else 0 for length in lengths]


def _cut(
    blob: bytes, ends: list[int], first: int, last: int, nones: array | None  # type: ignore[type-arg]
) -> list[bytes | None]:
    """The byte strings of messages ``first..last-1`` of a column (``ends``: where each begins and ends)."""
    cut: list[bytes | None] = [blob[a:b] for a, b in zip(ends[first:last], ends[first + 1:last + 1])]
    if nones is not None:  # (an empty one there may be a None: its stored length says)
        cut = [None if n < 0 else c for c, n in zip(cut, nones[first:last])]
    return cut
