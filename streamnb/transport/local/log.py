"""The ``local://`` log in sqlite: its schema, the cached :class:`Topic`, reads, compaction and retention.

Pure sqlite, no threads: :mod:`streamnb.transport.local.store` calls these
on its worker thread. A partition's messages are stored as record batches
(:mod:`streamnb.transport.local.batch`), one row each, keyed by (topic id,
partition, offset of the first message); ``partitions`` holds where each log
starts and ends and how far compaction got. :func:`compact` keeps the newest
message per key (dropping keys whose newest value is a tombstone);
:func:`expire` drops the head of a partition up to the first message younger
than the retention. Stores of schema 1 (one row per message) are converted
by :func:`migrate` when opened.

Example::

    >>> topic = Topic(1, "clicks", 1, True, None, [10], [0], [0], [0])
    >>> compaction_due(topic, 0, min_dirty=5)
    True
"""

from __future__ import annotations

import math
import operator
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..base import Message, head_within
from .batch import BATCH_MAX, Columns, Item, decode, decode_headers, encode, encode_columns, timestamps

__all__ = [
    "INSERT_BATCH",
    "RELEASE_STEP",
    "ROW_MAX_BYTES",
    "SCHEMA_SQL",
    "SCHEMA_VERSION",
    "UPDATE_END",
    "UPSERT_OFFSET",
    "Topic",
    "Want",
    "append",
    "batch_rows",
    "compact",
    "compaction_due",
    "delete_groups",
    "delete_topics",
    "expire",
    "migrate",
    "read",
    "read_bounded",
    "release",
    "rollback",
    "row_spans",
]

SCHEMA_VERSION = 2
"""``PRAGMA user_version`` of the stores this module writes (1: one row per message)."""

BATCHES_SQL = """
CREATE TABLE batches (
    topic_id INTEGER NOT NULL,
    "partition" INTEGER NOT NULL,
    base_offset INTEGER NOT NULL,  -- offset of the batch's first message
    count INTEGER NOT NULL,        -- messages in the batch
    max_timestamp REAL NOT NULL,   -- the newest message's timestamp (for retention)
    records BLOB NOT NULL,         -- the messages, as local/batch.py encode() packs them
    PRIMARY KEY (topic_id, "partition", base_offset)
)"""

SCHEMA_SQL = f"""
CREATE TABLE topics (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    partitions INTEGER NOT NULL,
    compacted INTEGER NOT NULL,
    retention REAL
);
CREATE TABLE partitions (
    topic_id INTEGER NOT NULL,
    "partition" INTEGER NOT NULL,
    log_start INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    clean_upto INTEGER NOT NULL,   -- compaction has seen every offset below this
    clean_count INTEGER NOT NULL,  -- messages kept below clean_upto
    PRIMARY KEY (topic_id, "partition")
) WITHOUT ROWID;
{BATCHES_SQL};
CREATE TABLE offsets (
    "group" TEXT NOT NULL,
    topic TEXT NOT NULL,
    "partition" INTEGER NOT NULL,
    "offset" INTEGER NOT NULL,
    PRIMARY KEY ("group", topic, "partition")
) WITHOUT ROWID;
"""

INSERT_BATCH = "INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?)"
UPDATE_END = 'UPDATE partitions SET next_offset = ? WHERE topic_id = ? AND "partition" = ?'
UPSERT_OFFSET = (
    'INSERT INTO offsets VALUES (?, ?, ?, ?) ON CONFLICT ("group", topic, "partition") '
    'DO UPDATE SET "offset" = excluded."offset"'
)
# The batch holding ``start`` (the last one beginning at or before it), and every later one before ``stop``.
_SELECT_BATCHES = (
    'SELECT base_offset, records FROM batches WHERE topic_id = ?1 AND "partition" = ?2 AND base_offset >= '
    'coalesce((SELECT max(base_offset) FROM batches WHERE topic_id = ?1 AND "partition" = ?2 '
    "AND base_offset <= ?3), 0) AND base_offset < ?4 ORDER BY base_offset"
)


def rollback(conn: sqlite3.Connection) -> None:
    """Roll back the open transaction, if sqlite has not already."""
    if conn.in_transaction:  # sqlite already rolled back after some errors (disk full, ...)
        conn.execute("ROLLBACK")


