"""Kafka: lag as Kafka reports it for a paused agent; `streamnb_transactions_total` when a transaction fails."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from conftest import kafka_bootstrap
from kafkahelpers import FAST_GROUP, Producer, create_topic
from test_metrics import scrape, total

import streamnb as faust
from streamnb.testing import settle
from streamnb.transport.base import TP
from streamnb.transport.kafka.transactions import PartitionTransactions

pytestmark = [pytest.mark.kafka]


async def test_an_aborted_transaction_is_counted_with_the_crash_it_caused() -> None:
    bootstrap = kafka_bootstrap()
    app_id = f"mtx-{uuid.uuid4().hex[:8]}"
    app = faust.App(app_id, broker=f"kafka://{bootstrap}", topic_partitions=2, processing_guarantee="exactly_once",
                    **FAST_GROUP)
    words = app.topic(f"{app_id}-words", value_type=str)
    counts = app.Table("counts", default=int)

    @app.agent(words)
    async def count(stream: Any) -> None:
        async for word in stream:
            counts[word] += 1

    await create_topic(bootstrap, words.name, 2)
    failed: list[TP] = []

    def fail_once(step: str, tp: TP) -> None:
        if step == "offsets_sent" and not failed:
            failed.append(tp)
            raise RuntimeError("injected: the transaction fails after sending its records and offset")

    PartitionTransactions.fault_hook = fail_once
    try:
        async with Producer(bootstrap) as producer:
            await producer.send(words.name, [(f"w{i}", f"w{i}") for i in range(100)])
        async with app:
            await settle(app, timeout=90)
            samples = scrape(app)
    finally:
        PartitionTransactions.fault_hook = None
    assert failed, "the fault was not injected"
    assert total(samples, "streamnb_transactions_total", agent="count", outcome="aborted") == 1
    assert total(samples, "streamnb_transactions_total", agent="count", outcome="committed") >= 1
    assert total(samples, "streamnb_agent_errors_total", agent="count") == count.crashes == 1
    assert total(samples, "streamnb_table_keys", table="counts") == 100


async def test_lag_is_what_kafka_reports_for_the_group() -> None:
    from test_worker_metrics import kafka_lag

    from streamnb import naming
    from streamnb.testing import wait_until

    bootstrap = kafka_bootstrap()
    app_id = f"mlag-{uuid.uuid4().hex[:8]}"
    app = faust.App(app_id, broker=f"kafka://{bootstrap}", topic_partitions=4, **FAST_GROUP)
    words = app.topic(f"{app_id}-words", value_type=str)
    await create_topic(bootstrap, words.name, 4)

    @app.agent(words)
    async def count(stream: Any) -> None:
        async for _word in stream:
            pass

    async with Producer(bootstrap) as producer:
        await producer.send(words.name, [(f"a{i}", "a") for i in range(40)])
    async with app:
        await settle(app, timeout=60)  # every partition has a committed offset now
        count.pause()
        await wait_until(lambda: count.parked > 0, 10, what="the agent parked")
        async with Producer(bootstrap) as producer:
            await producer.send(words.name, [(f"b{i}", "b") for i in range(37)])
        await app.sample_metrics()
        samples = scrape(app)
        theirs = await kafka_lag(bootstrap, naming.consumer_group(app_id, "count"), words.name)
        count.resume()
        await settle(app, timeout=60)
    ours = {int(dict(ls)["partition"]): v for (n, ls), v in samples.items() if n == "streamnb_consumer_lag"}
    assert ours == theirs and sum(theirs.values()) == 37
