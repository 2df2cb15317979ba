"""``local://PATH`` -- a durable embedded broker kept in a folder.

Topics, messages and consumer-group offsets live in one sqlite3 database,
``PATH/streamnb.sqlite3``, in WAL mode. ``Consumer.commit(offsets, records)``
appends the records and stores the offsets in ONE sqlite transaction, so a
process killed at any moment (``kill -9``, a crashed or restarted kernel)
leaves either the whole commit or none of it: processing on ``local://`` is
exactly-once.

Durability: the default (``synchronous=NORMAL``) keeps every finished commit
when the process dies at any point; a power cut or an OS crash may lose the
last few commits (whole commits: never half of one). Add ``?sync=full`` to the
URL (``local://data?sync=full``) to keep those too, at the cost of an fsync
per commit.

All sqlite work happens on one worker thread per folder, so the event loop (a
Jupyter kernel's) never waits on the disk. One process owns a folder at a
time (an ``fcntl.flock`` on ``PATH/LOCK``, released by the OS when the process
dies); a second process gets :class:`~streamnb.errors.BrokerLockedError`.
Inside one process, every App that opens the same folder shares one store, so
re-running the notebook cell that builds an App just works.

Compacted topics are compacted by the worker once at least half of a
partition has been written since its last compaction (and at least
``COMPACT_MIN_DIRTY`` messages), and when the folder is opened; a key whose
newest value is a tombstone (``None``) disappears. Retention drops messages
older than ``retention`` seconds from the head of each partition (up to the
first message still young enough, so the log stays contiguous, as Kafka's
segment deletion does), checked every ``RETENTION_INTERVAL`` seconds while
writing and when the folder is opened. :meth:`LocalTransport.cleanup` runs
both now. Both run on the worker thread between commits, so a large
compaction delays commits (never the event loop).

Example::

    >>> import asyncio, tempfile
    >>> from streamnb.transport.base import TP, ProducerRecord, TopicSpec
    >>> from streamnb.transport.local import LocalTransport
    >>> async def main(folder):
    ...     transport = LocalTransport(f"local://{folder}")
    ...     await transport.start()
    ...     await transport.create_topic(TopicSpec("clicks", partitions=2))
    ...     await transport.send([ProducerRecord("clicks", 0, b"k", b"v", 0.0)])
    ...     messages = await transport.read(TP("clicks", 0), 0, 10)
    ...     await transport.stop()
    ...     return [(m.offset, m.value) for m in messages]
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     asyncio.run(main(folder))
    [(0, b'v')]
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import fcntl
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

from ..errors import AppNotRunningError, BrokerError, BrokerLockedError, ConfigurationError
from .base import TP, Consumer, Headers, Message, ProducerRecord, RebalanceListener, TopicSpec, Transport

__all__ = ["LocalConsumer", "LocalTransport"]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
"""``PRAGMA user_version`` of the stores this module writes."""
DEFAULT_FOLDER = ".streamnb"
DB_NAME = "streamnb.sqlite3"
LOCK_NAME = "LOCK"
COMPACT_MIN_DIRTY = 10_000
"""A partition is compacted while running once this many messages (and half of it) are new."""
RETENTION_INTERVAL = 30.0
"""Seconds between two retention passes while the store is written to."""

_R = TypeVar("_R")
_EMPTY: Headers = ()
_new = tuple.__new__

_SCHEMA = """
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

_INSERT_MESSAGE = "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?)"
_UPDATE_END = 'UPDATE partitions SET next_offset = ? WHERE topic_id = ? AND "partition" = ?'
_UPSERT_OFFSET = (
    'INSERT INTO offsets VALUES (?, ?, ?, ?) ON CONFLICT ("group", topic, "partition") '
    'DO UPDATE SET "offset" = excluded."offset"'
)
_SELECT_RANGE = (
    'SELECT "offset", timestamp, key, value, headers FROM messages '
    'WHERE topic_id = ? AND "partition" = ? AND "offset" >= ? AND "offset" < ? '
    'ORDER BY "offset" LIMIT ?'
)


def _encode_headers(headers: Headers) -> bytes:
    return json.dumps([[name, value.decode("latin-1")] for name, value in headers], separators=(",", ":")).encode()


def _decode_headers(blob: bytes) -> Headers:
    return tuple((name, text.encode("latin-1")) for name, text in json.loads(blob))


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:  # sqlite already rolled back after some errors (disk full, ...)
        conn.execute("ROLLBACK")


