"""``memory://`` -- an in-process, volatile broker.

Everything lives in Python lists, so it is the fastest backend and the one
to use in unit tests. A large commit appends its records in steps (the
event loop runs between them), then stores its offsets. Two Apps in one
process with the same URL share one broker (``memory://`` is one broker,
``memory://other`` another), so a notebook cell that builds a new App sees
the topics of the old one.

Example::

    >>> from streamnb.transport.memory import MemoryTransport
    >>> transport = MemoryTransport("memory://")
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from .base import (
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
    head_within,
    within_bytes,
)
from .static import StaticConsumer

__all__ = ["MemoryBroker", "MemoryTransport"]


STEP = 10_000
"""Records a commit appends (or a compaction goes through) at a time, before it checks :data:`SLICE`."""
SLICE = 0.005
"""Seconds a large commit or compaction works before it lets the event loop run."""


@dataclass
class _Partition:
    messages: list[Message] = field(default_factory=list)
    log_start: int = 0  # offset of messages[0] (the end when empty)
    appended_since_compaction: int = 0
    next_offset: int = 0  # the offset the next message gets (compaction leaves gaps: not log_start + len)
    compacting: bool = False  # a compaction in steps is under way (retention waits)

    @property
    def end(self) -> int:
        return self.next_offset


@dataclass
class _Topic:
    spec: TopicSpec
    partitions: list[_Partition]


class MemoryBroker:
    """The shared state behind every ``memory://NAME`` transport of a process."""

    _brokers: dict[str, MemoryBroker] = {}

    def __init__(self) -> None:
        self.topics: dict[str, _Topic] = {}
        self.offsets: dict[tuple[str, TP], int] = {}
        self.waiters: set[asyncio.Event] = set()

    @classmethod
    def named(cls, name: str) -> MemoryBroker:
        """The process-wide broker called ``name``."""
        broker = cls._brokers.get(name)
        if broker is None:
            broker = cls._brokers[name] = cls()
        return broker

    @classmethod
    def find(cls, name: str) -> MemoryBroker | None:
        """The broker called ``name``, if one was made (never makes one)."""
        return cls._brokers.get(name)

    @classmethod
    def rename(cls, old: str, new: str) -> None:
        """Give the broker ``old`` the name ``new`` (which must be free or hold no topic): what a fork does last."""
        taken = cls._brokers.get(new)
        if taken is not None and taken.topics:
            raise ValueError(f"memory://{new} is in use")
        cls._brokers[new] = cls._brokers.pop(old)

    @classmethod
    def forget(cls, name: str) -> None:
        """Drop the broker ``name`` and everything in it."""
        cls._brokers.pop(name, None)

    @classmethod
    def reset(cls) -> None:
        """Forget every memory broker of this process (used by tests)."""
        cls._brokers.clear()

    def partition(self, tp: TP) -> _Partition:
        """The log of ``tp`` (an empty one, not stored, when the partition does not exist)."""
        topic = self.topics.get(tp.topic)
        if topic is None or tp.partition >= len(topic.partitions):
            return _Partition()
        return topic.partitions[tp.partition]

    def ensure(self, spec: TopicSpec) -> _Topic:
        topic = self.topics.get(spec.name)
        if topic is None:
            topic = self.topics[spec.name] = _Topic(spec, [_Partition() for _ in range(spec.partitions)])
        return topic

    def append(self, records: Sequence[ProducerRecord], *, housekeeping: bool = True) -> None:
        """Append ``records`` (then compact and expire what is due, unless ``housekeeping=False``)."""
        topics = self.topics
        new = tuple.__new__
        touched: dict[int, tuple[_Partition, int]] = {}
        last_topic: str | None = None
        last_partition = -1
        messages: list[Message] = []
        part: _Partition | None = None
        offset = 0
        for topic_name, partition, key, value, timestamp, headers in records:
            if partition != last_partition or topic_name != last_topic:
                if part is not None:
                    part.next_offset = offset
                topic = topics.get(topic_name)
                if topic is None:
                    topic = self.ensure(TopicSpec(topic_name, partition + 1))
                part = topic.partitions[partition]
                if id(part) not in touched:
                    touched[id(part)] = (part, part.end)
                messages = part.messages
                offset = part.end
                last_topic, last_partition = topic_name, partition
            messages.append(new(Message, (topic_name, partition, offset, timestamp, key, value, headers)))
            offset += 1
        if part is not None:
            part.next_offset = offset
        for part, start in touched.values():
            part.appended_since_compaction += part.end - start
        if records:
            if housekeeping:
                self._housekeeping({r.topic for r in records})
            for waiter in self.waiters:
                waiter.set()

    async def append_in_steps(self, records: Sequence[ProducerRecord]) -> None:
        """:meth:`append`, :data:`STEP` records at a time, letting the event loop run every :data:`SLICE` s.

        What a commit does: a commit of a million records never holds the
        loop for long. Its records become readable step by step; the commit
        stores its offsets after the last (and always runs to its end).
        """
        since = time.monotonic()
        names: set[str] = set()
        for at in range(0, len(records), STEP):
            chunk = records[at : at + STEP]
            self.append(chunk, housekeeping=False)
            names.update(r[0] for r in chunk)
            if time.monotonic() - since >= SLICE:
                await asyncio.sleep(0)
                since = time.monotonic()
        for name in names:
            topic = self.topics.get(name)
            if topic is not None and topic.spec.compacted:
                for part in topic.partitions:
                    if _compaction_due(part):
                        await _compact_in_steps(part)
        self._housekeeping(names)

    def _housekeeping(self, names: set[str]) -> None:
        now = time.time()
        for name in names:
            topic = self.topics.get(name)
            if topic is None:
                continue
            for part in topic.partitions:
                if part.compacting:
                    continue
                if topic.spec.compacted and _compaction_due(part):
                    _compact(part)
                if topic.spec.retention is not None and part.messages:
                    horizon = now - topic.spec.retention
                    drop = 0
                    for msg in part.messages:
                        if msg.timestamp >= horizon:
                            break
                        drop += 1
                    if drop:
                        del part.messages[:drop]
                        part.log_start = part.messages[0].offset if part.messages else part.end


