"""Agents: replacement while running, concurrency, pause/resume, stop commits."""

from __future__ import annotations

import asyncio

import streamnb as faust
from streamnb.testing import settle, test_app, wait_until


def agent_tasks() -> list[asyncio.Task]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("streamnb-agent-") and not t.done()]


async def test_redefining_a_running_agent_replaces_it_and_keeps_table_state(broker: str, app_id: str) -> None:
    app = faust.App(app_id, broker=broker, topic_partitions=2)
    topic = app.topic(f"{app_id}-numbers", value_type=int)
    totals = app.Table("totals", default=int, partitions=2)

    @app.agent(topic)
    async def add(stream):
        async for n in stream:
            totals["sum"] += n

    async with app:
        for n in range(1, 11):
            await topic.send(key=str(n), value=n)
        await settle(app)
        assert totals["sum"] == 55
        old = add

        @app.agent(topic)  # the notebook cell, run again with new code
        async def add(stream):  # noqa: F811
            async for n in stream:
                totals["sum"] += 100 * n

        await wait_until(lambda: add.running and not old.running)
        assert old.state == "stopped"
        assert len(agent_tasks()) == 1
        assert app.agents["add"] is add
        await topic.send(key="x", value=1)
        await settle(app)
        # Old events were not reprocessed by the new agent: state kept, offsets kept.
        assert totals["sum"] == 155
    assert agent_tasks() == []


async def test_concurrency_splits_partitions_without_double_counting() -> None:
    app = test_app(topic_partitions=4)
    topic = app.topic("n", value_type=int)
    counts = app.Table("counts", default=int)

    @app.agent(topic, concurrency=3)
    async def count(stream):
        async for n in stream:
            counts[n % 5] += 1

    async with app:
        assert len(agent_tasks()) == 3
        for n in range(200):
            await topic.send(key=str(n), value=n)
        await settle(app)
        assert sum(counts.data.values()) == 200
        assert count.events_processed == 200


async def test_pause_and_resume() -> None:
    app = test_app(topic_partitions=1)
    topic = app.topic("n", value_type=int)
    seen: list[int] = []

    @app.agent(topic)
    async def collect(stream):
        async for n in stream:
            seen.append(n)

    async with app:
        await topic.send(value=1)
        await wait_until(lambda: seen == [1])
        collect.pause()
        assert collect.state == "paused"
        await topic.send(value=2)
        # Its chance to take 2 has passed once its source waits for resume(): parked, it
        # either never fetches 2 or holds it unprocessed.
        await wait_until(lambda: collect.parked == 1)
        assert seen == [1] and collect.events_processed == 1
        collect.resume()
        await wait_until(lambda: seen == [1, 2])
        assert collect.state == "running"


async def test_stop_commits_processed_events(tmp_path) -> None:
    url = f"local://{tmp_path / 'b'}"
    seen: list[int] = []
    gate = asyncio.Event()

    def build() -> tuple[faust.App, faust.Topic]:
        app = faust.App("stopper", broker=url, topic_partitions=1)
        topic = app.topic("n", value_type=int)

        @app.agent(topic)
        async def collect(stream):
            async for n in stream:
                seen.append(n)
                if n == 4:
                    await gate.wait()  # the app is asked to stop while this event is in progress

        return app, topic

    app, topic = build()
    await app.start()
    for n in range(20):
        await topic.send(value=n)
    await wait_until(lambda: seen[-1:] == [4])
    stopping = asyncio.ensure_future(app.stop())
    await wait_until(lambda: app.agents["collect"].stopping)
    gate.set()
    await stopping
    # Stopped mid-stream, after the event in progress: what was processed is committed...
    assert seen == [0, 1, 2, 3, 4]
    app, topic = build()
    async with app:
        await wait_until(lambda: seen[-1:] == [19], timeout=20)
        await settle(app)
    # ...so nothing is lost or repeated.
    assert seen == list(range(20))


async def test_agent_that_returns_commits_what_it_took() -> None:
    app = test_app(topic_partitions=1)
    topic = app.topic("n", value_type=int)
    got: list[int] = []

    @app.agent(topic)
    async def first_three(stream):
        async for n in stream:
            got.append(n)
            if len(got) == 3:
                break

    async with app:
        for n in range(5):
            await topic.send(value=n)
        await wait_until(lambda: not first_three.running)
        assert got == [0, 1, 2]
        assert app.transport is not None
        from streamnb.transport.base import TP

        committed = await app.transport.committed(f"{app.id}-first_three", [TP("n", 0)])
        assert committed[TP("n", 0)] == 3


async def test_agent_with_own_topic_and_items() -> None:
    app = test_app(topic_partitions=1)
    pairs: list[tuple] = []

    @app.agent(name="pairs")
    async def collect(stream):
        async for key, value in stream.items():
            pairs.append((key, value))

    assert collect.channel.name == f"{app.id}-pairs"
    async with app:
        await collect.send(key="a", value={"x": 1})
        await settle(app)
        assert pairs == [(b"a", {"x": 1})]
