"""Standby replicas: a worker follows the changelogs of table partitions it does not own (Kafka).

With ``table_standby_replicas=N`` (Faust's setting; 1 by default on
Kafka) the leader of every agent's consumer group names, per partition
number, ``N`` workers other than its owner that keep a standby replica
(:mod:`streamnb.transport.kafka.assignor`). Such a worker reads the
changelog partitions of its ``rocksdb://`` tables into its own stores as
they grow (:meth:`~streamnb.tables.persistence.TableStore.follow`), never
serving them. When the partition moves to it (its owner stopped or was
killed), the assignment prefers it, its restore opens the standby store
and reads only the changelog written since its last read, as after a
restart, before any event of the partition is processed. A windowed
table's standby keeps its stream time as well (:func:`follow_stream_time`),
so the takeover reads only the tail of its stream-time topic too.

``memory://`` tables keep no standby replicas: a replica would hold rows
of another worker's partitions in this worker's memory; such a table is
rebuilt from its whole changelog where its partition moves (use
``rocksdb://`` for tables whose restore time matters). Workers that share
a ``datadir`` (two on one machine) keep none either: the owner's store is
on their disk already, and a partition moving between them reads only the
tail anyway (:class:`DatadirPeers` notices them).

What a worker tells its groups about its local state covers the stores on
disk it has not opened, too (:class:`DiskCheckpoints`): a worker restarted
on the same ``datadir`` is given back the partitions whose state it holds
(or keeps their standby replicas), and reads only what was written while
it was away.

Example (what the app does on Kafka)::

    standbys = StandbyReplicas(lambda: app.tables.values(), lambda: app.transport, app.owned_partitions,
                               replicas=1, folder=app.datadir / app.id)
    listener = RebalanceListener(on_assigned, on_revoked, standbys.hooks(source))
    app.spawn(standbys.follow(), "follow standby replicas")
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, Any

from .. import naming
from ..ranges import ranges
from ..transport.base import TP, Transport
from .global_table import GlobalTable
from .persistence import TableStore
from .state.event_time import EventTimeState
from .stores.rocksdb import Checkpoint, read_checkpoint

__all__ = ["DatadirPeers", "DiskCheckpoints", "StandbyReplicas", "follow_stream_time"]

logger = logging.getLogger("streamnb")

IDLE = 0.5
"""Seconds the follower waits for new changelog records once every standby replica caught up."""

READ_BATCH = 50_000
"""Records read from a topic at a time."""


class DatadirPeers:
    """Whether another live worker of the app uses the same ``datadir`` (each holds a locked file in it).

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> a, b = DatadirPeers(folder), DatadirPeers(folder)
    >>> a.join(); a.shared()
    False
    >>> b.join(); a.shared(), b.shared()
    (True, True)
    >>> b.leave(); a.shared()
    False
    >>> a.leave()
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder / ".workers"
        self.name = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._file: IO[bytes] | None = None

    def join(self) -> None:
        """Hold this worker's file (the lock goes with the process, however it ends)."""
        if self._file is not None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        handle = open(self.folder / self.name, "wb")  # noqa: SIM115 - held until leave()
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._file = handle

    def shared(self) -> bool:
        """True while another live worker holds its file here (files of dead ones are removed)."""
        try:
            names = [p for p in self.folder.iterdir() if p.name != self.name]
        except OSError:
            return False
        for path in names:
            try:
                with open(path, "rb") as other:
                    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    path.unlink(missing_ok=True)  # (a worker that ended without leave())
            except BlockingIOError:
                return True
            except OSError:
                continue
        return False

    def leave(self) -> None:
        """Let go of this worker's file."""
        handle, self._file = self._file, None
        if handle is not None:
            with contextlib.suppress(OSError):
                (self.folder / self.name).unlink()
            handle.close()


_Signature = tuple[tuple[str, int, int], ...]


