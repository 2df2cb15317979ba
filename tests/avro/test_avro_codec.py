"""The avro codec on topics (streamnb/avro/codec.py): framing, ids, evolution, failures, schemaless."""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader
from schema_registry import SchemaRegistryServer

from streamnb import (
    App,
    AvroCodec,
    ConfigurationError,
    Record,
    SchemaRegistryError,
    SchemaRegistryUnavailableError,
    SerializationError,
    ValidationError,
)
from streamnb.avro import SchemaRegistry, avro_schema
from streamnb.codecs import get_codec


class Order(Record, namespace="shop.Order"):
    id: str
    price: Decimal
    placed: datetime
    qty: int = 1


class OrderV2(Record, namespace="shop.Order"):  # Order with a field added (with defaults) and one removed
    id: str
    price: Decimal
    placed: datetime
    channel: str = "web"
    seen: datetime = datetime(2020, 1, 1, tzinfo=UTC)
    discount: Decimal = Decimal("0.5")


class OrderNoDefault(Record, namespace="shop.Order"):
    id: str
    price: Decimal
    placed: datetime
    qty: int = 1
    region: str  # added without a default: old messages cannot be read with it


WHEN = datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)


def order(i: int = 1) -> Order:
    return Order(id=f"o{i}", price=Decimal("19.99"), placed=WHEN, qty=i)


def app_for(registry: SchemaRegistryServer | str | None, **options: Any) -> App:
    url = registry.url if isinstance(registry, SchemaRegistryServer) else registry
    return App(f"a{uuid.uuid4().hex[:8]}", broker=f"memory://{uuid.uuid4().hex}", schema_registry=url, **options)


async def test_values_are_framed_as_confluent_does_and_registered_under_topic_value(
    registry: SchemaRegistryServer,
) -> None:
    topic = app_for(registry).topic("orders", value_type=Order, value_serializer="avro")
    await topic.prepare()
    data = topic.encode_value(order())
    assert data is not None
    assert data[0] == 0  # the magic byte
    schema_id = int.from_bytes(data[1:5], "big")
    assert registry.state.subjects == {"orders-value": [schema_id]}
    assert json.loads(registry.state.schemas[schema_id]) == avro_schema(Order)
    body = schemaless_reader(io.BytesIO(data[5:]), parse_schema(avro_schema(Order)), None)
    assert body == {"id": "o1", "price": Decimal("19.990000000"), "placed": WHEN, "qty": 1}
    assert topic.decode_value(data) == order()


async def test_ids_are_cached_both_ways(registry: SchemaRegistryServer) -> None:
    writer = app_for(registry).topic("orders", value_type=Order, value_serializer="avro")
    payloads = []
    for i in range(50):
        if not writer.prepared:
            await writer.prepare()
        payloads.append(writer.encode_value(order(i)))
    assert registry.requests == [("POST", "/subjects/orders-value/versions")]
    reader = app_for(registry).topic("orders", value_type=Order, value_serializer="avro")  # a fresh client
    await reader.prefetch([("orders", 0, i, 0.0, None, p, ()) for i, p in enumerate(payloads)])  # type: ignore[misc]
    assert [reader.decode_value(p) for p in payloads] == [order(i) for i in range(50)]
    assert registry.requests[1:] == [("GET", "/schemas/ids/1")]


async def test_a_reader_resolves_each_writer_schema_against_its_own(registry: SchemaRegistryServer) -> None:
    old = app_for(registry).topic("orders", value_type=Order, value_serializer="avro")
    new = app_for(registry).topic("orders", value_type=OrderV2, value_serializer="avro")
    await old.prepare()
    await new.prepare()  # a compatible change: registered as version 2
    assert len(registry.state.subjects["orders-value"]) == 2
    written_old = old.encode_value(order(7))
    written_new = new.encode_value(OrderV2(id="n", price=Decimal(1), placed=WHEN))
    # a new reader gets the defaults of the added fields (its own Python defaults, also for logical types)
    assert new.decode_value(written_old) == OrderV2(id="o7", price=Decimal("19.99"), placed=WHEN)
    # an old reader gets the removed field's default and drops the added ones
    assert old.decode_value(written_new) == Order(id="n", price=Decimal(1), placed=WHEN, qty=1)


async def test_an_incompatible_change_is_an_error_naming_the_subject_and_the_way_out(
    registry: SchemaRegistryServer,
) -> None:
    await app_for(registry).topic("orders", value_type=Order, value_serializer="avro").prepare()
    breaking = app_for(registry).topic("orders", value_type=OrderNoDefault, value_serializer="avro")
    with pytest.raises(SchemaRegistryError) as info:
        await breaking.prepare()
    message = str(info.value)
    assert info.value.subject == "orders-value"
    assert "'orders-value'" in message
    assert "incompatible with an earlier schema" in message  # the registry's own words
    assert "BACKWARD" in message and "give added fields a default" in message
    assert isinstance(info.value, ConfigurationError)  # an agent stops on it instead of retrying
    with pytest.raises(SchemaRegistryError):  # a send without prepare registers too
        breaking.encode_value(OrderNoDefault(id="x", price=Decimal(1), placed=WHEN, region="eu"))