@dataclass(eq=False)
class Topic:
    """Cached state of one topic. Only the worker thread writes it."""

    id: int
    name: str
    partitions: int
    compacted: bool
    retention: float | None
    ends: list[int]  # next_offset per partition
    starts: list[int]  # log_start per partition
    clean_upto: list[int]
    clean_count: list[int]


Want = tuple[Topic, int, int, int]
"""(topic, partition, position, end): a partition to read from ``position`` up to ``end``."""


ROW_MAX_BYTES = 1024 * 1024
"""Keys and values of one batch row, at most (a message larger than that has a row of its own).

With :data:`BATCH_MAX`, what keeps a read of a few large messages from loading many more."""

def row_spans(
    keys: Sequence[bytes | None] | None, values: Sequence[bytes | None] | None, count: int,
    items: Sequence[Any] | None = None,
) -> list[tuple[int, int]]:
    """``[start, end)`` of each batch row for ``count`` messages: :data:`BATCH_MAX` of them, or :data:`ROW_MAX_BYTES`.

    The messages are given as ``keys`` and ``values`` columns, or as
    ``items`` (``(key, value, ...)`` tuples, or messages). Sizes are summed a
    row at a time in C; only a row of large messages is split one by one.

    >>> row_spans([None] * 3, [b"x" * 700_000] * 3, 3)
    [(0, 1), (1, 2), (2, 3)]
    """
    if items is not None and count:
        first = 4 if isinstance(items[0], Message) else 0  # where the key is (the value follows)
        key_of, value_of = operator.itemgetter(first), operator.itemgetter(first + 1)
    spans = []
    for at in range(0, count, BATCH_MAX):
        end = min(at + BATCH_MAX, count)
        if items is not None:
            chunk = items[at:end]
            ks: Iterable[bytes | None] = map(key_of, chunk)
            vs: Iterable[bytes | None] = map(value_of, chunk)
        else:
            assert keys is not None and values is not None
            ks, vs = keys[at:end], values[at:end]
        if sum(map(len, filter(None, vs))) + sum(map(len, filter(None, ks))) <= ROW_MAX_BYTES:  # (in C)
            spans.append((at, end))
            continue
        if items is not None:
            ks, vs = map(key_of, chunk), map(value_of, chunk)
        else:
            ks, vs = keys[at:end], values[at:end]  # type: ignore[index]
        start = at
        total = 0
        for i, (key, value) in enumerate(zip(ks, vs), at):
            size = (len(key) if key else 0) + (len(value) if value else 0)
            if i > start and total + size > ROW_MAX_BYTES:
                spans.append((start, i))
                start, total = i, 0
            total += size
        spans.append((start, end))
    return spans


def batch_rows(tid: int, partition: int, base: int, items: Sequence[Item]) -> Iterator[tuple[object, ...]]:
    """:data:`INSERT_BATCH` rows for ``items`` at offsets ``base, base + 1, ...``."""
    for at, end in row_spans(None, None, len(items), items):
        chunk = items[at:end]
        yield (
            tid,
            partition,
            base + at,
            len(chunk),
            max(item[2] for item in chunk),
            encode(chunk),
        )


def _message_rows(tid: int, partition: int, messages: Sequence[Message]) -> Iterator[tuple[object, ...]]:
    """:data:`INSERT_BATCH` rows for ``messages``, whose offsets may have gaps."""
    for at, end in row_spans(None, None, len(messages), messages):
        chunk = messages[at:end]
        base = chunk[0].offset
        deltas = [m.offset - base for m in chunk]
        items = [(m.key, m.value, m.timestamp, m.headers) for m in chunk]
        blob = encode(items, None if deltas[-1] == len(chunk) - 1 else deltas)
        yield tid, partition, base, len(chunk), max(m.timestamp for m in chunk), blob


def read(
    conn: sqlite3.Connection,
    topic: Topic,
    partition: int,
    start: int,
    stop: int,
    limit: int,
    max_bytes: int | None = None,
) -> list[Message]:
    """Up to ``limit`` messages (and ``max_bytes``) of a partition with ``start <= offset < stop``, in offset order."""
    return read_bounded(conn, topic, partition, start, stop, limit, max_bytes)[0]


