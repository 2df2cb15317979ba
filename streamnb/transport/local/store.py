"""The open ``local://`` folder: its lock, sqlite connections, worker threads and registry.

A :class:`Store` owns one folder: an ``fcntl.flock`` on ``PATH/LOCK`` (one
process at a time; :mod:`streamnb.transport.local.lockfile`, which also
tells whether the last owner stopped cleanly), the writer connection on its worker thread and a
read-only connection on a second thread (WAL: reads see the last commit and
never wait for one). Methods whose names end in ``_sync`` run on those
threads; the event loop reaches them through :meth:`Store.call` and
:meth:`Store.call_read`. :mod:`streamnb.transport.local.registry` shares one
store between every App of this process that opens the same folder.

Compaction runs once at least ``COMPACT_MIN_DIRTY`` messages (and half the
partition) are new; retention every ``RETENTION_INTERVAL`` seconds while
writing (:mod:`streamnb.transport.local.maintenance`). The SQL itself is in
:mod:`streamnb.transport.local.log`.

Opening checks the folder: after an unclean stop the whole database
(``PRAGMA quick_check``) and whether commits were lost (the lock's
high-water mark against the partitions' ends); always every catalogue row's
checksum. Reads check every batch (:mod:`streamnb.transport.local.integrity`).
What is damaged is a :class:`~streamnb.errors.CorruptStoreError`; a full
disk, a folder that cannot be written, a malformed file each get an error
that says so (:func:`~streamnb.transport.local.integrity.explain`).

Example (on a running loop)::

    store = acquire("/tmp/data", full_sync=False)
    await asyncio.wrap_future(store.opened)
    messages = await store.call_read(store.read_sync, store.topics["clicks"], 0, 0, 100, 100)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from ...errors import AppNotRunningError, BrokerError, ConfigurationError
from ..base import TP, Message, ProducerRecord, TopicSpec
from . import maintenance
from .batch import Item
from .batchcache import BatchCache
from .catalogue import (
    INSERT_PARTITION,
    INSERT_TOPIC,
    SCHEMA_SQL,
    SCHEMA_VERSION,
    SET_TOPIC_CRC,
    UPDATE_END,
    UPSERT_OFFSET,
    Topic,
    end_row,
    load_catalogue,
    offset_row,
    partition_row,
    schema_problems,
    topic_row,
)
from .integrity import Damage, corrupt, explain, quick_check, row_crc
from .lockfile import LOCK_NAME, Lock, Previous, lost_commits, take
from .log import (
    INSERT_BATCH,
    RELEASE_STEP,
    batch_rows,
    delete_topics,
    migrate,
    release,
    rollback,
)
from .reads import Want, fetch, read

__all__ = ["COMPACT_MIN_DIRTY", "DB_NAME", "LOCK_NAME", "RETENTION_INTERVAL", "Store"]

logger = logging.getLogger("streamnb.transport.local")
"""The logger of the ``local://`` modules (one name for users to configure)."""

DB_NAME = "streamnb.sqlite3"
COMPACT_MIN_DIRTY = 10_000
"""A partition is compacted while running once this many messages (and half of it) are new."""
RETENTION_INTERVAL = 30.0
"""Seconds between two retention passes while the store is written to."""

_R = TypeVar("_R")