async def test_a_writer_schema_the_reader_cannot_resolve_is_a_decoding_error(registry: SchemaRegistryServer) -> None:
    old = app_for(registry).topic("orders", value_type=Order, value_serializer="avro")
    await old.prepare()
    reader = app_for(registry).topic("orders", value_type=OrderNoDefault, value_serializer="avro")
    with pytest.raises(SerializationError, match="cannot be read as the topic's schema"):
        reader.decode_value(old.encode_value(order()))


async def test_payloads_that_cannot_be_read_say_why(registry: SchemaRegistryServer) -> None:
    topic = app_for(registry).topic("orders", value_type=Order, value_serializer="avro")
    await topic.prepare()
    good = topic.encode_value(order())
    assert good is not None
    with pytest.raises(SerializationError, match="magic byte 0") as info:
        topic.decode_value(b'{"id": "o1"}')
    assert "topic 'orders' value" in str(info.value) and "JSON?" in str(info.value)
    with pytest.raises(SerializationError, match="magic byte 0"):
        topic.decode_value(b"\x00\x00")
    with pytest.raises(SerializationError, match="unknown schema id 999"):
        topic.decode_value(b"\x00" + (999).to_bytes(4, "big") + good[5:])
    with pytest.raises(SerializationError, match="does not match its writer schema"):
        topic.decode_value(good[:-3])  # cut short
    with pytest.raises(SerializationError, match="bytes are left over"):
        topic.decode_value(good + b"\x00\x00")
    assert topic.decode_value(None) is None


async def test_encoding_checks_the_declared_type_and_the_schema(registry: SchemaRegistryServer) -> None:
    topic = app_for(registry).topic("orders", value_type=Order, value_serializer="avro")
    await topic.prepare()
    with pytest.raises(ValidationError, match="value_type is Order"):
        topic.encode_value("not an order")
    with pytest.raises(SerializationError, match="does not fit the Avro schema"):
        topic.encode_value({"id": 5, "price": Decimal(1), "placed": WHEN})
    mapping = topic.encode_value({"id": "m", "price": Decimal(2), "placed": WHEN, "qty": 3})
    assert topic.decode_value(mapping) == Order(id="m", price=Decimal(2), placed=WHEN, qty=3)
    assert topic.encode_value(None) is None  # a tombstone


async def test_keys_and_scalar_types(registry: SchemaRegistryServer) -> None:
    topic = app_for(registry).topic(
        "counts", key_type=str, value_type=int, key_serializer="avro", value_serializer="avro"
    )
    await topic.prepare()
    assert sorted(registry.state.subjects) == ["counts-key", "counts-value"]
    key, value = topic.encode_key("alice"), topic.encode_value(42)
    assert topic.decode_key(key) == "alice" and topic.decode_value(value) == 42
    with pytest.raises(ValidationError):
        topic.encode_value("42")


async def test_subject_name_strategies(registry: SchemaRegistryServer) -> None:
    app = app_for(registry)
    by_record = app.topic("a", value_type=Order, value_serializer=AvroCodec(subject_name_strategy="record"))
    by_both = app.topic("b", value_type=Order, value_serializer=AvroCodec(subject_name_strategy="topic_record"))
    await by_record.prepare()
    await by_both.prepare()
    assert sorted(registry.state.subjects) == ["b-shop.Order", "shop.Order"]
    with pytest.raises(ConfigurationError, match="strategy"):
        AvroCodec(subject_name_strategy="records")
    with pytest.raises(ConfigurationError, match="not a record"):
        app.topic("c", value_type=int, value_serializer=AvroCodec(subject_name_strategy="record"))


async def test_without_auto_register_the_schema_must_be_registered_already(registry: SchemaRegistryServer) -> None:
    app = app_for(registry)
    strict = app.topic("orders", value_type=Order, value_serializer=AvroCodec(auto_register=False))
    with pytest.raises(SchemaRegistryError, match="not registered under subject 'orders-value'"):
        await strict.prepare()
    await app_for(registry).topic("orders", value_type=Order, value_serializer="avro").prepare()
    await strict.prepare()
    assert strict.decode_value(strict.encode_value(order())) == order()


