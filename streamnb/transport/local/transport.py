"""``local://PATH`` -- a durable embedded broker kept in a folder.

Topics, messages and consumer-group offsets live in one sqlite3 database,
``PATH/streamnb.sqlite3``, in WAL mode. ``Consumer.commit(offsets, records)``
appends the records and stores the offsets in ONE sqlite transaction, so a
process killed at any moment (``kill -9``, a crashed or restarted kernel)
leaves either the whole commit or none of it: processing on ``local://`` is
exactly-once.

This module is the facade (:class:`LocalTransport`, :class:`LocalConsumer`);
the open folder (lock, connections, threads) is
:mod:`streamnb.transport.local.store` (shared per process by
:mod:`streamnb.transport.local.registry`), the schema, compaction and
retention SQL are :mod:`streamnb.transport.local.log`, and the rows' format
is :mod:`streamnb.transport.local.batch`.

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
``store.COMPACT_MIN_DIRTY`` messages), and when the folder is opened; a key whose
newest value is a tombstone (``None``) disappears. Retention drops messages
older than ``retention`` seconds from the head of each partition (up to the
first message still young enough, so the log stays contiguous, as Kafka's
segment deletion does), checked every ``store.RETENTION_INTERVAL`` seconds while
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
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from urllib.parse import parse_qs, unquote, urlsplit

from ...errors import AppNotRunningError, BrokerError, ConfigurationError
from ..base import (
    AT_LEAST_ONCE,
    EXACTLY_ONCE,
    TP,
    Consumer,
    Message,
    ProducerRecord,
    RebalanceListener,
    TopicSpec,
    TransactionalId,
    Transport,
)
from ..static import StaticConsumer
from .batch import Columns
from .log import append, delete_groups
from .reads import Want
from .registry import acquire, release
from .store import Store

__all__ = ["DEFAULT_FOLDER", "INCOMPLETE_MARKER", "LocalConsumer", "LocalTransport", "parse_local_url"]

DEFAULT_FOLDER = ".streamnb"
"""The folder of ``local://`` with no path (relative to the working directory)."""
INCOMPLETE_MARKER = "INCOMPLETE"
"""A file in a folder still being written as a whole (a fork): opening it is an error saying to delete it."""


def parse_local_url(url: str) -> tuple[str, bool]:
    """``local://PATH[?sync=normal|full]`` -> (absolute folder, full sync).

    Example::

        >>> folder, full_sync = parse_local_url("local:///tmp/data?sync=full")
        >>> folder, full_sync
        ('/tmp/data', True)
    """
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


# -- the public facade -----------------------------------------------------------------------


class LocalTransport(Transport):
    """The ``local://PATH`` backend: durable, embedded, exactly-once.

    ``PATH`` is a folder (created when missing; relative paths are relative to
    the working directory; ``local://`` alone means ``local://.streamnb``).
    ``?sync=full`` makes commits survive power loss too. ``client_id`` (the
    App id) names this client in its repr.

    Example::

        >>> transport = LocalTransport("local://.streamnb")
        >>> transport.folder.endswith(".streamnb")
        True
    """

    scheme = "local"
    guarantees = frozenset({AT_LEAST_ONCE, EXACTLY_ONCE})  # commit: one sqlite transaction

    def __init__(self, url: str = "local://" + DEFAULT_FOLDER, *, client_id: str | None = None) -> None:
        self.url = url
        self.client_id = client_id
        self.folder, self.full_sync = parse_local_url(url)
        self._store: Store | None = None

    def __repr__(self) -> str:
        return f"<LocalTransport {self.url} {'open' if self._store else 'closed'}>"

    @classmethod
    def check_url(cls, url: str) -> None:
        """Raise :class:`~streamnb.errors.ConfigurationError` for a malformed ``local://`` URL."""
        parse_local_url(url)

    @property
    def store(self) -> Store:
        """The open store behind this transport (for tests and tools); raises when not started."""
        if self._store is None:
            raise AppNotRunningError(f"{self.url} is not open: await app.start() (or transport.start()) first")
        return self._store

    @property
    def open_store(self) -> Store | None:
        """The open store, or ``None`` when the transport is not started (never raises)."""
        return self._store

    async def start(self) -> None:
        """Open (creating if needed) the folder; raise BrokerLockedError if another process has it."""
        if self._store is not None:
            return
        if os.path.exists(os.path.join(self.folder, INCOMPLETE_MARKER)):
            raise BrokerError(
                f"the local:// folder {self.folder} is an incomplete copy: its writer (a fork) was stopped "
                f"before it finished. Delete it (rm -r {self.folder}) and make it again."
            )
        store = acquire(os.path.realpath(self.folder), self.full_sync)
        try:
            # shield: a cancelled start must not cancel the opening other Apps may share
            await asyncio.shield(asyncio.wrap_future(store.opened))
        except BaseException:
            closing = release(store)
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
            closing = release(store)
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

    async def read(
        self, tp: TP, start: int, stop: int, max_records: int = 10_000, max_bytes: int | None = None
    ) -> list[Message]:
        store = self.store
        topic = store.topics.get(tp.topic)
        if topic is None or not 0 <= tp.partition < topic.partitions or max_records <= 0:
            return []
        start = max(start, topic.starts[tp.partition])
        stop = min(stop, topic.ends[tp.partition])
        if start >= stop:
            return []
        return await store.call_read(store.read_sync, topic, tp.partition, start, stop, max_records, max_bytes)

    async def list_topics(self) -> list[str]:
        """Names of every topic in the folder, sorted."""
        return sorted(self.store.topics)

    async def delete_topics(self, names: Iterable[str]) -> None:
        """Delete these topics, their messages and every group's offsets in them, in one sqlite transaction."""
        store = self.store
        wanted = [store.topics[name] for name in names if name in store.topics]
        if wanted:
            await store.call(store.delete_topics_sync, wanted)

    async def delete_groups(self, groups: Iterable[str]) -> None:
        """Forget the committed offsets of these groups."""
        store = self.store
        await store.call(store.sql_sync, delete_groups, list(groups))

    async def append(self, topic: str, partition: int, columns: Columns) -> None:
        """Append a run of messages, given as ``(keys, values, timestamps, headers)``, to one partition.

        What ``streamnb.record`` uses: one commit, no tuple per message and no
        regrouping by partition, so it costs less per message than :meth:`send`.
        """
        await self.append_runs([(topic, partition, columns)])

    async def append_runs(self, runs: Sequence[tuple[str, int, Columns]]) -> None:
        """Append several runs (:meth:`append`), to one partition each, in one commit: all or none of them."""
        store = self.store
        found = []
        for topic, partition, columns in runs:
            cached = store.topics.get(topic)
            if cached is None or not 0 <= partition < cached.partitions:
                raise ConfigurationError(f"{self.url}: no partition {partition} of topic {topic!r} to append to")
            if columns[0]:
                found.append((cached, partition, columns))
        if found:
            await store.call(store.sql_sync, append, found)
            store.notify(frozenset(topic.name for topic, _p, _c in found))

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
        transactional_id: TransactionalId | None = None,
    ) -> Consumer:
        """A static member ``member`` of ``members``: it reads partitions ``p % members == member``."""
        return LocalConsumer(self, group, topics, listener, member, members)