class Store:
    """One open folder: the lock, the sqlite connection and its worker thread.

    Methods whose names end in ``_sync`` run on the worker thread only; the
    event loop reaches them through :meth:`call`.
    """

    def __init__(self, folder: str, full_sync: bool, after: concurrent.futures.Future[None] | None) -> None:
        self.folder = folder
        self.full_sync = full_sync
        self.refs = 0
        self.topics: dict[str, Topic] = {}
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="streamnb-local")
        # Reads run on a second thread with their own connection: in WAL mode they
        # see the last commit and never wait for a commit in progress.
        self.reader = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="streamnb-local-read")
        self.reader_conn: sqlite3.Connection | None = None
        self.reader_ident: int | None = None
        self.batch_cache = BatchCache()
        """The reader thread's batches read in part (only that thread uses it)."""
        self.conn: sqlite3.Connection | None = None
        self.lock: Lock | None = None
        self.messages = 0
        """The high-water mark: every partition's end offset, summed (what ``LOCK`` records after commits)."""
        self.waiters: dict[asyncio.Event, tuple[asyncio.AbstractEventLoop, frozenset[str]]] = {}
        self.waiters_lock = threading.Lock()
        self.maintenance_pending = False
        self.last_retention = time.monotonic()
        self.reader.submit(self._remember_reader_thread)
        self.opened = self.executor.submit(self.open_sync, after)

    # -- event-loop side -------------------------------------------------------------

    async def call(self, fn: Callable[..., _R], *args: Any) -> _R:
        """Run ``fn(*args)`` on the worker thread (damage and sqlite's errors become streamnb's)."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)
        except (sqlite3.Error, Damage, UnicodeDecodeError) as exc:
            raise _explained(exc, self.folder) from exc

    async def call_read(self, fn: Callable[..., _R], *args: Any) -> _R:
        """Run ``fn(*args)`` on the reader thread (its connection sees committed data)."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self.reader, fn, *args)
        except (sqlite3.Error, Damage, UnicodeDecodeError) as exc:
            raise _explained(exc, self.folder) from exc

    def notify(self, touched: frozenset[str]) -> None:
        """Wake the consumers reading any of the ``touched`` topics (call from a loop)."""
        if not touched:
            return
        with self.waiters_lock:
            waiters = list(self.waiters.items())
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for event, (loop, topics) in waiters:
            if topics.isdisjoint(touched):
                continue
            if loop is running:
                event.set()
            else:
                try:
                    loop.call_soon_threadsafe(event.set)
                except RuntimeError:  # that loop is closed
                    with self.waiters_lock:
                        self.waiters.pop(event, None)

    # -- opening and closing (worker thread) -------------------------------------------

    def _remember_reader_thread(self) -> None:
        self.reader_ident = threading.get_ident()

    def open_sync(self, after: concurrent.futures.Future[None] | None) -> None:
        if after is not None:  # this process is still closing the previous store of the folder
            after.result()
        path = os.path.join(self.folder, DB_NAME)
        try:
            os.makedirs(self.folder, exist_ok=True)
            self.lock = take(self.folder)
            wal_existed = os.path.exists(path + "-wal")
            conn = self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {'FULL' if self.full_sync else 'NORMAL'}")
            conn.execute("PRAGMA cache_size = -65536")  # 64 MiB
            conn.execute("PRAGMA temp_store = MEMORY")
            conn.execute("PRAGMA mmap_size = 268435456")
            previous = self.lock.previous
            if previous is not None:
                self._quick_check_sync(conn, previous)
                if previous.messages and not conn.execute("PRAGMA user_version").fetchone()[0]:  # all gone
                    raise corrupt(self.folder, lost_commits(path, previous, 0, wal_existed))
            self._schema_sync(conn)
            self._load_sync(conn)
            if previous is not None and previous.messages is not None and self.messages < previous.messages:
                raise corrupt(self.folder, lost_commits(path, previous, self.messages, wal_existed))
            self.maintain_sync(min_dirty=1, force=False, retention=True)
            self.lock.mark(self.messages)
        except BaseException as exc:
            self.close_sync(clean=False)
            if isinstance(exc, sqlite3.DatabaseError) and "not a database" in str(exc) and not (
                self.lock is not None and self.lock.existed
            ):
                raise BrokerError(
                    f"{path} is not a streamnb store (sqlite: {exc}). Move it away or point the app to another "
                    "folder, e.g. broker='local://other'."
                ) from exc
            raise _explained(exc, self.folder, "open") from exc

    def _quick_check_sync(self, conn: sqlite3.Connection, previous: Previous) -> None:
        """The last owner did not close the folder: check the whole database before serving it."""
        began = time.monotonic()
        problems = quick_check(conn)
        took = time.monotonic() - began
        who = f"its last owner (pid {previous.pid})" if previous.pid else "its last owner"
        if problems:
            raise corrupt(self.folder, f"{who} did not close it, and sqlite's check (PRAGMA quick_check) finds: "
                          + "; ".join(problems[:5]))
        logger.info(
            "the local:// folder %s was not closed by %s: sqlite's check (PRAGMA quick_check) took %.2f s: ok",
            self.folder, who, took,
        )

    def full_sync_sync(self) -> None:
        self._conn().execute("PRAGMA synchronous = FULL")
        self.full_sync = True

    def _schema_sync(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise BrokerError(
                f"the local:// store in {self.folder} was written by a newer streamnb (store schema "
                f"{version}; this streamnb reads up to {SCHEMA_VERSION}). Upgrade streamnb "
                "(pip install -U streamnb) or use another folder, e.g. broker='local://other'."
            )
        if version == 0:
            if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                raise BrokerError(
                    f"{os.path.join(self.folder, DB_NAME)} is not a streamnb store. Move it away or "
                    "use another folder, e.g. broker='local://other'."
                )
            conn.execute("BEGIN IMMEDIATE")
            for statement in SCHEMA_SQL.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        elif version < SCHEMA_VERSION:
            logger.info("converting the local:// store in %s to schema %d", self.folder, SCHEMA_VERSION)
            conn.execute("BEGIN IMMEDIATE")
            try:
                migrate(conn, version)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                conn.execute("COMMIT")
            except BaseException:
                rollback(conn)
                raise

    def _load_sync(self, conn: sqlite3.Connection) -> None:
        """Read the catalogue, every row checked; its small tables' structure too (sqlite's check of them)."""
        problems = schema_problems(conn)
        for table in ("topics", "partitions", "offsets"):
            problems += [f"sqlite's check of its {table} finds: {found}" for found in quick_check(conn, table)[:1]]
        if problems:
            raise corrupt(self.folder, "; ".join(problems))
        catalogue = load_catalogue(conn)
        if catalogue.damaged:
            raise corrupt(self.folder, "; ".join(d.describe() for d in catalogue.damaged[:5]))
        self.topics.update(catalogue.topics)
        self.messages = sum(sum(topic.ends) for topic in catalogue.topics.values())

    def close_sync(self, clean: bool = True) -> None:
        """Close the connections and release the lock (``clean``: empty it; else keep what the last owner left)."""
        self.reader.shutdown(wait=True)
        self.batch_cache.clear()
        if self.reader_conn is not None:
            try:
                self.reader_conn.close()
            finally:
                self.reader_conn = None
        if self.conn is not None:
            try:
                self.conn.close()
            finally:
                self.conn = None
        if self.lock is not None:
            self.lock.release(clean=clean)

    # -- topics (worker thread) ----------------------------------------------------------

    def create_topic_sync(self, spec: TopicSpec) -> int:
        topic = self.topics.get(spec.name)
        if topic is None:
            topic = self.topics[spec.name] = self._insert_topic_sync(spec)
        return topic.partitions

    def _insert_topic_sync(self, spec: TopicSpec) -> Topic:
        """Insert a topic inside the caller's transaction (or as its own)."""
        if spec.partitions < 1:
            raise ConfigurationError(f"topic {spec.name!r} needs at least one partition, not {spec.partitions}")
        conn = self._conn()
        own = not conn.in_transaction
        if own:
            conn.execute("BEGIN")
        try:
            retention = None if spec.retention is None else float(spec.retention)
            cursor = conn.execute(INSERT_TOPIC, (spec.name, spec.partitions, int(spec.compacted), retention))
            tid = cursor.lastrowid
            assert tid is not None
            conn.execute(SET_TOPIC_CRC, (topic_row(tid, spec.name, spec.partitions, spec.compacted, retention), tid))
            conn.executemany(INSERT_PARTITION, [partition_row(tid, p, 0, 0, 0, 0) for p in range(spec.partitions)])
            if own:
                conn.execute("COMMIT")
        except BaseException:
            if own:
                rollback(conn)
            raise
        n = spec.partitions
        return Topic(tid, spec.name, n, spec.compacted, retention, [0] * n, [0] * n, [0] * n, [0] * n)

    def sql_sync(self, fn: Callable[..., _R], *args: Any) -> _R:
        """``fn(connection, *args)`` on the worker thread (for the SQL functions of :mod:`.log`).

        Whatever ``fn`` appended raises the high-water mark in ``LOCK``.
        """
        result = fn(self._conn(), *args)
        self._mark_sync()
        return result

    def _mark_sync(self) -> None:
        """Record the high-water mark in ``LOCK`` when commits raised it."""
        messages = sum(sum(topic.ends) for topic in self.topics.values())
        if messages != self.messages and self.lock is not None:
            self.messages = messages
            self.lock.mark(messages)

    def delete_topics_sync(self, topics: Sequence[Topic]) -> None:
        """Delete ``topics`` (:func:`~.log.delete_topics`), lowering the high-water mark first."""
        gone = {topic.name for topic in topics}
        self.messages = sum(sum(topic.ends) for name, topic in self.topics.items() if name not in gone)
        if self.lock is not None:
            self.lock.mark(self.messages)
        delete_topics(self._conn(), topics)
        for name in gone:
            self.topics.pop(name, None)

    def _conn(self) -> sqlite3.Connection:
        if self.conn is None:
            raise AppNotRunningError(f"the local:// store in {self.folder} is closed: await app.start() first")
        return self.conn

    # -- writing (worker thread) ---------------------------------------------------------

    def write_sync(  # noqa: C901 - one sqlite transaction: its steps share the cursor and must not be split
        self, records: Sequence[ProducerRecord], group: str | None, offsets: Mapping[TP, int]
    ) -> frozenset[str]:
        """Append ``records`` and upsert ``group``'s ``offsets`` in one transaction."""
        conn = self._conn()
        topics = self.topics
        created: dict[str, Topic] = {}
        # name -> (id, copy of ends, new messages per partition); the ends reach the cache after COMMIT.
        state: dict[str, tuple[int, list[int], list[list[Item]]]] = {}
        conn.execute("BEGIN")
        try:
            for name, partition, key, value, timestamp, headers in records:
                found = state.get(name)
                if found is None:
                    topic = topics.get(name)
                    if topic is None:  # like memory://, a send creates a missing topic
                        count = 1 + max(r.partition for r in records if r.topic == name)
                        topic = created[name] = self._insert_topic_sync(TopicSpec(name, count))
                    found = state[name] = (topic.id, topic.ends.copy(), [[] for _ in range(topic.partitions)])
                tid, ends, rows = found
                if not 0 <= partition < len(ends):
                    raise BrokerError(
                        f"topic {name!r} has {len(ends)} partitions; a record for partition "
                        f"{partition} cannot be stored"
                    )
                ends[partition] += 1
                rows[partition].append((key, value, timestamp, headers))
            if state:
                # One batch row per partition written (see batch.py), in primary-key order.
                batches: list[tuple[object, ...]] = []
                updates: list[tuple[int, int, int, int]] = []
                for name, (tid, ends, rows) in state.items():
                    old = (topics.get(name) or created[name]).ends
                    for p, items in enumerate(rows):
                        if items:
                            batches += batch_rows(tid, p, old[p], items)
                            updates.append(end_row(topics.get(name) or created[name], p, ends[p]))
                conn.executemany(INSERT_BATCH, batches)
                conn.executemany(UPDATE_END, updates)
            if offsets:
                conn.executemany(UPSERT_OFFSET, [offset_row(group, tp[0], tp[1], off) for tp, off in offsets.items()])
            conn.execute("COMMIT")
        except BaseException:
            rollback(conn)
            raise
        topics.update(created)
        for name, (_, ends, _) in state.items():
            topics[name].ends[:] = ends
        self._after_write(state, len(records))
        return frozenset(state)

    def _after_write(self, state: Mapping[str, tuple[int, list[int], list[list[Item]]]], written: int) -> None:
        """The high-water mark in ``LOCK``; compaction or retention due: in the background; a large write's
        rows: freed a step at a time."""
        if written and self.lock is not None:
            self.messages += written
            self.lock.mark(self.messages)
        if not self.maintenance_pending and self._maintenance_due(state):
            self.maintenance_pending = True
            try:
                self.executor.submit(self._maintain_in_background)
            except RuntimeError:  # closing
                self.maintenance_pending = False
        if written >= RELEASE_STEP:
            release(*(rows for _, _, partitions in state.values() for rows in partitions))

    # -- reading (worker thread) ---------------------------------------------------------

    def _read_conn(self) -> sqlite3.Connection:
        """The reader connection on the reader thread, the writer's elsewhere."""
        if threading.get_ident() != self.reader_ident:
            return self._conn()
        if self.reader_conn is None:
            self._conn()  # raises when the store is closed
            conn = sqlite3.connect(
                os.path.join(self.folder, DB_NAME), isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA query_only = ON")
            conn.execute("PRAGMA cache_size = -65536")
            conn.execute("PRAGMA mmap_size = 268435456")
            self.reader_conn = conn
        return self.reader_conn

    def read_sync(
        self, topic: Topic, partition: int, start: int, stop: int, limit: int, max_bytes: int | None = None
    ) -> list[Message]:
        return read(self._read_conn(), topic, partition, start, stop, limit, max_bytes, self._batches())

    def fetch_sync(
        self, wants: list[Want], max_records: int, max_bytes: int | None = None
    ) -> tuple[list[Message], list[int]]:
        """Up to ``max_records`` (and ``max_bytes``) from ``wants``, round robin (:func:`~.log.fetch`)."""
        return fetch(self._read_conn(), wants, max_records, max_bytes, self._batches())

    def _batches(self) -> BatchCache | None:
        """The reader thread's :class:`~.batchcache.BatchCache` (None on other threads: they read without one)."""
        return self.batch_cache if threading.get_ident() == self.reader_ident else None

    def committed_sync(self, group: str, tps: list[TP]) -> dict[TP, int]:
        conn = self._conn()
        found: dict[TP, int] = {}
        for name in {tp.topic for tp in tps}:
            rows = conn.execute(
                'SELECT "partition", "offset", crc FROM offsets WHERE "group" = ? AND topic = ?', (group, name)
            ).fetchall()
            for p, off, crc in rows:
                if crc is not None and crc != row_crc(group, name, p, off):
                    raise Damage("its stored checksum does not match",
                                 where=f"the committed offset of group {group!r} in {name!r} partition {p}")
                found[TP(name, p)] = off
        return {tp: found[tp] for tp in tps if tp in found}

    # -- compaction and retention (worker thread) --------------------------------------------

    def _maintenance_due(self, written: Mapping[str, tuple[int, list[int], list[list[Item]]]]) -> bool:
        retention_due = time.monotonic() - self.last_retention >= RETENTION_INTERVAL
        return maintenance.due(self.topics, written, retention_due=retention_due, min_dirty=COMPACT_MIN_DIRTY)

    def _maintain_in_background(self) -> None:
        self.maintenance_pending = False
        try:
            self.maintain_sync(min_dirty=COMPACT_MIN_DIRTY, force=False, retention=None)
        except Exception as exc:
            logger.error("compaction/retention of the local:// store in %s failed: %s", self.folder,
                         explain(exc, self.folder), exc_info=not isinstance(exc, (sqlite3.Error, Damage)))

    def maintain_sync(self, *, min_dirty: int, force: bool, retention: bool | None) -> None:
        """Compact the partitions that need it; apply retention (``None``: when due)."""
        conn = self.conn
        if conn is None:
            return
        now = time.monotonic()
        if retention is None:
            retention = now - self.last_retention >= RETENTION_INTERVAL
        if retention:
            self.last_retention = now
        maintenance.run(conn, self.topics, self.folder, min_dirty=min_dirty, force=force, retention=retention)


def _explained(exc: BaseException, folder: str, doing: str = "use") -> BaseException:
    """:func:`~.integrity.explain`, but ``exc`` itself (not a copy) when there is nothing to explain."""
    error = explain(exc, folder, doing)
    if error is exc:
        raise exc
    return error