def _compaction_due(part: _Partition) -> bool:
    return part.appended_since_compaction > max(10_000, len(part.messages) // 2)


async def _compact_in_steps(part: _Partition) -> None:
    """:func:`_compact`, :data:`STEP` messages at a time between yields to the loop (appends may come meanwhile)."""
    if part.compacting:
        return
    part.compacting = True
    try:
        messages = part.messages
        n = len(messages)
        newest: dict[bytes | None, int] = {}
        since = time.monotonic()
        for at in range(0, n, STEP):
            for i in range(at, min(at + STEP, n)):
                newest[messages[i][4]] = i
            if time.monotonic() - since >= SLICE:
                await asyncio.sleep(0)
                since = time.monotonic()
        kept: list[Message] = []
        for at in range(0, n, STEP):
            kept += [m for i, m in enumerate(messages[at : at + STEP], at) if m[5] is not None and newest[m[4]] == i]
            if time.monotonic() - since >= SLICE:
                await asyncio.sleep(0)
                since = time.monotonic()
        rest = part.messages[n:]  # appended meanwhile (a newer value of a kept key among them wins on reading)
        part.messages = kept + rest
        part.log_start = part.messages[0].offset if part.messages else part.end
        part.appended_since_compaction = len(rest)
    finally:
        part.compacting = False


def _compact(part: _Partition) -> None:
    """Keep only the newest message per key; drop keys whose newest value is a tombstone.

    Offsets never change: the log start moves to the first kept message,
    and offsets between kept messages become gaps, which reads skip
    (they select by offset, not by position).
    """
    newest: dict[bytes | None, int] = {}
    for i, msg in enumerate(part.messages):
        newest[msg.key] = i
    keep = sorted(i for i in newest.values() if part.messages[i].value is not None)
    part.messages = [part.messages[i] for i in keep]
    part.log_start = part.messages[0].offset if part.messages else part.end
    part.appended_since_compaction = 0


class MemoryTransport(Transport):
    """The ``memory://[NAME]`` backend: volatile, in-process, exactly-once.

    Args:
        url: ``memory://`` or ``memory://NAME``; transports with the same URL
            share one broker in this process.
        client_id: A name for this client (the App id), shown in its repr.

    Example::

        >>> MemoryTransport("memory://demo", client_id="orders")
        <MemoryTransport 'memory://demo' client_id='orders'>
    """

    scheme = "memory"
    guarantees = frozenset({AT_LEAST_ONCE, EXACTLY_ONCE})  # commit: records, then offsets; always runs to its end

    def __init__(self, url: str = "memory://", *, client_id: str | None = None) -> None:
        self.url = url
        self.client_id = client_id
        self.broker = MemoryBroker.named(url.partition("://")[2])

    def __repr__(self) -> str:
        return f"<MemoryTransport {self.url!r} client_id={self.client_id!r}>"

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def create_topic(self, spec: TopicSpec) -> int:
        return len(self.broker.ensure(spec).partitions)

    async def partition_count(self, topic: str) -> int | None:
        found = self.broker.topics.get(topic)
        return None if found is None else len(found.partitions)

    async def send(self, records: Sequence[ProducerRecord]) -> None:
        self.broker.append(records)

    async def committed(self, group: str, tps: Iterable[TP]) -> dict[TP, int]:
        offsets = self.broker.offsets
        return {tp: offsets[(group, tp)] for tp in tps if (group, tp) in offsets}

    async def end_offsets(self, tps: Iterable[TP]) -> dict[TP, int]:
        return {tp: self.broker.partition(tp).end for tp in tps}

    async def beginning_offsets(self, tps: Iterable[TP]) -> dict[TP, int]:
        return {tp: self.broker.partition(tp).log_start for tp in tps}

    async def read(
        self, tp: TP, start: int, stop: int, max_records: int = 10_000, max_bytes: int | None = None
    ) -> list[Message]:
        return within_bytes(_slice(self.broker.partition(tp), start, stop, max_records), max_bytes)

    async def list_topics(self) -> list[str]:
        """Names of every topic, sorted."""
        return sorted(self.broker.topics)

    async def delete_topics(self, names: Iterable[str]) -> None:
        """Delete these topics and every group's offsets in them."""
        broker = self.broker
        gone = {name for name in names if broker.topics.pop(name, None) is not None}
        for group_tp in [k for k in broker.offsets if k[1].topic in gone]:
            del broker.offsets[group_tp]

    async def delete_groups(self, groups: Iterable[str]) -> None:
        """Forget the committed offsets of these groups."""
        wanted = set(groups)
        offsets = self.broker.offsets
        for group_tp in [k for k in offsets if k[0] in wanted]:
            del offsets[group_tp]

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
        return MemoryConsumer(self, group, topics, listener, member, members)


def _slice(part: _Partition, start: int, stop: int, max_records: int) -> list[Message]:
    messages = part.messages
    if not messages:
        return []
    start = max(start, part.log_start)
    stop = min(stop, part.end, start + max_records)
    if start >= stop:
        return []
    # Without gaps the offset maps straight to the index; after compaction bisect.
    first = messages[0].offset
    if messages[-1].offset - first == len(messages) - 1:
        return messages[start - first : stop - first]
    import bisect

    lo = bisect.bisect_left(messages, start, key=lambda m: m.offset)
    hi = bisect.bisect_left(messages, stop, key=lambda m: m.offset)
    return messages[lo : min(hi, lo + max_records)]


class MemoryConsumer(StaticConsumer):
    """A member of a consumer group on a memory broker (static assignment)."""

    transport: MemoryTransport

    async def start(self) -> None:
        broker = self.transport.broker

        def partition_count(name: str) -> int | None:
            topic = broker.topics.get(name)
            return None if topic is None else len(topic.partitions)

        await self._join(partition_count)
        broker.waiters.add(self._wakeup)

    async def stop(self) -> None:
        self.transport.broker.waiters.discard(self._wakeup)
        await self._leave()

    async def getmany(self, timeout: float, max_records: int, max_bytes: int | None = None) -> list[Message]:
        batch = self._poll(max_records, max_bytes)
        if batch or timeout <= 0:
            return batch
        self._wakeup.clear()
        batch = self._poll(max_records, max_bytes)
        if batch:
            return batch
        try:
            await asyncio.wait_for(self._wakeup.wait(), timeout)
        except TimeoutError:
            return []
        return self._poll(max_records, max_bytes)

    def _poll(self, max_records: int, max_bytes: int | None = None) -> list[Message]:
        """Up to ``max_records`` (and ``max_bytes``), an equal share per partition with data (round robin).

        Fair shares keep partitions read at the same pace from a backlog, so
        event time advances evenly across them.
        """
        out: list[Message] = []
        assigned = self._assigned
        n = len(assigned)
        positions = self._positions
        partition = self.transport.broker.partition
        ready = []
        for i in range(n):
            tp = assigned[(self._next + i) % n]
            if positions[tp] < partition(tp).end:
                ready.append(tp)
        self._next = (self._next + 1) % max(n, 1)
        bytes_out = 0
        while ready and len(out) < max_records:
            share = max(1, (max_records - len(out)) // len(ready))
            again = []
            for tp in ready:
                room = min(share, max_records - len(out))
                if room <= 0:
                    break
                msgs = _slice(partition(tp), positions[tp], 1 << 62, room)
                if msgs and max_bytes is not None:
                    kept, size = head_within(msgs, max_bytes - bytes_out)
                    if out and bytes_out + size > max_bytes:
                        return out  # (a single larger message comes alone, in a batch of its own)
                    bytes_out += size
                    if len(kept) < len(msgs):
                        out.extend(kept)
                        positions[tp] = kept[-1].offset + 1
                        return out
                if msgs:
                    out.extend(msgs)
                    positions[tp] = msgs[-1].offset + 1
                    if len(msgs) == room:
                        again.append(tp)
                else:  # only removed offsets (compaction) up to the end
                    positions[tp] = partition(tp).end
            ready = again
        return out

    async def commit(
        self,
        offsets: Mapping[TP, int],
        records: Sequence[ProducerRecord] = (),
        *,
        per_partition: Mapping[TP, Sequence[ProducerRecord]] | None = None,
        stored: Callable[[], None] | None = None,
    ) -> None:
        broker = self.transport.broker
        await broker.append_in_steps(self.flatten(records, per_partition))
        for tp, offset in offsets.items():
            broker.offsets[(self.group, tp)] = offset
        if stored is not None:
            stored()
