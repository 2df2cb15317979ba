"""The ``kafka://`` transport against a real broker.

Needs ``bash scripts/kafka.sh up`` and ``STREAMNB_KAFKA=127.0.0.1:9092``
(skipped otherwise). Every test uses its own topics and groups (uuid names),
so the tests are independent of each other and of earlier runs.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from kafka_tls import SASL_PASSWORD, SASL_USER

from streamnb.errors import BrokerError, BrokerUnavailableError, ConfigurationError
from streamnb.testing import wait_until
from streamnb.transport.base import TP, Message, ProducerRecord, RebalanceListener, TopicSpec
from streamnb.transport.kafka import KafkaTransport, parse_kafka_url

pytestmark = pytest.mark.kafka

KAFKA = os.environ.get("STREAMNB_KAFKA", "")


def bootstrap() -> str:
    if not KAFKA:
        pytest.skip("no Kafka: start one with `bash scripts/kafka.sh up` and set STREAMNB_KAFKA=127.0.0.1:9092")
    return KAFKA


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def transport() -> AsyncIterator[KafkaTransport]:
    kafka = KafkaTransport(f"kafka://{bootstrap()}", client_id="streamnb-tests")
    await kafka.start()
    try:
        yield kafka
    finally:
        await kafka.stop()


class Recorder:
    """A RebalanceListener that records the calls it gets."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[tuple[str, set[TP]]] = []
        self.delay = delay
        self.assigned_done = asyncio.Event()

    async def on_assigned(self, tps: set[TP]) -> None:
        await asyncio.sleep(self.delay)  # like a table recovering
        self.calls.append(("assigned", tps))
        self.assigned_done.set()

    async def on_revoked(self, tps: set[TP]) -> None:
        self.calls.append(("revoked", tps))

    @property
    def listener(self) -> RebalanceListener:
        return RebalanceListener(self.on_assigned, self.on_revoked)


