"""Conformance suite: every broker backend behaves the same at the transport seam.

The ``transport`` fixture opens one backend per parameter of conftest's
``broker`` fixture (``memory``, ``local``, and ``kafka`` when ``STREAMNB_KAFKA``
names a running broker). A new backend joins by adding its scheme to
``conftest.BACKENDS``/``broker_url`` and a factory to :data:`FACTORIES` below.

Every test names its topics and groups with a uuid, so the tests also run on
a shared Kafka broker; timing assertions are generous (CI machines are slow)
and timestamps are whole milliseconds (Kafka stores milliseconds).
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio

from streamnb.testing import wait_until
from streamnb.transport.base import (
    TP,
    Consumer,
    Message,
    ProducerRecord,
    RebalanceListener,
    TopicSpec,
    Transport,
)


def _kafka(url: str) -> Transport:
    from streamnb.transport.kafka import KafkaTransport

    return KafkaTransport(url, client_id="streamnb-conformance")


def _memory(url: str) -> Transport:
    from streamnb.transport.memory import MemoryTransport

    return MemoryTransport(url)


def _local(url: str) -> Transport:
    from streamnb.transport.local import LocalTransport

    return LocalTransport(url)


FACTORIES: dict[str, Callable[[str], Transport]] = {"memory": _memory, "local": _local, "kafka": _kafka}
"""scheme -> transport factory (the hook for new backends)."""

EMBEDDED = {"memory", "local"}
"""Backends that assign partitions statically (``member``/``members``)."""

T0 = 1_700_000_000.125  # a timestamp Kafka stores exactly (whole milliseconds)


@pytest_asyncio.fixture
async def transport(broker: str) -> AsyncIterator[Transport]:
    """A started transport for each backend."""
    opened = FACTORIES[broker.partition("://")[0]](broker)
    await opened.start()
    try:
        yield opened
    finally:
        await opened.stop()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Recorder:
    """A RebalanceListener that records its calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, set[TP]]] = []

    async def on_assigned(self, tps: set[TP]) -> None:
        self.calls.append(("assigned", set(tps)))

    async def on_revoked(self, tps: set[TP]) -> None:
        self.calls.append(("revoked", set(tps)))

    @property
    def listener(self) -> RebalanceListener:
        return RebalanceListener(self.on_assigned, self.on_revoked)


async def drain(consumer: Consumer, want: int, timeout: float = 20.0, max_records: int = 1000) -> list[Message]:
    """Collect ``want`` messages (or whatever came within ``timeout``)."""
    got: list[Message] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        got += await consumer.getmany(timeout=0.5, max_records=max_records)
    return got


async def suspended(task: asyncio.Task[list[Message]]) -> None:
    """Wait until ``task`` has started and waits for something (a getmany waiting for data)."""
    await wait_until(lambda: inspect.getcoroutinestate(task.get_coro()) == inspect.CORO_SUSPENDED)
    assert not task.done()


def records(topic: str, partitions: int, n: int) -> list[ProducerRecord]:
    """``n`` records spread round robin over the partitions, value = index."""
    return [ProducerRecord(topic, i % partitions, b"k%d" % i, b"%d" % i, T0 + i) for i in range(n)]


# -- topics ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_create_topic_is_idempotent_and_keeps_its_partition_count(transport: Transport) -> None:
    name = unique("topic")
    assert await transport.partition_count(name) is None
    assert await transport.create_topic(TopicSpec(name, 3)) == 3
    assert await transport.create_topic(TopicSpec(name, 3)) == 3
    # Asking again with another count returns the actual count, no error.
    assert await transport.create_topic(TopicSpec(name, 5)) == 3
    assert await transport.partition_count(name) == 3
    compacted = unique("table-changelog")
    assert await transport.create_topic(TopicSpec(compacted, 2, compacted=True, retention=3600.0)) == 2
    assert await transport.partition_count(compacted) == 2


