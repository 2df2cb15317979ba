"""Reading the ``local://`` log: a partition's messages in offset order, and round-robin fetches.

Pure sqlite, no threads: :mod:`streamnb.transport.local.store` calls these on
its reader thread (with its :class:`~.batchcache.BatchCache`) and its worker
thread (compaction and retention read too, without one). Every batch read is
checked first (:func:`~streamnb.transport.local.integrity.checked_rows`).

Example::

    >>> import sqlite3
    >>> from streamnb.transport.local.log import SCHEMA_SQL, Topic
    >>> conn = sqlite3.connect(":memory:", isolation_level=None)
    >>> _ = conn.executescript(SCHEMA_SQL)
    >>> read(conn, Topic(1, "clicks", 1, False, None, [0], [0], [0], [0]), 0, 0, 10, 10)
    []
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

from ..base import Message, head_within
from .batch import BatchView
from .batchcache import BatchCache
from .catalogue import Topic
from .integrity import checked_rows

__all__ = ["Want", "fetch", "read", "read_bounded"]

Want = tuple[Topic, int, int, int]
"""(topic, partition, position, end): a partition to read from ``position`` up to ``end``."""


def read(
    conn: sqlite3.Connection,
    topic: Topic,
    partition: int,
    start: int,
    stop: int,
    limit: int,
    max_bytes: int | None = None,
    cache: BatchCache | None = None,
) -> list[Message]:
    """Up to ``limit`` messages (and ``max_bytes``) of a partition with ``start <= offset < stop``, in offset order.

    Every batch read is checked first (:func:`~streamnb.transport.local.integrity.checked_batches`):
    a damaged one raises :class:`~streamnb.transport.local.integrity.Damage`.
    ``cache`` (the reader thread's) keeps the batch a read stops inside, for the next one.
    """
    return read_bounded(conn, topic, partition, start, stop, limit, max_bytes, cache)[0]


def read_bounded(
    conn: sqlite3.Connection,
    topic: Topic,
    partition: int,
    start: int,
    stop: int,
    limit: int,
    max_bytes: int | None,
    cache: BatchCache | None = None,
) -> tuple[list[Message], int, bool]:
    """:func:`read`, with the bytes read and whether ``max_bytes`` ended it early.

    Rows are read one at a time, so what is loaded is about what is
    returned (rows hold at most :data:`ROW_MAX_BYTES`, or one larger message).
    A message larger than ``max_bytes`` comes alone, only at the head.
    """
    out: list[Message] = []
    size = 0
    hit = None if cache is None else cache.find(topic, partition, start)
    for view, end in _views(conn, topic, partition, start, stop, hit):
        first, last = view.span(start, stop, limit - len(out))
        messages = view.cut(topic.name, partition, first, last)
        full = False
        if max_bytes is not None and messages:
            taken = view.size(first, last)
            if taken is None or size + taken > max_bytes:  # (headers, or too many: count them one by one)
                kept, taken = head_within(messages, max_bytes - size)
                if out and size + taken > max_bytes:
                    kept, taken = [], 0
                full = len(kept) < len(messages)
                last, messages = first + len(kept), kept
            size += taken
        out += messages
        if cache is not None:  # the batch this read stops inside is where the next one begins
            if last < view.count and end is not None:
                cache.keep(topic, partition, view, end)
            else:
                cache.drop(topic, partition)
        if full:
            return out, size, True
        if len(out) >= limit:
            break
        start = view.offset(last)
    return out, size, False


def _views(
    conn: sqlite3.Connection, topic: Topic, partition: int, start: int, stop: int,
    hit: tuple[BatchView, int] | None,
) -> Iterator[tuple[BatchView, int | None]]:
    """The batches holding ``start..stop-1``, checked and parsed, beginning with ``hit`` (a cached one) if any."""
    if hit is not None:
        yield hit
        start = hit[1]
        if start >= stop:
            return
    for base, end, _, blob in checked_rows(conn, topic, partition, start, stop):
        yield BatchView(blob, base), end


def fetch(
    conn: sqlite3.Connection, wants: list[Want], max_records: int, max_bytes: int | None = None,
    cache: BatchCache | None = None,
) -> tuple[list[Message], list[int]]:
    """Read up to ``max_records`` (and ``max_bytes``) from ``wants`` = [(topic, partition, position, end)].

    Round robin: every partition gets an equal share of what is left,
    until the budget is spent or every partition is read up to its end.
    A message larger than ``max_bytes`` comes alone, in a batch of its
    own. Returns the messages and the new position of each want.
    """
    out: list[Message] = []
    positions = [want[2] for want in wants]
    active = list(range(len(wants)))
    left = max_records
    size = 0
    while active and left > 0:
        share = -(-left // len(active))
        again = []
        for i in active:
            if left <= 0:
                break
            topic, partition, _, end = wants[i]
            n = min(share, left)
            budget = None if max_bytes is None else max_bytes - size
            messages, taken, full = read_bounded(conn, topic, partition, positions[i], end, n, budget, cache)
            if out and budget is not None and taken > budget:
                return out, positions  # (the next message does not fit: it comes next time)
            size += taken
            out += messages
            left -= len(messages)
            if full or len(messages) == n:
                positions[i] = messages[-1].offset + 1 if messages else positions[i]
                if full:
                    return out, positions
                again.append(i)
            else:
                positions[i] = end
        active = again
    return out, positions
