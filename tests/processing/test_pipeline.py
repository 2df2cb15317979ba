"""End-to-end behaviour on every backend: the Faust examples, ported by import."""

from __future__ import annotations

from collections import Counter

import streamnb as faust
from streamnb.testing import settle, test_app, wait_until


class PageView(faust.Record):
    id: str
    user: str
    page: str


async def test_page_view_counter_with_group_by(broker: str, app_id: str) -> None:
    app = faust.App(app_id, broker=broker, topic_partitions=4)
    views_topic = app.topic(f"{app_id}-page_views", value_type=PageView)
    counts = app.Table("counts", default=int)

    @app.agent(views_topic)
    async def count(views):
        async for view in views.group_by(PageView.page):
            counts[view.page] += 1

    pages = [f"/p{i % 7}" for i in range(300)]
    async with app:
        for i, page in enumerate(pages):
            await views_topic.send(key=f"u{i % 13}", value=PageView(id=str(i), user=f"u{i % 13}", page=page))
        await settle(app)
        assert dict(counts.data) == dict(Counter(pages))
        assert count.events_processed >= len(pages)
        assert count.dead_lettered == 0


async def test_word_count(broker: str, app_id: str) -> None:
    app = faust.App(app_id, broker=broker, topic_partitions=2)
    lines = app.topic(f"{app_id}-lines", value_type=str)
    words = app.topic(f"{app_id}-words", value_type=str, key_type=str)
    counts = app.Table("word_counts", default=int, partitions=2)

    @app.agent(lines)
    async def split(stream):
        async for line in stream:
            for word in line.split():
                await words.send(key=word, value=word)

    @app.agent(words)
    async def count(stream):
        async for word in stream:
            counts[word] += 1

    text = ["the quick brown fox", "jumps over the lazy dog", "the end"]
    async with app:
        for line in text:
            await lines.send(value=line)
        await settle(app)
        expected = Counter(w for line in text for w in line.split())
        assert dict(counts.data) == dict(expected)


async def test_windowed_tumbling_and_hopping(broker: str, app_id: str) -> None:
    app = faust.App(app_id, broker=broker, topic_partitions=1)
    topic = app.topic(f"{app_id}-clicks", value_type=str)
    tumbling = app.Table("tumbling", default=int, partitions=1).tumbling(10, expires=1e9)
    hopping = app.Table("hopping", default=int, partitions=1).hopping(10, 5, expires=1e9)

    @app.agent(topic)
    async def count(stream):
        async for page in stream:
            tumbling[page] += 1
            hopping[page] += 1

    times = [100.0, 101.0, 104.9, 105.0, 109.99, 110.0, 123.0]
    async with app:
        for t in times:
            await topic.send(value="a", timestamp=t)
        await settle(app)
        assert tumbling["a"][(100.0, 110.0)] == 5
        assert tumbling["a"][(110.0, 120.0)] == 1
        assert tumbling["a"][(120.0, 130.0)] == 1
        assert hopping["a"][(95.0, 105.0)] == 3
        assert hopping["a"][(100.0, 110.0)] == 5
        assert hopping["a"][(105.0, 115.0)] == 3
        assert tumbling["a"].current() == 1  # newest event time seen: 123
        df = tumbling.as_dataframe()
        assert list(df.columns) == ["key", "window_start", "window_end", "value", "closed"]
        assert df["value"].sum() == len(times)


async def test_agent_sinks_and_agent_send(broker: str, app_id: str) -> None:
    app = faust.App(app_id, broker=broker, topic_partitions=2)
    results = app.topic(f"{app_id}-results", value_type=int)
    seen: list[int] = []

    @app.agent()
    async def double(stream):
        async for n in stream:
            yield n * 2

    double.sinks.append(results)
    double.sinks.append(seen.append)

    @app.agent(results)
    async def collect(stream):
        async for n in stream:
            got.append(n)

    got: list[int] = []
    async with app:
        for n in range(10):
            await double.send(value=n)
        await settle(app)
        await wait_until(lambda: len(got) == 10)
        assert sorted(got) == [n * 2 for n in range(10)]
        assert sorted(seen) == sorted(got)


async def test_stream_operations(broker: str, app_id: str) -> None:
    app = faust.App(app_id, broker=broker, topic_partitions=1)
    src = app.topic(f"{app_id}-numbers", value_type=int)
    echoed = app.topic(f"{app_id}-echoed", value_type=int)
    evens: list[int] = []
    events: list[tuple[object, int, int]] = []
    batches: list[list[int]] = []

    @app.agent(src)
    async def filt(stream):
        async for n in stream.filter(lambda n: n % 2 == 0).echo(echoed):
            evens.append(n)

    @app.agent(echoed)
    async def ev(stream):
        async for event in stream.events():
            events.append((event.key, event.value, event.offset))

    async with app:
        for n in range(10):
            await src.send(value=n, key=str(n))
        await settle(app)
        assert evens == [0, 2, 4, 6, 8]
        assert [v for _, v, _ in events] == [0, 2, 4, 6, 8]
        assert [o for _, _, o in events] == list(range(5))
        assert [k for k, _, _ in events] == [b"0", b"2", b"4", b"6", b"8"]

    app2 = faust.App(app_id + "b", broker=broker, topic_partitions=1)
    nums = app2.topic(f"{app_id}-numbers2", value_type=int)

    @app2.agent(nums)
    async def batcher(stream):
        async for batch in stream.take(4, within=0.2):
            batches.append(batch)

    async with app2:
        for n in range(10):
            await nums.send(value=n)
        await wait_until(lambda: sum(map(len, batches)) == 10, timeout=20)
        assert batches[0] == [0, 1, 2, 3]
        assert [n for b in batches for n in b] == list(range(10))