# -- send and read -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_send_and_read_round_trip(transport: Transport) -> None:
    name = unique("roundtrip")
    await transport.create_topic(TopicSpec(name, 2))
    every_byte = bytes(range(256))
    sent = [
        ProducerRecord(name, 1, b"k0", b"v0", T0, (("trace", b"abc"), ("raw", every_byte), ("trace", b"again"))),
        ProducerRecord(name, 1, None, b"no key", T0 + 1),
        ProducerRecord(name, 1, b"gone", None, T0 + 2),
        ProducerRecord(name, 1, b"", b"", T0 + 3.5),
        ProducerRecord(name, 0, b"p0", b"other partition", T0 + 4),
    ]
    await transport.send(sent)

    got = await transport.read(TP(name, 1), 0, 100)
    assert [(m.topic, m.partition, m.offset) for m in got] == [(name, 1, i) for i in range(4)]
    assert [(m.key, m.value) for m in got] == [(b"k0", b"v0"), (None, b"no key"), (b"gone", None), (b"", b"")]
    assert got[0].headers == (("trace", b"abc"), ("raw", every_byte), ("trace", b"again"))
    assert all(m.headers == () for m in got[1:])
    assert [m.timestamp for m in got] == pytest.approx([T0, T0 + 1, T0 + 2, T0 + 3.5], abs=1e-3)
    assert all(isinstance(m, Message) for m in got)
    other = await transport.read(TP(name, 0), 0, 100)
    assert [(m.partition, m.offset, m.value) for m in other] == [(0, 0, b"other partition")]


@pytest.mark.asyncio
async def test_read_respects_start_stop_and_max_records(transport: Transport) -> None:
    name = unique("ranges")
    await transport.create_topic(TopicSpec(name, 1))
    await transport.send(records(name, 1, 20))
    tp = TP(name, 0)
    assert [m.offset for m in await transport.read(tp, 5, 9)] == [5, 6, 7, 8]
    assert [m.offset for m in await transport.read(tp, 5, 100, max_records=3)] == [5, 6, 7]
    assert [m.offset for m in await transport.read(tp, 18, 100)] == [18, 19]
    assert await transport.read(tp, 20, 100) == []
    assert await transport.read(tp, 7, 7) == []
    assert await transport.read(TP(unique("missing"), 0), 0, 10) == []


@pytest.mark.asyncio
async def test_offsets_are_contiguous_per_partition(transport: Transport) -> None:
    name = unique("contiguous")
    await transport.create_topic(TopicSpec(name, 3))
    start = 0
    for size in (7, 1, 13):  # several sends, uneven batches
        await transport.send([ProducerRecord(name, i % 3, None, b"%d" % i, T0) for i in range(start, start + size)])
        start += size
    total = 0
    for p in range(3):
        got = await transport.read(TP(name, p), 0, 1000)
        total += len(got)
        assert [m.offset for m in got] == list(range(len(got)))
        # Offsets follow the order of sending.
        values = [int(m.value or b"") for m in got]
        assert values == sorted(values)
    assert total == 21


@pytest.mark.asyncio
async def test_end_and_beginning_offsets(transport: Transport) -> None:
    name = unique("offsets")
    await transport.create_topic(TopicSpec(name, 3))
    tps = [TP(name, p) for p in range(3)]
    assert await transport.end_offsets(tps) == {tp: 0 for tp in tps}
    await transport.send([ProducerRecord(name, p, None, b"x", T0) for p in (0, 0, 0, 2)])
    assert await transport.end_offsets(tps) == {tps[0]: 3, tps[1]: 0, tps[2]: 1}
    assert await transport.beginning_offsets(tps) == {tp: 0 for tp in tps}


# -- consumers ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_consumer_reads_every_partition_in_offset_order(transport: Transport) -> None:
    name = unique("source")
    await transport.create_topic(TopicSpec(name, 3))
    await transport.send(records(name, 3, 30))
    recorder = Recorder()
    consumer = transport.consumer(unique("group"), [name], recorder.listener)
    await consumer.start()
    try:
        tps = {TP(name, p) for p in range(3)}
        assert consumer.assignment() == tps
        assert recorder.calls == [("assigned", tps)]
        got = await drain(consumer, 30)
        assert sorted(int(m.value or b"") for m in got) == list(range(30))
        for p in range(3):
            assert [m.offset for m in got if m.partition == p] == list(range(10))
        # Nothing more: a marker sent to each partition now is the next thing read from it.
        await transport.send([ProducerRecord(name, p, None, b"marker", T0) for p in range(3)])
        after = await drain(consumer, 3)
        assert sorted((m.partition, m.offset, m.value) for m in after) == [(p, 10, b"marker") for p in range(3)]
    finally:
        await consumer.stop()
    assert recorder.calls[-1] == ("revoked", tps)


