"""Kafka transactions under streamnb's exactly-once mode, against a real broker.

``PartitionTransactions`` (one transactional producer per input partition):
a new producer for a partition fences the old one and aborts its open
transaction, so a zombie's late commit fails and its records stay invisible
to ``read_committed`` readers. The group-less reader behind
``KafkaTransport.read`` skips aborted records and does not seek back to the
commit marker that ends a transactional log (aiokafka #911).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from conftest import kafka_bootstrap

from streamnb.errors import BrokerError
from streamnb.transport.base import TP, ProducerRecord, TopicSpec
from streamnb.transport.kafka import KafkaTransport
from streamnb.transport.kafka.reader import PartitionReader
from streamnb.transport.kafka.transactions import PartitionTransactions

pytestmark = pytest.mark.kafka


@pytest.fixture
async def transport() -> AsyncIterator[KafkaTransport]:
    kafka = KafkaTransport(f"kafka://{kafka_bootstrap()}", client_id="streamnb-tests")
    await kafka.start()
    try:
        yield kafka
    finally:
        await kafka.stop()


def record(topic: str, value: bytes) -> ProducerRecord:
    return ProducerRecord(topic, 0, None, value, time.time())


async def read_all(transport: KafkaTransport, tp: TP, isolation_level: str) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka_bootstrap(), enable_auto_commit=False, isolation_level=isolation_level
    )
    await consumer.start()
    try:
        atp = TopicPartition(tp.topic, tp.partition)
        consumer.assign([atp])
        await consumer.seek_to_beginning(atp)
        end = (await consumer.end_offsets([atp]))[atp]
        out: list[bytes] = []
        while await consumer.position(atp) < end:
            for records in (await consumer.getmany(atp, timeout_ms=200)).values():
                out.extend(r.value for r in records)
        return out
    finally:
        await consumer.stop()


async def test_a_new_producer_fences_the_old_one_and_aborts_its_open_transaction(transport: KafkaTransport) -> None:
    name = f"txn-{uuid.uuid4().hex[:10]}"
    source, out, group = TP(f"{name}-in", 0), TP(f"{name}-out", 0), f"{name}-group"
    for topic in (source.topic, out.topic):
        await transport.create_topic(TopicSpec(topic, 1))

    def tid(tp: TP) -> str:
        return f"{name}-{tp.topic}-{tp.partition}"

    reached, release = asyncio.Event(), asyncio.Event()

    async def hold_the_first(step: str, tp: TP) -> None:
        if step == "offsets_sent" and not reached.is_set():
            reached.set()  # the zombie's records and offset are sent, its commit not yet
            await release.wait()

    old, new = PartitionTransactions(transport, group, tid), PartitionTransactions(transport, group, tid)
    PartitionTransactions.fault_hook = hold_the_first
    try:
        await old.open({source})
        zombie = asyncio.ensure_future(old.commit({source: 5}, {source: [record(out.topic, b"zombie")]}))
        await asyncio.wait_for(reached.wait(), 30)
        await new.open({source})  # the partition's next owner: bumps the epoch, aborts the open transaction
        release.set()
        with pytest.raises(BrokerError, match="fenced the transactions of .*-in\\[0\\]"):
            await zombie
        assert old.fenced == 1 and old.committed == 0
        await new.commit({source: 7}, {source: [record(out.topic, b"owner")]})
        assert new.committed == 1
    finally:
        PartitionTransactions.fault_hook = None
        await old.close_all()
        await new.close_all()
    assert await read_all(transport, out, "read_committed") == [b"owner"]
    assert await read_all(transport, out, "read_uncommitted") == [b"zombie", b"owner"]
    assert await transport.committed(group, [source]) == {source: 7}


async def test_a_commit_of_a_partition_not_assigned_fails(transport: KafkaTransport) -> None:
    name = f"txn-{uuid.uuid4().hex[:10]}"
    txns = PartitionTransactions(transport, f"{name}-group", lambda tp: f"{name}-{tp.partition}")
    with pytest.raises(BrokerError, match=r"not assigned to this member"):
        await txns.commit({TP(f"{name}-in", 0): 1}, {})


async def test_the_reader_skips_aborted_records_and_does_not_seek_back_to_the_last_marker(
    transport: KafkaTransport,
) -> None:
    name = f"txnlog-{uuid.uuid4().hex[:10]}"
    tp = TP(name, 0)
    await transport.create_topic(TopicSpec(name, 1))
    producer = transport.transactional_producer(f"{name}-writer")
    await producer.start()
    try:
        for value, commit in ((b"a", True), (b"aborted", False), (b"c", True)):
            await producer.begin_transaction()
            await producer.send_and_wait(name, value, partition=0)
            await (producer.commit_transaction() if commit else producer.abort_transaction())
    finally:
        await producer.stop()
    end = (await transport.end_offsets([tp]))[tp]
    assert end == 6  # three records, three markers

    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka_bootstrap(), group_id=None, enable_auto_commit=False,
        isolation_level="read_committed", fetch_max_wait_ms=20,
    )
    await consumer.start()
    seeks: list[Any] = []
    seek = consumer.seek
    consumer.seek = lambda *args: (seeks.append(args), seek(*args))[1]  # type: ignore[method-assign]
    try:
        reader = PartitionReader(consumer, request_timeout=15.0)
        atp = TopicPartition(name, 0)
        first = await reader.read(atp, 0, end, 100)
        assert [(m.offset, m.value) for m in first] == [(0, b"a"), (4, b"c")]
        seeks.clear()
        # A recovery loop asks again from the last message's offset + 1: the commit marker.
        assert await reader.read(atp, first[-1].offset + 1, end, 100) == []
        assert seeks == [], "the reader sought back to the marker it had already stepped over"
        assert await consumer.position(atp) == end
    finally:
        await consumer.stop()
