"""The open ``local://`` folder: its lock, sqlite connections, worker threads and registry.

A :class:`Store` owns one folder: an ``fcntl.flock`` on ``PATH/LOCK`` (one
process at a time), the writer connection on its worker thread and a
read-only connection on a second thread (WAL: reads see the last commit and
never wait for one). Methods whose names end in ``_sync`` run on those
threads; the event loop reaches them through :meth:`Store.call` and
:meth:`Store.call_read`. :mod:`streamnb.transport.local.registry` shares one
store between every App of this process that opens the same folder.

Compaction runs once at least ``COMPACT_MIN_DIRTY`` messages (and half the
partition) are new; retention every ``RETENTION_INTERVAL`` seconds while
writing. The SQL itself is in :mod:`streamnb.transport.local.log`.

Example (on a running loop)::

    store = acquire("/tmp/data", full_sync=False)
    await asyncio.wrap_future(store.opened)
    messages = await store.call_read(store.read_sync, store.topics["clicks"], 0, 0, 100, 100)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from ... import _gc
from ...errors import AppNotRunningError, BrokerError, BrokerLockedError, ConfigurationError
from ..base import TP, Message, ProducerRecord, TopicSpec
from .batch import Item
from .log import (
    INSERT_BATCH,
    RELEASE_STEP,
    SCHEMA_SQL,
    SCHEMA_VERSION,
    UPDATE_END,
    UPSERT_OFFSET,
    Topic,
    Want,
    batch_rows,
    compact,
    compaction_due,
    expire,
    migrate,
    read,
    read_bounded,
    release,
    rollback,
)

__all__ = ["COMPACT_MIN_DIRTY", "DB_NAME", "LOCK_NAME", "RETENTION_INTERVAL", "Store"]

logger = logging.getLogger("streamnb.transport.local")
"""The logger of the ``local://`` modules (one name for users to configure)."""