@pytest.mark.asyncio
async def test_getmany_respects_max_records(transport: Transport) -> None:
    name = unique("max")
    await transport.create_topic(TopicSpec(name, 2))
    await transport.send(records(name, 2, 50))
    consumer = transport.consumer(unique("group"), [name], Recorder().listener)
    await consumer.start()
    try:
        got: list[Message] = []
        deadline = time.monotonic() + 20
        while len(got) < 50 and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout=0.5, max_records=7)
            assert len(batch) <= 7
            got += batch
        assert sorted((m.partition, m.offset) for m in got) == sorted((i % 2, i // 2) for i in range(50))
    finally:
        await consumer.stop()


@pytest.mark.asyncio
async def test_getmany_returns_empty_after_the_timeout(transport: Transport) -> None:
    name = unique("quiet")
    await transport.create_topic(TopicSpec(name, 1))
    consumer = transport.consumer(unique("group"), [name], Recorder().listener)
    await consumer.start()
    try:
        started = time.monotonic()
        assert await consumer.getmany(timeout=0.3, max_records=10) == []
        assert time.monotonic() - started >= 0.25
        assert await consumer.getmany(timeout=0, max_records=10) == []
    finally:
        await consumer.stop()


@pytest.mark.asyncio
@pytest.mark.parametrize("how", ["send", "commit"])
async def test_getmany_returns_as_soon_as_data_arrives(transport: Transport, how: str) -> None:
    name, out = unique("wake"), unique("wake-out")
    await transport.create_topic(TopicSpec(name, 2))
    await transport.create_topic(TopicSpec(out, 1))
    reader = transport.consumer(unique("reader"), [name], Recorder().listener)
    writer = transport.consumer(unique("writer"), [out], Recorder().listener)
    await reader.start()
    await writer.start()
    try:
        waiting = asyncio.create_task(reader.getmany(timeout=30.0, max_records=10))
        await suspended(waiting)  # it waits for data (had it returned early, it would hold no record)
        started = time.monotonic()
        record = ProducerRecord(name, 1, b"k", b"hello", T0)
        if how == "send":
            await transport.send([record])
        else:
            await writer.commit({TP(out, 0): 0}, [record])
        got = await asyncio.wait_for(waiting, 30.0)
        assert time.monotonic() - started < 10.0  # woken up, not the 30 s timeout
        assert [(m.partition, m.offset, m.value) for m in got] == [(1, 0, b"hello")]
    finally:
        await reader.stop()
        await writer.stop()


@pytest.mark.asyncio
async def test_commit_appends_records_and_commits_offsets_together(transport: Transport) -> None:
    source, sink, group = unique("source"), unique("sink"), unique("group")
    await transport.create_topic(TopicSpec(source, 2))
    await transport.create_topic(TopicSpec(sink, 2))
    await transport.send(records(source, 2, 10))
    tps = [TP(source, 0), TP(source, 1)]
    consumer = transport.consumer(group, [source], Recorder().listener)
    await consumer.start()
    try:
        got = await drain(consumer, 10)
        assert len(got) == 10
        assert await transport.committed(group, tps) == {}
        outputs = [ProducerRecord(sink, p, b"sum", b"%d" % p, T0) for p in (0, 1, 1)]
        await consumer.commit({TP(source, 0): 5}, outputs)
        assert await transport.committed(group, tps) == {TP(source, 0): 5}  # partitions without a commit are left out
        assert await transport.end_offsets([TP(sink, 0), TP(sink, 1)]) == {TP(sink, 0): 1, TP(sink, 1): 2}
        assert [m.value for m in await transport.read(TP(sink, 1), 0, 10)] == [b"1", b"1"]
        await consumer.commit({TP(source, 0): 5, TP(source, 1): 3})  # offsets only
        await consumer.commit({}, [ProducerRecord(sink, 0, None, b"alone", T0)])  # records only
        assert await transport.committed(group, tps) == {TP(source, 0): 5, TP(source, 1): 3}
        assert (await transport.end_offsets([TP(sink, 0)]))[TP(sink, 0)] == 2
        # Commits are per group.
        assert await transport.committed(unique("other-group"), tps) == {}
    finally:
        await consumer.stop()


@pytest.mark.asyncio
async def test_consumer_starts_at_the_committed_offset_or_the_log_start(transport: Transport) -> None:
    name, group = unique("resume"), unique("group")
    await transport.create_topic(TopicSpec(name, 2))
    await transport.send(records(name, 2, 10))
    first = transport.consumer(group, [name], Recorder().listener)
    await first.start()
    try:
        assert len(await drain(first, 10)) == 10
        await first.commit({TP(name, 1): 3})
    finally:
        await first.stop()
    again = transport.consumer(group, [name], Recorder().listener)
    await again.start()
    try:
        got = await drain(again, 7)
        assert sorted((m.partition, m.offset) for m in got) == [(0, o) for o in range(5)] + [(1, 3), (1, 4)]
    finally:
        await again.stop()


@pytest.mark.asyncio
async def test_seek(transport: Transport) -> None:
    name = unique("seek")
    await transport.create_topic(TopicSpec(name, 1))
    await transport.send(records(name, 1, 10))
    tp = TP(name, 0)
    consumer = transport.consumer(unique("group"), [name], Recorder().listener)
    await consumer.start()
    try:
        first = await consumer.getmany(timeout=10.0, max_records=3)
        assert [m.offset for m in first] == [0, 1, 2][: len(first)] and first
        consumer.seek(tp, 0)  # back, while the rest is still unread
        assert [m.offset for m in await drain(consumer, 10)] == list(range(10))
        consumer.seek(tp, 4)
        assert [m.offset for m in await drain(consumer, 6)] == [4, 5, 6, 7, 8, 9]
        consumer.seek(tp, 8)
        assert [m.offset for m in await drain(consumer, 2)] == [8, 9]
        consumer.seek(tp, 10)  # the end: nothing until new data (the next read is the new record)
        await transport.send([ProducerRecord(name, 0, None, b"new", T0)])
        assert [m.offset for m in await drain(consumer, 1)] == [10]
    finally:
        await consumer.stop()


@pytest.mark.asyncio
async def test_getmany_continues_where_the_last_batch_ended(transport: Transport) -> None:
    name = unique("batches")
    await transport.create_topic(TopicSpec(name, 1))
    await transport.send(records(name, 1, 30))
    consumer = transport.consumer(unique("group"), [name], Recorder().listener)
    await consumer.start()
    try:
        got: list[Message] = []
        deadline = time.monotonic() + 20
        sizes = itertools.cycle([3, 3, 2, 5, 1])  # the same size twice, then others
        while len(got) < 30 and time.monotonic() < deadline:
            size = next(sizes)
            batch = await consumer.getmany(timeout=0.5, max_records=size)
            assert len(batch) <= size
            got += batch
        assert [m.offset for m in got] == list(range(30))  # no gap, no repeat
    finally:
        await consumer.stop()


@pytest_asyncio.fixture(params=sorted(EMBEDDED))
async def embedded(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[Transport]:  # type: ignore[no-untyped-def]
    """A started embedded transport: static assignment exists only there (Kafka
    spreads partitions through its group protocol, tested in tests/app/test_kafka_rebalance.py)."""
    url = f"memory://test-{uuid.uuid4().hex[:12]}" if request.param == "memory" else f"local://{tmp_path / 'b'}"
    opened = FACTORIES[request.param](url)
    await opened.start()
    try:
        yield opened
    finally:
        await opened.stop()


@pytest.mark.asyncio
async def test_static_assignment_splits_partitions_between_members(embedded: Transport) -> None:
    transport = embedded
    a, b, group = unique("a"), unique("b"), unique("group")
    await transport.create_topic(TopicSpec(a, 4))
    await transport.create_topic(TopicSpec(b, 3))
    await transport.send(records(a, 4, 40) + records(b, 3, 30))
    recorders = [Recorder(), Recorder()]
    members = [transport.consumer(group, [a, b], recorders[i].listener, member=i, members=2) for i in range(2)]
    for member in members:
        await member.start()
    try:
        expected = [
            {TP(a, 0), TP(a, 2), TP(b, 0), TP(b, 2)},
            {TP(a, 1), TP(a, 3), TP(b, 1)},
        ]
        for i in range(2):
            assert members[i].assignment() == expected[i]
            assert recorders[i].calls == [("assigned", expected[i])]
        counts = [10 + 10 + 10 + 10, 10 + 10 + 10]
        for i in range(2):
            got = await drain(members[i], counts[i])
            assert {TP(m.topic, m.partition) for m in got} == expected[i]  # only its own partitions
            assert len(got) == counts[i]
            for tp in expected[i]:
                assert [m.offset for m in got if TP(m.topic, m.partition) == tp] == list(range(10))
    finally:
        for member in members:
            await member.stop()
    for i in range(2):
        assert recorders[i].calls[-1] == ("revoked", expected[i])
