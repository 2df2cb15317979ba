"""Grace, closing, final results, late events, sliding and session windows, on every backend."""

from __future__ import annotations

import json
from typing import Any

import pytest

import streamnb as faust
from streamnb.testing import settle, wait_until
from streamnb.transport.base import TP


class Click(faust.Record):
    user: str


async def read(app: faust.App, name: str) -> list[Any]:
    transport = app.require_transport()
    count = await transport.partition_count(name) or 0
    out = []
    for p in range(count):
        tp = TP(name, p)
        end = (await transport.end_offsets([tp]))[tp]
        out += await transport.read(tp, 0, end)
    return out


async def send(topic: Any, user: str, ts: float) -> None:
    await topic.send(key=user, value=Click(user=user), timestamp=ts)


async def test_grace_final_results_and_late_events(broker: str, app_id: str) -> None:
    app = faust.App(app_id, broker=broker, topic_partitions=1, commit_interval=0.05)
    clicks = app.topic(f"{app_id}-clicks", key_type=str, value_type=Click)
    finals = app.topic(f"{app_id}-finals")
    closed: list[tuple[Any, int]] = []
    late: list[tuple[Any, list[Any]]] = []
    table = app.Table(
        "per10", default=int, emit_final=finals, late_topic=True,
        on_window_close=lambda key, value: closed.append((key, value)),
        on_late=lambda event, windows: late.append((event.value.user, windows)),
    )
    per10 = table.tumbling(10, grace=5, expires=60)

    @app.agent(clicks)
    async def count(stream):  # type: ignore[no-untyped-def]
        async for click in stream:
            per10[click.user] += 1

    async with app:
        for ts in (100, 103, 112, 108, 114.999):  # 108 is out of order but within grace
            await send(clicks, "ann", ts)
        await settle(app)
        assert per10.stream_time() == 114.999
        assert closed == [] and per10.as_dataframe()["closed"].tolist() == [False, False]
        await send(clicks, "ann", 115)  # stream time reaches 110 + 5: [100, 110) closes
        await settle(app)  # committed, and the commit's outcome applied: the final was delivered
        assert closed == [(("ann", (100.0, 110.0)), 3)]
        await send(clicks, "ann", 109)  # its only window is closed: late
        await settle(app)
        assert per10["ann"][(100.0, 110.0)] == 3  # not counted; still readable until it expires
        assert per10.late_events == 1 and per10.late_windows == 1
        assert late == [("ann", [(100.0, 110.0)])]
        df = per10.as_dataframe(times="epoch")
        assert df[["window_start", "closed"]].values.tolist() == [[100.0, True], [110.0, False]]
        assert [json.loads(m.value) for m in await read(app, finals.name)] == [
            {"key": "ann", "window_start": 100.0, "window_end": 110.0, "value": 3}
        ]
        [dead] = await read(app, f"{app_id}-per10-late")
        headers = dict(dead.headers)
        assert json.loads(headers["streamnb-late-windows"]) == [[100.0, 110.0]]
        assert headers["streamnb-table"] == b"per10"
        await send(clicks, "ann", 171)  # past 110 + 60: the closed window expires
        await settle(app)
        assert ("ann", (100.0, 110.0)) not in per10.data


async def test_sliding_windows_hold_the_events_within_size(broker: str, app_id: str) -> None:
    app = faust.App(app_id, broker=broker, topic_partitions=1, commit_interval=0.05)
    clicks = app.topic(f"{app_id}-clicks", key_type=str, value_type=Click)
    closed: list[Any] = []
    last10 = app.Table("last10", default=int, on_window_close=lambda k, v: closed.append((k, v))).sliding(10)
    seen: list[int] = []

    @app.agent(clicks)
    async def count(stream):  # type: ignore[no-untyped-def]
        async for click in stream:
            last10[click.user] += 1
            seen.append(last10[click.user].current())

    async with app:
        for ts in (100.0, 104.0, 109.0, 112.0):
            await send(clicks, "bo", ts)
        await settle(app)
        assert seen == [1, 2, 3, 3]  # events in [t - 10, t] as each came: 112 no longer sees 100
        assert last10["bo"][(99.0, 109.0)] == 3
        assert last10["bo"][(100.001, 110.001)] == 2  # the window right after the event at 100
        assert ("bo", (90.0, 100.0)) in dict(closed)  # closed once stream time passed 100
        assert dict(closed)[("bo", (94.0, 104.0))] == 2
        assert last10["bo"].delta(5) == 2  # the window ending 5 s before the newest event: [97, 107]