class LocalConsumer(StaticConsumer):
    """A member of a consumer group on a ``local://`` store (static assignment).

    Example::

        >>> consumer = transport.consumer("g", ["clicks"], listener)  # doctest: +SKIP
        >>> await consumer.start()  # doctest: +SKIP
        >>> messages = await consumer.getmany(timeout=1.0, max_records=1000)  # doctest: +SKIP
    """

    transport: LocalTransport

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
        super().__init__(transport, group, topics, listener, member, members)

    async def start(self) -> None:
        """Take partitions ``p % members == member``, await ``on_assigned``, then load positions."""
        store = self.transport.store

        def partition_count(name: str) -> int | None:
            topic = store.topics.get(name)
            return None if topic is None else topic.partitions

        await self._join(partition_count)
        with store.waiters_lock:
            store.waiters[self._wakeup] = (asyncio.get_running_loop(), frozenset(self.topics))

    async def stop(self) -> None:
        """Await ``on_revoked`` with every assigned partition (nothing is committed here)."""
        store = self.transport.open_store
        if store is not None:
            with store.waiters_lock:
                store.waiters.pop(self._wakeup, None)
        await self._leave()

    def position(self, tp: TP) -> int | None:
        """The offset the next ``getmany`` reads ``tp`` from (``None`` when not assigned)."""
        return self._positions.get(tp)

    def _wants(self) -> list[Want]:
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

    def _advance(self, wants: list[Want], positions: list[int]) -> bool:
        """Move past a fetched batch, unless ``seek()`` moved a position meanwhile."""
        current = self._positions
        tps = [TP(topic.name, p) for topic, p, _, _ in wants]
        if any(current.get(tp) != want[2] for tp, want in zip(tps, wants)):
            return False
        current.update(zip(tps, positions))
        self._next += 1
        return True

    async def getmany(self, timeout: float, max_records: int, max_bytes: int | None = None) -> list[Message]:
        """Up to ``max_records`` messages (and ``max_bytes``), shared round robin between the partitions with data.

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
                messages, positions = await store.call_read(store.fetch_sync, wants, max_records, max_bytes)
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

    async def commit(
        self,
        offsets: Mapping[TP, int],
        records: Sequence[ProducerRecord] = (),
        *,
        per_partition: Mapping[TP, Sequence[ProducerRecord]] | None = None,
        stored: Callable[[], None] | None = None,
    ) -> None:
        """Append ``records`` and store ``offsets`` in one sqlite transaction (all or nothing)."""
        records = self.flatten(records, per_partition)
        if not offsets and not records:
            return
        store = self.transport.store
        store.notify(await store.call(store.write_sync, records, self.group, offsets))
        if stored is not None:
            stored()
