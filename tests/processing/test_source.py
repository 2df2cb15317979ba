"""Source.next_batch: a batch fetched while the agent was paused, idle ticks."""

from __future__ import annotations

from streamnb.processing.source import Source
from streamnb.testing import settle, test_app, wait_until


def source_of(agent: object) -> Source:
    sources = list(agent._sources)  # type: ignore[attr-defined]
    assert len(sources) == 1
    return sources[0]


async def test_a_batch_fetched_while_paused_is_held_until_resumed() -> None:
    app = test_app(topic_partitions=1)
    topic = app.topic("n", value_type=int)
    seen: list[int] = []

    @app.agent(topic)
    async def collect(stream):  # type: ignore[no-untyped-def]
        async for n in stream:
            seen.append(n)

    async with app:
        await topic.send(value=1)
        await wait_until(lambda: seen == [1])
        source = source_of(collect)
        await wait_until(lambda: source.waiting)  # idle: polling for more
        collect.pause()
        await topic.send(value=2)  # the poll returns it: the source holds it
        await wait_until(lambda: collect.parked == 1)
        assert seen == [1] and collect.events_received == 1 and not source.waiting
        collect.resume()
        await wait_until(lambda: seen == [1, 2])
        assert collect.events_received == 2


async def test_a_stop_while_a_fetched_batch_is_held_leaves_it_for_the_next_start(tmp_path) -> None:  # type: ignore[no-untyped-def]
    app = test_app(topic_partitions=1, broker=f"local://{tmp_path / 'b'}")
    topic = app.topic("n", value_type=int)
    seen: list[int] = []

    @app.agent(topic)
    async def collect(stream):  # type: ignore[no-untyped-def]
        async for n in stream:
            seen.append(n)

    async with app:
        await topic.send(value=1)
        await wait_until(lambda: seen == [1])
        source = source_of(collect)
        await wait_until(lambda: source.waiting)
        collect.pause()
        await topic.send(value=2)
        await wait_until(lambda: collect.parked == 1)
        await app.stop_agent("collect")
        assert seen == [1] and collect.state == "stopped" and collect.events_processed == 1
        await app.start_agent("collect")  # from the committed offsets: 2 was never processed
        collect.resume()
        await settle(app)
        assert seen == [1, 2]


async def test_an_idle_poll_under_take_within_yields_a_short_list() -> None:
    app = test_app(topic_partitions=1)
    topic = app.topic("n", value_type=int)
    batches: list[list[int]] = []

    @app.agent(topic)
    async def collect(stream):  # type: ignore[no-untyped-def]
        async for batch in stream.take(100, within=0.05):
            batches.append(batch)

    async with app:
        await topic.send(value=1)
        await topic.send(value=2)
        # Fewer than 100 values: only an idle poll's tick can end the list.
        await wait_until(lambda: batches == [[1, 2]] or batches == [[1], [2]])
