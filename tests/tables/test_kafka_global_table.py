"""A global table on Kafka holds every partition, whatever the agents were assigned.

The App shares its agent's group with a plain aiokafka consumer standing in
for a second worker, so it is assigned only some partitions. Rows another
worker writes to the changelog partitions this one does not own still show
up (it follows them), and rows it recovered are kept when partitions go.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from conftest import kafka_bootstrap
from kafkahelpers import FAST_GROUP, Producer, create_topic

import streamnb as faust
from streamnb.testing import settle, wait_until
from streamnb.topics import partition_for_key

pytestmark = [pytest.mark.kafka]


async def test_every_partition_is_held_and_followed(app_id: str) -> None:
    bootstrap = kafka_bootstrap()
    topic = f"{app_id}-rates"
    await create_topic(bootstrap, topic, 4)
    app = faust.App(app_id, broker=f"kafka://{bootstrap}", topic_partitions=4, commit_interval=0.05, **FAST_GROUP)
    rates = app.topic(topic, key_type=str, value_type=float)
    latest = app.GlobalTable("latest", default=float)

    @app.agent(rates)
    async def record(stream):  # type: ignore[no-untyped-def]
        async for currency, rate in stream.items():
            latest[currency] = rate

    currencies = [f"C{i}" for i in range(12)]
    async with app, Producer(bootstrap) as producer:
        await producer.send(topic, [(c, float(i)) for i, c in enumerate(currencies)])
        await settle(app)
        assert dict(latest.data) == {c: float(i) for i, c in enumerate(currencies)}
        other = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, group_id=f"{app_id}-record", enable_auto_commit=False,
            partition_assignment_strategy=(RangePartitionAssignor,), **FAST_GROUP,
        )
        await other.start()
        try:
            await wait_until(lambda: bool(other.assignment()) and len(app.owned_partitions()) == 2, 60,
                             interval=0.05, what="the other member takes two partitions")
            theirs = {tp.partition for tp in other.assignment()}
            # Rows of the partitions that went are still here: a global table is not tied to the assignment.
            assert dict(latest.data) == {c: float(i) for i, c in enumerate(currencies)}
            # What "the other worker" writes to its changelog partitions reaches this worker's copy.
            key = next(c for c in (f"X{i}" for i in range(100))
                       if partition_for_key(json.dumps(c).encode(), 4) in theirs)
            await producer.send(latest.changelog.name, [(json.dumps(key), 42.0)])
            await wait_until(lambda: latest[key] == 42.0, 30, what="the other worker's row followed")
            assert latest.written_here == set(app.owned_partitions())
        finally:
            await other.stop()
        await asyncio.wait_for(settle(app), 60)
