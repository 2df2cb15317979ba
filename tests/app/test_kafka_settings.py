"""Faust's consumer settings reach the agents' Kafka consumers (as aiokafka options)."""

from __future__ import annotations

import pytest
from conftest import kafka_bootstrap
from kafkahelpers import Producer, create_topic

import streamnb as faust
from streamnb.testing import settle, wait_until

pytestmark = [pytest.mark.kafka]


async def test_consumer_settings_apply(app_id: str) -> None:
    bootstrap = kafka_bootstrap()
    topic = f"{app_id}-words"
    await create_topic(bootstrap, topic, 2)
    app = faust.App(
        app_id, broker=f"kafka://{bootstrap}", topic_partitions=2,
        broker_session_timeout=6.0, broker_heartbeat_interval=0.5, broker_max_poll_records=5,
        consumer_max_fetch_size=64 * 1024, consumer_auto_offset_reset="earliest",
    )
    words = app.topic(topic, key_type=str, value_type=str)
    seen: list[str] = []

    @app.agent(words)
    async def collect(stream):  # type: ignore[no-untyped-def]
        async for word in stream:
            seen.append(word)

    async with Producer(bootstrap) as producer:
        await producer.send(topic, [(f"k{i}", f"new{i}") for i in range(30)])
        async with app:
            await wait_until(lambda: len(seen) == 30, 30)
            await settle(app)
    assert sorted(seen) == sorted(f"new{i}" for i in range(30))
