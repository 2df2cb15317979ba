"""``app.flow_control`` and ``app.finalize()``: Faust's testing-guide fixture runs, and suspending holds events."""

from __future__ import annotations

import pytest

import streamnb as faust
from streamnb.testing import settle, wait_until


@pytest.fixture()
def faust_style_app(app_id: str) -> faust.App:
    """The fixture of Faust's testing guide, word for word but for the import."""
    app = faust.App(app_id, broker="memory://")
    app.finalize()
    app.conf.store = "memory://"
    app.flow_control.resume()
    return app


async def test_faust_testing_guide_fixture_runs_an_app(faust_style_app: faust.App) -> None:
    app = faust_style_app
    counts = app.Table("counts", default=int)

    @app.agent()
    async def count(stream):
        async for word in stream:
            counts[word] += 1

    await app.start()
    try:
        for word in ["a", "b", "a"]:
            await count.send(value=word)
        await settle(app)
        assert dict(counts.items()) == {"a": 2, "b": 1}
    finally:
        await app.stop()


async def test_suspended_flow_holds_events_until_resumed(broker: str, app_id: str) -> None:
    app = faust.App(app_id, broker=broker)
    seen: list[int] = []

    @app.agent()
    async def collect(stream):
        async for n in stream:
            seen.append(n)

    await app.start()
    try:
        await collect.send(value=0)
        await settle(app)
        app.flow_control.suspend()
        assert not app.flow_control.is_active() and collect.paused
        for n in range(1, 4):
            await collect.send(value=n)
        await wait_until(lambda: collect.parked >= 1, what="the suspended agent waits")
        assert seen == [0], "a suspended agent took events"
        app.flow_control.resume()
        await settle(app)
        assert sorted(seen) == [0, 1, 2, 3]  # (keyless sends spread over partitions: any order)
    finally:
        await app.stop()


async def test_an_agent_defined_while_suspended_starts_suspended(app_id: str) -> None:
    app = faust.App(app_id, broker="memory://")
    app.flow_control.clear()  # Faust's name for suspend()

    @app.agent()
    async def late(stream):
        async for _ in stream:
            pass

    assert late.paused
    app.flow_control.resume()
    assert not late.paused