DB_NAME = "streamnb.sqlite3"
LOCK_NAME = "LOCK"
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
        self.conn: sqlite3.Connection | None = None
        self.lock_fd = -1
        self.waiters: dict[asyncio.Event, tuple[asyncio.AbstractEventLoop, frozenset[str]]] = {}
        self.waiters_lock = threading.Lock()
        self.maintenance_pending = False
        self.last_retention = time.monotonic()
        self.reader.submit(self._remember_reader_thread)
        self.opened = self.executor.submit(self.open_sync, after)

    # -- event-loop side -------------------------------------------------------------

    async def call(self, fn: Callable[..., _R], *args: Any) -> _R:
        """Run ``fn(*args)`` on the worker thread."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)
        except sqlite3.Error as exc:
            raise BrokerError(f"the local:// store in {self.folder} failed: {exc}") from exc

    async def call_read(self, fn: Callable[..., _R], *args: Any) -> _R:
        """Run ``fn(*args)`` on the reader thread (its connection sees committed data)."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self.reader, fn, *args)
        except sqlite3.Error as exc:
            raise BrokerError(f"the local:// store in {self.folder} failed: {exc}") from exc

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
        try:
            os.makedirs(self.folder, exist_ok=True)
            self._lock_sync()
            conn = self.conn = sqlite3.connect(
                os.path.join(self.folder, DB_NAME), isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {'FULL' if self.full_sync else 'NORMAL'}")
            conn.execute("PRAGMA cache_size = -65536")  # 64 MiB
            conn.execute("PRAGMA temp_store = MEMORY")
            conn.execute("PRAGMA mmap_size = 268435456")
            self._schema_sync(conn)
            self._load_sync(conn)
            self.maintain_sync(min_dirty=1, force=False, retention=True)
        except BaseException as exc:
            self.close_sync()
            if isinstance(exc, sqlite3.Error):
                raise BrokerError(
                    f"cannot open the local:// store in {self.folder}: {exc}. If the folder holds "
                    "something else, point the app to another folder, e.g. broker='local://other'"
                ) from exc
            if isinstance(exc, OSError):
                raise BrokerError(f"cannot use the folder {self.folder} for a local:// store: {exc}") from exc
            raise

    def full_sync_sync(self) -> None:
        self._conn().execute("PRAGMA synchronous = FULL")
        self.full_sync = True

    def _lock_sync(self) -> None:
        path = os.path.join(self.folder, LOCK_NAME)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if owner == str(os.getpid()):
                who = f"this process (pid {owner}) through another copy of streamnb (was the module reloaded?)"
            else:
                who = f"another process (pid {owner})"
            raise BrokerLockedError(
                f"the local:// folder {self.folder} is in use by {who}. Stop the app or kernel that "
                "uses it (await app.stop(), or shut that kernel down), or give this app another "
                "folder, e.g. broker='local://other'."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.lock_fd = fd

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
        for tid, name, count, compacted, retention in conn.execute(
            "SELECT id, name, partitions, compacted, retention FROM topics"
        ):
            z = [0] * count
            topic = Topic(tid, name, count, bool(compacted), retention, z, z.copy(), z.copy(), z.copy())
            for p, start, end, upto, kept in conn.execute(
                'SELECT "partition", log_start, next_offset, clean_upto, clean_count '
                "FROM partitions WHERE topic_id = ?",
                (tid,),
            ):
                topic.starts[p], topic.ends[p], topic.clean_upto[p], topic.clean_count[p] = start, end, upto, kept
            self.topics[name] = topic

    def close_sync(self) -> None:
        self.reader.shutdown(wait=True)
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
        if self.lock_fd >= 0:
            fd, self.lock_fd = self.lock_fd, -1
            try:
                os.ftruncate(fd, 0)
            finally:
                os.close(fd)  # releases the flock

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
            cursor = conn.execute(
                "INSERT INTO topics (name, partitions, compacted, retention) VALUES (?, ?, ?, ?)",
                (spec.name, spec.partitions, int(spec.compacted), spec.retention),
            )
            tid = cursor.lastrowid
            assert tid is not None
            conn.executemany(
                "INSERT INTO partitions VALUES (?, ?, 0, 0, 0, 0)", [(tid, p) for p in range(spec.partitions)]
            )
            if own:
                conn.execute("COMMIT")
        except BaseException:
            if own:
                rollback(conn)
            raise
        n = spec.partitions
        return Topic(tid, spec.name, n, spec.compacted, spec.retention, [0] * n, [0] * n, [0] * n, [0] * n)

    def sql_sync(self, fn: Callable[..., _R], *args: Any) -> _R:
        """``fn(connection, *args)`` on the worker thread (for the SQL functions of :mod:`.log`)."""
        return fn(self._conn(), *args)

    def _conn(self) -> sqlite3.Connection:
        if self.conn is None:
            raise AppNotRunningError(f"the local:// store in {self.folder} is closed: await app.start() first")
        return self.conn

    # -- writing (worker thread) ---------------------------------------------------------

    def write_sync(
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
                updates: list[tuple[int, int, int]] = []
                for name, (tid, ends, rows) in state.items():
                    old = (topics.get(name) or created[name]).ends
                    for p, items in enumerate(rows):
                        if items:
                            batches += batch_rows(tid, p, old[p], items)
                            updates.append((ends[p], tid, p))
                conn.executemany(INSERT_BATCH, batches)
                conn.executemany(UPDATE_END, updates)
            if offsets:
                conn.executemany(UPSERT_OFFSET, [(group, tp[0], tp[1], off) for tp, off in offsets.items()])
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
        """Compaction or retention due: in the background; a large write's rows: freed a step at a time."""
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
        return read(self._read_conn(), topic, partition, start, stop, limit, max_bytes)

    def fetch_sync(
        self, wants: list[Want], max_records: int, max_bytes: int | None = None
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
        conn = self._read_conn()
        while active and left > 0:
            share = -(-left // len(active))
            again = []
            for i in active:
                if left <= 0:
                    break
                topic, partition, _, end = wants[i]
                n = min(share, left)
                budget = None if max_bytes is None else max_bytes - size
                messages, taken, full = read_bounded(conn, topic, partition, positions[i], end, n, budget)
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

    def committed_sync(self, group: str, tps: list[TP]) -> dict[TP, int]:
        conn = self._conn()
        found: dict[TP, int] = {}
        for name in {tp.topic for tp in tps}:
            rows = conn.execute(
                'SELECT "partition", "offset" FROM offsets WHERE "group" = ? AND topic = ?', (group, name)
            ).fetchall()
            found.update((TP(name, p), off) for p, off in rows)
        return {tp: found[tp] for tp in tps if tp in found}

    # -- compaction and retention (worker thread) --------------------------------------------

    def _maintenance_due(self, written: Mapping[str, tuple[int, list[int], list[list[Item]]]]) -> bool:
        for name, (_, _, rows) in written.items():
            topic = self.topics[name]
            if topic.retention is not None and time.monotonic() - self.last_retention >= RETENTION_INTERVAL:
                return True
            if topic.compacted:
                for p, appended in enumerate(rows):
                    if appended and compaction_due(topic, p, COMPACT_MIN_DIRTY):
                        return True
        return False

    def _maintain_in_background(self) -> None:
        self.maintenance_pending = False
        try:
            self.maintain_sync(min_dirty=COMPACT_MIN_DIRTY, force=False, retention=None)
        except Exception:
            logger.exception("compaction/retention of the local:// store in %s failed", self.folder)

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
        _gc.pause()  # (a collection over a partition read whole would hold the event loop too: see streamnb._gc)
        try:
            for topic in list(self.topics.values()):
                for p in range(topic.partitions):
                    if topic.compacted and (
                        topic.ends[p] > topic.clean_upto[p] if force else compaction_due(topic, p, min_dirty)
                    ):
                        compact(conn, topic, p)
                    if retention and topic.retention is not None:
                        expire(conn, topic, p)
        finally:
            _gc.resume()
