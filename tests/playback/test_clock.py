"""The virtual clock: timers, relative_to_now() windows and window closes at the same virtual moments every run.

Every test replays a folder written beforehand (two partitions, a group_by
in the pipeline, so events cross a repartition topic), on ``memory://`` and
``local://``.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

import pytest

import streamnb as faust
from streamnb.errors import ConfigurationError
from streamnb.playback.clock import VirtualClock
from streamnb.testing import wait_until
from streamnb.transport import open_transport
from streamnb.transport.base import ProducerRecord, TopicSpec

T0 = 1_700_000_000.0
PAGES = ["/", "/cart", "/about"]


@pytest.fixture(params=["memory", "local"])
def folder(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return f"memory://clock-{uuid.uuid4().hex[:10]}"
    return f"local://{tmp_path / 'slice'}"


async def write_views(url: str, n: int = 60, step: float = 1.0) -> None:
    """``n`` page views, one every ``step`` s from T0, alternately on partitions 0 and 1."""
    transport = open_transport(url, client_id="writer")
    await transport.start()
    await transport.create_topic(TopicSpec("views", 2))
    await transport.send([
        ProducerRecord("views", i % 2, f"u{i % 5}".encode(), f'{{"page": "{PAGES[i % 3]}", "i": {i}}}'.encode(),
                       T0 + i * step)
        for i in range(n)
    ])
    await transport.stop()


def build(url: str, log: list[Any], **options: Any) -> tuple[faust.App, Any, Any]:
    app = faust.App(f"clock-{uuid.uuid4().hex[:6]}", broker=url, clock="virtual", topic_partitions=2, **options)
    views = app.topic("views", partitions=2)
    now_counts = app.Table("now_counts", default=int).tumbling(10, expires=3600).relative_to_now()

    def closed(key: Any, value: Any) -> None:
        log.append(("closed", app.now(), key[0], key[1], value))

    per_10s = app.Table("per_10s", default=int, on_window_close=closed).tumbling(10, grace=0)
    total = app.Table("total", default=int)

    @app.agent(views)
    async def count(stream: Any) -> None:
        async for view in stream.group_by(lambda v: v["page"], name="page"):
            now_counts[view["page"]] += 1
            per_10s[view["page"]] += 1
            total[view["page"]] += 1

    @app.timer(7.0)
    async def tick() -> None:
        log.append(("tick", app.now(), sorted(per_10s.as_dataframe(times="epoch").itertuples(index=False, name=None))))

    return app, now_counts, per_10s


async def replay_once(url: str) -> list[Any]:
    log: list[Any] = []
    app, now_counts, per_10s = build(url, log)
    async with app:
        await app.clock.idle(timeout=60)
        rows = now_counts.as_dataframe(times="epoch").itertuples(index=False, name=None)
        log.append(("end", app.now(), sorted(rows)))
    return log


async def test_timers_relative_to_now_windows_and_closes_happen_at_the_same_virtual_moments(folder: str) -> None:
    await write_views(folder)
    first = await replay_once(folder)
    second = await replay_once(folder)
    assert first == second
    ticks = [entry for entry in first if entry[0] == "tick"]
    # Timers run every 7 virtual seconds from the first event, after every event up to then was processed.
    assert [t[1] for t in ticks] == [T0 + 7 * k for k in range(1, 10)]  # the last one covers events 57..59
    at_7 = dict(((key, start), value) for key, start, _end, value, _closed in ticks[0][2])
    assert at_7 == {("/", T0): 3, ("/cart", T0): 3, ("/about", T0): 2}  # events 0..7
    # A window closes when stream time reaches its end (grace 0): its close runs at that virtual time.
    closes = [entry for entry in first if entry[0] == "closed"]
    assert closes and all(when >= start + 10 for _c, when, _k, (start, _end), _v in closes)
    assert sorted((k, w[0], v) for _c, _t, k, w, v in closes)[:3] == [
        ("/", T0, 4), ("/", T0 + 10, 3), ("/", T0 + 20, 3),
    ]
    # relative_to_now() places each event at the virtual time it was processed: its own time.
    end = dict(((key, start), value) for key, start, _end, value, _closed in first[-1][2])
    assert end[("/", T0)] == 4 and end[("/cart", T0 + 50)] == 3 and sum(end.values()) == 60


async def test_the_clock_stops_at_the_end_of_the_recording_and_starts_over_on_the_next_start(folder: str) -> None:
    await write_views(folder, n=20)
    app, now_counts, per_10s = build(folder, [])
    assert not app.clock.resting
    await app.start()
    try:
        await app.clock.idle(timeout=60)
        assert app.clock.start_time == T0 and app.clock.end_time == T0 + 19
        assert T0 + 19 <= app.now() <= T0 + 21  # the last event, or the next timer stop after it
        assert sum(app.tables["total"].data.values()) == 20
        assert app.clock.resting and not app.clock.paused  # idle at the end (live views show that state)
        assert app.clock.released == 40  # the views, then their repartitioned copies
    finally:
        await app.stop()
    assert app.clock.released == 40 and app.clock.resting  # what a frozen player still shows
    await app.start()  # a replay always starts from scratch: the same tables, not doubled
    try:
        await app.clock.idle(timeout=60)
        assert sum(app.tables["total"].data.values()) == 20
    finally:
        await app.stop()


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
async def test_pause_step_and_seek(folder: str, store: str, caplog: pytest.LogCaptureFixture) -> None:
    """Seeking back starts over with fresh tables (on rocksdb:// too: the stores start over, then are served again)."""
    caplog.set_level(logging.WARNING, logger="streamnb")
    await write_views(folder, n=40)
    app, _now_counts, _per_10s = build(folder, [], speed=0, store=store)
    agent = app.agents["count"]

    def counted() -> int:
        return sum(app.tables["total"].data.values())

    async with app:
        await app.clock.idle(timeout=30)
        assert counted() <= 1 and app.clock.paused and app.clock.resting  # paused at the first event's time
        version = app.clock.version
        assert await app.clock.step(5) == T0 + 5
        assert app.clock.resting and app.clock.version > version  # a new rest
        assert counted() == 6 and app.clock.paused
        assert await app.clock.step(seconds=10) == T0 + 15
        assert counted() == 16
        assert await app.clock.seek(T0 + 30) == T0 + 30
        assert counted() == 31
        received = agent.events_received
        assert await app.clock.seek(T0 + 9.5) == T0 + 9.5  # back: from the start, fresh tables
        assert counted() == 10 and agent.events_received > received
        app.clock.resume(None)
        await app.clock.idle(timeout=30)
        assert counted() == 40
    assert not [r for r in caplog.records if "rebuilding its store" in r.getMessage()]  # (wiped on purpose, quietly)


async def test_a_finite_speed_plays_in_time_order_until_the_end(folder: str) -> None:
    await write_views(folder, n=30)
    app, _now_counts, _per_10s = build(folder, [], speed=200.0)
    async with app:
        seen: list[float] = []

        def progressed() -> bool:
            seen.append(app.clock.time)
            return sum(app.tables["total"].data.values()) == 30

        await wait_until(progressed, timeout=30)
        assert seen == sorted(seen)  # virtual time only moves forward
        assert not app.clock.paused and app.clock.speed == 200.0


def test_options_that_do_not_apply_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="virtual clock only"):
        faust.App("a", broker="memory://", speed=10)
    with pytest.raises(ConfigurationError, match="record"):
        faust.App("a", broker="kafka://127.0.0.1:9092", clock="virtual")
    with pytest.raises(ConfigurationError, match="clock must be"):
        faust.App("a", broker="memory://", clock="sundial")
    with pytest.raises(ConfigurationError, match="speed must be"):
        faust.App("a", broker="memory://", clock="virtual", speed=-1)
    assert isinstance(faust.App("a", broker="memory://", clock="virtual").clock, VirtualClock)


async def test_step_needs_events_or_seconds(folder: str) -> None:
    await write_views(folder, n=4)
    app, _n, _p = build(folder, [], speed=0)
    async with app:
        with pytest.raises(ConfigurationError, match="not both"):
            await app.clock.step(1, seconds=1)
        with pytest.raises(ConfigurationError, match="positive int"):
            await app.clock.step(0)
