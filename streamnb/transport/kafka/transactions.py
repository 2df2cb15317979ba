"""Exactly-once on ``kafka://``: one transactional producer per input partition.

aiokafka's ``send_offsets_to_transaction(offsets, group_id)`` takes only a
group id (the transactional protocol before KIP-447), so the broker cannot
tell a zombie -- a worker that lost its partitions while paused, then wakes
up -- from the partitions' new owner by its group membership. Fencing comes
from the transactional id instead, as in Kafka Streams' original
exactly-once mode: each input partition of a consumer has its own producer,
with a stable id (:func:`streamnb.naming.transactional_id`: app id, agent,
topic, partition).

* :meth:`PartitionTransactions.open` starts the producers of newly assigned
  partitions. Starting one (``InitProducerId``) bumps the id's epoch, which
  fences any previous owner, and returns only once that owner's open
  transaction was aborted (or its commit completed): offsets and changelogs
  read afterwards are final.
* :meth:`PartitionTransactions.commit` runs one transaction per input
  partition, all at once: the records the partition's events caused, then
  its offset (``send_offsets_to_transaction``), then ``commit_transaction``.
  A partition's transaction holds everything its events caused, so each
  input partition is either fully processed-and-committed or not at all.
* Every step is bounded (``timeout``): a broker that dies mid-transaction
  makes the commit fail instead of retrying forever (aiokafka never expires
  a transactional batch). A failed transaction closes its producer; Kafka
  aborts what it left open when the partition's next producer starts (the
  next commit, or the next owner), or at the transaction timeout.
* :meth:`PartitionTransactions.close` closes the producers of revoked partitions.

Example (on a running loop; ``host`` is the :class:`~streamnb.transport.kafka.KafkaTransport`)::

    txns = PartitionTransactions(host, "shop-count", lambda tp: f"shop-count-{tp.topic}-{tp.partition}")
    await txns.open({TP("orders", 0)})
    await txns.commit({TP("orders", 0): 42}, {TP("orders", 0): [record]})
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, Protocol

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced

from ...errors import BrokerError
from ..base import TP, ProducerRecord, TransactionalId
from .clients import log, send_batches

__all__ = ["FaultHook", "PartitionTransactions", "TransactionHost"]

FaultHook = Callable[[str, TP], Awaitable[None] | None]
"""``hook(step, tp)``: called at each step of a partition's transaction (tests inject faults there)."""


class TransactionHost(Protocol):
    """What the producers need from their transport (:class:`~streamnb.transport.kafka.KafkaTransport`)."""

    request_timeout: float
    """Seconds a transaction step may take before the commit fails."""

    def transactional_producer(self, transactional_id: str) -> AIOKafkaProducer:
        """A new, not yet started, transactional producer."""
        ...


