"""``@app.agent(..., isolated_partitions=True)``: one instance per partition, each with its own stream,
failures and restarts; ``stream.active_partitions``.
"""

from __future__ import annotations

from typing import Any

import pytest

import streamnb as faust
from streamnb.errors import ConfigurationError
from streamnb.testing import settle, test_app, wait_until
from streamnb.transport.base import TP

PARTITIONS = 4


async def test_each_partition_has_its_own_instance_and_stream(broker: str, app_id: str) -> None:
    app = faust.App(app_id, broker=broker)
    topic = app.topic(f"{app_id}-numbers", value_type=int, partitions=PARTITIONS)
    streams: list[Any] = []
    seen: list[tuple[int, int, frozenset[TP]]] = []

    @app.agent(topic, isolated_partitions=True)
    async def process(stream):
        streams.append(stream)
        async for event in stream.events():
            seen.append((event.partition, id(stream), frozenset(stream.active_partitions)))

    async with app:
        assert process.concurrency == PARTITIONS
        await wait_until(
            lambda: len(streams) == PARTITIONS
            and all(len(s.active_partitions) == 1 for s in streams)
            and sorted(tp.partition for s in streams for tp in s.active_partitions) == list(range(PARTITIONS)),
            timeout=60, what="every instance serves one partition",
        )
        for n in range(40):
            await topic.send(value=n, partition=n % PARTITIONS)
        await settle(app)
    assert len(seen) == 40
    for partition, _, active in seen:
        assert active == {TP(topic.name, partition)}
    owners: dict[int, set[int]] = {}
    for partition, stream_id, _ in seen:
        owners.setdefault(partition, set()).add(stream_id)
    assert all(len(ids) == 1 for ids in owners.values()) and len({next(iter(i)) for i in owners.values()}) == 4


async def test_a_crashing_partition_restarts_alone_while_the_others_go_on(broker: str, app_id: str) -> None:
    app = faust.App(app_id, broker=broker)
    topic = app.topic(f"{app_id}-numbers", value_type=int, partitions=PARTITIONS)
    started: list[Any] = []
    processed: list[int] = []

    @app.agent(topic, isolated_partitions=True)
    async def process(stream):
        started.append(stream)
        async for n in stream:
            if n == -1:
                raise ValueError("bad number")
            processed.append(n)

    process.max_retries = 2  # (on Kafka every restart of an instance is a rebalance of the whole group)
    async with app:
        await wait_until(lambda: len(started) == PARTITIONS, timeout=60)
        await topic.send(value=-1, partition=1)
        for n in range(20):
            await topic.send(value=n, partition=n % PARTITIONS)
        # (a restarting instance rebalances the group: on Kafka at-least-once, other instances may see
        # events again that they had not committed yet, so the side effect counts each event at least once)
        await wait_until(lambda: process.dead_lettered == 1 and set(processed) == set(range(20)), timeout=120)
        await settle(app)
    assert sorted(set(processed)) == list(range(20))
    # one new instance per crash (of partition 1's instance), none for the others
    assert process.crashes == process.max_retries
    assert len(started) == PARTITIONS + process.crashes


def test_isolated_partitions_with_concurrency_is_an_error() -> None:
    app = test_app()
    with pytest.raises(ConfigurationError, match="one instance per partition"):

        @app.agent(isolated_partitions=True, concurrency=2)
        async def process(stream):
            async for _ in stream:
                pass
