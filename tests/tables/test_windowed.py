"""Windowed tables: reads, relative time, expiry in event time, late events."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

import streamnb as faust
from streamnb.testing import settle, test_app, wait_until


class Reading(faust.Record):
    sensor: str
    value: float
    at: datetime


async def test_relative_to_field_and_fractional_windows() -> None:
    app = test_app(topic_partitions=1)
    topic = app.topic("readings", value_type=Reading)
    sums = app.Table("sums", default=float).tumbling(0.5, expires=1e9).relative_to_field(Reading.at)

    @app.agent(topic)
    async def add(stream):
        async for r in stream:
            sums[r.sensor] += r.value

    base = 1_700_000_000.0
    async with app:
        for offset, value in [(0.1, 1.0), (0.4, 2.0), (0.5, 4.0), (1.25, 8.0)]:
            at = datetime.fromtimestamp(base + offset, tz=UTC)
            await topic.send(value=Reading(sensor="s", value=value, at=at), timestamp=5.0)  # message time ignored
        await settle(app)
        assert sums["s"][(base, base + 0.5)] == 3.0
        assert sums["s"][(base + 0.5, base + 1.0)] == 4.0
        assert sums["s"][base + 1.3] == 8.0  # a timestamp picks its window
        assert sums["s"].current() == 8.0


async def test_now_delta_and_value() -> None:
    app = test_app(topic_partitions=1)
    topic = app.topic("clicks", value_type=str)
    clicks = app.Table("clicks", default=int).tumbling(10, expires=1e9)
    seen: list[tuple] = []

    @app.agent(topic)
    async def count(stream):
        async for page in stream:
            clicks[page] += 1
            seen.append((clicks[page].current(), clicks[page].delta(10), clicks[page].value()))

    # .now() reads the wall clock: start early in a 10 s window, so the test ends in the window it began in.
    await wait_until(lambda: time.time() % 10 < 2, timeout=12, what="a 10 s window begins")
    now = time.time()
    async with app:
        await topic.send(value="p", timestamp=now - 10)
        await topic.send(value="p", timestamp=now)
        await topic.send(value="p", timestamp=now)
        await settle(app)
        assert clicks["p"].now() == 2
        assert seen[-1] == (2, 1, 2)


async def test_expiry_in_event_time_calls_on_window_close_and_counts_late_events() -> None:
    closed: list[tuple] = []
    app = test_app(topic_partitions=1)
    topic = app.topic("e", value_type=str)
    table = app.Table("w", default=int, on_window_close=lambda key, value: closed.append((key, value)))
    windows = table.tumbling(10, expires=20)

    @app.agent(topic)
    async def count(stream):
        async for key in stream:
            windows[key] += 1

    async with app:
        for ts in [100, 101, 105]:  # window [100, 110)
            await topic.send(value="k", timestamp=ts)
        await settle(app)
        assert closed == []
        await topic.send(value="k", timestamp=130)  # 130 >= 110 + 20: the first window expires
        await settle(app)
        assert closed == [(("k", (100.0, 110.0)), 3)]
        assert ("k", (100.0, 110.0)) not in windows.data
        await topic.send(value="k", timestamp=102)  # late: its window is gone
        await settle(app)
        assert windows.late_events == 1
        assert ("k", (100.0, 110.0)) not in windows.data
        df = windows.as_dataframe(times="epoch")
        assert df.to_dict("records") == [
            {"key": "k", "window_start": 130.0, "window_end": 140.0, "value": 1, "closed": False}
        ]


async def test_replaying_old_data_does_not_wipe_windows(tmp_path) -> None:
    """Expiry follows the newest event time, not the wall clock."""
    app = test_app(topic_partitions=1)
    topic = app.topic("old", value_type=str)
    windows = app.Table("w", default=int).hopping(60, 30, expires=60)

    @app.agent(topic)
    async def count(stream):
        async for key in stream:
            windows[key] += 1

    async with app:
        for i in range(10):
            await topic.send(value="k", timestamp=1000.0 + i)  # years ago
        await settle(app)
        assert windows["k"][(960.0, 1020.0)] == 10
        assert windows["k"][(990.0, 1050.0)] == 10


async def test_windowed_table_state_survives_restart(tmp_path) -> None:
    url = f"local://{tmp_path / 'b'}"

    def build():  # type: ignore[no-untyped-def]
        app = faust.App("win", broker=url, topic_partitions=2)
        topic = app.topic("e", value_type=str)
        windows = app.Table("w", default=int).hopping(10, 5, expires=1e9)

        @app.agent(topic)
        async def count(stream):
            async for key in stream.group_by(lambda v: v, name="key"):
                windows[key] += 1

        return app, topic, windows

    app, topic, windows = build()
    async with app:
        for ts in range(100, 120):
            await topic.send(value="a" if ts % 2 else "b", timestamp=float(ts))
        await settle(app)
        before = windows.as_dataframe()
    app, topic, windows = build()
    await app.start()
    after = windows.as_dataframe()
    await app.stop()
    assert before.equals(after) and len(after) > 0


async def test_event_time_advances_per_partition() -> None:
    """A partition far ahead in event time does not make another partition's events late."""
    app = test_app(topic_partitions=2)
    topic = app.topic("e", value_type=str)
    windows = app.Table("w", default=int).tumbling(10, expires=10)

    @app.agent(topic)
    async def count(stream):
        async for key in stream:
            windows[key] += 1

    async with app:
        await topic.send(value="ahead", partition=0, timestamp=10_000.0)
        await settle(app)
        for ts in [100.0, 101.0, 102.0]:
            await topic.send(value="behind", partition=1, timestamp=ts)
        await settle(app)
        assert windows["behind"][(100.0, 110.0)] == 3
        assert windows.late_events == 0
        await topic.send(value="late", partition=1, timestamp=130.0)
        await topic.send(value="late", partition=1, timestamp=101.0)  # partition 1 is now at 130
        await settle(app)
        assert windows.late_events == 1


