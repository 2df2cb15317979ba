"""Clean rebalances while an agent is busy committing: nothing lost, nothing twice.

Another group member (a plain aiokafka consumer) joins and leaves four
times while the agent processes a steady stream; its commits are slowed
down, so rebalances land while a commit is under way. On a clean handover
the revoked partitions' work is committed before they go, so the count is
exact (not merely at-least-once).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from conftest import kafka_bootstrap
from kafkahelpers import FAST_GROUP, Producer, changelog_state, create_topic

import streamnb as faust
from streamnb.testing import settle, wait_until
from streamnb.transport.base import ProducerRecord

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


async def test_rebalances_during_commits_keep_the_count_exact(app_id: str) -> None:
    bootstrap = kafka_bootstrap()
    topic = f"{app_id}-words"
    await create_topic(bootstrap, topic, 4)
    app = faust.App(
        app_id, broker=f"kafka://{bootstrap}", topic_partitions=4, commit_interval=0.05, stream_batch_size=50,
        **FAST_GROUP,
    )
    words = app.topic(topic)
    counts = app.Table("counts", default=int)

    @app.agent(words)
    async def count(stream):  # type: ignore[no-untyped-def]
        async for word in stream:
            counts[word] += 1

    sent = 0
    async with Producer(bootstrap) as producer:

        async def feed() -> None:
            nonlocal sent
            for _ in range(150):
                await producer.send(topic, [(f"k{i % 20}", f"k{i % 20}") for i in range(sent, sent + 100)])
                sent += 100
                await asyncio.sleep(0.02)

        async with app:
            transport = app.transport
            assert transport is not None
            send = transport.send

            async def slow_send(records: Sequence[ProducerRecord]) -> None:
                await asyncio.sleep(0.05)  # a slow broker: commits take a while
                await send(records)

            transport.send = slow_send  # type: ignore[method-assign]
            feeding = asyncio.ensure_future(feed())

            def processed_more(than: int) -> Callable[[], bool]:  # the agent went on with the stream
                return lambda: count.events_processed >= than + 500 or feeding.done()

            for _ in range(4):
                await wait_until(processed_more(count.events_processed), timeout=60)
                other = AIOKafkaConsumer(
                    topic, bootstrap_servers=bootstrap, group_id=f"{app_id}-count", enable_auto_commit=False,
                    partition_assignment_strategy=(RangePartitionAssignor,), **FAST_GROUP,
                )
                await other.start()
                try:
                    deadline = time.monotonic() + 30
                    while not other.assignment():
                        assert time.monotonic() < deadline, "the other member got no partitions"
                        await asyncio.sleep(0.05)
                    await wait_until(processed_more(count.events_processed), timeout=60)  # with its share
                finally:
                    await other.stop()  # leaves the group: its partitions come back
            await feeding
            await settle(app, timeout=120)
            truth = await changelog_state(bootstrap, f"{app_id}-counts-changelog")
            # The partitions the other member held came back: their rows are recovered from the changelog.
            await wait_until(lambda: dict(counts.data) == truth, timeout=60, what="the table matches its changelog")
    assert not feeding.exception()
    want = Counter(f"k{i % 20}" for i in range(sent))
    lost = {k: (n, truth.get(k, 0)) for k, n in want.items() if truth.get(k, 0) < n}
    assert not lost, f"events lost (key: (produced, counted)): {lost}"
    assert sum(truth.values()) == sent, f"{sum(truth.values()) - sent} of {sent} events counted twice"
    assert truth == dict(want)
    assert count.crashes == 0
