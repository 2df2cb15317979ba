"""Recording from a real Kafka into local://, then replaying: identical results every time, nothing written back.

The source topic is written with a plain aiokafka producer; what the
recorder leaves on the cluster is checked with a plain admin client.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from conftest import kafka_bootstrap
from kafkahelpers import create_topic, unique

import streamnb as faust
from streamnb.errors import ConfigurationError
from streamnb.playback.recording import record, recordings, source_offset
from streamnb.transport import open_transport
from streamnb.transport.base import TP

pytestmark = pytest.mark.kafka

T0 = 1_700_000_000.0
PAGES = ["/", "/cart", "/about", "/help", "/search"]


async def produce(bootstrap: str, topic: str, start: int, n: int) -> None:
    """Page views ``start..start+n``, one every 0.25 s, keyed by user, with a header."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        futures = []
        for i in range(start, start + n):
            value = json.dumps({"page": PAGES[(i * 3) % 5], "user": f"u{i % 11}", "i": i}).encode()
            futures.append(await producer.send(
                topic, value, key=f"u{i % 11}".encode(), timestamp_ms=int((T0 + i * 0.25) * 1000),
                headers=[("trace", str(i).encode())],
            ))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def cluster_state(bootstrap: str, topic: str) -> tuple[set[str], set[str], dict[int, int]]:
    """Groups and topics on the cluster (shared: others' come and go), and the topic's end offsets."""
    from aiokafka import AIOKafkaConsumer

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        groups = {g[0] for g in await admin.list_consumer_groups()}
        topics = set(await admin.list_topics())
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(3)]
        ends = {tp.partition: o for tp, o in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()
    return groups, topics, ends


async def assert_untouched(bootstrap: str, topic: str, before: tuple[set[str], set[str], dict[int, int]]) -> None:
    """No message written to the topic, no group with offsets in it, no topic of the recording made there."""
    groups, topics, ends = await cluster_state(bootstrap, topic)
    assert ends == before[2]
    assert not {t for t in topics - before[1] if t.startswith((topic, "__streamnb"))}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        for group in groups - before[0]:  # others' tests make groups too: none may hold offsets of this topic
            offsets = await admin.list_consumer_group_offsets(group)
            assert not [tp for tp in offsets if tp.topic == topic], group
    finally:
        await admin.close()


def define(app: faust.App, *, per_user: bool = False) -> None:
    views = app.topic("views", partitions=3)
    out = app.topic("milestones", partitions=1)
    counts = app.Table("counts", default=int)
    per_minute = app.Table("per_minute", default=int).tumbling(60, expires=3600)

    @app.agent(views, sink=[out])
    async def count(stream: Any) -> Any:
        async for view in stream.group_by(lambda v: v["user"] if per_user else v["page"], name="k"):
            key = view["user"] if per_user else view["page"]
            counts[key] += 1
            per_minute[key] += 1
            if counts[key] % 10 == 0:
                yield {"key": key, "n": counts[key], "at": app.now()}


async def replay_once(url: str, **options: Any) -> tuple[list[Any], list[Any], list[Any]]:
    app = faust.App("recorded", broker=url, clock="virtual", topic_partitions=3)
    define(app, **options)
    async with app:
        await app.clock.idle(timeout=60)
        app.agents["count"].raise_if_crashed()
        transport = app.require_transport()
        end = (await transport.end_offsets([TP("milestones", 0)]))[TP("milestones", 0)]
        outputs = [(m.offset, m.value, m.timestamp) for m in await transport.read(TP("milestones", 0), 0, end)]
        return (
            sorted(app.tables["counts"].data.items()),
            sorted(app.tables["per_minute"].as_dataframe(times="epoch").itertuples(index=False, name=None), key=repr),
            outputs,
        )


async def test_record_then_replay_twice_gives_identical_tables_and_outputs(tmp_path: Path) -> None:
    bootstrap = kafka_bootstrap()
    topic = unique("views")
    await create_topic(bootstrap, topic, 3)
    await produce(bootstrap, topic, 0, 600)
    before = await cluster_state(bootstrap, topic)
    slice_url = f"local://{tmp_path / 'slice'}"
    summary = await record(f"kafka://{bootstrap}", topic, to=slice_url, progress=False)
    assert int(summary["messages"].sum()) == 600 and len(summary) == 3
    assert summary["first"].min().timestamp() == T0 and summary["last"].max().timestamp() == T0 + 599 * 0.25
    assert (summary["bytes"] > 0).all()
    # The recorder committed no offsets, created no topic, wrote no message on the source cluster.
    await assert_untouched(bootstrap, topic, before)

    # The recording holds every message as it was: key, value, timestamp, headers, partition and offset.
    transport = open_transport(slice_url, client_id="check")
    await transport.start()
    try:
        copied = [m for p in range(3) for m in await transport.read(TP(topic, p), 0, 10_000)]
        assert len(copied) == 600
        first = min(copied, key=lambda m: m.timestamp)
        assert first.key == b"u0" and json.loads(first.value or b"")["i"] == 0 and first.headers == (("trace", b"0"),)
        assert await source_offset(transport, topic, first.partition, first.offset) == first.offset
    finally:
        await transport.stop()

    # Rename to what the app reads: replay it, twice.
    url = await _as_views(slice_url, tmp_path / "views", topic)
    first_run = await replay_once(url)
    second_run = await replay_once(url)
    assert first_run == second_run
    counts, _windows, outputs = first_run
    assert sum(n for _k, n in counts) == 600 and len(outputs) == 60
    # A changed agent: the change shows.
    changed = await replay_once(url, per_user=True)
    assert sorted(k for k, _n in changed[0]) == [f"u{i}" for i in sorted(range(11), key=lambda i: f"u{i}")]
    assert changed != first_run


async def _as_views(slice_url: str, folder: Path, topic: str) -> str:
    """A copy of the recording whose topic is called ``views`` (what the test pipeline reads)."""
    from streamnb.transport.base import ProducerRecord, TopicSpec

    source = open_transport(slice_url, client_id="copy")
    dest = open_transport(f"local://{folder}", client_id="copy")
    await source.start()
    await dest.start()
    try:
        await dest.create_topic(TopicSpec("views", 3))
        for p in range(3):
            msgs = await source.read(TP(topic, p), 0, 100_000, 100_000)
            await dest.send([ProducerRecord("views", p, m.key, m.value, m.timestamp, m.headers) for m in msgs])
    finally:
        await source.stop()
        await dest.stop()
    return f"local://{folder}"


async def test_recording_again_copies_only_what_is_new_and_the_limits_hold(tmp_path: Path) -> None:
    bootstrap = kafka_bootstrap()
    topic = unique("views")
    await create_topic(bootstrap, topic, 3)
    await produce(bootstrap, topic, 0, 90)
    url = f"local://{tmp_path / 'slice'}"
    source = f"kafka://{bootstrap}"
    assert int((await record(source, [topic], to=url, progress=False))["messages"].sum()) == 90
    await produce(bootstrap, topic, 90, 30)
    again = await record(source, [topic], to=url, progress=False)
    assert int(again["messages"].sum()) == 30  # only the new ones
    nothing = await record(source, [topic], to=url, progress=False)
    assert int(nothing["messages"].sum()) == 0
    transport = open_transport(url, client_id="check")
    await transport.start()
    try:
        ends = await transport.end_offsets([TP(topic, p) for p in range(3)])
        assert sum(ends.values()) == 120
        assert len(await recordings(transport)) == 9  # three recordings of three partitions
    finally:
        await transport.stop()
    # since= / until= / max_messages= cut the slice.
    window = await record(source, topic, to=f"local://{tmp_path / 'w'}", since=T0 + 10, until=T0 + 20, progress=False)
    assert int(window["messages"].sum()) == 40  # i = 40 .. 79
    assert window["first"].min().timestamp() == T0 + 10 and window["last"].max().timestamp() == T0 + 19.75
    capped = await record(source, topic, to=f"local://{tmp_path / 'n'}", max_messages=25, progress=False)
    assert int(capped["messages"].sum()) == 25


async def test_record_errors_say_what_to_do(tmp_path: Path) -> None:
    bootstrap = kafka_bootstrap()
    with pytest.raises(ConfigurationError, match="no topic"):
        await record(f"kafka://{bootstrap}", unique("missing"), to=f"local://{tmp_path}/x", progress=False)
    with pytest.raises(ConfigurationError, match="local:// folder"):
        await record(f"kafka://{bootstrap}", "t", to=f"kafka://{bootstrap}")
    with pytest.raises(ConfigurationError, match="kafka://"):
        await record("local://x", "t", to="local://y")
    with pytest.raises(ConfigurationError, match="max_messages"):
        await record(f"kafka://{bootstrap}", "t", to="local://y", max_messages=0)
