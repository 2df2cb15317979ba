"""An App on a real Kafka, seen from plain aiokafka clients.

What goes in is produced by a plain ``AIOKafkaProducer``; what comes out
(sink topics, changelogs) is read back by a plain ``AIOKafkaConsumer`` and
must be ordinary JSON, so any Kafka client can use it.
"""

from __future__ import annotations

import json
import time

import pytest
from conftest import kafka_bootstrap
from kafkahelpers import (
    Producer,
    changelog_state,
    create_topic,
    end_offsets,
    partition_count,
    read_topic,
    topic_config,
)

import streamnb as faust
from streamnb.processing.forwarding import Purger
from streamnb.testing import settle, wait_until

pytestmark = pytest.mark.kafka


class Order(faust.Record):
    user: str
    amount: int


async def test_plain_producer_in_plain_json_out(app_id: str) -> None:
    bootstrap = kafka_bootstrap()
    source, sink = f"{app_id}-orders", f"{app_id}-totals"
    await create_topic(bootstrap, source, 2)
    app = faust.App(app_id, broker=f"kafka://{bootstrap}", topic_partitions=2, commit_interval=0.1)
    orders = app.topic(source, value_type=Order)
    out = app.topic(sink)
    totals = app.Table("totals", default=int)
    per_window = app.Table("per_window", default=int).tumbling(10, expires=1e9)

    @app.agent(orders, sink=[out])
    async def total(stream):  # type: ignore[no-untyped-def]
        async for order in stream:
            totals[order.user] += order.amount
            per_window[order.user] += 1
            yield {"user": order.user, "total": totals[order.user]}

    async with Producer(bootstrap) as producer:
        # (key, value, event time in s): windows of 10 s starting on multiples of 10
        for user, amount, ts in [("alice", 3, 1001.0), ("bob", 10, 1003.5), ("alice", 4, 1005.0), ("alice", 5, 1012.0)]:
            await producer.send(source, [(user, {"user": user, "amount": amount})], timestamp_ms=int(ts * 1000))
        async with app:
            await settle(app, timeout=60)
            total.raise_if_crashed()
            assert dict(totals.data) == {"alice": 12, "bob": 10}

    outputs = [json.loads(r.value) for r in await read_topic(bootstrap, sink)]
    assert sorted(outputs, key=lambda o: (o["user"], o["total"])) == [
        {"user": "alice", "total": 3}, {"user": "alice", "total": 7}, {"user": "alice", "total": 12},
        {"user": "bob", "total": 10},
    ]

    raw = await read_topic(bootstrap, f"{app_id}-totals-changelog")
    assert {json.loads(r.key) for r in raw} == {"alice", "bob"}  # keys are JSON strings: b'"alice"'
    assert await changelog_state(bootstrap, f"{app_id}-totals-changelog") == {"alice": 12, "bob": 10}

    raw = await read_topic(bootstrap, f"{app_id}-per_window-changelog")
    keys = {r.key.decode() for r in raw}
    # Windows are [key, [start, end]]; the changelog holds rows only.
    assert json.loads(min(keys)) == ["alice", [1000.0, 1010.0]]
    assert all(isinstance(json.loads(k), list) for k in keys), keys
    # Each partition's stream time (its newest event time) is in the table's stream-time topic.
    times = await changelog_state(bootstrap, f"{app_id}-per_window-streamtime")  # partition -> stream time
    assert set(times.values()) <= {1012.0, 1003.5} and 1012.0 in times.values(), times
    state = await changelog_state(bootstrap, f"{app_id}-per_window-changelog")
    assert state == {
        ("alice", (1000.0, 1010.0)): 2,
        ("alice", (1010.0, 1020.0)): 1,
        ("bob", (1000.0, 1010.0)): 1,
    }


async def test_changelog_topics_are_compacted_and_repartition_topics_kept(app_id: str) -> None:
    bootstrap = kafka_bootstrap()
    app = faust.App(app_id, broker=f"kafka://{bootstrap}", topic_partitions=3)
    events = app.topic(f"{app_id}-events")
    app.Table("plain", default=int)
    app.Table("windowed", default=int).hopping(60, 10)

    @app.agent(events)
    async def noop(stream):  # type: ignore[no-untyped-def]
        async for _ in stream.group_by(lambda event: event, name="same"):
            pass

    async with app:
        pass
    for topic in ("plain-changelog", "windowed-changelog", "windowed-streamtime"):
        config = await topic_config(bootstrap, f"{app_id}-{topic}")
        assert config["cleanup.policy"] == "compact", (topic, config["cleanup.policy"])
        assert await partition_count(bootstrap, f"{app_id}-{topic}") == 3
    assert (await topic_config(bootstrap, f"{app_id}-events"))["cleanup.policy"] == "delete"
    assert "retention.ms" not in await topic_config(bootstrap, f"{app_id}-events", overrides=True)
    # A repartition topic keeps its records whatever their timestamps: replayed
    # history must not fall to the broker's time retention between the two stages.
    repartition = await topic_config(bootstrap, f"{app_id}-noop-{app_id}-events-same-repartition", overrides=True)
    assert repartition.get("retention.ms") == "-1", repartition


