"""Timers and tasks: ``on_leader`` timers run on one worker only."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from conftest import kafka_bootstrap

import streamnb as faust
from streamnb.testing import test_app, wait_until


async def test_an_embedded_app_is_its_own_leader() -> None:
    app = test_app()
    runs: list[str] = []

    @app.timer(timedelta(milliseconds=20), on_leader=True)
    async def leader_only() -> None:
        runs.append("leader")

    async with app:
        assert app.is_leader()
        await wait_until(lambda: len(runs) >= 3, what="the on_leader timer ran")
    assert app.timers["leader_only"].skipped == 0


def test_a_timer_interval_must_be_positive() -> None:
    app = test_app()

    async def tick() -> None:
        pass

    with pytest.raises(faust.ConfigurationError, match="interval must be > 0"):
        app.timer(0)(tick)


@pytest.mark.kafka
async def test_on_leader_without_agents_on_kafka_is_an_error() -> None:
    app = faust.App(f"t{uuid.uuid4().hex[:10]}", broker=f"kafka://{kafka_bootstrap()}")

    @app.timer(1.0, on_leader=True)
    async def tick() -> None:
        pass

    with pytest.raises(faust.ConfigurationError, match="define an agent"):
        await app.start()
    await app.stop()


@pytest.mark.kafka
async def test_on_kafka_only_the_worker_holding_partition_0_runs_on_leader_timers() -> None:
    app_id = f"t{uuid.uuid4().hex[:10]}"
    broker = f"kafka://{kafka_bootstrap()}"
    runs: dict[str, int] = {"one": 0, "two": 0}
    apps = []
    for name in runs:
        app = faust.App(app_id, broker=broker, topic_partitions=4, session_timeout_ms=6000,
                        heartbeat_interval_ms=500)
        topic = app.topic(f"{app_id}-jobs")

        @app.agent(topic)
        async def work(stream):  # type: ignore[no-untyped-def]
            async for _ in stream:
                pass

        def ticker(worker: str = name) -> object:
            async def tick() -> None:
                runs[worker] += 1
            return tick

        app.timer(0.05, on_leader=True, name="tick")(ticker())
        apps.append(app)
    one, two = apps
    try:
        await one.start()
        await wait_until(lambda: runs["one"] >= 2, timeout=60, what="the only worker is the leader")
        await two.start()
        # Once the group settled, exactly one of the two holds partition 0 and ticks.
        await wait_until(lambda: one.is_leader() != two.is_leader(), timeout=60, what="one leader")
        leader, follower = ("one", "two") if one.is_leader() else ("two", "one")
        before = dict(runs)
        await wait_until(lambda: runs[leader] >= before[leader] + 3, timeout=30, what="the leader ticks")
        assert (one.is_leader(), two.is_leader()) == (leader == "one", leader == "two"), "the leader moved"
        assert runs[follower] == before[follower]
        follower_app = two if follower == "two" else one
        assert follower_app.timers["tick"].skipped > 0
    finally:
        await two.stop()
        await one.stop()