async def test_an_untyped_topic_reads_with_the_writer_schema_and_writes_with_the_latest(
    registry: SchemaRegistryServer,
) -> None:
    typed = app_for(registry).topic("orders", value_type=Order, value_serializer="avro")
    await typed.prepare()
    untyped = app_for(registry).topic("orders", value_serializer="avro")
    assert untyped.decode_value(typed.encode_value(order())) == {
        "id": "o1", "price": Decimal("19.990000000"), "placed": WHEN, "qty": 1,
    }
    await untyped.prepare()  # the subject's latest schema
    written = untyped.encode_value({"id": "u", "price": Decimal(3), "placed": WHEN, "qty": 2})
    assert typed.decode_value(written) == Order(id="u", price=Decimal(3), placed=WHEN, qty=2)
    nothing = app_for(registry).topic("empty", value_serializer="avro")
    with pytest.raises(SchemaRegistryError, match="subject 'empty-value' has no schema"):
        await nothing.prepare()


async def test_explicit_schemas(registry: SchemaRegistryServer, tmp_path: Path) -> None:
    longs = [{"name": "x", "type": "long"}, {"name": "y", "type": "long"}]
    schema = {"type": "record", "name": "Point", "fields": longs}
    path = tmp_path / "point.avsc"
    path.write_text(json.dumps(schema))
    topic = app_for(registry).topic("points", value_serializer=AvroCodec(schema=str(path)))
    await topic.prepare()
    assert json.loads(registry.state.schemas[registry.state.subjects["points-value"][0]]) == schema
    assert topic.decode_value(topic.encode_value({"x": 1, "y": 2})) == {"x": 1, "y": 2}

    class Point(Record):
        x: int
        y: int

    typed = app_for(registry).topic("points", value_type=Point, value_serializer=AvroCodec(schema=schema))
    assert typed.decode_value(topic.encode_value({"x": 3, "y": 4})) == Point(x=3, y=4)


def test_schemaless_avro_without_a_registry() -> None:
    schema = {"type": "record", "name": "Point", "fields": [{"name": "x", "type": "long"}]}
    topic = app_for(None).topic("points", value_serializer=AvroCodec(schema=schema))
    assert topic.encode_value({"x": 3}) == b"\x06"  # the bare body: no magic byte, no id
    assert topic.decode_value(b"\x06") == {"x": 3}
    with pytest.raises(SerializationError, match="bytes are left over"):
        topic.decode_value(b"\x06\x06")
    derived = app_for(None).topic("orders", value_type=Order, value_serializer=AvroCodec(schemaless=True))
    assert derived.decode_value(derived.encode_value(order())) == order()
    assert not derived.needs_prefetch and derived.prepared  # nothing to fetch or register


def test_avro_without_a_registry_or_a_schema_says_what_to_give() -> None:
    with pytest.raises(ConfigurationError, match=r"needs a schema registry: App\(\.\.\., schema_registry=") as info:
        app_for(None).topic("orders", value_type=Order, value_serializer="avro")
    assert "AvroCodec(schema=...)" in str(info.value) and "schemaless=True" in str(info.value)
    with pytest.raises(ConfigurationError, match="applies only with a schema registry"):
        app_for(None).topic("o", value_type=Order, value_serializer=AvroCodec(subject_name_strategy="record"))
    with pytest.raises(ConfigurationError, match="do not apply"):
        AvroCodec(schemaless=True, subject_name_strategy="record")


def test_the_registered_codec_and_its_codec_protocol() -> None:
    codec = get_codec("avro")
    assert isinstance(codec, AvroCodec)
    with pytest.raises(SerializationError, match="no schema of its own"):
        codec.dumps({"x": 1})
    explicit = AvroCodec(schema="long")
    assert explicit.loads(explicit.dumps(5)) == 5


def test_a_record_s_serializer_option_makes_its_topics_avro(registry: SchemaRegistryServer) -> None:
    class Click(Record, serializer="avro"):
        url: str

    topic = app_for(registry).topic("clicks", value_type=Click)
    assert isinstance(topic.value_codec, AvroCodec) and topic.needs_prefetch


async def test_a_decode_outside_an_agent_fetches_the_schema_or_says_the_registry_is_away(
    registry: SchemaRegistryServer,
) -> None:
    writer = app_for(registry).topic("orders", value_type=Order, value_serializer="avro")
    await writer.prepare()
    data = writer.encode_value(order())
    reader = app_for(registry).topic("orders", value_type=Order, value_serializer="avro")
    assert reader.decode_value(data) == order()  # fetched with a blocking request
    registry.stop()
    cold = app_for(registry).topic("orders", value_type=Order, value_serializer="avro")
    with pytest.raises(SchemaRegistryUnavailableError, match="cannot be reached"):
        cold.decode_value(data)
    registry.start()
    assert cold.decode_value(data) == order()


async def test_send_outside_an_agent_raises_at_once_when_the_registry_is_away() -> None:
    app = app_for("http://127.0.0.1:9")  # nothing listens on the discard port
    topic = app.topic("orders", value_type=Order, value_serializer="avro")
    with pytest.raises(SchemaRegistryUnavailableError, match=r"127\.0\.0\.1:9 cannot be reached"):
        await topic.prepare()
    assert isinstance(app.schema_registry, SchemaRegistry) and app.schema_registry.failures == 1