async def test_timer_and_task(broker: str, app_id: str) -> None:
    app = faust.App(app_id, broker=broker)
    ticks: list[float] = []
    started: list[faust.App] = []

    @app.timer(0.05)
    async def tick():
        ticks.append(1.0)

    @app.task
    async def hello(app_):
        started.append(app_)

    async with app:
        await wait_until(lambda: len(ticks) >= 3 and started == [app])
    n = len(ticks)
    assert not app.timers["tick"].running
    # A running timer of the same interval ticks three times: the stopped one had its chances.
    witness = test_app()
    witness_ticks: list[float] = []

    @witness.timer(0.05)
    async def tock():
        witness_ticks.append(1.0)

    async with witness:
        await wait_until(lambda: len(witness_ticks) >= 3)
    assert len(ticks) == n  # stopped with the app


async def test_restart_recovers_tables(durable_broker: str, app_id: str) -> None:
    broker = durable_broker
    pages = [f"/p{i % 5}" for i in range(100)]

    def build() -> tuple[faust.App, faust.Topic, faust.Table]:
        app = faust.App(app_id, broker=broker, topic_partitions=3)
        topic = app.topic(f"{app_id}-views", value_type=PageView)
        counts = app.Table("counts", default=int)

        @app.agent(topic)
        async def count(views):
            async for view in views.group_by(PageView.page):
                counts[view.page] += 1

        return app, topic, counts

    app, topic, counts = build()
    async with app:
        for i, page in enumerate(pages[:60]):
            await topic.send(value=PageView(id=str(i), user="u", page=page))
        await settle(app)
    app, topic, counts = build()
    async with app:
        await wait_until(lambda: sum(counts.data.values()) == 60)
        for i, page in enumerate(pages[60:]):
            await topic.send(value=PageView(id=str(i), user="u", page=page))
        await settle(app)
        assert dict(counts.data) == dict(Counter(pages))


async def test_through_and_enumerate(broker: str, app_id: str) -> None:
    app = faust.App(app_id, broker=broker, topic_partitions=1)
    raw = app.topic(f"{app_id}-raw", value_type=str)
    cleaned = app.topic(f"{app_id}-cleaned", value_type=str)
    out: list[tuple[int, str]] = []

    @app.agent(raw)
    async def clean(stream):
        async for i, word in stream.through(cleaned).enumerate(start=1):
            out.append((i, word))

    async with app:
        for word in ["a", "b", "c"]:
            await raw.send(value=word)
        await settle(app)
        await wait_until(lambda: len(out) == 3)
        assert out == [(1, "a"), (2, "b"), (3, "c")]
        transport = app.transport
        assert transport is not None
        from streamnb.transport.base import TP

        # through() really wrote the intermediate topic.
        tp = TP(cleaned.name, 0)
        assert [m.value for m in await transport.read(tp, 0, 10)] == [b'"a"', b'"b"', b'"c"']


async def test_offsets_a_take_held_back_are_committed_once_it_lets_go(broker: str, app_id: str) -> None:
    """take() holds its buffered events' offsets back; after the list is handed over they commit, idle or not."""
    app = faust.App(app_id, broker=broker, topic_partitions=1)
    nums = app.topic(f"{app_id}-held", value_type=int)
    batches: list[list[int]] = []

    @app.agent(nums, name="batcher")
    async def batcher(stream):
        async for batch in stream.take(100, within=0.3):  # never full: handed over when `within` passed
            batches.append(batch)

    async with app:
        for n in range(3):
            await nums.send(value=n)
        await wait_until(lambda: sum(map(len, batches)) == 3, timeout=20)
        await settle(app, timeout=30)  # nothing left uncommitted on the now idle partition
    app = faust.App(app_id, broker=broker, topic_partitions=1)
    nums = app.topic(f"{app_id}-held", value_type=int)
    again: list[list[int]] = []

    @app.agent(nums, name="batcher")  # the same agent: its consumer group's committed offsets
    async def batcher2(stream):
        async for batch in stream.take(100, within=0.3):
            again.append(batch)

    async with app:
        await nums.send(value=3)
        await wait_until(lambda: sum(map(len, again)) == 1, timeout=20)
    assert again == [[3]]  # the first three were not processed again
