"""One member of a Kafka consumer group: :class:`KafkaConsumer` and its rebalance listener.

Made by :meth:`streamnb.transport.kafka.KafkaTransport.consumer` (and
importable from :mod:`streamnb.transport.kafka`). Each member is its own
``AIOKafkaConsumer`` in the group, assigned with the *range* strategy so
co-partitioned topics give a member the same partition numbers (or, for
an agent of an app with ``rocksdb://`` tables, which reports its table
state, with :class:`~streamnb.transport.kafka.assignor.StandbyAssignor`,
which also keeps partitions where their state is and names standby
replicas; every member of such a group must use it); aiokafka's
rebalance callbacks reach the streamnb :class:`~streamnb.transport.base.RebalanceListener`
through :class:`_Listener`. A member made with a ``transactional_id`` commits
exactly once, through :class:`~streamnb.transport.kafka.transactions.PartitionTransactions`.

Example (on a running loop)::

    consumer = transport.consumer("orders-app", ["orders"], listener)
    await consumer.start()
    batch = await consumer.getmany(timeout=1.0, max_records=1000)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from ...errors import BrokerError
from ..base import TP, Consumer, Message, ProducerRecord, RebalanceListener, TransactionalId, within_bytes
from .assignor import StandbyAssignor
from .clients import close_quietly, log
from .transactions import PartitionTransactions

T = TypeVar("T")


class ConsumerHost(Protocol):
    """What a group member needs from its transport (:class:`~streamnb.transport.kafka.KafkaTransport`)."""

    consumer_options: dict[str, Any]
    """Extra ``AIOKafkaConsumer`` arguments given to the App."""
    request_timeout: float
    """Seconds a broker request (and each step of a transaction) may take."""

    def client_options(self) -> dict[str, Any]:
        """Connection arguments shared by every aiokafka client."""
        ...

    async def bounded(self, what: Awaitable[T]) -> T:
        """Await a connection step, turning failures into BrokerUnavailableError."""
        ...

    async def send(self, records: Sequence[ProducerRecord]) -> None:
        """Append records now."""
        ...

    async def committed(self, group: str, tps: Iterable[TP]) -> dict[TP, int]:
        """The group's committed offsets; partitions with none are left out."""
        ...

    def transactional_producer(self, transactional_id: str) -> AIOKafkaProducer:
        """A new, not yet started, transactional producer."""
        ...

__all__ = ["ConsumerHost", "KafkaConsumer"]


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Forwards aiokafka's rebalance callbacks to a :class:`KafkaConsumer`."""

    def __init__(self, owner: KafkaConsumer) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.owner.partitions_revoked({TP(tp.topic, tp.partition) for tp in revoked})

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self.owner.partitions_assigned({TP(tp.topic, tp.partition) for tp in assigned})


