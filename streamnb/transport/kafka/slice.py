"""Reading a slice of Kafka topics without joining a group or writing anything (``streamnb.record``).

A :class:`SliceReader` is one group-less ``AIOKafkaConsumer`` (``group_id=None``,
no auto commit) with manual assignment: it never commits offsets, never
creates a topic and has no producer, so recording leaves the source cluster
exactly as it was. It finds where a slice starts and stops (the log start or
a time, the log end or a time) and streams the messages of every partition
in between, in batches.

Example (on a running loop)::

    transport = KafkaTransport("kafka://127.0.0.1:9092", client_id="recorder")  # never started
    reader = SliceReader(transport)
    await reader.start()
    counts = await reader.partition_counts(["page_views"])
    async for batch in reader.read({TP("page_views", 0): (0, 100)}):
        ...
    await reader.stop()
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from ..base import TP
from .admin import TopicAdmin
from .clients import broker_errors, close_quietly
from .transport import KafkaTransport

__all__ = ["SliceReader", "SourceRecord"]


class SourceRecord(Protocol):
    """A message as :meth:`SliceReader.read` hands it out (an aiokafka ``ConsumerRecord``)."""

    offset: int
    timestamp: int
    """Milliseconds since the epoch."""
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


class SliceReader:
    """A read-only, group-less view of a Kafka cluster's topics (see the module docstring)."""

    def __init__(self, transport: KafkaTransport, max_records: int = 20_000) -> None:
        self.transport = transport
        self.max_records = max_records
        self._consumer: AIOKafkaConsumer | None = None
        self._admin: TopicAdmin | None = None

    async def start(self) -> None:
        """Connect (:class:`~streamnb.errors.BrokerUnavailableError` when nothing answers)."""
        transport = self.transport
        consumer = AIOKafkaConsumer(
            **transport.client_options(),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
            fetch_max_wait_ms=100,
            request_timeout_ms=max(int(transport.request_timeout * 1000), 30_000),
        )
        admin = AIOKafkaAdminClient(
            **transport.client_options(), request_timeout_ms=int(transport.request_timeout * 1000)
        )
        try:
            await transport.bounded(consumer.start())
            await transport.bounded(admin.start())
        except BaseException:
            await close_quietly(consumer.stop(), admin.close())
            raise
        self._consumer = consumer
        self._admin = TopicAdmin(admin, transport.request_timeout, brokers=1)

    async def stop(self) -> None:
        """Disconnect."""
        consumer, self._consumer = self._consumer, None
        admin, self._admin = self._admin, None
        await close_quietly(
            None if consumer is None else consumer.stop(), None if admin is None else admin.client.close()
        )

    @property
    def consumer(self) -> AIOKafkaConsumer:
        """The started consumer."""
        if self._consumer is None:
            raise RuntimeError("SliceReader.start() first")
        return self._consumer

    async def partition_counts(self, topics: Sequence[str]) -> dict[str, int]:
        """Partition count of each existing topic among ``topics`` (missing ones are left out; none is created)."""
        if self._admin is None:
            raise RuntimeError("SliceReader.start() first")
        found = await self._admin.metadata(list(topics))
        return {name: count for name, count in found.items() if count}

    async def bounds(self, tps: Sequence[TP]) -> tuple[dict[TP, int], dict[TP, int]]:
        """Where each partition's log starts and ends now."""
        atps = [TopicPartition(*tp) for tp in tps]
        with broker_errors("read offsets"):
            starts = await self.consumer.beginning_offsets(atps)
            ends = await self.consumer.end_offsets(atps)
        return (
            {TP(a.topic, a.partition): o for a, o in starts.items()},
            {TP(a.topic, a.partition): o for a, o in ends.items()},
        )

    async def offsets_at(self, tps: Sequence[TP], when: float) -> dict[TP, int | None]:
        """The first offset of each partition whose timestamp is at or after ``when`` (None: there is none)."""
        atps = [TopicPartition(*tp) for tp in tps]
        with broker_errors("look up offsets by time"):
            found = await self.consumer.offsets_for_times({a: int(when * 1000) for a in atps})
        return {TP(a.topic, a.partition): (None if hit is None else hit.offset) for a, hit in found.items()}

    async def read(self, ranges: Mapping[TP, tuple[int, int]]) -> AsyncIterator[tuple[TP, list[SourceRecord]]]:
        """``(partition, records)`` with ``start <= offset < stop``, in offset order, until all are read.

        The records are aiokafka's, as fetched (``offset``, ``timestamp`` in
        milliseconds, ``key``, ``value``, ``headers``): copying them costs no
        conversion here.
        """
        consumer = self.consumer
        todo = {TopicPartition(*tp): span for tp, span in ranges.items() if span[0] < span[1]}
        if not todo:
            return
        consumer.assign(list(todo))
        for atp, (start, _stop) in todo.items():
            consumer.seek(atp, start)
        while todo:
            with broker_errors("fetch messages"):
                fetched = await consumer.getmany(*todo, timeout_ms=500, max_records=self.max_records)
            for atp, records in fetched.items():
                stop = todo[atp][1] if atp in todo else -1
                if records and records[-1].offset >= stop:
                    records = [r for r in records if r.offset < stop]
                if records:
                    yield TP(atp.topic, atp.partition), records
            for atp in list(todo):
                if await consumer.position(atp) >= todo[atp][1]:
                    consumer.pause(atp)
                    del todo[atp]