def read_bounded(
    conn: sqlite3.Connection,
    topic: Topic,
    partition: int,
    start: int,
    stop: int,
    limit: int,
    max_bytes: int | None,
) -> tuple[list[Message], int, bool]:
    """:func:`read`, with the bytes read and whether ``max_bytes`` ended it early.

    Rows are read one at a time, so what is loaded is about what is
    returned (rows hold at most :data:`ROW_MAX_BYTES`, or one larger message).
    A message larger than ``max_bytes`` comes alone, only at the head.
    """
    out: list[Message] = []
    name = topic.name
    size = 0
    for base, blob in conn.execute(_SELECT_BATCHES, (topic.id, partition, start, stop)):
        messages = decode(blob, base, name, partition, start, stop, limit - len(out))
        if max_bytes is not None and messages:
            kept, taken = head_within(messages, max_bytes - size)
            if out and size + taken > max_bytes:
                return out, size, True
            out += kept
            size += taken
            if len(kept) < len(messages):
                return out, size, True
        else:
            out += messages
        if len(out) >= limit:
            break
    return out, size, False


def compaction_due(topic: Topic, partition: int, min_dirty: int) -> bool:
    """Whether at least ``min_dirty`` messages, and more than the kept ones, are new since the last compaction."""
    dirty = topic.ends[partition] - topic.clean_upto[partition]
    return dirty >= min_dirty and dirty > topic.clean_count[partition]


def compact(conn: sqlite3.Connection, topic: Topic, p: int) -> None:
    """Keep the newest message per key; drop keys whose newest message is a tombstone.

    The partition is rewritten into full batches. It runs once as many
    messages are new as are kept, so its cost per message written stays flat.
    """
    tid, upto = topic.id, topic.ends[p]
    conn.execute("BEGIN")
    try:
        messages = read(conn, topic, p, 0, upto, upto + 1)
        newest = {m.key: m.offset for m in messages}  # a None key is one more key, as in memory://
        kept = [m for m in messages if m.value is not None and newest[m.key] == m.offset]
        if len(kept) < len(messages):
            conn.execute(
                'DELETE FROM batches WHERE topic_id = ? AND "partition" = ? AND base_offset < ?',
                (tid, p, upto),
            )
            conn.executemany(INSERT_BATCH, _message_rows(tid, p, kept))
        start = kept[0].offset if kept else upto
        conn.execute(
            "UPDATE partitions SET log_start = ?, clean_upto = ?, clean_count = ? "
            'WHERE topic_id = ? AND "partition" = ?',
            (start, upto, len(kept), tid, p),
        )
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise
    topic.starts[p], topic.clean_upto[p], topic.clean_count[p] = start, upto, len(kept)
    release(newest, kept, messages)


def release(*containers: list[Any] | dict[Any, Any]) -> None:
    """Empty large lists and dicts a step at a time (between two steps another thread can take the GIL).

    Freeing a million messages in one go is one C call that holds the GIL,
    and with it the event loop, for a tenth of a second.
    """
    for container in containers:
        if isinstance(container, list):
            while container:
                del container[-RELEASE_STEP:]
        else:
            while container:
                for _ in range(min(RELEASE_STEP, len(container))):
                    container.popitem()


RELEASE_STEP = 20_000
"""Items :func:`release` frees at a time."""


