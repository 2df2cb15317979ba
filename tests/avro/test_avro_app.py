"""Avro topics in running apps, on every backend: agents, group_by, tables, dead letters, registry outages."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from schema_registry import SchemaRegistryServer

import streamnb as faust
from streamnb.testing import settle, wait_until
from streamnb.transport.base import TP, Message, ProducerRecord


class View(faust.Record, namespace="web.View"):
    user: str
    page: str
    at: datetime
    price: Decimal = Decimal("0")


AT = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


def view(i: int) -> View:
    return View(user=f"u{i % 3}", page=f"/p{i % 4}", at=AT, price=Decimal(i))


async def read_all(app: faust.App, name: str) -> list[Message]:
    transport = await app.connect()
    count = await transport.partition_count(name)
    out: list[Message] = []
    for p in range(count or 0):
        tp = TP(name, p)
        begin = (await transport.beginning_offsets([tp]))[tp]
        end = (await transport.end_offsets([tp]))[tp]
        if end > begin:
            out.extend(await transport.read(tp, begin, end, end - begin))
    return out


def make_app(app_id: str, broker: str, registry: SchemaRegistryServer) -> faust.App:
    return faust.App(app_id, broker=broker, topic_partitions=2, schema_registry=registry.url)


async def test_an_agent_groups_and_counts_avro_values_and_the_changelog_stays_json(
    broker: str, app_id: str, registry: SchemaRegistryServer
) -> None:
    app = make_app(app_id, broker, registry)
    views = app.topic(f"{app_id}-views", value_type=View, value_serializer="avro")
    counts = app.Table("counts", default=int)
    seen: list[View] = []

    @app.agent(views)
    async def count(stream):  # type: ignore[no-untyped-def]
        async for v in stream.group_by(View.page):
            seen.append(v)
            counts[v.page] += 1

    async with app:
        for i in range(40):
            await views.send(key=f"u{i % 3}", value=view(i))
        await settle(app)
        assert sorted(seen, key=lambda v: v.price) == [view(i) for i in range(40)]
        assert dict(counts.items()) == {f"/p{k}": 10 for k in range(4)}
        assert count.dead_lettered == 0
        # what went through the repartition topic is the producer's Avro, unchanged
        source = await read_all(app, views.name)
        assert {m.value[:5] for m in source} == {b"\x00\x00\x00\x00\x01"}
        changelog = await read_all(app, counts.changelog.name)
        assert changelog and {json.loads(m.value) for m in changelog} <= set(range(1, 11))  # JSON, not Avro
    assert registry.state.subjects == {f"{app_id}-views-value": [1]}  # the changelog registered nothing


async def test_undecodable_messages_are_dead_lettered_with_the_reason(
    broker: str, app_id: str, registry: SchemaRegistryServer
) -> None:
    app = make_app(app_id, broker, registry)
    views = app.topic(f"{app_id}-views", value_type=View, value_serializer="avro")
    seen: list[View] = []

    @app.agent(views)
    async def take(stream):  # type: ignore[no-untyped-def]
        async for v in stream:
            seen.append(v)

    async with app:
        await views.send(value=view(1))
        good = views.encode_value(view(2))
        assert good is not None
        transport = await app.connect()
        bad = [
            b'{"user": "u1"}',  # JSON: no magic byte
            b"\x00\x00\x00\x03\xe7" + good[5:],  # schema id 999: not in the registry
            good[:-4],  # the body cut short
        ]
        await transport.send([ProducerRecord(views.name, 0, None, value, 0.0, ()) for value in bad])
        await views.send(value=view(3))
        await settle(app)
        assert sorted(seen, key=lambda v: v.price) == [view(1), view(3)]
        assert take.dead_lettered == 3
        dlq = await read_all(app, f"{app_id}-take-dlq")
        joined = " | ".join(dict(m.headers)["streamnb-error"].decode() for m in dlq)
        assert "expected the magic byte 0" in joined
        assert "unknown schema id 999" in joined
        assert "does not match its writer schema" in joined
        assert sorted(m.value for m in dlq) == sorted(bad)


async def test_a_registry_outage_is_waited_out_without_dropping_or_dead_lettering(
    broker: str, app_id: str, registry: SchemaRegistryServer
) -> None:
    producer = make_app(app_id + "-producer", broker, registry)
    topic_name = f"{app_id}-views"
    out = producer.topic(topic_name, value_type=View, value_serializer="avro")
    for i in range(30):
        await out.send(key=f"k{i}", value=view(i))
    await producer.stop()
    registry.stop()  # the consumer has never seen the writer schema: it must fetch it

    app = make_app(app_id, broker, registry)
    views = app.topic(topic_name, value_type=View, value_serializer="avro")
    seen: list[View] = []

    @app.agent(views)
    async def take(stream):  # type: ignore[no-untyped-def]
        async for v in stream:
            seen.append(v)

    async with app:
        client = app.schema_registry
        assert client is not None
        await wait_until(lambda: client.failures >= 3, timeout=30, what="the agent retries the registry")
        assert seen == [] and take.dead_lettered == 0 and take.crashes == 0
        registry.start()
        await settle(app)
        assert sorted(seen, key=lambda v: v.price) == [view(i) for i in range(30)]
        assert take.dead_lettered == 0 and take.crashes == 0


async def test_an_agent_waiting_for_the_registry_stops_at_once_and_loses_nothing(
    broker: str, app_id: str, registry: SchemaRegistryServer
) -> None:
    producer = make_app(app_id + "-producer", broker, registry)
    topic_name = f"{app_id}-views"
    out = producer.topic(topic_name, value_type=View, value_serializer="avro")
    for i in range(5):
        await out.send(value=view(i))
    await producer.stop()
    registry.stop()

    def build() -> tuple[faust.App, list[View]]:
        app = make_app(app_id, broker, registry)
        views = app.topic(topic_name, value_type=View, value_serializer="avro")
        seen: list[View] = []

        @app.agent(views)
        async def take(stream):  # type: ignore[no-untyped-def]
            async for v in stream:
                seen.append(v)

        return app, seen

    app, seen = build()
    await app.start()
    client = app.schema_registry
    assert client is not None
    await wait_until(lambda: client.failures >= 2, timeout=30)
    await app.stop()  # the agent was waiting: it is cancelled, nothing was committed past it
    assert app.agents["take"].state == "stopped" and seen == []
    registry.start()
    again, seen_again = build()
    async with again:
        await settle(again)
        assert sorted(v.price for v in seen_again) == [Decimal(i) for i in range(5)]


async def test_an_agent_s_avro_sink_waits_for_the_registry(
    broker: str, app_id: str, registry: SchemaRegistryServer
) -> None:
    registry.stop()
    app = make_app(app_id, broker, registry)
    pages = app.topic(f"{app_id}-pages", value_type=str, value_serializer="json")
    views = app.topic(f"{app_id}-views", value_type=View, value_serializer="avro")

    @app.agent(pages, sink=[views])
    async def to_views(stream):  # type: ignore[no-untyped-def]
        async for page in stream:
            yield View(user="u", page=page, at=AT)

    async with app:
        for i in range(10):
            await pages.send(value=f"/p{i}")
        client = app.schema_registry
        assert client is not None
        await wait_until(lambda: client.failures >= 3, timeout=30, what="the sink retries the registry")
        assert await read_all(app, views.name) == [] and to_views.crashes == 0
        registry.start()
        await settle(app)
        written = await read_all(app, views.name)
        assert sorted(views.decode_value(m.value).page for m in written) == sorted(f"/p{i}" for i in range(10))
        assert to_views.dead_lettered == 0


@pytest.mark.parametrize("serializer", ["avro"])
async def test_a_table_asked_for_avro_writes_avro_and_recovers(
    serializer: str, durable_broker: str, app_id: str, registry: SchemaRegistryServer
) -> None:
    def build() -> tuple[faust.App, faust.Table]:  # type: ignore[type-arg]
        app = make_app(app_id, durable_broker, registry)
        views = app.topic(f"{app_id}-views", value_type=View, value_serializer="avro")
        last = app.Table("last", value_type=View, value_serializer=serializer)

        @app.agent(views)
        async def keep(stream):  # type: ignore[no-untyped-def]
            async for v in stream.group_by(View.user):
                last[v.user] = v

        return app, last

    app, last = build()
    async with app:
        for i in range(6):
            await app.topics[f"{app_id}-views"].send(key=view(i).user, value=view(i))  # per user in order
        await settle(app)
        changelog = await read_all(app, last.changelog.name)
        assert changelog and all(m.value[:1] == b"\x00" for m in changelog)
    again, last_again = build()
    async with again:
        await wait_until(lambda: len(last_again) == 3)
        assert last_again["u0"] == view(3) and last_again["u2"] == view(5)