async def test_group_by_deletes_the_repartition_records_it_committed(
    app_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The repartition topic keeps records forever by time, so its one reader purges what it committed."""
    monkeypatch.setattr(Purger, "interval", 0.0)  # every commit (default: every 30 s)
    bootstrap = kafka_bootstrap()
    source = f"{app_id}-orders"
    await create_topic(bootstrap, source, 2)
    app = faust.App(app_id, broker=f"kafka://{bootstrap}", topic_partitions=2, commit_interval=0.1)
    orders = app.topic(source, value_type=Order)
    totals = app.Table("totals", default=int)

    @app.agent(orders)
    async def total(stream):  # type: ignore[no-untyped-def]
        async for order in stream.group_by(Order.user):
            totals[order.user] += order.amount

    repartition = f"{app_id}-total-{source}-user-repartition"
    users = [f"u{i}" for i in range(20)]
    async with Producer(bootstrap) as producer:
        await producer.send(source, [(None, {"user": u, "amount": 1}) for u in users])
        async with app:
            await wait_until(lambda: sum(totals.values()) == len(users), timeout=60, what="every order counted")
            ends = await end_offsets(bootstrap, repartition)
            assert sum(ends.values()) == len(users)
            # The purge follows a commit: wait until the log start reached each end.
            await wait_until(
                lambda: _purged(bootstrap, repartition, ends), timeout=60, what="the repartition topic purged"
            )
            total.raise_if_crashed()
    assert await changelog_state(bootstrap, f"{app_id}-totals-changelog") == dict.fromkeys(users, 1)


async def _purged(bootstrap: str, topic: str, ends: dict[int, int]) -> bool:
    return await end_offsets(bootstrap, topic, beginning=True) == ends


async def test_unreachable_broker_names_the_address(app_id: str) -> None:
    kafka_bootstrap()  # only with the Kafka tests: the bound is Kafka's request timeout
    app = faust.App(app_id, broker="kafka://127.0.0.1:1")
    started = time.monotonic()
    with pytest.raises(faust.BrokerUnavailableError) as info:
        await app.start()
    elapsed = time.monotonic() - started
    assert elapsed < 16.5, f"took {elapsed:.1f} s"
    assert "127.0.0.1:1" in str(info.value) and "scripts/kafka.sh up" in str(info.value)
    assert app.state == "init"
    await app.stop()


async def test_declared_partitions_differing_from_an_existing_changelog_fail_at_start(app_id: str) -> None:
    bootstrap = kafka_bootstrap()
    await create_topic(bootstrap, f"{app_id}-counts-changelog", 2, {"cleanup.policy": "compact"})
    app = faust.App(app_id, broker=f"kafka://{bootstrap}", topic_partitions=4)
    source = app.topic(f"{app_id}-src", value_type=str)
    counts = app.Table("counts", default=int, partitions=4)

    @app.agent(source)
    async def count(stream):  # type: ignore[no-untyped-def]
        async for word in stream:
            counts[word] += 1

    with pytest.raises(faust.PartitionMismatchError) as info:
        await app.start()
    try:
        message = str(info.value)
        assert f"'{app_id}-counts-changelog' already exists with 2 partitions" in message
        assert "partitions=4" in message and "partitions=2" in message
        assert not count.running  # nothing started
    finally:
        await app.stop()


async def test_existing_changelog_with_other_partition_count_stops_table_writes(app_id: str) -> None:
    bootstrap = kafka_bootstrap()
    await create_topic(bootstrap, f"{app_id}-counts-changelog", 2, {"cleanup.policy": "compact"})
    app = faust.App(app_id, broker=f"kafka://{bootstrap}", topic_partitions=4)
    source = app.topic(f"{app_id}-src", value_type=str)
    counts = app.Table("counts", default=int)  # no partitions=: only a write can tell

    @app.agent(source)
    async def count(stream):  # type: ignore[no-untyped-def]
        async for word in stream:
            counts[word] += 1

    async with app:
        await source.send(value="a")
        await wait_until(lambda: count.last_error is not None, timeout=30)
        error = count.last_error
    assert isinstance(error, faust.PartitionMismatchError)
    assert str(error) == (
        f"table 'counts' has 2 partitions but topic '{app_id}-src', whose events write it, has 4: tables must be "
        "co-partitioned with their source; create the table with partitions=4 "
        "(or use a fresh app id if its changelog already exists with another count)"
    )
    assert counts.data == {}
    assert await partition_count(bootstrap, f"{app_id}-counts-changelog") == 2


async def test_extra_app_options_reach_the_group_consumers(app_id: str) -> None:
    bootstrap = kafka_bootstrap()
    app = faust.App(app_id, broker=f"kafka://{bootstrap}", session_timeout_ms=6000, heartbeat_interval_ms=500)
    events = app.topic(f"{app_id}-events")

    @app.agent(events)
    async def noop(stream):  # type: ignore[no-untyped-def]
        async for _ in stream:
            pass

    async with app:
        await wait_until(lambda: any(s.consumer is not None for s in noop._sources), timeout=30)
        await wait_until(lambda: bool(next(iter(noop._sources)).consumer.assignment()), timeout=30)  # type: ignore[union-attr]
        aiokafka_consumer = next(iter(noop._sources)).consumer._consumer  # type: ignore[union-attr]
        assert aiokafka_consumer._session_timeout_ms == 6000
        assert aiokafka_consumer._heartbeat_interval_ms == 500

    # A typo or an option streamnb sets itself fails when the App is made, before connecting.
    with pytest.raises(faust.ConfigurationError, match="sesion_timeout_ms.*did you mean 'session_timeout_ms'"):
        faust.App(f"{app_id}-typo", broker=f"kafka://{bootstrap}", sesion_timeout_ms=6000)
    with pytest.raises(faust.ConfigurationError, match="group_id"):
        faust.App(f"{app_id}-reserved", broker=f"kafka://{bootstrap}", group_id="mine")