async def topic_configs(topics: list[str]) -> dict[str, dict[str, str]]:
    """Each topic's configuration, as the broker describes it (retried while it catches up)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap())
    await admin.start()
    configs: dict[str, dict[str, str]] = {}
    try:
        deadline = time.monotonic() + 10.0
        while True:
            responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t) for t in topics])
            for response in responses:
                for code, _msg, _type, topic, entries in response.resources:
                    if code == 0:
                        configs[topic] = {entry[0]: entry[1] for entry in entries}
            # A topic created a moment ago may not be described yet.
            if set(configs) >= set(topics) or time.monotonic() > deadline:
                return configs
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def drain(consumer, want: int, timeout: float = 20.0) -> list[Message]:  # type: ignore[no-untyped-def]
    got: list[Message] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        got += await consumer.getmany(timeout=0.5, max_records=10_000)
    return got


def test_parse_kafka_url() -> None:
    assert parse_kafka_url("kafka://127.0.0.1:9092,127.0.0.1:9093") == ["127.0.0.1:9092", "127.0.0.1:9093"]
    assert parse_kafka_url("kafka://127.0.0.1") == ["127.0.0.1:9092"]
    with pytest.raises(ConfigurationError):
        parse_kafka_url("kafka://")
    with pytest.raises(ConfigurationError):
        KafkaTransport("kafka://127.0.0.1", client_id="x", security_protocol="TLS")


async def test_create_topic_partition_count_and_configs(transport: KafkaTransport) -> None:
    name = unique("compacted")
    assert await transport.partition_count(name) is None
    assert await transport.partition_count(name) is None  # asking did not auto-create it
    assert await transport.create_topic(TopicSpec(name, 3, compacted=True, retention=3600.0)) == 3
    assert await transport.partition_count(name) == 3
    # Running the cell again: no error, and the existing size wins.
    assert await transport.create_topic(TopicSpec(name, 5, compacted=True)) == 3

    plain = unique("plain")
    assert await transport.create_topic(TopicSpec(plain, 2)) == 2

    configs = await topic_configs([name, plain])
    assert configs[name]["cleanup.policy"] == "compact"
    assert configs[name]["retention.ms"] == "3600000"
    assert configs[plain]["cleanup.policy"] == "delete"


async def test_send_and_read_round_trip(transport: KafkaTransport) -> None:
    name = unique("roundtrip")
    await transport.create_topic(TopicSpec(name, 2))
    ts = 1_700_000_000.125
    records = [
        ProducerRecord(name, 1, b"k0", b"v0", ts, (("trace", b"abc"), ("n", b"0"))),
        ProducerRecord(name, 1, None, b"no key", ts + 1),
        ProducerRecord(name, 1, b"gone", None, ts + 2),  # a tombstone
        ProducerRecord(name, 0, b"p0", b"other partition", ts + 3),
    ]
    await transport.send(records)

    tp = TP(name, 1)
    got = await transport.read(tp, 0, 10)
    assert [(m.offset, m.key, m.value) for m in got] == [(0, b"k0", b"v0"), (1, None, b"no key"), (2, b"gone", None)]
    first = got[0]
    assert first.topic == name and first.partition == 1
    assert first.headers == (("trace", b"abc"), ("n", b"0"))
    assert abs(first.timestamp - ts) < 1e-6
    assert got[1].headers == ()
    assert abs(got[2].timestamp - (ts + 2)) < 1e-6

    # Sub-ranges, max_records, and ranges past the end.
    assert [m.offset for m in await transport.read(tp, 1, 2)] == [1]
    assert [m.offset for m in await transport.read(tp, 0, 10, max_records=2)] == [0, 1]
    assert [m.offset for m in await transport.read(tp, 2, 10)] == [2]
    assert await transport.read(tp, 3, 10) == []
    assert await transport.read(tp, 2, 2) == []
    assert [m.value for m in await transport.read(TP(name, 0), 0, 10)] == [b"other partition"]
    assert await transport.read(TP(unique("missing"), 0), 0, 10) == []


async def test_read_whole_partition_in_a_loop(transport: KafkaTransport) -> None:
    """Table recovery reads a whole changelog partition with repeated calls."""
    name = unique("changelog")
    await transport.create_topic(TopicSpec(name, 1, compacted=True))
    now = time.time()
    total = 25_000
    await transport.send([ProducerRecord(name, 0, b"%d" % (i % 500), b"%d" % i, now) for i in range(total)])
    tp = TP(name, 0)
    end = (await transport.end_offsets([tp]))[tp]
    assert end == total
    pos, seen, calls = 0, 0, 0
    while pos < end:
        batch = await transport.read(tp, pos, end, max_records=4_000)
        assert batch, f"read returned nothing at {pos} < {end}"
        assert batch[0].offset >= pos and all(b.offset == a.offset + 1 for a, b in zip(batch, batch[1:]))
        seen += len(batch)
        pos = batch[-1].offset + 1
        calls += 1
    assert seen == total and calls >= total // 4_000


async def test_end_and_beginning_offsets(transport: KafkaTransport) -> None:
    name = unique("offsets")
    await transport.create_topic(TopicSpec(name, 3))
    tps = [TP(name, p) for p in range(3)]
    assert await transport.end_offsets(tps) == {tp: 0 for tp in tps}
    now = time.time()
    await transport.send([ProducerRecord(name, p, None, b"x", now) for p in (0, 0, 0, 2)])
    assert await transport.end_offsets(tps) == {tps[0]: 3, tps[1]: 0, tps[2]: 1}
    assert await transport.beginning_offsets(tps) == {tp: 0 for tp in tps}
    missing = TP(unique("missing"), 0)
    assert await transport.end_offsets([missing]) == {missing: 0}
    assert await transport.partition_count(missing.topic) is None


async def test_consumer_group_getmany_commit_committed(transport: KafkaTransport) -> None:
    source, sink, group = unique("source"), unique("sink"), unique("group")
    await transport.create_topic(TopicSpec(source, 2))
    await transport.create_topic(TopicSpec(sink, 1))
    now = time.time()
    await transport.send(
        [ProducerRecord(source, i % 2, b"k%d" % i, b"v%d" % i, now + i, (("i", b"%d" % i),)) for i in range(10)]
    )
    tps = {TP(source, 0), TP(source, 1)}

    recorder = Recorder(delay=0.3)
    consumer = transport.consumer(group, [source], recorder.listener)
    await consumer.start()
    try:
        # on_assigned was awaited (the whole 0.3 s) before start returned.
        assert recorder.calls == [("assigned", tps)]
        assert consumer.assignment() == tps
        one = await consumer.getmany(timeout=10.0, max_records=1)
        assert len(one) == 1
        rest = await drain(consumer, 9)
        got = one + rest
        assert sorted(m.value for m in got) == sorted(b"v%d" % i for i in range(10))
        for partition in (0, 1):
            offsets = [m.offset for m in got if m.partition == partition]
            assert offsets == sorted(offsets)
        sample = next(m for m in got if m.value == b"v3")
        assert sample.headers == (("i", b"3"),) and abs(sample.timestamp - (now + 3)) < 1e-3

        assert await transport.committed(group, tps) == {}
        out = ProducerRecord(sink, 0, b"sum", b"45", now)
        await consumer.commit({TP(source, 0): 5, TP(source, 1): 3}, [out])
        assert await transport.committed(group, tps) == {TP(source, 0): 5, TP(source, 1): 3}
        assert [m.value for m in await transport.read(TP(sink, 0), 0, 10)] == [b"45"]
    finally:
        await consumer.stop()
    assert recorder.calls[-1] == ("revoked", tps)

    # A new member of the group starts at the committed offsets.
    again = transport.consumer(group, [source], Recorder().listener)
    await again.start()
    try:
        resumed = await drain(again, 2)
        assert sorted((m.partition, m.offset) for m in resumed) == [(1, 3), (1, 4)]
        again.seek(TP(source, 0), 4)
        assert [(m.partition, m.offset) for m in await drain(again, 1)] == [(0, 4)]
    finally:
        await again.stop()


async def test_rebalance_between_two_members(transport: KafkaTransport) -> None:
    """A second member takes half the partitions; the first commits in on_revoked."""
    name, group = unique("rebalance"), unique("group")
    await transport.create_topic(TopicSpec(name, 4))
    now = time.time()
    await transport.send([ProducerRecord(name, i % 4, None, b"%d" % i, now) for i in range(40)])
    everything = {TP(name, p) for p in range(4)}

    seen: list[Message] = []
    first_calls: list[tuple[str, set[TP]]] = []

    async def first_assigned(tps: set[TP]) -> None:
        first_calls.append(("assigned", tps))

    async def first_revoked(tps: set[TP]) -> None:
        first_calls.append(("revoked", tps))
        done: dict[TP, int] = {}
        for m in seen:
            done[TP(m.topic, m.partition)] = m.offset + 1
        await first.commit({tp: off for tp, off in done.items() if tp in tps})

    first = transport.consumer(group, [name], RebalanceListener(first_assigned, first_revoked))
    await first.start()
    seen += await drain(first, 40)
    assert len(seen) == 40 and first.assignment() == everything

    async def keep_polling() -> None:  # the first member goes on working meanwhile
        while True:
            seen.extend(await first.getmany(timeout=0.2, max_records=100))

    poller = asyncio.create_task(keep_polling())
    second_recorder = Recorder()
    second = transport.consumer(group, [name], second_recorder.listener)
    try:
        await second.start()
        deadline = time.monotonic() + 20
        while len(first.assignment()) != 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert first.assignment() | second.assignment() == everything
        assert len(first.assignment()) == len(second.assignment()) == 2
        assert [kind for kind, _ in first_calls] == ["assigned", "revoked", "assigned"]
        assert first_calls[1] == ("revoked", everything)  # eager: all of them, then the new share
        # Everything read before the rebalance was committed in on_revoked: nothing is read twice,
        # so a marker sent to each of the second member's partitions is the first thing it reads.
        committed = await transport.committed(group, everything)
        assert committed == {tp: 10 for tp in everything}
        # The same holds for the first member, which goes on polling.
        mine, theirs = sorted(first.assignment()), sorted(second.assignment())
        await transport.send([ProducerRecord(name, p, None, b"marker", now) for p in range(4)])
        got = await drain(second, len(theirs))
        assert sorted((m.partition, m.offset, m.value) for m in got) == [(tp.partition, 10, b"marker") for tp in theirs]
        await wait_until(lambda: len(seen) >= 40 + len(mine), timeout=20)
    finally:
        poller.cancel()
        await second.stop()
        await first.stop()
    assert sorted((m.partition, m.offset, m.value) for m in seen[40:]) == [(tp.partition, 10, b"marker") for tp in mine]


async def test_listener_error_is_raised(transport: KafkaTransport) -> None:
    name = unique("failing")
    await transport.create_topic(TopicSpec(name, 1))

    async def broken(tps: set[TP]) -> None:
        raise RuntimeError("recovery failed")

    async def fine(tps: set[TP]) -> None:
        return None

    consumer = transport.consumer(unique("group"), [name], RebalanceListener(broken, fine))
    with pytest.raises(RuntimeError, match="recovery failed"):
        await consumer.start()
    await consumer.stop()  # already stopped: no error


async def test_join_timeout_bounds_the_assignment_not_the_restore_after_it(transport: KafkaTransport) -> None:
    """A first ``on_assigned`` (a table restore) may outlast ``join_timeout``: only the assignment is bounded."""
    name = unique("slow-restore")
    await transport.create_topic(TopicSpec(name, 1))
    began, held = time.monotonic(), []

    async def restoring(tps: set[TP]) -> None:
        held.append(tps)
        await wait_until(lambda: time.monotonic() - began > consumer.join_timeout + 1.0, timeout=60)

    async def fine(tps: set[TP]) -> None:
        return None

    consumer = transport.consumer(unique("group"), [name], RebalanceListener(restoring, fine))
    consumer.join_timeout = 8.0  # (the group's first join takes about 3 s: Kafka's initial rebalance delay)
    try:
        await consumer.start()
        assert held == [{TP(name, 0)}] and time.monotonic() - began > consumer.join_timeout
    finally:
        await consumer.stop()


async def test_messages_of_a_plain_aiokafka_producer(transport: KafkaTransport) -> None:
    name = unique("external")
    await transport.create_topic(TopicSpec(name, 1))
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap())
    await producer.start()
    try:
        await producer.send_and_wait(name, b'{"id": 1}', key=b"a", headers=[("src", b"java-ish")], timestamp_ms=1234)
        await producer.send_and_wait(name, b'{"id": 2}')
    finally:
        await producer.stop()
    consumer = transport.consumer(unique("group"), [name], Recorder().listener)
    await consumer.start()
    try:
        got = await drain(consumer, 2)
    finally:
        await consumer.stop()
    assert [(m.key, m.value) for m in got] == [(b"a", b'{"id": 1}'), (None, b'{"id": 2}')]
    assert got[0].headers == (("src", b"java-ish"),) and got[0].timestamp == 1.234


async def test_unreachable_broker_raises_within_the_bound() -> None:
    kafka = KafkaTransport("kafka://127.0.0.1:1", client_id="nobody", request_timeout=5.0)
    started = time.monotonic()
    with pytest.raises(BrokerUnavailableError) as info:
        await kafka.start()
    assert time.monotonic() - started < 6.0
    message = str(info.value)
    assert "127.0.0.1:1" in message and "scripts/kafka.sh up" in message and "local://" in message
    with pytest.raises(BrokerError):
        await kafka.send([ProducerRecord("t", 0, None, b"x", 0.0)])
    await kafka.stop()  # never started: no error


# -- TLS and SASL on a second broker (``secure_broker``: tests/kafka_tls.py) -------


async def _round_trip(kafka: KafkaTransport) -> None:
    await kafka.start()
    try:
        name = unique("secure")
        await kafka.create_topic(TopicSpec(name, 1))
        await kafka.send([ProducerRecord(name, 0, b"k", b"secret", 1.5)])
        got = await kafka.read(TP(name, 0), 0, 1)
        assert [(m.key, m.value, m.timestamp) for m in got] == [(b"k", b"secret", 1.5)]
    finally:
        await kafka.stop()


@pytest.mark.slow
async def test_tls_listener(secure_broker: dict[str, str]) -> None:
    context = ssl.create_default_context(cafile=secure_broker["cafile"])
    await _round_trip(
        KafkaTransport(f"kafka://{secure_broker['ssl']}", client_id="tls", security_protocol="SSL", ssl_context=context)
    )
    # Without the broker's certificate the handshake fails, and the error says so.
    with pytest.raises(BrokerUnavailableError, match="handshake failed"):
        await KafkaTransport(
            f"kafka://{secure_broker['ssl']}", client_id="tls", security_protocol="SSL", request_timeout=5.0
        ).start()


@pytest.mark.slow
async def test_sasl_plain_listener(secure_broker: dict[str, str]) -> None:
    await _round_trip(
        KafkaTransport(
            f"kafka://{secure_broker['sasl']}",
            client_id="sasl",
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="PLAIN",
            sasl_plain_username=SASL_USER,
            sasl_plain_password=SASL_PASSWORD,
        )
    )
    with pytest.raises(BrokerUnavailableError, match="SASL mechanism, user and password"):
        await KafkaTransport(
            f"kafka://{secure_broker['sasl']}",
            client_id="sasl",
            security_protocol="SASL_PLAINTEXT",
            sasl_plain_username=SASL_USER,
            sasl_plain_password="wrong",
            request_timeout=5.0,
        ).start()