async def test_data_of_sliding_and_session_tables_is_live() -> None:
    """``table.data`` (and ``windowed.data``) of computed windows reads the state, never a stale copy."""
    app = test_app(topic_partitions=1)
    topic = app.topic("e", value_type=str)
    sessions = app.Table("s", default=int).session(5)
    sliding = app.Table("l", default=int).sliding(10)

    @app.agent(topic)
    async def count(stream):
        async for key in stream:
            sessions[key] += 1
            sliding[key] += 1

    async with app:
        for ts in [100, 102]:
            await topic.send(value="k", timestamp=ts)
        await settle(app)
        for windowed in (sessions, sliding):
            assert dict(windowed.table.data) == dict(windowed.data) == dict(windowed.items())
            assert len(windowed.table.data) == len(windowed) > 0
        assert sessions.table.data[("k", (100.0, 102.0))] == 2
        assert ("k", (100.0, 102.0)) in sessions.table.data
        assert ("k", (1.0, 2.0)) not in sessions.table.data
        assert sliding.table.data[("k", (92.0, 102.0))] == 2
        await topic.send(value="k", timestamp=120)
        await settle(app)
        assert ("k", (120.0, 120.0)) in sessions.table.data  # a new session, seen without redefining
        assert dict(sliding.table.data) == dict(sliding.items())


def test_a_window_set_used_as_a_number_says_how_to_read_one_window() -> None:
    views = test_app("windowset-number").Table("views", default=int).tumbling(60)
    for use in (
        lambda w: w + 1, lambda w: 1 + w, lambda w: w * 2, lambda w: w / 2, lambda w: w > 3,
        lambda w: int(w), lambda w: float(w), lambda w: round(w), lambda w: -w,
    ):
        with pytest.raises(faust.StreamnbError) as caught:
            use(views["/"])
        assert isinstance(caught.value, faust.WindowError)
        message = str(caught.value)
        assert message.startswith("views['/'] is the windows of key '/', not a number")
        assert all(name in message for name in (".current()", ".now()", ".value()"))
