"""The ``local://`` log in sqlite: appends, compaction, retention and schema conversion (reads: :mod:`.reads`).

Pure sqlite, no threads: :mod:`streamnb.transport.local.store` calls these
on its worker thread. A partition's messages are stored as record batches
(:mod:`streamnb.transport.local.batch`), one row each, keyed by (topic id,
partition, offset of the first message); ``partitions`` holds where each log
starts and ends and how far compaction got. :func:`compact` keeps the newest
message per key (dropping keys whose newest value is a tombstone);
:func:`expire` drops the head of a partition up to the first message younger
than the retention. Stores of schema 1 (one row per message) and 2 (no
checksums) are converted by :func:`migrate` when opened.

Every row carries a CRC-32C (:mod:`streamnb.transport.local.integrity`):
batches over their header and bytes, checked by every read (:func:`.reads.read`); catalogue rows
(topics, partitions, offsets) over their values, checked when the folder is
opened (:func:`~streamnb.transport.local.catalogue.load_catalogue`) and when
offsets are read; the schema and the catalogue rows are
:mod:`streamnb.transport.local.catalogue`. Each batch also
stores where it ends (``end_offset``: the next batch's ``base_offset``), so
a missing batch is a gap that reads detect.

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
from typing import Any

from ..base import Message
from .batch import BATCH_MAX, Columns, Item, decode, decode_headers, encode, encode_columns, timestamps
from .catalogue import (
    BATCHES_SQL,
    INSERT_BATCH,
    SCHEMA_SQL,
    SCHEMA_VERSION,
    SET_TOPIC_CRC,
    UPDATE_END,
    UPSERT_OFFSET,
    Topic,
    end_row,
    topic_row,
)
from .integrity import batch_crc, checked_rows, row_crc
from .reads import read

__all__ = [
    "INSERT_BATCH",
    "RELEASE_STEP",
    "ROW_MAX_BYTES",
    "SCHEMA_SQL",
    "SCHEMA_VERSION",
    "UPDATE_END",
    "UPSERT_OFFSET",
    "Topic",
    "append",
    "batch_row",
    "batch_rows",
    "compact",
    "compaction_due",
    "delete_groups",
    "delete_topics",
    "expire",
    "migrate",
    "release",
    "rollback",
    "row_spans",
]

_SET_PARTITION = (
    "UPDATE partitions SET log_start = ?, next_offset = ?, clean_upto = ?, clean_count = ?, crc = ? "
    'WHERE topic_id = ? AND "partition" = ?'
)

def rollback(conn: sqlite3.Connection) -> None:
    """Roll back the open transaction, if sqlite has not already."""
    if conn.in_transaction:  # sqlite already rolled back after some errors (disk full, ...)
        conn.execute("ROLLBACK")


def _set_partition(conn: sqlite3.Connection, topic: Topic, p: int, start: int, upto: int, kept: int) -> None:
    end = topic.ends[p]
    conn.execute(_SET_PARTITION, (start, end, upto, kept, row_crc(topic.id, p, start, end, upto, kept), topic.id, p))


def batch_row(tid: int, p: int, base: int, end: int, count: int, max_ts: float, blob: bytes) -> tuple[object, ...]:
    """An :data:`INSERT_BATCH` row: a batch of ``count`` messages holding offsets ``base..end-1``."""
    return tid, p, base, count, max_ts, blob, end, batch_crc(tid, p, base, end, count, max_ts, blob)


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
    for at, stop in row_spans(None, None, len(items), items):
        chunk = items[at:stop]
        n = len(chunk)
        yield batch_row(tid, partition, base + at, base + at + n, n, max(item[2] for item in chunk), encode(chunk))


def _message_rows(tid: int, partition: int, messages: Sequence[Message], end: int) -> Iterator[tuple[object, ...]]:
    """:data:`INSERT_BATCH` rows for ``messages``, whose offsets may have gaps; the last batch ends at ``end``."""
    for at, stop in row_spans(None, None, len(messages), messages):
        chunk = messages[at:stop]
        base = chunk[0].offset
        deltas = [m.offset - base for m in chunk]
        items = [(m.key, m.value, m.timestamp, m.headers) for m in chunk]
        blob = encode(items, None if deltas[-1] == len(chunk) - 1 else deltas)
        upto = messages[stop].offset if stop < len(messages) else end
        yield batch_row(tid, partition, base, upto, len(chunk), max(m.timestamp for m in chunk), blob)


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
            conn.executemany(INSERT_BATCH, _message_rows(tid, p, kept, upto))
        start = kept[0].offset if kept else upto
        _set_partition(conn, topic, p, start, upto, len(kept))
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
    # Batches wholly older than the cutoff go; the first one that is not may lose its head. Each
    # batch is checked before its newest timestamp is believed: a damaged one stops retention here.
    row = None
    for base, batch_end, max_ts, blob in checked_rows(conn, topic, p, start, end):
        if max_ts >= cutoff:
            row = base, blob, batch_end
            break
    if row is None:
        new_start = end
    else:
        base, blob, _ = row
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
            base, blob, tail_end = row
            if tail_end is None:  # a batch of schema 2 that does not say: it ends where the next begins
                (tail_end,) = conn.execute(
                    'SELECT coalesce(min(base_offset), ?) FROM batches WHERE topic_id = ? AND "partition" = ? '
                    "AND base_offset > ?", (end, tid, p, base),
                ).fetchone()
            conn.executemany(
                INSERT_BATCH, _message_rows(tid, p, decode(blob, base, topic.name, p, new_start, end, end), tail_end)
            )
        upto = max(topic.clean_upto[p], new_start)
        (kept,) = conn.execute(
            'SELECT coalesce(sum(count), 0) FROM batches WHERE topic_id = ? AND "partition" = ? AND base_offset < ?',
            (tid, p, upto),
        ).fetchone()
        _set_partition(conn, topic, p, new_start, upto, kept)
        conn.execute("COMMIT")
    except BaseException:
        rollback(conn)
        raise
    topic.starts[p], topic.clean_upto[p], topic.clean_count[p] = new_start, upto, kept


def migrate(conn: sqlite3.Connection, version: int) -> None:
    """Convert a store of schema ``version`` to :data:`SCHEMA_VERSION`, inside the caller's transaction.

    Batches of schema 2 keep no checksum and no end (``NULL``: read
    unchecked, see :func:`~streamnb.transport.local.integrity.verify_batch`)
    until compaction or retention rewrites them: computing one now would
    vouch for bytes nobody checked. The catalogue rows get theirs now.
    """
    if version == 1:  # one row per message -> record batches
        conn.execute(BATCHES_SQL)
        cells = conn.execute('SELECT topic_id, "partition", next_offset FROM partitions ORDER BY 1, 2').fetchall()
        for tid, p, end in cells:
            rows = conn.execute(
                'SELECT "offset", timestamp, key, value, headers FROM messages '
                'WHERE topic_id = ? AND "partition" = ? ORDER BY "offset"',
                (tid, p),
            )
            held: list[Message] = []  # a chunk waits for the next one: its batch ends where that one begins
            while chunk := rows.fetchmany(BATCH_MAX):
                messages = [Message("", p, o, ts, k, v, decode_headers(h) if h else ()) for o, ts, k, v, h in chunk]
                if held:
                    conn.executemany(INSERT_BATCH, _message_rows(tid, p, held, messages[0].offset))
                held = messages
            if held:
                conn.executemany(INSERT_BATCH, _message_rows(tid, p, held, end))
        conn.execute("DROP TABLE messages")
    else:
        conn.execute("ALTER TABLE batches ADD COLUMN end_offset INTEGER")
        conn.execute("ALTER TABLE batches ADD COLUMN crc INTEGER")
    for table in ("topics", "partitions", "offsets"):
        conn.execute(f"ALTER TABLE {table} ADD COLUMN crc INTEGER")
    for tid, name, count, compacted, retention in conn.execute(
        "SELECT id, name, partitions, compacted, retention FROM topics"
    ).fetchall():
        conn.execute(SET_TOPIC_CRC, (topic_row(tid, name, count, compacted, retention), tid))
    cells = conn.execute('SELECT topic_id, "partition", log_start, next_offset, clean_upto, clean_count '
                         "FROM partitions").fetchall()
    conn.executemany('UPDATE partitions SET crc = ? WHERE topic_id = ? AND "partition" = ?',
                     [(row_crc(*r), r[0], r[1]) for r in cells])
    offsets = conn.execute('SELECT "group", topic, "partition", "offset" FROM offsets').fetchall()
    conn.executemany('UPDATE offsets SET crc = ? WHERE "group" = ? AND topic = ? AND "partition" = ?',
                     [(row_crc(*r), *r[:3]) for r in offsets])


def append(conn: sqlite3.Connection, runs: Sequence[tuple[Topic, int, Columns]]) -> None:
    """Append runs of messages, each to one partition, in one transaction (what recording uses: no regrouping)."""
    rows = []
    ends: dict[tuple[Topic, int], int] = {}
    for topic, partition, (keys, values, stamps, headers) in runs:
        base = ends.get((topic, partition), topic.ends[partition])
        rows += [
            batch_row(topic.id, partition, base + at, base + end, end - at, max(stamps[at:end]),
                      encode_columns(keys[at:end], values[at:end], stamps[at:end], headers[at:end]))
            for at, end in row_spans(keys, values, len(keys))
        ]
        ends[(topic, partition)] = base + len(keys)
    conn.execute("BEGIN")
    try:
        conn.executemany(INSERT_BATCH, rows)
        conn.executemany(UPDATE_END, [end_row(topic, partition, end) for (topic, partition), end in ends.items()])
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