class DiskCheckpoints:
    """Resume offsets of the table-partition stores on disk that are not open in this process.

    Each is read once with :func:`~streamnb.tables.stores.rocksdb.read_checkpoint`
    (read-only, no lock: a few milliseconds for a closed store) and again
    only when its files change. A store of another broker or layout counts
    as no state (its restore would wipe it).

    >>> import tempfile
    >>> from streamnb.tables.stores.rocksdb import RocksDBStore
    >>> folder = Path(tempfile.mkdtemp())
    >>> store = RocksDBStore(folder / "3", 4 << 20)
    >>> store.open(); store.apply([], resume=120); store.origin = "kafka://k:9092"; store.close()
    >>> DiskCheckpoints().read(folder, set(), "kafka://k:9092", "")
    {3: 120}
    >>> DiskCheckpoints().read(folder, {3}, "kafka://k:9092", "")   # (open here: its live offset counts)
    {}
    >>> DiskCheckpoints().read(folder, set(), "kafka://other:9092", "")   # (another broker's changelog)
    {}
    """

    def __init__(self) -> None:
        self._seen: dict[Path, tuple[_Signature, Checkpoint | None]] = {}
        self.reads = 0
        """Stores opened read-only so far (the others came from the cache)."""

    def read(self, folder: Path, skip: set[int], url: str | None, layout: str) -> dict[int, int]:
        """``{partition: resume offset}`` of the stores in ``folder`` (one per partition) but those in ``skip``."""
        out: dict[int, int] = {}
        try:
            entries = [e for e in os.scandir(folder) if e.name.isdigit() and e.is_dir()]
        except OSError:
            return out
        for entry in entries:
            partition = int(entry.name)
            if partition in skip:
                continue
            found = self._checkpoint(Path(entry.path))
            if found is not None and found.origin in (None, url) and found.layout == layout:
                out[partition] = found.resume
        return out

    def _checkpoint(self, path: Path) -> Checkpoint | None:
        signature = _signature(path)
        cached = self._seen.get(path)
        if cached is not None and cached[0] == signature:
            return cached[1]
        self.reads += 1
        found = read_checkpoint(path)
        self._seen[path] = (signature, found)
        return found


def _signature(path: Path) -> _Signature:
    """Name, size and modification time of a store's data files (write-ahead logs, tables, manifest).

    (Not its info log or settings, which a read-only open rewrites.)
    """
    try:
        return tuple(sorted(
            (e.name, st.st_size, st.st_mtime_ns)
            for e in os.scandir(path) if e.name.endswith((".log", ".sst")) or e.name.startswith(("MANIFEST", "CURRENT"))
            for st in (e.stat(),)
        ))
    except OSError:
        return ()


class _Hooks:
    """One consumer's :class:`~streamnb.transport.base.LocalState` (what its assignor sends and hears)."""

    def __init__(self, owner: StandbyReplicas, consumer: object) -> None:
        self.owner = owner
        self.consumer = consumer
        self.worker = owner.worker
        self.replicas = owner.replicas

    def offsets(self) -> Mapping[int, int]:
        return self.owner.offsets()

    def standbys(self, partitions: set[int]) -> None:
        self.owner.assigned(self.consumer, partitions)