class PartitionTransactions:
    """The transactional producers of one consumer-group member, one per assigned input partition."""

    fault_hook: ClassVar[FaultHook | None] = None
    """For tests: awaited as ``hook(step, tp)`` with step ``"records_sent"`` (the partition's
    records are stored, uncommitted), ``"offsets_sent"`` (its offset too) and ``"committed"``."""

    def __init__(self, host: TransactionHost, group: str, transactional_id: TransactionalId) -> None:
        self.host = host
        self.group = group
        self.transactional_id = transactional_id
        self.producers: dict[TP, AIOKafkaProducer] = {}
        self.assigned: set[TP] = set()
        self.committed = 0
        """Transactions committed."""
        self.failed = 0
        """Transactions that failed (their producer was closed; Kafka aborts what they left open)."""
        self.fenced = 0
        """Transactions refused because a newer producer took the partition's transactional id."""

    def __repr__(self) -> str:
        return f"<PartitionTransactions group={self.group!r} partitions={len(self.producers)}>"

    @property
    def timeout(self) -> float:
        """Seconds one step (a producer start, a transaction, a close) may take."""
        return self.host.request_timeout

    # -- producers ----------------------------------------------------------------------------

    async def open(self, tps: Iterable[TP]) -> None:
        """Start the producers of ``tps`` (fencing their previous owners); raise BrokerError if one fails."""
        tps = set(tps)
        self.assigned |= tps
        new = sorted(tp for tp in tps if tp not in self.producers)
        results = await asyncio.gather(*(self._start(tp) for tp in new), return_exceptions=True)
        errors = [exc for exc in results if isinstance(exc, BaseException)]
        if errors:
            raise errors[0]

    async def _start(self, tp: TP) -> AIOKafkaProducer:
        tid = self.transactional_id(tp)
        producer = self.host.transactional_producer(tid)
        try:
            # Waits while the broker aborts (or completes) the previous owner's transaction.
            await asyncio.wait_for(producer.start(), self.timeout)
        except BaseException as exc:
            await self._close(producer)
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise BrokerError(
                f"Kafka did not start the transactional producer {tid!r} of {tp.topic}[{tp.partition}] "
                f"within {self.timeout:g} s: {exc!r}. Check the broker's log "
                "(transaction.state.log.replication.factor must not exceed the number of brokers)."
            ) from exc
        old = self.producers.get(tp)
        self.producers[tp] = producer
        if old is not None:  # started twice at once: keep the newest (it fenced the other)
            await self._close(old)
        return producer

    async def close(self, tps: Iterable[TP]) -> None:
        """Close the producers of ``tps`` (revoked partitions)."""
        tps = set(tps)
        self.assigned -= tps
        doomed = [self.producers.pop(tp) for tp in tps if tp in self.producers]
        await asyncio.gather(*(self._close(p) for p in doomed))

    async def close_all(self) -> None:
        """Close every producer (the consumer stops)."""
        await self.close(set(self.producers) | self.assigned)

    async def _close(self, producer: AIOKafkaProducer) -> None:
        """Stop a producer within ``timeout`` (a dead broker must not hold the caller)."""
        try:
            await asyncio.wait_for(producer.stop(), self.timeout)
        except (TimeoutError, KafkaError, OSError) as exc:
            log.warning("a transactional producer did not close within %g s (%r); leaving it", self.timeout, exc)
            # A stop cut short leaves the producer's sender task running (retrying for ever once the broker
            # answers again) and a second stop() does nothing: end the task. (aiokafka keeps no public handle.)
            task = getattr(getattr(producer, "_sender", None), "sender_task", None)
            if task is not None and not task.done():
                task.cancel()

    # -- transactions -------------------------------------------------------------------------

    async def commit(
        self,
        offsets: Mapping[TP, int],
        per_partition: Mapping[TP, Sequence[ProducerRecord]],
        orphans: Sequence[ProducerRecord] = (),
    ) -> None:
        """One transaction per input partition: its records, then its offset, committed together.

        ``orphans`` (records no event caused) join the first partition's
        transaction. Every partition's transaction runs to its end; if any
        failed, raises :class:`~streamnb.errors.BrokerError` naming them (the
        others are committed).
        """
        work: dict[TP, tuple[int | None, list[ProducerRecord]]] = {}
        for tp, records in per_partition.items():
            if records:
                work[tp] = (None, list(records))
        for tp, offset in offsets.items():
            work[tp] = (offset, work[tp][1] if tp in work else [])
        if orphans:
            host = next(iter(work), None) or next(iter(sorted(self.producers)), None)
            if host is None:
                raise BrokerError(
                    f"{len(orphans)} record(s) to commit, but no partition is assigned to group {self.group!r} "
                    "(so there is no transaction to put them in)"
                )
            host_offset, host_records = work.get(host, (None, []))
            work[host] = (host_offset, host_records + list(orphans))
        if not work:
            return
        results = await asyncio.gather(
            *(self._commit_one(tp, offset, records) for tp, (offset, records) in work.items()),
            return_exceptions=True,
        )
        failed = {tp: exc for tp, exc in zip(work, results, strict=True) if isinstance(exc, BaseException)}
        if not failed:
            return
        for exc in failed.values():
            if isinstance(exc, asyncio.CancelledError):
                raise exc
        fenced = sorted(tp for tp, exc in failed.items() if isinstance(exc, ProducerFenced))
        others = {tp: exc for tp, exc in failed.items() if tp not in fenced}
        parts = []
        if fenced:
            parts.append(
                f"Kafka fenced the transactions of {_names(fenced)}: a newer producer took their transactional "
                "ids, so another worker owns these partitions now and their uncommitted work is dropped"
            )
        if others:
            first = next(iter(others.values()))
            parts.append(f"the transactions of {_names(sorted(others))} were not committed: {first!r}")
        committed = len(work) - len(failed)
        raise BrokerError(
            "; ".join(parts) + f" ({committed} of {len(work)} partition transactions committed). "
            "The agent restarts from the committed offsets."
        ) from next(iter(failed.values()))

    async def _producer(self, tp: TP) -> AIOKafkaProducer:
        producer = self.producers.get(tp)
        if producer is not None:
            return producer
        if tp not in self.assigned:
            raise BrokerError(
                f"{tp.topic}[{tp.partition}] is not assigned to this member of group {self.group!r} (any more): "
                "its records and offset cannot join a transaction"
            )
        return await self._start(tp)  # its last transaction failed: a new producer fences the old one

    async def _commit_one(self, tp: TP, offset: int | None, records: list[ProducerRecord]) -> None:
        producer = await self._producer(tp)
        try:
            await asyncio.wait_for(self._transaction(producer, tp, offset, records), self.timeout)
        except BaseException as exc:
            if self.producers.get(tp) is producer:
                del self.producers[tp]
            if isinstance(exc, ProducerFenced):
                self.fenced += 1
            else:
                self.failed += 1
            await self._close(producer)
            if isinstance(exc, TimeoutError):
                raise BrokerError(
                    f"Kafka did not commit the transaction of {tp.topic}[{tp.partition}] within {self.timeout:g} s "
                    "(is the broker down?)"
                ) from exc
            raise
        self.committed += 1

    async def _transaction(
        self, producer: AIOKafkaProducer, tp: TP, offset: int | None, records: list[ProducerRecord]
    ) -> None:
        await producer.begin_transaction()
        if records:
            await send_batches(producer, records)
        await self._step("records_sent", tp)
        if offset is not None:
            await producer.send_offsets_to_transaction({TopicPartition(tp.topic, tp.partition): offset}, self.group)
        await self._step("offsets_sent", tp)
        await producer.commit_transaction()
        await self._step("committed", tp)

    @staticmethod
    async def _step(step: str, tp: TP) -> None:
        hook = PartitionTransactions.fault_hook
        if hook is not None:
            out: Any = hook(step, tp)
            if inspect.isawaitable(out):
                await out


def _names(tps: Sequence[TP]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in tps)