def expire(conn: sqlite3.Connection, topic: Topic, p: int) -> None:
    """Drop the head of the partition up to the first message younger than the retention."""
    assert topic.retention is not None
    if math.isinf(topic.retention):  # kept forever (repartition topics)
        return
    tid, start, end = topic.id, topic.starts[p], topic.ends[p]
    cutoff = time.time() - topic.retention
    # Batches wholly older than the cutoff go; the first one that is not may lose its head.
    row = conn.execute(
        'SELECT base_offset, records FROM batches WHERE topic_id = ? AND "partition" = ? '
        "AND max_timestamp >= ? ORDER BY base_offset LIMIT 1",
        (tid, p, cutoff),
    ).fetchone()
    if row is None:
        new_start = end
    else:
        base, blob = row
        young = next(i for i, ts in enumerate(timestamps(blob)) if ts >= cutoff)
        new_start = base if young == 0 else decode(blob, base, topic.name, p, 0, end, young + 1)[-1].offset
    if new_start <= start:
        return
    conn.execute("BEGIN")
    try:
        conn.execute(
            'DELETE FROM batches WHERE topic_id = ? AND "partition" = ? AND base_offset < ?',
            (tid, p, new_start),
        )
        if row is not None and new_start != row[0]:  # keep the young tail of that batch
            conn.executemany(
                INSERT_BATCH,
                _message_rows(tid, p, decode(row[1], row[0], topic.name, p, new_start, end, end)),
            )
        upto = max(topic.clean_upto[p], new_start)
        (kept,) = conn.execute(
            'SELECT coalesce(sum(count), 0) FROM batches WHERE topic_id = ? AND "partition" = ? AND base_offset < ?',
            (tid, p, upto),
        ).fetchone()
        conn.execute(
            "UPDATE partitions SET log_start = ?, clean_upto = ?, clean_count = ? "
            'WHERE topic_id = ? AND "partition" = ?',
            (new_start, upto, kept, tid, p),
        )
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise
    topic.starts[p], topic.clean_upto[p], topic.clean_count[p] = new_start, upto, kept


def migrate(conn: sqlite3.Connection, version: int) -> None:
    """Convert a store of schema ``version`` to :data:`SCHEMA_VERSION`, inside the caller's transaction."""
    if version == 1:  # one row per message -> record batches
        conn.execute(BATCHES_SQL)
        cells = conn.execute('SELECT topic_id, "partition" FROM partitions ORDER BY 1, 2').fetchall()
        for tid, p in cells:
            rows = conn.execute(
                'SELECT "offset", timestamp, key, value, headers FROM messages '
                'WHERE topic_id = ? AND "partition" = ? ORDER BY "offset"',
                (tid, p),
            )
            while chunk := rows.fetchmany(BATCH_MAX):
                messages = [Message("", p, o, ts, k, v, decode_headers(h) if h else ()) for o, ts, k, v, h in chunk]
                conn.executemany(INSERT_BATCH, _message_rows(tid, p, messages))
        conn.execute("DROP TABLE messages")


def append(conn: sqlite3.Connection, runs: Sequence[tuple[Topic, int, Columns]]) -> None:
    """Append runs of messages, each to one partition, in one transaction (what recording uses: no regrouping)."""
    rows = []
    ends: dict[tuple[Topic, int], int] = {}
    for topic, partition, (keys, values, stamps, headers) in runs:
        base = ends.get((topic, partition), topic.ends[partition])
        rows += [
            (topic.id, partition, base + at, end - at, max(stamps[at:end]),
             encode_columns(keys[at:end], values[at:end], stamps[at:end], headers[at:end]))
            for at, end in row_spans(keys, values, len(keys))
        ]
        ends[(topic, partition)] = base + len(keys)
    conn.execute("BEGIN")
    try:
        conn.executemany(INSERT_BATCH, rows)
        conn.executemany(UPDATE_END, [(end, topic.id, partition) for (topic, partition), end in ends.items()])
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise
    for (topic, partition), end in ends.items():
        topic.ends[partition] = end


def delete_topics(conn: sqlite3.Connection, topics: Sequence[Topic]) -> None:
    """Delete topics (messages, partitions, every group's offsets in them) in one transaction."""
    conn.execute("BEGIN")
    try:
        for topic in topics:
            conn.execute("DELETE FROM batches WHERE topic_id = ?", (topic.id,))
            conn.execute("DELETE FROM partitions WHERE topic_id = ?", (topic.id,))
            conn.execute("DELETE FROM topics WHERE id = ?", (topic.id,))
            conn.execute("DELETE FROM offsets WHERE topic = ?", (topic.name,))
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise


def delete_groups(conn: sqlite3.Connection, groups: Sequence[str]) -> None:
    """Delete the committed offsets of ``groups``."""
    conn.execute("BEGIN")
    try:
        conn.executemany('DELETE FROM offsets WHERE "group" = ?', [(g,) for g in groups])
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise
