"""Stream–table joins as of the event's time, with a grace period (Kafka Streams' versioned-table join, KIP-914/923).

When the table keeps versions (``app.Table(name, source=topic, history=True)``
or ``versioned=retention``, :mod:`streamnb.tables.versions`), each event looks
the table up **as of its own timestamp**: the key's latest table record with
``ts <= event ts`` (within the history retention), instead of the latest value.

``stream.join(table, how=..., grace=g)`` also holds each event back until the
stream's time passes its timestamp + ``g`` (Kafka Streams'
``Joined.withGracePeriod``), so table records that come late, out of order,
are seen by the events they concern. The rules, as Kafka Streams 3.9's
``KStreamKTableJoinProcessor`` with its time-ordered buffer:

- The buffer's time is the largest timestamp of the events it took (events
  with a ``None`` value are dropped, counted, and move nothing).
- An event with ``ts < time - g`` is too late for the buffer: it is joined at
  once (and counted in ``join_stats.late``). Any other one is kept; then every
  kept event with ``ts <= time - g`` is joined, oldest first (at equal
  timestamps by the key's bytes, then arrival: the buffer's order).
- ``g`` must not exceed the table's retention (else an event could outlive
  the history it needs); ``grace=`` needs a versioned table.

Held events are a snapshot per partition in
``<app id>-<agent>-join-<table>-changelog``, committed with the agent's
offsets, so they survive restarts and rebalances (as the stream–stream join's).

>>> buffer = GraceBuffer(grace=5)
>>> buffer.put(10, b"k", "a"), buffer.put(3, b"k", "late"), buffer.evict()
(True, False, [])
>>> buffer.put(15, b"k", "b"), buffer.evict()
(True, ['a'])
"""

from __future__ import annotations

import heapq
from typing import Any

from ...errors import ConfigurationError
from ...events import Event
from ...timeunits import ms
from ...topics import Topic
from ...transaction import Transaction, current_transaction
from ...transport.base import TP, Message, ProducerRecord, Transport
from .snapshots import latest_snapshot

__all__ = ["AsOfJoin", "GraceBuffer", "check_grace"]

Held = tuple[int, bytes, Any]  # timestamp (ms), order (key bytes + sequence), item


class GraceBuffer:
    """Events held until the buffer's time passes their timestamp + grace (all times in ms)."""

    __slots__ = ("grace", "heap", "seq", "time")

    def __init__(self, grace: int) -> None:
        self.grace = grace
        self.time: int | None = None
        """The largest timestamp taken."""
        self.seq = 0
        self.heap: list[Held] = []

    def put(self, ts: int, key: bytes | None, item: Any) -> bool:
        """Hold ``item``; False (not held) when it is older than time − grace."""
        if self.time is not None and self.time - self.grace > ts:
            return False
        self.seq = (self.seq + 1) & 0x7FFFFFFF
        heapq.heappush(self.heap, (ts, (key or b"") + self.seq.to_bytes(4, "big"), item))
        if self.time is None or ts > self.time:
            self.time = ts
        return True

    def evict(self) -> list[Any]:
        """The held items whose timestamp is ``<= time - grace``, in the buffer's order."""
        out: list[Any] = []
        if self.time is None:
            return out
        limit, heap = self.time - self.grace, self.heap
        while heap and heap[0][0] <= limit:
            out.append(heapq.heappop(heap)[2])
        return out

    def load(self, held: list[Held], time: int | None, seq: int) -> None:
        """Put back a saved state."""
        self.heap = list(held)
        heapq.heapify(self.heap)
        self.time, self.seq = time, seq

    def __len__(self) -> int:
        return len(self.heap)


def check_grace(table: Any, grace: int | None) -> None:
    """``grace=`` needs a versioned table and must not exceed its retention."""
    versions = getattr(table, "versions", None)
    if grace is None:
        return
    if versions is None:
        raise ConfigurationError(
            f"join({table.name!r}, grace=...): a grace period holds events back for table records that come "
            "out of order, which only a versioned table can use: make it with "
            f"app.Table({table.name!r}, source=topic, history=True) (or versioned=retention)"
        )
    if versions.retention is not None and grace > versions.retention:
        raise ConfigurationError(
            f"join({table.name!r}, grace={grace / 1000} s): the grace period exceeds the table's history "
            f"retention ({versions.retention / 1000} s): give versioned= at least the grace"
        )


class AsOfJoin:
    """The held events of one agent's versioned stream–table join with a grace period, per partition.

    A :class:`~streamnb.transaction.CommitParticipant`: each touched partition's
    buffer is a snapshot in the join's changelog.
    """

    def __init__(self, app: Any, channel: Topic[Any, Any], table_name: str, grace: int, owner: str) -> None:
        self.app = app
        self.channel = channel
        self.grace = grace
        self.name = f"{owner}-join-{table_name}"
        self.changelog: Topic[Any, Any] = app.internal_topic(
            f"{app.id}-{self.name}-changelog", partitions=channel.partitions, key_serializer="json",
            value_serializer="json", compacting=True,
        )
        self.buffers: dict[int, GraceBuffer] = {}
        self.late: dict[int, int] = {}
        """Per partition: events that came after their grace (joined at once)."""

    async def buffer(self, transport: Transport, partition: int) -> GraceBuffer:
        """``partition``'s buffer, read from the changelog when this worker has not got it."""
        found = self.buffers.get(partition)
        if found is not None:
            return found
        await self.changelog.declare()
        buffer = GraceBuffer(self.grace)
        last = await latest_snapshot(transport, TP(self.changelog.name, partition))
        if last is not None:
            snapshot = self.changelog.value_codec.loads(last)
            buffer.load([self._held(row) for row in snapshot["rows"]], snapshot["time"], snapshot["seq"])
            self.late[partition] = snapshot["late"]
        self.buffers[partition] = buffer
        return buffer

    def _held(self, row: list[Any]) -> Held:
        ts, order, topic, partition, offset, raw_key, raw_value, headers = row
        key_bytes = None if raw_key is None else raw_key.encode("latin-1")
        value_bytes = raw_value.encode("latin-1")
        msg = Message(topic, partition, offset, ts / 1000 if isinstance(ts, int) else ts, key_bytes, value_bytes,
                      tuple((h, v.encode("latin-1")) for h, v in headers))
        key = self.channel.decode_key(key_bytes) if key_bytes is not None else None
        return ts, order.encode("latin-1"), Event(key, self.channel.decode_value(value_bytes), msg)

    def touch(self, txn: Transaction, partition: int, buffer: GraceBuffer) -> None:
        """Note ``partition``'s buffer before ``txn`` changes it (to restore it if the commit fails)."""
        dirty: dict[int, tuple[Any, ...]] | None = txn.dirty.get(self)
        if dirty is None:
            dirty = txn.dirty[self] = {}
        if partition not in dirty:
            dirty[partition] = (list(buffer.heap), buffer.time, buffer.seq, self.late.get(partition, 0))

    # -- the commit protocol ----------------------------------------------------------------

    def before_commit(self, txn: Transaction) -> None:
        """Nothing closes at commit time."""

    def changelog_records(self, dirty: dict[int, Any], timestamp: float) -> list[ProducerRecord]:
        """One snapshot per touched partition: the held events (their messages), time, sequence, late count."""
        out = []
        dumps = self.changelog.value_codec.dumps
        for partition in dirty:
            buffer = self.buffers.get(partition)
            if buffer is None:
                continue
            rows = []
            for ts, order, event in buffer.heap:
                msg = event.message
                rows.append([ts, order.decode("latin-1"), msg.topic, msg.partition, msg.offset,
                             None if msg.key is None else msg.key.decode("latin-1"),
                             msg.value.decode("latin-1"), [[h, v.decode("latin-1")] for h, v in msg.headers]])
            value = {"rows": rows, "time": buffer.time, "seq": buffer.seq, "late": self.late.get(partition, 0)}
            out.append(ProducerRecord(self.changelog.name, partition, b"%d" % partition, dumps(value), timestamp))
        return out

    def restore(self, dirty: dict[int, Any]) -> None:
        """Put back each touched partition's buffer as it was before the transaction."""
        for partition, (heap, time, seq, late) in dirty.items():
            buffer = self.buffers.get(partition)
            if buffer is not None:
                buffer.load(heap, time, seq)
                self.late[partition] = late

    def after_commit(self, dirty: dict[int, Any]) -> None:
        """Nothing to do."""

    def drop_partitions(self, partitions: set[int]) -> None:
        """Forget these partitions (read from the changelog again when next used)."""
        for partition in partitions:
            self.buffers.pop(partition, None)
            self.late.pop(partition, None)

    __hash__ = object.__hash__
    __eq__ = object.__eq__


async def held_events(join: AsOfJoin, transport: Transport, event: Event[Any, Any]) -> list[Event[Any, Any]]:
    """``event`` through ``join``'s buffer: the events to look up now (itself at once when too late)."""
    msg = event.message
    partition = msg.partition
    buffer = join.buffers.get(partition) or await join.buffer(transport, partition)
    txn = current_transaction()
    if txn is not None:
        join.touch(txn, partition, buffer)
    if not buffer.put(ms(msg.timestamp), msg.key, event):
        join.late[partition] = join.late.get(partition, 0) + 1
        return [event]
    return buffer.evict()