class StandbyReplicas:
    """The standby replicas one app keeps, and the task that follows their changelogs."""

    def __init__(
        self,
        tables: Callable[[], Iterable[Any]],
        transport: Callable[[], Transport | None],
        owned: Callable[[], set[int]],
        *,
        replicas: int,
        folder: Path,
    ) -> None:
        self.tables = tables
        self.transport = transport
        self.owned = owned
        self.replicas = replicas
        """Standby replicas wanted per partition (``table_standby_replicas``)."""
        self.worker = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        """This worker's name in its consumer groups' subscriptions."""
        self.by_consumer: dict[object, set[int]] = {}
        self.peers = DatadirPeers(folder)
        self.disk = DiskCheckpoints()
        """Checkpoints of the stores on disk not open here (a restarted worker's state)."""
        self.records = 0
        """Changelog records read into standby stores so far."""
        self._wake: asyncio.Event | None = None
        self._shared_noted = False

    def hooks(self, consumer: object) -> _Hooks:
        """What ``consumer``'s group assignment reads (local state) and tells (standby partitions)."""
        return _Hooks(self, consumer)

    def stores(self) -> list[TableStore]:
        """The ``rocksdb://`` side of every table that can keep standby replicas."""
        out = []
        for table in self.tables():
            store = getattr(table, "persistence", None)
            if isinstance(store, TableStore) and not isinstance(table, GlobalTable):  # (held whole everywhere)
                out.append(store)
        return out

    def partitions(self) -> set[int]:
        """Partition numbers this worker keeps standby replicas of (named by a leader, not owned here)."""
        named: set[int] = set().union(*self.by_consumer.values()) if self.by_consumer else set()
        return named - self.owned()

    def offsets(self) -> dict[int, int]:
        """``{partition: offset sum}`` of the stores here, for the assignment.

        Open ones (owned or standby) and, read from disk, those not open
        (stores a restarted worker left, partitions that moved away).
        """
        out: dict[int, int] = {}
        transport = self.transport()
        url = None if transport is None else transport.url
        for store in self.stores():
            opened = store.offsets()
            found = self.disk.read(store.folder, set(store.stores) | set(store.standbys), url, store.layout)
            for partition, resume in [*opened.items(), *found.items()]:
                out[partition] = out.get(partition, 0) + resume
        return out

    def positions(self) -> dict[str, dict[int, int]]:
        """``{table: {partition: changelog offset its standby store has read to}}``."""
        return {s.table: s.standby_positions() for s in self.stores() if s.standbys}

    def assigned(self, consumer: object, partitions: set[int]) -> None:
        """``consumer``'s group leader named these standby partitions (a log line when this worker's change)."""
        before = set().union(*self.by_consumer.values()) if self.by_consumer else set()
        self.by_consumer[consumer] = set(partitions)
        now = set().union(*self.by_consumer.values())
        if now != before and self.replicas > 0:
            logger.info("standby replicas of partitions %s (their rocksdb:// tables' changelogs are followed)",
                        ranges(now) or "none")
        if self._wake is not None:
            self._wake.set()

    def forget(self, consumer: object) -> None:
        """``consumer`` closed: its standby partitions go."""
        self.by_consumer.pop(consumer, None)

    async def follow(self) -> None:
        """Run until cancelled: keep every standby store up to its changelog's end."""
        self._wake = asyncio.Event()
        self.peers.join()
        try:
            while True:
                read = await self._round()
                if read == 0:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), IDLE)
        finally:
            self.peers.leave()
            for store in self.stores():
                store.release_standbys(set())

    async def _round(self) -> int:
        """One batch for every standby store that is behind; returns records read."""
        transport = self.transport()
        wanted = self.partitions() if transport is not None and self.replicas > 0 else set()
        if wanted and self.peers.shared():
            if not self._shared_noted:
                logger.info("standby replicas are off while another worker uses datadir %s "
                            "(its stores are on this disk already)", self.peers.folder.parent)
                self._shared_noted = True
            wanted = set()
        read = 0
        for store in self.stores():
            store.release_standbys(wanted)
            for partition in sorted(wanted):
                assert transport is not None
                try:
                    read += await store.follow(transport, partition)
                    read += await follow_stream_time(store, transport, partition)
                except Exception as exc:  # noqa: BLE001 - a standby never stops the app; the next round retries
                    logger.warning("table %r: standby replica of partition %d paused: %s", store.table, partition, exc)
                    await asyncio.sleep(IDLE)
        self.records += read
        return read


async def follow_stream_time(tstore: TableStore, transport: Transport, partition: int) -> int:
    """A windowed table's standby replica of ``partition`` keeps its stream time too; returns records read.

    The records of the table's stream-time topic since the offset its store
    keeps are folded as a restore folds them (a tombstone clears it, time
    never goes back) and stored with the offset reached, as an owner's
    commits store them: a takeover then reads only that topic's tail.
    """
    store = tstore.standbys.get(partition)
    timed = tstore.held if tstore.held is not None else tstore.rows
    if store is None or not isinstance(timed, EventTimeState):
        return 0
    tp = TP(tstore.stream_topic or naming.stream_time_topic(tstore.app.id, tstore.table), partition)
    stored = store.stream_time()
    end = (await transport.end_offsets([tp]))[tp]
    start = stored[0] if stored is not None else (await transport.beginning_offsets([tp]))[tp]
    if start >= end:
        return 0
    msgs = await transport.read(tp, start, end, READ_BATCH)
    if tstore.standbys.get(partition) is not store:
        return 0  # (served meanwhile: its restore reads the topic on from the store's offset)
    now = None if stored is None or stored[1] is None else float(json.loads(stored[1]))
    for msg in msgs:
        value = None if msg.value is None else float(json.loads(msg.value))
        now = value if value is None or now is None else max(now, value)
    resume = msgs[-1].offset + 1 if msgs else end
    store.apply((), None, (resume, None if now is None else json.dumps(now).encode()))
    return len(msgs)