class KafkaConsumer(Consumer):
    """One member of a Kafka consumer group (made by :meth:`KafkaTransport.consumer`).

    Kafka's rebalances are *eager*: every rebalance first revokes all
    partitions of the member (``on_revoked``), then assigns the new set
    (``on_assigned``), and the consumer restarts each assigned partition at
    the group's committed offset (or where ``on_assigned`` seeks it).
    ``getmany`` returns nothing while a rebalance is in progress, and new
    partitions stay paused until their ``on_assigned`` finished. An exception
    raised by a listener is re-raised by the next ``getmany``.

    With a ``transactional_id`` the member is :attr:`transactional`: when
    partitions are assigned it first starts their producers (fencing the
    previous owner and waiting for its open transaction), then positions each
    partition at the group's committed offset as it stands after that, and
    only then awaits ``on_assigned`` (tables read their changelogs up to the
    last stable offset). :meth:`commit` runs one transaction per input
    partition, and commits past the transaction markers that follow a
    partition's last processed message (so a transactional input shows no
    lag once processed). Revoked partitions' producers are closed.
    """

    join_timeout: float = 60.0
    """Seconds :meth:`start` waits for the first assignment (then as long as its ``on_assigned``, e.g. a restore)."""

    def __init__(
        self,
        transport: ConsumerHost,
        group: str,
        topics: Sequence[str],
        listener: RebalanceListener,
        *,
        transactional_id: TransactionalId | None = None,
    ) -> None:
        self.transport = transport
        self.group = group
        self.topics = list(topics)
        self.listener = listener
        self.transactions: PartitionTransactions | None = (
            None if transactional_id is None else PartitionTransactions(transport, group, transactional_id)
        )
        """The per-partition transactional producers (exactly-once), or ``None``."""
        self.transactional = transactional_id is not None
        self._returned_end: dict[TP, int] = {}  # next offset after the last message getmany returned
        self._leftover: list[Message] = []  # fetched, not returned (beyond a getmany's max_bytes)
        self._consumer: AIOKafkaConsumer | None = None
        self._assigned: set[TP] = set()
        self._settled = asyncio.Event()
        self._joined = asyncio.Event()  # the first on_assigned is done
        self._arrived = asyncio.Event()  # the first assignment arrived
        self._error: BaseException | None = None
        self._stopping = False

    def __repr__(self) -> str:
        return f"<KafkaConsumer group={self.group!r} topics={self.topics!r}>"

    async def partitions_revoked(self, tps: set[TP]) -> None:
        """The group took ``tps`` away: await ``on_revoked`` (aiokafka's rebalance callback calls this)."""
        log.debug("%r: partitions revoked: %s", self, sorted(tps))
        self._settled.clear()
        if self._stopping or not tps:
            return
        try:
            await self.listener.on_revoked(tps)
        except Exception as exc:  # re-raised by the next getmany, not logged by aiokafka
            self._error = self._error or exc
        finally:
            self._assigned -= tps
            for tp in tps:
                self._returned_end.pop(tp, None)
            self._forget_leftover(tps)
            if self.transactions is not None:
                await self.transactions.close(tps)

    async def partitions_assigned(self, tps: set[TP]) -> None:
        """The group gave this member ``tps``: await ``on_assigned`` with them paused (from aiokafka's callback)."""
        log.debug("%r: partitions assigned: %s", self, sorted(tps))
        if self._stopping:
            return
        self._assigned = set(tps)
        self._arrived.set()
        consumer = self._consumer
        # Paused partitions return nothing, not even records fetched already,
        # so no message of a new partition passes before on_assigned is done.
        paused = [TopicPartition(tp.topic, tp.partition) for tp in tps]
        if consumer is not None and paused:
            consumer.pause(*paused)
        try:
            if self.transactions is not None and consumer is not None:
                await self.transactions.open(tps)  # fences the previous owners first
                await self._seek_committed(consumer, tps)
            await self.listener.on_assigned(set(tps))
        except Exception as exc:  # re-raised by the next getmany (or start)
            self._error = self._error or exc
        finally:
            if consumer is not None and paused and not self._stopping:
                consumer.resume(*paused)
            self._settled.set()
            self._joined.set()

    async def _seek_committed(self, consumer: AIOKafkaConsumer, tps: set[TP]) -> None:
        """Position ``tps`` at the group's committed offsets, read now (after the fencing).

        aiokafka fetches the committed offsets when the assignment arrives,
        concurrently with the callback: possibly before the previous owner's
        last transaction (offsets included) was committed or aborted.
        Partitions without one start as ``auto_offset_reset`` says.
        """
        committed = await self.transport.committed(self.group, tps)
        log.debug("%r: committed offsets after fencing: %s", self, sorted(committed.items()))
        fresh = []
        for tp in tps:
            atp = TopicPartition(tp.topic, tp.partition)
            if tp in committed:
                consumer.seek(atp, committed[tp])
            else:
                fresh.append(atp)
        reset = self.transport.consumer_options.get("auto_offset_reset", "earliest")
        if fresh and reset == "earliest":
            await consumer.seek_to_beginning(*fresh)
        elif fresh and reset == "latest":
            await consumer.seek_to_end(*fresh)

    async def start(self) -> None:
        """Join the group and wait for the first assignment (``on_assigned`` awaited)."""
        if self._consumer is not None:
            return
        transport = self.transport
        consumer = AIOKafkaConsumer(
            **transport.client_options(),
            group_id=self.group,
            enable_auto_commit=False,
            isolation_level="read_committed",
            partition_assignment_strategy=self._assignors(),
            **{  # defaults the user's consumer options may override
                "auto_offset_reset": "earliest",
                # getmany drains one partition's fetched chunk before the next: 1 MB
                # chunks (about 10k small events) keep partitions interleaved, so the
                # event time of windowed tables does not leap ahead of other partitions
                # (4 MB chunks of a 1M-event backlog made events "late"), at the same rate.
                "max_partition_fetch_bytes": 1024 * 1024,
                "fetch_max_bytes": 64 * 1024 * 1024,
                "max_poll_records": 10_000,
                "heartbeat_interval_ms": 1000,
                "session_timeout_ms": 10_000,
                **transport.consumer_options,
            },
        )
        try:
            await transport.bounded(consumer.start())
        except BaseException:
            await close_quietly(consumer.stop())
            raise
        self._consumer = consumer
        self._stopping = False
        consumer.subscribe(self.topics, listener=_Listener(self))
        try:
            await asyncio.wait_for(self._arrived.wait(), self.join_timeout)
            await self._joined.wait()  # (a table restore of millions of records may take minutes)
        except TimeoutError:
            await self.stop()
            raise BrokerError(
                f"{self!r} got no partitions from Kafka within {self.join_timeout:g} s; "
                "check the broker's log (is the __consumer_offsets topic available?)."
            ) from None
        if self._error is not None:  # on_assigned failed: leave without on_revoked
            self._stopping = True
            await self.stop()
            self._raise_listener_error()

    def _assignors(self) -> tuple[Any, ...]:
        """*range*, or, for a member that reports its table state, :class:`StandbyAssignor` first, then *range*.

        A group whose members all report their state uses the standby-aware
        assignor; one that mixes them (a worker of another version, or with
        ``memory://`` tables) falls back to *range* instead of failing to join.
        """
        state = self.listener.local_state
        return (RangePartitionAssignor,) if state is None else (StandbyAssignor(state), RangePartitionAssignor)

    async def stop(self) -> None:
        """Await ``on_revoked`` for the current partitions, then leave the group."""
        consumer = self._consumer
        if consumer is None:
            return
        try:
            if self._assigned and not self._stopping:
                assigned, self._assigned = set(self._assigned), set()
                self._stopping = True
                await self.listener.on_revoked(assigned)
        finally:
            self._stopping = True
            self._consumer = None
            self._assigned = set()
            self._returned_end.clear()
            self._leftover = []
            self._joined.clear()
            self._arrived.clear()
            if self.transactions is not None:
                await close_quietly(self.transactions.close_all())
            await close_quietly(consumer.stop())

    def assignment(self) -> set[TP]:
        """Partitions currently assigned to this member."""
        return set(self._assigned)

    def _raise_listener_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    async def getmany(self, timeout: float, max_records: int, max_bytes: int | None = None) -> list[Message]:
        """Up to ``max_records`` messages (and ``max_bytes``) of the assigned partitions, waiting at most ``timeout`` s.

        What aiokafka fetched beyond ``max_bytes`` is kept and returned first next time.
        """
        consumer = self._consumer
        if consumer is None:
            raise BrokerError(f"{self!r} is not started: `await consumer.start()` first.")
        self._raise_listener_error()
        if self._leftover:
            waiting, self._leftover = self._leftover, []
            return self._bounded(waiting, max_records, max_bytes)
        deadline = time.monotonic() + max(timeout, 0.0)
        if not self._settled.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._settled.wait(), max(timeout, 0.0))
            self._raise_listener_error()
            if not self._settled.is_set():
                return []
        remaining = max(0.0, deadline - time.monotonic())
        try:
            fetched = await consumer.getmany(timeout_ms=int(remaining * 1000), max_records=max(1, max_records))
        except KafkaError as exc:
            raise BrokerError(f"{self!r} could not fetch: {exc!r}") from exc
        self._raise_listener_error()
        out: list[Message] = []
        new = tuple.__new__
        returned_end = self._returned_end
        for atp, records in fetched.items():
            # reader.message_of(), inlined: half the cost per record (every event passes here).
            topic, partition = atp.topic, atp.partition
            returned_end[TP(topic, partition)] = records[-1].offset + 1
            out.extend([
                new(Message, (topic, partition, r.offset, r.timestamp / 1000.0, r.key, r.value,
                              tuple(r.headers) if r.headers else ()))
                for r in records
            ])
        if max_bytes is None or len(out) <= 1 or len(within_bytes(out, max_bytes)) == len(out):
            return out
        return self._bounded(out, max_records, max_bytes)

    def _bounded(self, out: list[Message], max_records: int, max_bytes: int | None) -> list[Message]:
        """The head of ``out`` within ``max_records`` and ``max_bytes``; the rest waits in the leftover."""
        kept = within_bytes(out[:max_records], max_bytes)
        if len(kept) == len(out):
            for m in out:
                self._returned_end[TP(m[0], m[1])] = m[2] + 1
            return out
        rest = out[len(kept):]
        self._leftover = rest + self._leftover
        waiting = {TP(m[0], m[1]) for m in self._leftover}
        for m in kept:
            self._returned_end[TP(m[0], m[1])] = m[2] + 1
        for tp in waiting:  # not past markers while messages of the partition wait here
            self._returned_end.pop(tp, None)
        return kept

    def _forget_leftover(self, tps: set[TP]) -> None:
        """Drop the waiting messages of ``tps`` (revoked, or sought elsewhere)."""
        if self._leftover:
            self._leftover = [m for m in self._leftover if TP(m[0], m[1]) not in tps]

    def seek(self, tp: TP, offset: int) -> None:
        """Make the next ``getmany`` read ``tp`` from ``offset``."""
        if self._consumer is None:
            raise BrokerError(f"{self!r} is not started: `await consumer.start()` first.")
        self._forget_leftover({tp})
        try:
            self._consumer.seek(TopicPartition(tp.topic, tp.partition), offset)
        except IllegalStateError:
            raise BrokerError(f"{self!r} cannot seek {tp}: it is not assigned to this member.") from None

    def transaction_outcomes(self) -> dict[str, int] | None:
        """Exactly-once: the partition transactions committed, aborted and fenced so far (else None)."""
        t = self.transactions
        if t is None:
            return None
        return {"committed": t.committed, "aborted": t.failed, "fenced": t.fenced}

    async def commit(
        self,
        offsets: Mapping[TP, int],
        records: Sequence[ProducerRecord] = (),
        *,
        per_partition: Mapping[TP, Sequence[ProducerRecord]] | None = None,
        stored: Callable[[], None] | None = None,
    ) -> None:
        """Store ``records``, then commit ``offsets`` (at-least-once); or, when
        :attr:`transactional`, one transaction per input partition (exactly-once).

        At-least-once: offsets of partitions this member no longer owns are
        skipped with a warning (their new owner re-reads from the last
        committed offset). Exactly-once: a partition this member no longer
        owns fails the commit, like any failed transaction.
        """
        consumer = self._consumer
        if consumer is None:
            raise BrokerError(f"{self!r} is not started: `await consumer.start()` first.")
        if self.transactions is not None:
            await self.transactions.commit(await self._past_markers(consumer, offsets), per_partition or {}, records)
            if stored is not None:
                stored()
            return
        records = self.flatten(records, per_partition)
        if records:
            await self.transport.send(records)
        if stored is not None:
            stored()  # (readable now: an ask answered in this process need not wait for the offsets)
        if not offsets:
            return
        owned = {TopicPartition(a.topic, a.partition) for a in consumer.assignment()}
        commit = {}
        for tp, offset in offsets.items():
            atp = TopicPartition(tp.topic, tp.partition)
            if atp in owned:
                commit[atp] = offset
            else:
                log.warning("%r: not committing %s@%d: the partition was reassigned", self, tp, offset)
        if not commit:
            return
        try:
            await consumer.commit(commit)
        except (CommitFailedError, IllegalStateError) as exc:
            log.warning("%r: commit skipped during a rebalance (%s); the messages will be re-read", self, exc)
        except KafkaError as exc:
            raise BrokerError(f"{self!r} could not commit offsets: {exc!r}") from exc

    async def _past_markers(self, consumer: AIOKafkaConsumer, offsets: Mapping[TP, int]) -> dict[TP, int]:
        """``offsets``, moved past the transaction markers (and aborted records) that follow.

        When the offset to commit is right after the last message ``getmany``
        returned for a partition, the consumer's position may be further on:
        what lies between holds no message (commit or abort markers of
        transactional producers, aborted records). Committing the position
        keeps the lag of a fully processed transactional topic at zero.
        """
        out = dict(offsets)
        returned_end = self._returned_end
        for tp, offset in offsets.items():
            if returned_end.get(tp) != offset:
                continue
            try:
                position = await consumer.position(TopicPartition(tp.topic, tp.partition))
            except (IllegalStateError, KafkaError):
                continue
            if position > offset and returned_end.get(tp) == offset:  # nothing returned meanwhile
                out[tp] = position
        return out
