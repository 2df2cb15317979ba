"""Replays: the same recording and code give the same tables and outputs; a change shows; forks go on from a moment."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

import streamnb as faust
from streamnb.errors import ConfigurationError
from streamnb.playback.replay import replay
from streamnb.transport import open_transport
from streamnb.transport.base import TP, ProducerRecord, TopicSpec

T0 = 1_700_000_000.0
PAGES = ["/", "/cart", "/about", "/help"]


@pytest.fixture(params=["memory", "local"])
def folder(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return f"memory://replay-{uuid.uuid4().hex[:10]}"
    return f"local://{tmp_path / 'slice'}"


async def write_views(url: str, n: int = 80) -> None:
    """Page views every 0.5 s, keyed by user, over 4 partitions, slightly out of order on partition 3."""
    transport = open_transport(url, client_id="writer")
    await transport.start()
    await transport.create_topic(TopicSpec("views", 4))
    records = []
    for i in range(n):
        ts = T0 + i * 0.5 - (1.7 if i % 13 == 0 and i else 0.0)
        records.append(ProducerRecord(
            "views", i % 4, f"u{i % 7}".encode(), f'{{"page": "{PAGES[(i * 7) % 4]}", "ms": {i * 10}}}'.encode(), ts
        ))
    await transport.send(records)
    await transport.stop()


def define(app: faust.App, *, threshold: int = 5, only: str | None = None) -> None:
    """The pipeline: a count per page, a windowed sum, and an alert (to a sink topic) every ``threshold`` views."""
    views = app.topic("views", partitions=4)
    alerts = app.topic("alerts", partitions=2)
    counts = app.Table("counts", default=int)
    load = app.Table("load", default=int).hopping(10, 5, expires=3600)

    @app.agent(views, sink=[alerts])
    async def count(stream: Any) -> Any:
        async for view in stream.group_by(lambda v: v["page"], name="page"):
            if only is not None and view["page"] != only:
                continue
            counts[view["page"]] += 1
            load[view["page"]] += view["ms"]
            if counts[view["page"]] % threshold == 0:
                yield {"page": view["page"], "count": counts[view["page"]], "at": app.now()}


async def outputs(app: faust.App) -> list[tuple[int, int, Any, Any, float]]:
    transport = app.require_transport()
    out = []
    for p in range(2):
        tp = TP("alerts", p)
        end = (await transport.end_offsets([tp]))[tp]
        out += [(p, m.offset, m.key, m.value, m.timestamp) for m in await transport.read(tp, 0, end, 10_000)]
    return out


async def run(url: str, app_id: str, **options: Any) -> tuple[Any, Any, list[Any]]:
    app = faust.App(app_id, broker=url, clock="virtual", topic_partitions=4)
    define(app, **options)
    async with app:
        await app.clock.idle(timeout=60)
        app.agents["count"].raise_if_crashed()
        counts = app.tables["counts"].as_dataframe().sort_values("key").reset_index(drop=True)
        load = app.tables["load"].as_dataframe()
        return counts, load, await outputs(app)


async def test_the_same_recording_and_code_give_identical_tables_and_outputs(folder: str) -> None:
    await write_views(folder)
    app_id = f"rp-{uuid.uuid4().hex[:6]}"
    counts1, load1, out1 = await run(folder, app_id)
    counts2, load2, out2 = await run(folder, app_id)
    assert counts1.to_dict("records") == counts2.to_dict("records")
    assert load1.to_dict("records") == load2.to_dict("records")
    assert out1 == out2  # every output, at the same offset, with the same virtual timestamp
    assert int(counts1["value"].sum()) == 80 and len(out1) == 16
    # A changed agent: the change shows, the rest of the recording is the same.
    counts3, _load3, out3 = await run(folder, app_id, threshold=10)
    assert counts3.to_dict("records") == counts1.to_dict("records")
    assert len(out3) == 8 and {(v) for *_x, v, _t in out3} < {v for *_x, v, _t in out1}
    counts4, _load4, _out4 = await run(folder, app_id, only="/cart")
    assert counts4.to_dict("records") == [{"key": "/cart", "value": 20}]


async def test_replay_starts_a_wall_clock_app_under_a_virtual_clock(folder: str) -> None:
    await write_views(folder, n=40)
    app = faust.App(f"rp-{uuid.uuid4().hex[:6]}", broker=folder, topic_partitions=4)
    define(app)
    clock = await replay(app)
    try:
        assert app.clock is clock and clock.virtual
        assert sum(app.tables["counts"].data.values()) == 40
        await replay(app, until=T0 + 9.75)  # a running replay starts over, up to a moment
        assert sum(app.tables["counts"].data.values()) == 20 and clock.paused
    finally:
        await app.stop()


async def test_fork_goes_on_from_a_moment_with_the_tables_of_then(folder: str, tmp_path: Path) -> None:
    await write_views(folder)
    app = faust.App(f"rp-{uuid.uuid4().hex[:6]}", broker=folder, clock="virtual", topic_partitions=4)
    define(app)
    await app.start()
    try:
        await app.clock.idle(timeout=60)
        final = dict(app.tables["counts"].data)
        then = dict(await app.tables["counts"].at(time=T0 + 20))
        assert sum(then.values()) == 41  # the events at or before T0 + 20
        load_then = (await app.tables["load"].at(time=T0 + 20)).state.stream_time
        fork_url = f"local://{tmp_path / 'fork'}" if folder.startswith("local") else folder + "-fork"
        await app.fork(at=T0 + 20, broker=fork_url)
        assert app.broker == fork_url and app.clock.paused and app.clock.time == T0 + 20
        assert dict(app.tables["counts"].data) == then
        load = app.tables["load"].window
        assert load is not None and load_then  # the windowed table's stream time goes with the fork
        assert {p: load.stream_time(partition=p) for p in range(4) if load.stream_time(partition=p)} == load_then
        # Changed code goes on from the fork: the rest of the recording counted twice.
        counts = app.tables["counts"]

        @app.agent(app.topics["views"], name="count")
        async def count(stream: Any) -> None:
            async for view in stream.group_by(lambda v: v["page"], name="page"):
                counts[view["page"]] += 2

        app.clock.resume(None)
        await app.clock.idle(timeout=60)
        assert {k: v for k, v in counts.data.items()} == {k: then.get(k, 0) + 2 * (n - then.get(k, 0))
                                                          for k, n in final.items()}
    finally:
        await app.stop()
    # The original folder is untouched: a replay there gives the original counts.
    again = faust.App(app.id, broker=folder, clock="virtual", topic_partitions=4)
    define(again)
    async with again:
        await again.clock.idle(timeout=60)
        assert dict(again.tables["counts"].data) == final


async def test_fork_needs_a_new_folder(folder: str) -> None:
    await write_views(folder, n=8)
    app = faust.App(f"rp-{uuid.uuid4().hex[:6]}", broker=folder, clock="virtual", topic_partitions=4)
    define(app)
    async with app:
        await app.clock.idle(timeout=60)
        with pytest.raises(ConfigurationError, match="own folder"):
            await app.fork(at=T0 + 1, broker=folder)
        with pytest.raises(ConfigurationError, match="local:// or memory://"):
            await app.fork(at=T0 + 1, broker="kafka://127.0.0.1:9092")