async def test_sessions_merge_and_close(broker: str, app_id: str) -> None:
    app = faust.App(app_id, broker=broker, topic_partitions=1, commit_interval=0.05)
    clicks = app.topic(f"{app_id}-clicks", key_type=str, value_type=Click)
    closed: list[Any] = []
    visits = app.Table("visits", default=int, on_window_close=lambda k, v: closed.append((k, v)))
    sessions = visits.session(30, grace=60, expires=120)  # closed sessions stay readable 60 s more

    @app.agent(clicks)
    async def count(stream):  # type: ignore[no-untyped-def]
        async for click in stream:
            sessions[click.user] += 1

    async with app:
        for ts in (100.0, 120.0, 170.0):
            await send(clicks, "cy", ts)
        await settle(app)
        assert sorted(sessions.items()) == [(("cy", (100.0, 120.0)), 2), (("cy", (170.0, 170.0)), 1)]
        await send(clicks, "cy", 145.0)  # within 30 s of 120 and of 170: one session
        await settle(app)
        assert sorted(sessions.items()) == [(("cy", (100.0, 170.0)), 4)]
        assert sessions["cy"].current() == 4  # the session holding the newest event time
        with pytest.raises(faust.WindowError, match="delta"):
            sessions["cy"].delta(10)
        assert closed == []
        await send(clicks, "cy", 260.0)  # stream time reaches 170 + 30 + 60: the session closes
        await settle(app)
        await wait_until(lambda: closed == [(("cy", (100.0, 170.0)), 4)])
        await send(clicks, "cy", 160.0)  # its session would have closed already: late
        await settle(app)
        assert sessions.late_events == 1
        assert sorted(sessions.items()) == [(("cy", (100.0, 170.0)), 4), (("cy", (260.0, 260.0)), 1)]


async def test_stream_time_survives_a_restart(durable_broker: str, app_id: str) -> None:
    def build() -> tuple[faust.App, Any, Any]:
        app = faust.App(app_id, broker=durable_broker, topic_partitions=1, commit_interval=0.05)
        clicks = app.topic(f"{app_id}-clicks", key_type=str, value_type=Click)
        per10 = app.Table("per10", default=int).tumbling(10, grace=2)

        @app.agent(clicks)
        async def count(stream):  # type: ignore[no-untyped-def]
            async for click in stream:
                per10[click.user] += 1

        return app, clicks, per10

    app, clicks, per10 = build()
    async with app:
        await send(clicks, "di", 100.0)
        await send(clicks, "di", 113.0)
        await settle(app)
    app, clicks, per10 = build()
    async with app:
        # Recovered from the changelog (on Kafka when the partition is assigned), not re-derived from windows.
        await wait_until(lambda: per10.stream_time() == 113.0, timeout=60)
        await send(clicks, "di", 101.0)  # [100, 110) closed at 112: late, after the restart too
        await settle(app)
        assert per10.late_events == 1
        assert per10["di"][(100.0, 110.0)] == 1


def test_merge_is_needed_for_values_that_are_not_numbers() -> None:
    app = faust.App("merge", broker="memory://")
    with pytest.raises(faust.ConfigurationError, match="merge="):
        app.Table("users", default=set).sliding(10)
    with pytest.raises(faust.ConfigurationError, match="merge="):
        app.Table("names", default=list).session(10)
    assert app.Table("unions", default=set).session(5, merge=lambda a, b: a | b).window.gap == 5.0
    assert app.Table("sums", value_type=float).sliding(5).window.size == 5.0


def test_expires_shorter_than_grace_is_an_error() -> None:
    app = faust.App("grace", broker="memory://")
    with pytest.raises(faust.WindowError, match="expires .* is shorter than grace"):
        app.Table("t", default=int).tumbling(10, grace=30, expires=20)