def _parse_url(url: str) -> tuple[str, bool]:
    """``local://PATH[?sync=normal|full]`` -> (absolute folder, full sync)."""
    parts = urlsplit(url)
    if parts.scheme != "local":
        raise ConfigurationError(f"{url!r} is not a local:// URL; use e.g. 'local://.streamnb'")
    path = unquote(parts.netloc + parts.path) or DEFAULT_FOLDER
    options = parse_qs(parts.query, keep_blank_values=True)
    unknown = set(options) - {"sync"}
    if unknown:
        raise ConfigurationError(
            f"unknown option(s) {', '.join(sorted(unknown))} in {url!r}; local:// only knows ?sync=normal|full"
        )
    sync = options.get("sync", ["normal"])[-1].lower()
    if sync not in ("normal", "full"):
        raise ConfigurationError(f"sync={sync!r} in {url!r} is not 'normal' or 'full'")
    return os.path.abspath(os.path.expanduser(path)), sync == "full"


@dataclass(eq=False)
class _Topic:
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


_Want = tuple[_Topic, int, int, int]
"""(topic, partition, position, end): a partition to read from ``position`` up to ``end``."""


class _Store:
    """One open folder: the lock, the sqlite connection and its worker thread.

    Methods whose names end in ``_sync`` run on the worker thread only; the
    event loop reaches them through :meth:`call`.
    """

    def __init__(self, folder: str, full_sync: bool, after: concurrent.futures.Future[None] | None) -> None:
        self.folder = folder
        self.full_sync = full_sync
        self.refs = 0
        self.topics: dict[str, _Topic] = {}
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
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS newest (key BLOB PRIMARY KEY, off INTEGER NOT NULL) WITHOUT ROWID"
        )

    def _load_sync(self, conn: sqlite3.Connection) -> None:
        for tid, name, count, compacted, retention in conn.execute(
            "SELECT id, name, partitions, compacted, retention FROM topics"
        ):
            z = [0] * count
            topic = _Topic(tid, name, count, bool(compacted), retention, z, z.copy(), z.copy(), z.copy())
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

    def _insert_topic_sync(self, spec: TopicSpec) -> _Topic:
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
                _rollback(conn)
            raise
        n = spec.partitions
        return _Topic(tid, spec.name, n, spec.compacted, spec.retention, [0] * n, [0] * n, [0] * n, [0] * n)

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
        created: dict[str, _Topic] = {}
        # name -> (id, copy of ends, new rows per partition); the ends reach the cache after COMMIT.
        state: dict[str, tuple[int, list[int], list[list[tuple[Any, ...]]]]] = {}
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
                offset = ends[partition]
                ends[partition] = offset + 1
                rows[partition].append(
                    (tid, partition, offset, timestamp, key, value, _encode_headers(headers) if headers else None)
                )
            if state:
                # Inserting in primary-key order (partition by partition) is markedly faster.
                partitions = chain.from_iterable(rows for _, _, rows in state.values())
                conn.executemany(_INSERT_MESSAGE, chain.from_iterable(partitions))
                updates: list[tuple[int, int, int]] = []
                for name, (tid, ends, _) in state.items():
                    old = (topics.get(name) or created[name]).ends
                    updates.extend((end, tid, p) for p, end in enumerate(ends) if end != old[p])
                conn.executemany(_UPDATE_END, updates)
            if offsets:
                conn.executemany(_UPSERT_OFFSET, [(group, tp[0], tp[1], off) for tp, off in offsets.items()])
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
        topics.update(created)
        for name, (_, ends, _) in state.items():
            topics[name].ends[:] = ends
        if not self.maintenance_pending and self._maintenance_due(state):
            self.maintenance_pending = True
            try:
                self.executor.submit(self._maintain_in_background)
            except RuntimeError:  # closing
                self.maintenance_pending = False
        return frozenset(state)

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

    def read_sync(self, topic: _Topic, partition: int, start: int, stop: int, limit: int) -> list[Message]:
        rows = self._read_conn().execute(_SELECT_RANGE, (topic.id, partition, start, stop, limit)).fetchall()
        name = topic.name
        return [
            _new(Message, (name, partition, o, ts, k, v, _EMPTY if h is None else _decode_headers(h)))
            for o, ts, k, v, h in rows
        ]

    def fetch_sync(self, wants: list[_Want], max_records: int) -> tuple[list[Message], list[int]]:
        """Read up to ``max_records`` from ``wants`` = [(topic, partition, position, end)].

        Round robin: every partition gets an equal share of what is left,
        until the budget is spent or every partition is read up to its end.
        Returns the messages and the new position of each want.
        """
        out: list[Message] = []
        positions = [want[2] for want in wants]
        active = list(range(len(wants)))
        left = max_records
        while active and left > 0:
            share = -(-left // len(active))
            again = []
            for i in active:
                if left <= 0:
                    break
                topic, partition, _, end = wants[i]
                n = min(share, left)
                messages = self.read_sync(topic, partition, positions[i], end, n)
                out += messages
                left -= len(messages)
                if len(messages) == n:
                    positions[i] = messages[-1].offset + 1
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

    def _maintenance_due(self, written: Mapping[str, tuple[int, list[int], list[list[tuple[Any, ...]]]]]) -> bool:
        for name, (_, _, rows) in written.items():
            topic = self.topics[name]
            if topic.retention is not None and time.monotonic() - self.last_retention >= RETENTION_INTERVAL:
                return True
            if topic.compacted:
                for p, appended in enumerate(rows):
                    if appended and self._compaction_due(topic, p, COMPACT_MIN_DIRTY):
                        return True
        return False

    @staticmethod
    def _compaction_due(topic: _Topic, partition: int, min_dirty: int) -> bool:
        dirty = topic.ends[partition] - topic.clean_upto[partition]
        return dirty >= min_dirty and dirty > topic.clean_count[partition]

    def _maintain_in_background(self) -> None:
        self.maintenance_pending = False
        try:
            self.maintain_sync(min_dirty=COMPACT_MIN_DIRTY, force=False, retention=None)
        except Exception:
            logger.exception("compaction/retention of the local:// store in %s failed", self.folder)

    def maintain_sync(self, *, min_dirty: int, force: bool, retention: bool | None) -> None:
        """Compact the partitions that need it; apply retention (``None``: when due)."""
        if self.conn is None:
            return
        now = time.monotonic()
        if retention is None:
            retention = now - self.last_retention >= RETENTION_INTERVAL
        if retention:
            self.last_retention = now
        for topic in list(self.topics.values()):
            for p in range(topic.partitions):
                if topic.compacted and (
                    topic.ends[p] > topic.clean_upto[p] if force else self._compaction_due(topic, p, min_dirty)
                ):
                    self._compact_sync(topic, p)
                if retention and topic.retention is not None:
                    self._expire_sync(topic, p)

    def _compact_sync(self, topic: _Topic, p: int) -> None:
        """Keep the newest message per key; drop keys whose newest message is a tombstone."""
        conn = self._conn()
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
            start, kept = self._head_and_count_sync(tid, p, upto)
            conn.execute(
                'UPDATE partitions SET log_start = ?, clean_upto = ?, clean_count = ? '
                'WHERE topic_id = ? AND "partition" = ?',
                (start, upto, kept, tid, p),
            )
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise
        topic.starts[p], topic.clean_upto[p], topic.clean_count[p] = start, upto, kept

    def _head_and_count_sync(self, tid: int, p: int, end: int) -> tuple[int, int]:
        first, count = self._conn().execute(
            'SELECT min("offset"), count(*) FROM messages WHERE topic_id = ? AND "partition" = ?', (tid, p)
        ).fetchone()
        return (end if first is None else first), count

    def _expire_sync(self, topic: _Topic, p: int) -> None:
        """Drop the head of the partition up to the first message younger than the retention."""
        assert topic.retention is not None
        conn = self._conn()
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
            _rollback(conn)
            raise
        topic.starts[p], topic.clean_upto[p], topic.clean_count[p] = new_start, upto, kept


# -- the per-process registry of open folders --------------------------------------------------

_stores: dict[str, _Store] = {}
_closing: dict[str, concurrent.futures.Future[None]] = {}
_registry_lock = threading.Lock()


def _acquire(folder: str, full_sync: bool) -> _Store:
    with _registry_lock:
        store = _stores.get(folder)
        if store is None:
            store = _stores[folder] = _Store(folder, full_sync, _closing.get(folder))
        store.refs += 1
        return store


def _release(store: _Store) -> concurrent.futures.Future[None] | None:
    """Drop one reference; the last one closes the store (returns the closing future)."""
    with _registry_lock:
        store.refs -= 1
        if store.refs > 0:
            return None
        if _stores.get(store.folder) is store:
            del _stores[store.folder]
        closing = store.executor.submit(store.close_sync)
        store.executor.shutdown(wait=False)
        _closing[store.folder] = closing

    def forget(done: concurrent.futures.Future[None]) -> None:
        with _registry_lock:
            if _closing.get(store.folder) is done:
                del _closing[store.folder]

    closing.add_done_callback(forget)
    return closing


def _forget_stores_in_child() -> None:
    """After fork: the child owns no folder (its copy of each lock descriptor is closed)."""
    global _registry_lock
    _registry_lock = threading.Lock()
    for store in _stores.values():
        if store.lock_fd >= 0:
            os.close(store.lock_fd)
            store.lock_fd = -1
        store.conn = None
    _stores.clear()
    _closing.clear()


os.register_at_fork(after_in_child=_forget_stores_in_child)


# -- the public facade -----------------------------------------------------------------------


class LocalTransport(Transport):
    """The ``local://PATH`` backend: durable, embedded, exactly-once.

    ``PATH`` is a folder (created when missing; relative paths are relative to
    the working directory; ``local://`` alone means ``local://.streamnb``).
    ``?sync=full`` makes commits survive power loss too.

    Example::

        >>> transport = LocalTransport("local://.streamnb")
        >>> transport.folder.endswith(".streamnb")
        True
    """

    scheme = "local"
    exactly_once = True

    def __init__(self, url: str = "local://" + DEFAULT_FOLDER) -> None:
        self.url = url
        self.folder, self.full_sync = _parse_url(url)
        self._store: _Store | None = None

    def __repr__(self) -> str:
        return f"<LocalTransport {self.url} {'open' if self._store else 'closed'}>"

    @property
    def store(self) -> _Store:
        """The open store behind this transport (for tests and tools); raises when not started."""
        if self._store is None:
            raise AppNotRunningError(f"{self.url} is not open: await app.start() (or transport.start()) first")
        return self._store

    async def start(self) -> None:
        """Open (creating if needed) the folder; raise BrokerLockedError if another process has it."""
        if self._store is not None:
            return
        store = _acquire(os.path.realpath(self.folder), self.full_sync)
        try:
            # shield: a cancelled start must not cancel the opening other Apps may share
            await asyncio.shield(asyncio.wrap_future(store.opened))
        except BaseException:
            closing = _release(store)
            if closing is not None:
                await asyncio.shield(asyncio.wrap_future(closing))
            raise
        self._store = store
        if self.full_sync and not store.full_sync:  # another App opened it without ?sync=full
            await store.call(store.full_sync_sync)

    async def stop(self) -> None:
        """Close the store (once every App of this process using the folder stopped)."""
        store, self._store = self._store, None
        if store is not None:
            closing = _release(store)
            if closing is not None:
                await asyncio.shield(asyncio.wrap_future(closing))

    async def create_topic(self, spec: TopicSpec) -> int:
        store = self.store
        topic = store.topics.get(spec.name)
        if topic is not None:
            return topic.partitions
        return await store.call(store.create_topic_sync, spec)

    async def partition_count(self, topic: str) -> int | None:
        found = self.store.topics.get(topic)
        return None if found is None else found.partitions

    async def send(self, records: Sequence[ProducerRecord]) -> None:
        if records:
            store = self.store
            store.notify(await store.call(store.write_sync, records, None, {}))

    async def committed(self, group: str, tps: Iterable[TP]) -> dict[TP, int]:
        store = self.store
        return await store.call(store.committed_sync, group, list(tps))

    async def end_offsets(self, tps: Iterable[TP]) -> dict[TP, int]:
        return {tp: self._bounds(tp)[1] for tp in tps}

    async def beginning_offsets(self, tps: Iterable[TP]) -> dict[TP, int]:
        return {tp: self._bounds(tp)[0] for tp in tps}

    def _bounds(self, tp: TP) -> tuple[int, int]:
        topic = self.store.topics.get(tp.topic)
        if topic is None or not 0 <= tp.partition < topic.partitions:
            return 0, 0
        return topic.starts[tp.partition], topic.ends[tp.partition]

    async def read(self, tp: TP, start: int, stop: int, max_records: int = 10_000) -> list[Message]:
        store = self.store
        topic = store.topics.get(tp.topic)
        if topic is None or not 0 <= tp.partition < topic.partitions or max_records <= 0:
            return []
        start = max(start, topic.starts[tp.partition])
        stop = min(stop, topic.ends[tp.partition])
        if start >= stop:
            return []
        return await store.call_read(store.read_sync, topic, tp.partition, start, stop, max_records)

    async def cleanup(self) -> None:
        """Compact every compacted partition with new messages and apply retention, now.

        Example::

            >>> await transport.cleanup()  # doctest: +SKIP
        """
        store = self.store
        await store.call(lambda: store.maintain_sync(min_dirty=1, force=True, retention=True))

    def consumer(
        self,
        group: str,
        topics: Sequence[str],
        listener: RebalanceListener,
        *,
        member: int = 0,
        members: int = 1,
    ) -> Consumer:
        """A static member ``member`` of ``members``: it reads partitions ``p % members == member``."""
        return LocalConsumer(self, group, topics, listener, member, members)


class LocalConsumer(Consumer):
    """A member of a consumer group on a ``local://`` store (static assignment).

    Example::

        >>> consumer = transport.consumer("g", ["clicks"], listener)  # doctest: +SKIP
        >>> await consumer.start()  # doctest: +SKIP
        >>> messages = await consumer.getmany(timeout=1.0, max_records=1000)  # doctest: +SKIP
    """

    def __init__(
        self,
        transport: LocalTransport,
        group: str,
        topics: Sequence[str],
        listener: RebalanceListener,
        member: int,
        members: int,
    ) -> None:
        if not 0 <= member < members:
            raise ConfigurationError(f"member must be in 0..{members - 1}, not {member}")
        self.transport = transport
        self.group = group
        self.topics = list(topics)
        self.listener = listener
        self.member = member
        self.members = members
        self._assigned: list[TP] = []
        self._positions: dict[TP, int] = {}
        self._wakeup = asyncio.Event()
        self._next = 0

    async def start(self) -> None:
        """Take partitions ``p % members == member``, await ``on_assigned``, then load positions."""
        store = self.transport.store
        assigned: list[TP] = []
        for name in self.topics:
            topic = store.topics.get(name)
            if topic is not None:
                assigned.extend(TP(name, p) for p in range(topic.partitions) if p % self.members == self.member)
        self._assigned = assigned
        await self.listener.on_assigned(set(assigned))
        committed = await self.transport.committed(self.group, assigned)
        beginnings = await self.transport.beginning_offsets(assigned)
        for tp in assigned:
            self._positions[tp] = committed.get(tp, beginnings[tp])
        with store.waiters_lock:
            store.waiters[self._wakeup] = (asyncio.get_running_loop(), frozenset(self.topics))

    async def stop(self) -> None:
        """Await ``on_revoked`` with every assigned partition (nothing is committed here)."""
        store = self.transport._store
        if store is not None:
            with store.waiters_lock:
                store.waiters.pop(self._wakeup, None)
        await self.listener.on_revoked(set(self._assigned))
        self._assigned = []

    def assignment(self) -> set[TP]:
        return set(self._assigned)

    def seek(self, tp: TP, offset: int) -> None:
        self._positions[tp] = offset

    def position(self, tp: TP) -> int | None:
        """The offset the next ``getmany`` reads ``tp`` from (``None`` when not assigned)."""
        return self._positions.get(tp)

    def _wants(self) -> list[_Want]:
        """The assigned partitions with unread messages, in this round's order."""
        assigned = self._assigned
        n = len(assigned)
        if not n:
            return []
        positions = self._positions
        topics = self.transport.store.topics
        first = self._next % n
        wants = []
        for tp in assigned[first:] + assigned[:first]:
            topic = topics[tp.topic]
            p = tp.partition
            position, end = positions[tp], topic.ends[p]
            if position < end:
                wants.append((topic, p, position, end))
        return wants

    def _advance(self, wants: list[_Want], positions: list[int]) -> bool:
        """Move past a fetched batch, unless ``seek()`` moved a position meanwhile."""
        current = self._positions
        tps = [TP(topic.name, p) for topic, p, _, _ in wants]
        if any(current.get(tp) != want[2] for tp, want in zip(tps, wants)):
            return False
        current.update(zip(tps, positions))
        self._next += 1
        return True

    async def getmany(self, timeout: float, max_records: int) -> list[Message]:
        """Up to ``max_records`` messages, shared round robin between the partitions with data.

        Returns at once when some are stored; otherwise waits (without polling)
        until a send or commit of this process appends to a subscribed topic,
        or ``timeout`` seconds passed (then ``[]``).
        """
        if max_records <= 0:
            return []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            wants = self._wants()
            if wants:
                store = self.transport.store
                messages, positions = await store.call_read(store.fetch_sync, wants, max_records)
                if self._advance(wants, positions) and messages:
                    return messages
                continue  # seek() moved a position, or only removed (compacted/expired) offsets were left
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return []

    async def commit(self, offsets: Mapping[TP, int], records: Sequence[ProducerRecord] = ()) -> None:
        """Append ``records`` and store ``offsets`` in one sqlite transaction (all or nothing)."""
        if not offsets and not records:
            return
        store = self.transport.store
        store.notify(await store.call(store.write_sync, records, self.group, offsets))
