"""The ``local://`` log in sqlite: its schema, the cached :class:`Topic`, compaction and retention.

Pure sqlite, no threads: :mod:`streamnb.transport._sqlite_store` calls these
on its worker thread. A partition's messages are rows keyed by (topic id,
partition, offset); ``partitions`` holds where each log starts and ends and
how far compaction got. :func:`compact` keeps the newest message per key
(dropping keys whose newest value is a tombstone); :func:`expire` drops the
head of a partition up to the first message younger than the retention.

Example::

    >>> topic = Topic(1, "clicks", 1, True, None, [10], [0], [0], [0])
    >>> compaction_due(topic, 0, min_dirty=5)
    True
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass

from .base import Headers

__all__ = [
    "INSERT_MESSAGE",
    "SCHEMA_SQL",
    "SCHEMA_VERSION",
    "SELECT_RANGE",
    "UPDATE_END",
    "UPSERT_OFFSET",
    "Topic",
    "Want",
    "compact",
    "compaction_due",
    "decode_headers",
    "encode_headers",
    "expire",
    "rollback",
]

SCHEMA_VERSION = 1
"""``PRAGMA user_version`` of the stores this module writes."""

SCHEMA_SQL = """
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
CREATE TABLE messages (
    topic_id INTEGER NOT NULL,
    "partition" INTEGER NOT NULL,
    "offset" INTEGER NOT NULL,
    timestamp REAL NOT NULL,
    key BLOB,
    value BLOB,
    headers BLOB,                  -- NULL when empty, else JSON [[name, latin-1 text], ...]
    PRIMARY KEY (topic_id, "partition", "offset")
) WITHOUT ROWID;
CREATE TABLE offsets (
    "group" TEXT NOT NULL,
    topic TEXT NOT NULL,
    "partition" INTEGER NOT NULL,
    "offset" INTEGER NOT NULL,
    PRIMARY KEY ("group", topic, "partition")
) WITHOUT ROWID;
"""

INSERT_MESSAGE = "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?)"
UPDATE_END = 'UPDATE partitions SET next_offset = ? WHERE topic_id = ? AND "partition" = ?'
UPSERT_OFFSET = (
    'INSERT INTO offsets VALUES (?, ?, ?, ?) ON CONFLICT ("group", topic, "partition") '
    'DO UPDATE SET "offset" = excluded."offset"'
)
SELECT_RANGE = (
    'SELECT "offset", timestamp, key, value, headers FROM messages '
    'WHERE topic_id = ? AND "partition" = ? AND "offset" >= ? AND "offset" < ? '
    'ORDER BY "offset" LIMIT ?'
)


def encode_headers(headers: Headers) -> bytes:
    """Headers as stored in the ``headers`` column (JSON; bytes as latin-1 text)."""
    return json.dumps([[name, value.decode("latin-1")] for name, value in headers], separators=(",", ":")).encode()


def decode_headers(blob: bytes) -> Headers:
    """The inverse of :func:`encode_headers`."""
    return tuple((name, text.encode("latin-1")) for name, text in json.loads(blob))


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


def compaction_due(topic: Topic, partition: int, min_dirty: int) -> bool:
    """Whether at least ``min_dirty`` messages, and more than the kept ones, are new since the last compaction."""
    dirty = topic.ends[partition] - topic.clean_upto[partition]
    return dirty >= min_dirty and dirty > topic.clean_count[partition]


def compact(conn: sqlite3.Connection, topic: Topic, p: int) -> None:
    """Keep the newest message per key; drop keys whose newest message is a tombstone."""
    tid, upto, dirty_from = topic.id, topic.ends[p], topic.clean_upto[p]
    conn.execute("BEGIN")
    try:
        conn.execute("DELETE FROM temp.newest")
        conn.execute(
            'INSERT INTO temp.newest SELECT key, max("offset") FROM messages WHERE topic_id = ? '
            'AND "partition" = ? AND "offset" >= ? AND key IS NOT NULL GROUP BY key',
            (tid, p, dirty_from),
        )
        conn.execute(
            'DELETE FROM messages WHERE topic_id = ? AND "partition" = ? AND "offset" < ? '
            'AND "offset" < (SELECT n.off FROM temp.newest AS n WHERE n.key = messages.key)',
            (tid, p, upto),
        )
        (null_newest,) = conn.execute(
            'SELECT max("offset") FROM messages WHERE topic_id = ? AND "partition" = ? '
            'AND "offset" >= ? AND key IS NULL',
            (tid, p, dirty_from),
        ).fetchone()
        if null_newest is not None:  # like memory://, a None key is one more key
            conn.execute(
                'DELETE FROM messages WHERE topic_id = ? AND "partition" = ? AND "offset" < ? AND key IS NULL',
                (tid, p, null_newest),
            )
        # Every tombstone left among the new messages is its key's newest: drop it too.
        conn.execute(
            'DELETE FROM messages WHERE topic_id = ? AND "partition" = ? AND "offset" >= ? '
            'AND "offset" < ? AND value IS NULL',
            (tid, p, dirty_from, upto),
        )
        start, kept = _head_and_count(conn, tid, p, upto)
        conn.execute(
            'UPDATE partitions SET log_start = ?, clean_upto = ?, clean_count = ? '
            'WHERE topic_id = ? AND "partition" = ?',
            (start, upto, kept, tid, p),
        )
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise
    topic.starts[p], topic.clean_upto[p], topic.clean_count[p] = start, upto, kept



def _head_and_count(conn: sqlite3.Connection, tid: int, p: int, end: int) -> tuple[int, int]:
    """(first offset stored, or ``end`` when none; messages stored) of a partition."""
    first, count = conn.execute(
        'SELECT min("offset"), count(*) FROM messages WHERE topic_id = ? AND "partition" = ?', (tid, p)
    ).fetchone()
    return (end if first is None else first), count



def expire(conn: sqlite3.Connection, topic: Topic, p: int) -> None:
    """Drop the head of the partition up to the first message younger than the retention."""
    assert topic.retention is not None
    tid, start, end = topic.id, topic.starts[p], topic.ends[p]
    row = conn.execute(
        'SELECT "offset" FROM messages WHERE topic_id = ? AND "partition" = ? AND "offset" >= ? '
        'AND timestamp >= ? ORDER BY "offset" LIMIT 1',
        (tid, p, start, time.time() - topic.retention),
    ).fetchone()
    new_start = end if row is None else row[0]
    if new_start <= start:
        return
    upto, kept = topic.clean_upto[p], topic.clean_count[p]
    conn.execute("BEGIN")
    try:
        cursor = conn.execute(
            'DELETE FROM messages WHERE topic_id = ? AND "partition" = ? AND "offset" < ?',
            (tid, p, min(new_start, upto)),
        )
        kept = max(0, kept - cursor.rowcount)
        if new_start > upto:
            conn.execute(
                'DELETE FROM messages WHERE topic_id = ? AND "partition" = ? AND "offset" < ?',
                (tid, p, new_start),
            )
            upto, kept = new_start, 0
        conn.execute(
            'UPDATE partitions SET log_start = ?, clean_upto = ?, clean_count = ? '
            'WHERE topic_id = ? AND "partition" = ?',
            (new_start, upto, kept, tid, p),
        )
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise
    topic.starts[p], topic.clean_upto[p], topic.clean_count[p] = new_start, upto, kept
