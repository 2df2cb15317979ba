"""Interoperability with confluent-kafka's Avro serializers (PyPI ``confluent-kafka[avro,schemaregistry]``).

What streamnb writes, confluent-kafka's ``AvroDeserializer`` reads, and what
its ``AvroSerializer`` writes, a streamnb agent reads: on the wire bytes
(memory://) and through a real Kafka with librdkafka's producer and consumer.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from conftest import kafka_bootstrap
from schema_registry import SchemaRegistryServer

import streamnb as faust
from streamnb.avro import avro_schema
from streamnb.testing import settle


class Payment(faust.Record, namespace="bank.Payment"):
    id: str
    amount: float
    at: datetime
    memo: str | None = None
    cents: Decimal = Decimal("0")


AT = datetime(2024, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)


def payment(i: int) -> Payment:
    return Payment(id=f"p{i}", amount=i + 0.5, at=AT, memo=None if i % 2 else f"m{i}", cents=Decimal(i))


def as_dict(p: Payment) -> dict[str, Any]:
    return p.asdict()


async def test_confluent_reads_what_streamnb_writes(registry: SchemaRegistryServer) -> None:
    app = faust.App("interop", broker=f"memory://{uuid.uuid4().hex}", schema_registry=registry.url)
    topic = app.topic("payments", value_type=Payment, value_serializer="avro")
    await topic.prepare()
    deserializer = AvroDeserializer(SchemaRegistryClient({"url": registry.url}))
    context = SerializationContext("payments", MessageField.VALUE)
    for i in range(4):
        assert deserializer(topic.encode_value(payment(i)), context) == as_dict(payment(i))


async def test_streamnb_reads_what_confluent_writes(registry: SchemaRegistryServer) -> None:
    client = SchemaRegistryClient({"url": registry.url})
    import json

    serializer = AvroSerializer(client, json.dumps(avro_schema(Payment)))
    context = SerializationContext("payments", MessageField.VALUE)
    written = [serializer(as_dict(payment(i)), context) for i in range(4)]
    assert "payments-value" in registry.state.subjects  # confluent registered under TopicNameStrategy
    app = faust.App("interop", broker=f"memory://{uuid.uuid4().hex}", schema_registry=registry.url)
    topic = app.topic("payments", value_type=Payment, value_serializer="avro")
    assert [topic.decode_value(data) for data in written] == [payment(i) for i in range(4)]


@pytest.mark.kafka
async def test_through_kafka_both_ways(app_id: str, registry: SchemaRegistryServer) -> None:
    bootstrap = kafka_bootstrap()
    import json

    client = SchemaRegistryClient({"url": registry.url})
    inbound, outbound = f"{app_id}-in", f"{app_id}-out"
    app = faust.App(app_id, broker=f"kafka://{bootstrap}", topic_partitions=1, schema_registry=registry.url)
    source = app.topic(inbound, value_type=Payment, value_serializer="avro")
    sink = app.topic(outbound, value_type=Payment, value_serializer="avro")
    got: list[Payment] = []

    @app.agent(source, sink=[sink])
    async def relay(stream):  # type: ignore[no-untyped-def]
        async for p in stream:
            got.append(p)
            yield Payment(id=p.id + "-seen", amount=p.amount * 2, at=p.at, memo=p.memo, cents=p.cents)

    async with app:
        serializer = AvroSerializer(client, json.dumps(avro_schema(Payment)))
        producer = Producer({"bootstrap.servers": bootstrap})
        for i in range(5):
            producer.produce(inbound, value=serializer(as_dict(payment(i)), SerializationContext(inbound,
                                                                                               MessageField.VALUE)))
        assert producer.flush(30) == 0
        await settle(app)
        assert got == [payment(i) for i in range(5)]
        assert relay.dead_lettered == 0

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{app_id}-reader", "enable.auto.commit": False})
    consumer.assign([TopicPartition(outbound, 0, 0)])
    deserializer = AvroDeserializer(client)
    read: list[dict[str, Any]] = []
    try:
        while len(read) < 5:
            msg = consumer.poll(10)
            assert msg is not None, f"only {len(read)} of 5 messages came back from {outbound}"
            assert msg.error() is None, msg.error()
            read.append(deserializer(msg.value(), SerializationContext(outbound, MessageField.VALUE)))
    finally:
        consumer.close()
    expected = [as_dict(Payment(id=f"p{i}-seen", amount=(i + 0.5) * 2, at=AT, memo=payment(i).memo,
                                cents=Decimal(i))) for i in range(5)]  # fmt: skip
    assert read == expected
