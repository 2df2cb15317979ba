"""Reads bounded by bytes as well as messages, on every backend, for agents, replays, %peek and dead letters.

60 messages of 2 MB with a 4 MB bound: no batch holds more than 4 MB, and
a single message larger than the bound still goes through, alone.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

import streamnb as faust
import streamnb.app.base as app_base
from streamnb.processing.source import Source
from streamnb.testing import settle
from streamnb.transport import open_transport
from streamnb.transport.base import TP, Message, ProducerRecord, RebalanceListener, TopicSpec, Transport, message_size

MB = 1024 * 1024
BOUND = 4 * MB
BIG = 2 * MB


def value(i: int, size: int = BIG) -> bytes:
    return (b"%08d" % i) * (size // 8)


async def fill(broker: str, topic: str, sizes: list[int], partitions: int = 2) -> None:
    """``topic`` with one message of each size (round robin over the partitions), as any producer would write it."""
    if broker.startswith("kafka://"):
        from aiokafka import AIOKafkaProducer
        from kafkahelpers import create_topic

        bootstrap = broker.removeprefix("kafka://")
        await create_topic(bootstrap, topic, partitions, {"max.message.bytes": str(8 * MB)})
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=8 * MB, acks="all")
        await producer.start()
        try:
            for i, size in enumerate(sizes):
                await producer.send_and_wait(topic, value(i, size), partition=i % partitions, timestamp_ms=1_000 + i)
        finally:
            await producer.stop()
        return
    transport = open_transport(broker, client_id="fill")
    await transport.start()
    try:
        await transport.create_topic(TopicSpec(topic, partitions))
        await transport.send(
            [ProducerRecord(topic, i % partitions, None, value(i, s), 1.0 + i) for i, s in enumerate(sizes)]
        )
    finally:
        await transport.stop()


@pytest_asyncio.fixture
async def transport(broker: str) -> AsyncIterator[Transport]:
    t = open_transport(broker, client_id="bytes")
    await t.start()
    yield t
    await t.stop()


async def nothing(tps: set[TP]) -> None:
    return None


def assert_bounded(batch: list[Message]) -> None:
    size = sum(map(message_size, batch))
    assert size <= BOUND or len(batch) == 1, (len(batch), size)


async def test_getmany_and_read_are_bounded_by_bytes(broker: str, transport: Transport) -> None:
    topic = f"bytes-{uuid.uuid4().hex[:8]}"
    sizes = [BIG] * 30 + [5 * MB] + [BIG] * 29  # one larger than the bound
    await fill(broker, topic, sizes)
    consumer = transport.consumer(f"g-{topic}", [topic], RebalanceListener(nothing, nothing))
    await consumer.start()
    try:
        seen: list[Message] = []
        batches = 0
        while len(seen) < len(sizes):
            batch = await consumer.getmany(5.0, 2000, BOUND)
            assert batch, f"stuck after {len(seen)} messages"
            assert_bounded(batch)
            seen += batch
            batches += 1
        assert sorted(int(m.value[:8]) for m in seen if m.value) == list(range(60))
        for p in range(2):
            offsets = [m.offset for m in seen if m.partition == p]
            assert offsets == sorted(offsets) == list(range(offsets[0], offsets[0] + 30))
        assert batches >= 60 * BIG // BOUND
        assert [m for m in seen if len(m.value or b"") == 5 * MB]  # the larger one came (alone)
    finally:
        await consumer.stop()
    tp = TP(topic, 0)
    end = (await transport.end_offsets([tp]))[tp]
    assert len(await transport.read(tp, 0, end, 1000, BOUND)) == 2
    assert len(await transport.read(tp, 0, end, 1000, 1)) == 1  # a message larger than the bound: alone
    assert len(await transport.read(tp, 0, end, 1000)) == 30


@pytest.fixture
def sizes_seen(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """(messages, bytes) of every batch a source hands an agent."""
    seen: list[tuple[int, int]] = []
    original = Source.next_batch

    async def next_batch(self: Source) -> list[Message] | None:
        batch = await original(self)
        if batch:
            seen.append((len(batch), sum(map(message_size, batch))))
        return batch

    monkeypatch.setattr(Source, "next_batch", next_batch)
    return seen


async def test_an_agent_gets_batches_within_stream_batch_max_bytes(
    broker: str, app_id: str, sizes_seen: list[tuple[int, int]]
) -> None:
    topic = f"{app_id}-big"
    await fill(broker, topic, [BIG] * 60)
    app = faust.App(app_id, broker=broker, topic_partitions=2, stream_batch_max_bytes=BOUND)
    big = app.topic(topic, partitions=2, value_serializer="raw")
    lengths = app.Table("lengths", default=int, partitions=2)

    @app.agent(big)
    async def measure(stream: Any) -> None:
        async for data in stream:
            lengths["bytes"] += len(data)

    async with app:
        await settle(app, timeout=120)
        measure.raise_if_crashed()
    assert measure.events_processed == 60
    assert sizes_seen and max(size for _n, size in sizes_seen) <= BOUND
    assert sum(n for n, _size in sizes_seen) == 60


async def test_the_setting_is_checked_and_bounds_the_kafka_fetch_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    assert faust.App("b", broker="memory://").stream_batch_max_bytes == 16 * MB
    for bad in (0, -1, 1.5, "16MB", True):
        with pytest.raises(faust.ConfigurationError, match="stream_batch_max_bytes"):
            faust.App("b", broker="memory://", stream_batch_max_bytes=bad)
    opened: list[dict[str, object]] = []

    def open_transport(broker: str, **options: object) -> object:
        opened.append(options)
        raise RuntimeError("not connecting in this test")

    monkeypatch.setattr(app_base, "open_transport", open_transport)
    app = faust.App("b", broker="kafka://127.0.0.1:9092", stream_batch_max_bytes=BOUND)
    with pytest.raises(RuntimeError, match="not connecting"):
        await app.connect()
    assert opened[-1]["fetch_max_bytes"] == BOUND and opened[-1]["max_partition_fetch_bytes"] == MB
    app.conf.stream_batch_max_bytes = MB  # (read when the app connects)
    assert app.stream_batch_max_bytes == MB
    with pytest.raises(RuntimeError, match="not connecting"):
        await app.connect()
    assert opened[-1]["fetch_max_bytes"] == MB


@pytest.fixture(params=["memory", "local"])
def folder(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return f"memory://bytes-{uuid.uuid4().hex[:10]}"
    return f"local://{tmp_path / 'slice'}"


async def test_a_replay_reads_within_the_bound_too(folder: str, sizes_seen: list[tuple[int, int]]) -> None:
    await fill(folder, "big", [BIG] * 40)
    app = faust.App(f"rp-{uuid.uuid4().hex[:6]}", broker=folder, clock="virtual", topic_partitions=2,
                    stream_batch_max_bytes=BOUND)
    big = app.topic("big", partitions=2, value_serializer="raw")
    seen: list[int] = []

    @app.agent(big)
    async def measure(stream: Any) -> None:
        async for data in stream:
            seen.append(int(data[:8]))

    async with app:
        await app.clock.idle(timeout=120)
    assert sorted(seen) == list(range(40))
    assert max(size for _n, size in sizes_seen) <= BOUND


async def test_peek_and_dead_letters_of_large_messages_stay_bounded(folder: str, app_id: str) -> None:
    from streamnb.notebook.peek import peek

    app = faust.App(app_id, broker=folder, topic_partitions=2, stream_batch_max_bytes=BOUND)
    numbers = app.topic("numbers", partitions=2, value_type=int)

    @app.agent(numbers)
    async def add(stream: Any) -> None:
        async for _n in stream:
            pass

    await fill(folder, "numbers", [BIG] * 12)  # no int: every one is dead-lettered
    async with app:
        await settle(app, timeout=120)
        assert add.dead_lettered == 12
        for name in ("numbers", f"{app_id}-add-dlq"):
            frame = await peek(app, name, n=10)
            assert 1 <= len(frame) <= 2  # the newest that fit in 4 MB, not 10 x 2 MB
            assert sum(len(v) for v in frame["value"]) <= BOUND
