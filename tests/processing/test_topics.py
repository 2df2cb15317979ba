"""Topics: partitioning, sending inside and outside agents, headers, redefinition."""

from __future__ import annotations

from decimal import Decimal

import pytest

import streamnb as faust
from streamnb.testing import settle, test_app, wait_until
from streamnb.topics import partition_for_key
from streamnb.transport.base import TP, Message


def test_keys_hash_consistently_like_kafkas_default_partitioner() -> None:
    # Reference values of Kafka's murmur2 partitioner (Java client), positive-masked, mod 8.
    from aiokafka.partitioner import murmur2

    for key in [b"alice", b"bob", b"", b"\xff\x00"]:
        expected = (murmur2(key) & 0x7FFFFFFF) % 8
        assert partition_for_key(key, 8) == expected
        assert partition_for_key(key, 8) == partition_for_key(key, 8)
    assert {partition_for_key(f"k{i}".encode(), 8) for i in range(200)} == set(range(8))
    counter = [0]
    assert {partition_for_key(None, 4, counter) for _ in range(8)} == set(range(4))


async def test_same_key_same_partition_and_headers(broker: str, app_id: str) -> None:
    app = faust.App(app_id, broker=broker, topic_partitions=4)
    topic = app.topic(f"{app_id}-t", value_type=str)
    async with app:
        for i in range(10):
            await topic.send(key="alice", value=f"v{i}", headers={"h": "x", "n": str(i).encode()}, timestamp=1000.0 + i)
        transport = app.transport
        assert transport is not None
        ends = await transport.end_offsets([TP(f"{app_id}-t", p) for p in range(4)])
        assert sorted(ends.values()) == [0, 0, 0, 10]
        (partition,) = [tp.partition for tp, end in ends.items() if end == 10]
        assert partition == partition_for_key(b"alice", 4)
        msgs = await transport.read(TP(f"{app_id}-t", partition), 0, 10)
        assert [m.offset for m in msgs] == list(range(10))
        assert msgs[3].headers == (("h", b"x"), ("n", b"3"))
        assert msgs[3].timestamp == 1003.0
        assert topic.decode(msgs[3]).value == "v3"


async def test_send_before_start_connects_and_explicit_partition() -> None:
    app = test_app()
    topic = app.topic("t", partitions=3)
    await topic.send(value={"a": 1}, partition=2)
    with pytest.raises(faust.ConfigurationError, match="partitions 0..2"):
        await topic.send(value={"a": 1}, partition=3)
    assert app.transport is not None
    assert (await app.transport.end_offsets([TP("t", 2)]))[TP("t", 2)] == 1
    await app.stop()


async def test_send_inside_an_agent_joins_its_transaction() -> None:
    app = test_app()
    src = app.topic("src", value_type=int, partitions=1)
    out = app.topic("out", value_type=int, partitions=1)
    seen: list[int] = []

    @app.agent(src)
    async def relay(stream):
        async for n in stream:
            await out.send(value=n + 1)
            out.send_soon(value=n + 100)

    @app.agent(out)
    async def sink(stream):
        async for n in stream:
            seen.append(n)

    async with app:
        await src.send(value=1)
        await settle(app)
        await wait_until(lambda: sorted(seen) == [2, 101])


def test_bad_topic_arguments() -> None:
    app = test_app()
    with pytest.raises(faust.ConfigurationError, match="non-empty"):
        app.topic("")
    with pytest.raises(faust.ConfigurationError, match="registered"):
        app.topic("t", value_serializer="no-such-codec")


async def test_redefining_a_topic_replaces_it() -> None:
    app = test_app()
    first = app.topic("t", value_type=str)
    second = app.topic("t", value_type=int)
    assert app.topics["t"] is second and first is not second
    async with app:
        await second.send(value=5)


async def test_encode_errors_are_serialization_errors() -> None:
    app = test_app()
    topic = app.topic("t", key_serializer="raw")
    with pytest.raises(faust.SerializationError, match="key"):
        topic.encode_key(3.5)


async def test_topics_encode_and_decode_through_codecs_serde() -> None:
    app = test_app()
    topic = app.topic("t", key_type=str, value_type=Decimal, key_serializer="raw", value_serializer="raw")
    # one path: what a stream decodes with is the serde streamnb.codecs built for the topic
    assert topic.decode_value is topic.value_serde.decode and topic.decode_key is topic.key_serde.decode
    assert (topic.value_serde.codec, topic.value_serde.type) == (topic.value_codec, Decimal)
    record = topic.record(key="k", value=Decimal("1.50"))
    assert (record.key, record.value) == (b"k", b"1.50")
    event = topic.decode(Message("t", 0, 0, 0.0, record.key, record.value, ()))
    assert (event.key, event.value) == ("k", Decimal("1.50"))
    with pytest.raises(faust.ValidationError, match="topic 't' value: value_type is Decimal, got str '1.50'"):
        await topic.send(value="1.50")
    with pytest.raises(faust.ConfigurationError, match="value_type=PageView is a Record"):

        class PageView(faust.Record):
            id: str

        app.topic("views", value_type=PageView, value_serializer="raw")
    await app.stop()


def test_send_soon_outside_a_running_loop_raises_instead_of_dropping() -> None:
    app = faust.App("soon", broker="memory://")
    topic = app.topic("soon")
    with pytest.raises(faust.AppNotRunningError, match="await topic.send"):
        topic.send_soon(value=b"lost?")


async def test_send_refuses_a_mapping_missing_a_record_field_at_once() -> None:
    class View(faust.Record):
        id: str
        page: str

    class Strict(faust.Record, validation=True):
        n: int

    app = test_app()
    views = app.topic("views", value_type=View)
    strict = app.topic("strict", value_type=Strict)
    got: list[View] = []

    @app.agent(views)
    async def read(stream):  # type: ignore[no-untyped-def]
        async for view in stream:
            got.append(view)

    async with app:
        with pytest.raises(faust.ValidationError, match=(
            r"topic 'views' value: value_type is View, got dict \{'id': '1'\} \(View.page: required field missing "
            r"\(page\).*\): send a value of type View, or change the topic's value_type"
        )) as caught:
            await views.send(key="a", value={"id": "1"})
        assert caught.value.field == "page"
        with pytest.raises(faust.ValidationError, match="topic 'strict' value: .*Strict.n"):
            await strict.send(value={"n": "three"})  # field types too, with validation=True
        sent = {"id": "2", "page": "/", "extra": 1}
        await views.send(key="a", value=sent)  # a good mapping goes as it is (extra fields too)
        await views.send(key="a", value=View(id="3", page="/cart"))
        await settle(app)
    assert sent == {"id": "2", "page": "/", "extra": 1}
    assert got == [View(id="2", page="/"), View(id="3", page="/cart")]  # nothing dead-lettered
    assert read.dead_lettered == 0
