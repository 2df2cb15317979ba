"""The ``local://`` store's schema and catalogue: its tables, the cached :class:`Topic`, and checked catalogue rows.

The catalogue is what describes the log: ``topics`` (name, partition count,
compaction, retention), ``partitions`` (where each log starts and ends, how
far compaction got) and ``offsets`` (each consumer group's committed
positions). Each row carries a CRC-32C over its values
(:func:`~streamnb.transport.local.integrity.row_crc`), written by the
``*_row`` helpers here and checked by :func:`load_catalogue` when a folder is
opened. :func:`schema_problems` compares sqlite's own schema with
:data:`SCHEMA_SQL` (damage there renames columns). The log itself (batches)
is :mod:`streamnb.transport.local.log`.

Example::

    >>> topic = Topic(1, "clicks", 1, False, None, [10], [0], [0], [0])
    >>> end, crc, tid, p = end_row(topic, 0, 12)
    >>> (end, tid, p), crc == row_crc(1, 0, 0, 12, 0, 0)
    ((12, 1, 0), True)
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import NamedTuple

from .integrity import Damage, row_crc

__all__ = [
    "BATCHES_SQL",
    "INSERT_BATCH",
    "INSERT_PARTITION",
    "INSERT_TOPIC",
    "SCHEMA_SQL",
    "SCHEMA_VERSION",
    "SET_TOPIC_CRC",
    "UPDATE_END",
    "UPSERT_OFFSET",
    "Catalogue",
    "Topic",
    "end_row",
    "load_catalogue",
    "offset_row",
    "partition_row",
    "row_crc",
    "schema_problems",
    "topic_row",
]

SCHEMA_VERSION = 3
"""``PRAGMA user_version`` of the stores this module writes (1: one row per message; 2: no checksums)."""

BATCHES_SQL = """
CREATE TABLE batches (
    topic_id INTEGER NOT NULL,
    "partition" INTEGER NOT NULL,
    base_offset INTEGER NOT NULL,  -- offset of the batch's first message
    count INTEGER NOT NULL,        -- messages in the batch
    max_timestamp REAL NOT NULL,   -- the newest message's timestamp (for retention)
    records BLOB NOT NULL,         -- the messages, as local/batch.py encode() packs them
    end_offset INTEGER,            -- the next batch's base_offset (NULL: written by schema 2)
    crc INTEGER,                   -- CRC-32C of the row (integrity.batch_crc), NULL: written by schema 2
    PRIMARY KEY (topic_id, "partition", base_offset)
)"""

SCHEMA_SQL = f"""
CREATE TABLE topics (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    partitions INTEGER NOT NULL,
    compacted INTEGER NOT NULL,
    retention REAL,
    crc INTEGER                    -- CRC-32C of the row's values (integrity.row_crc), as for the next two
);
CREATE TABLE partitions (
    topic_id INTEGER NOT NULL,
    "partition" INTEGER NOT NULL,
    log_start INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    clean_upto INTEGER NOT NULL,   -- compaction has seen every offset below this
    clean_count INTEGER NOT NULL,  -- messages kept below clean_upto
    crc INTEGER,
    PRIMARY KEY (topic_id, "partition")
) WITHOUT ROWID;
{BATCHES_SQL};
CREATE TABLE offsets (
    "group" TEXT NOT NULL,
    topic TEXT NOT NULL,
    "partition" INTEGER NOT NULL,
    "offset" INTEGER NOT NULL,
    crc INTEGER,
    PRIMARY KEY ("group", topic, "partition")
) WITHOUT ROWID;
"""

INSERT_BATCH = (
    'INSERT INTO batches (topic_id, "partition", base_offset, count, max_timestamp, records, end_offset, crc) '
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
"""Takes a row of :func:`batch_rows` (or :func:`batch_row`)."""
UPDATE_END = 'UPDATE partitions SET next_offset = ?, crc = ? WHERE topic_id = ? AND "partition" = ?'
"""Takes an :func:`end_row`."""
UPSERT_OFFSET = (
    'INSERT INTO offsets ("group", topic, "partition", "offset", crc) VALUES (?, ?, ?, ?, ?) '
    'ON CONFLICT ("group", topic, "partition") DO UPDATE SET "offset" = excluded."offset", crc = excluded.crc'
)
"""Takes an :func:`offset_row`."""
INSERT_TOPIC = "INSERT INTO topics (name, partitions, compacted, retention) VALUES (?, ?, ?, ?)"
SET_TOPIC_CRC = "UPDATE topics SET crc = ? WHERE id = ?"
INSERT_PARTITION = (
    'INSERT INTO partitions (topic_id, "partition", log_start, next_offset, clean_upto, clean_count, crc) '
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)


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


def topic_row(tid: int, name: str, partitions: int, compacted: bool, retention: float | None) -> int:
    """The checksum of a topics row (the values as sqlite gives them back)."""
    return row_crc(tid, name, partitions, int(compacted), None if retention is None else float(retention))


def partition_row(tid: int, p: int, start: int, end: int, upto: int, kept: int) -> tuple[int, ...]:
    """An :data:`INSERT_PARTITION` row."""
    return tid, p, start, end, upto, kept, row_crc(tid, p, start, end, upto, kept)


def end_row(topic: Topic, p: int, end: int) -> tuple[int, int, int, int]:
    """An :data:`UPDATE_END` row: partition ``p`` now ends at ``end`` (the rest as cached)."""
    crc = row_crc(topic.id, p, topic.starts[p], end, topic.clean_upto[p], topic.clean_count[p])
    return end, crc, topic.id, p


def offset_row(group: str | None, topic: str, p: int, offset: int) -> tuple[object, ...]:
    """An :data:`UPSERT_OFFSET` row."""
    return group, topic, p, offset, row_crc(group, topic, p, offset)


def schema_problems(conn: sqlite3.Connection) -> list[str]:
    """How the tables' definitions differ from :data:`SCHEMA_SQL` (damage in sqlite's own schema text)."""
    expected = sqlite3.connect(":memory:")
    try:
        expected.executescript(SCHEMA_SQL)
        problems = []
        for table in ("topics", "partitions", "batches", "offsets"):
            info = f"PRAGMA table_info({table})"
            if conn.execute(info).fetchall() != expected.execute(info).fetchall():
                problems.append(f"the definition of its {table} table changed")
        return problems
    finally:
        expected.close()


class Catalogue(NamedTuple):
    """What :func:`load_catalogue` found: the rows whose checksums hold, and the damaged ones."""

    topics: dict[str, Topic]
    """The topics whose rows hold, by name (a partition whose row is damaged or missing is left empty)."""
    damaged: list[Damage]
    """Every damaged or missing row."""
    lost: set[tuple[str, int]]
    """(topic, partition) of the partitions whose row is damaged or missing."""
    offsets: list[tuple[str, str, int, int]]
    """The committed offsets whose rows hold: (group, topic, partition, offset)."""


def load_catalogue(conn: sqlite3.Connection, *, checksums: bool = True) -> Catalogue:
    """The topics (with their partitions' bounds) and committed offsets, each row checked.

    A topic whose row is damaged is left out (its name and partition count
    cannot be believed). ``checksums=False`` reads a store of schema 2 (whose
    rows have none: only their types are checked).
    """
    crc_column = "crc" if checksums else "NULL"
    topics: dict[str, Topic] = {}
    damaged: list[Damage] = []
    by_id: dict[int, Topic] = {}
    for tid, name, count, compacted, retention, crc in conn.execute(
        f"SELECT id, name, partitions, compacted, retention, {crc_column} FROM topics"
    ).fetchall():
        if (crc is not None and crc != topic_row(tid, name, count, compacted, retention)) or not (
            type(tid) is int and type(name) is str and type(count) is int and 0 < count < 1 << 20
        ):
            damaged.append(Damage("its stored checksum does not match", where=f"the catalogue row of topic id {tid} "
                                  f"(named {name!r}?)"))
            continue
        z = [0] * count
        by_id[tid] = topics[name] = Topic(tid, name, count, bool(compacted), retention, z, z.copy(), z.copy(), z.copy())
    seen: set[tuple[int, int]] = set()
    for tid, p, start, end, upto, kept, crc in conn.execute(
        f'SELECT topic_id, "partition", log_start, next_offset, clean_upto, clean_count, {crc_column} FROM partitions'
    ).fetchall():
        topic = by_id.get(tid)
        if (crc is not None and crc != row_crc(tid, p, start, end, upto, kept)) or not all(
            type(v) is int for v in (tid, p, start, end, upto, kept)
        ):
            damaged.append(Damage("its stored checksum does not match", where=f"the catalogue row of partition {p} "
                                  f"of topic {topic.name if topic else tid!r}"))
        elif topic is not None and 0 <= p < topic.partitions and (tid, p) not in seen:
            topic.starts[p], topic.ends[p], topic.clean_upto[p], topic.clean_count[p] = start, end, upto, kept
            seen.add((tid, p))
    lost: set[tuple[str, int]] = set()
    for topic in by_id.values():
        missing = [p for p in range(topic.partitions) if (topic.id, p) not in seen]
        if missing:
            lost.update((topic.name, p) for p in missing)
            damaged.append(Damage("their catalogue rows are damaged or missing",
                                  where=f"partitions {', '.join(map(str, missing))} of topic {topic.name!r}"))
    offsets: list[tuple[str, str, int, int]] = []
    for group, name, p, offset, crc in conn.execute(
        f'SELECT "group", topic, "partition", "offset", {crc_column} FROM offsets'
    ).fetchall():
        if (crc is not None and crc != row_crc(group, name, p, offset)) or not (
            type(group) is str and type(name) is str and type(p) is int and type(offset) is int
        ):
            damaged.append(Damage("its stored checksum does not match",
                                  where=f"the committed offset of group {group!r} in {name!r} partition {p}"))
        else:
            offsets.append((group, name, p, offset))
    return Catalogue(topics, damaged, lost, offsets)
