"""Services (``streamnb.Service``, ``@app.service``): hooks in mode's order, tasks and timers, dependencies,
their place in the app's start and stop, a failing start, and ``app.sleep`` / ``app.should_stop``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

import streamnb as faust
from streamnb.errors import ConfigurationError
from streamnb.testing import test_app, wait_until


class Recorder(faust.Service):
    """A service that notes its hooks (and what the app looks like at each) in a shared list."""

    def __init__(self, name: str, log: list[str], app: faust.App | None = None) -> None:
        super().__init__()
        self.name, self.notes, self.app = name, log, app

    def note(self, what: str) -> None:
        extra = ""
        if self.app is not None:
            agents = "agents-running" if any(a.running for a in self.app.agents.values()) else "agents-stopped"
            extra = f" transport={'open' if self.app.transport is not None else 'closed'} {agents}"
        self.notes.append(f"{self.name}.{what}{extra}")

    async def on_first_start(self) -> None:
        self.note("on_first_start")

    async def on_start(self) -> None:
        self.note("on_start")

    async def on_started(self) -> None:
        self.note("on_started")

    async def on_stop(self) -> None:
        self.note("on_stop")

    async def on_shutdown(self) -> None:
        self.note("on_shutdown")


async def test_hooks_and_dependencies_run_in_order_between_transport_and_agents(broker: str, app_id: str) -> None:
    app = faust.App(app_id, broker=broker)
    notes: list[str] = []

    @app.agent()
    async def idle(stream):
        async for _ in stream:
            pass

    parent = Recorder("parent", notes, app)
    child = parent.add_dependency(Recorder("child", notes))
    grandchild = child.add_dependency(Recorder("grandchild", notes))
    app.service(parent)
    later = app.service(Recorder("later", notes))
    assert app.services == [parent, later]

    await app.start()
    assert [s.state for s in (parent, child, grandchild, later)] == ["running"] * 4
    assert notes == [
        "parent.on_first_start transport=open agents-stopped",
        "parent.on_start transport=open agents-stopped",
        "child.on_first_start", "child.on_start",
        "grandchild.on_first_start", "grandchild.on_start", "grandchild.on_started",
        "child.on_started",
        "parent.on_started transport=open agents-stopped",
        "later.on_first_start", "later.on_start", "later.on_started",
    ]
    assert idle.running
    notes.clear()
    await app.stop()
    assert notes == [
        "later.on_stop", "later.on_shutdown",
        "parent.on_stop transport=open agents-stopped",
        "child.on_stop", "grandchild.on_stop", "grandchild.on_shutdown", "child.on_shutdown",
        "parent.on_shutdown transport=open agents-stopped",
    ]
    assert [s.state for s in (parent, child, grandchild, later)] == ["stopped"] * 4
    notes.clear()
    await app.start()  # a restart: on_first_start only came the first time
    assert "parent.on_first_start transport=open agents-stopped" not in notes
    assert "parent.on_start transport=open agents-stopped" in notes
    await app.stop()


class Worker(faust.Service):
    def __init__(self) -> None:
        super().__init__()
        self.loops = 0
        self.beats = 0
        self.loop_ended = False

    @faust.Service.task
    async def work(self) -> None:
        while not self.should_stop:
            self.loops += 1
            await self.sleep(30.0)  # returns early when the service stops
        self.loop_ended = True

    @faust.Service.timer(0.01)
    async def beat(self) -> None:
        self.beats += 1


async def test_tasks_and_timers_run_while_the_service_runs_and_sleep_ends_on_stop() -> None:
    app = test_app()
    app.service(Worker)
    (worker,) = app.services
    assert isinstance(worker, Worker)
    async with app:
        await wait_until(lambda: worker.beats >= 3 and worker.loops == 1)
        started = time.monotonic()
    assert time.monotonic() - started < 10  # the 30 s sleep did not hold the stop
    assert worker.loop_ended and worker.should_stop
    beats = worker.beats
    await asyncio.sleep(0.05)
    assert worker.beats == beats  # the timer stopped with the service


class Failing(faust.Service):
    async def on_start(self) -> None:
        raise RuntimeError("cannot reach the warehouse")


async def test_a_service_failing_to_start_stops_the_start_with_its_error(broker: str, app_id: str) -> None:
    app = faust.App(app_id, broker=broker)
    notes: list[str] = []

    @app.agent()
    async def idle(stream):
        async for _ in stream:
            pass

    first = app.service(Recorder("first", notes))
    app.service(Failing)
    app.service(Recorder("never", notes))
    with pytest.raises(RuntimeError, match="cannot reach the warehouse"):
        await app.start()
    assert app.state != "running"
    assert not idle.running
    assert first.state == "stopped" and "first.on_stop" in notes
    assert not any(n.startswith("never.") for n in notes)
    await app.stop()


async def test_a_failing_task_is_logged_and_kept_and_the_service_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    class Flaky(faust.Service):
        runs = 0

        @faust.Service.timer(0.01)
        async def tick(self) -> None:
            self.runs += 1
            if self.runs == 2:
                raise ValueError("second tick")

    app = test_app()
    flaky = app.service(Flaky())
    async with app:
        await wait_until(lambda: flaky.runs >= 4)
        assert isinstance(flaky.last_error, ValueError)
    assert "[Flaky] failed: ValueError('second tick')" in caplog.text


async def test_registering_while_running_starts_it_and_a_redefinition_replaces_the_old_one() -> None:
    app = test_app()
    notes: list[str] = []

    def define() -> type[Recorder]:  # the notebook cell that defines the class, run twice
        class Cell(Recorder):
            pass

        return Cell

    async with app:
        first = app.service(define()("one", notes))
        await wait_until(lambda: first.state == "running")
        app.service(first)  # the same instance again: nothing changes
        other = app.service(Recorder("other", notes))
        second = app.service(define()("two", notes))
        await wait_until(lambda: second.state == "running" and first.state == "stopped")
        assert app.services == [second, other]


async def test_app_sleep_and_should_stop() -> None:
    app = test_app()
    woke: list[float] = []

    @app.task
    async def sleeper() -> None:
        await app.sleep(0.01)
        woke.append(time.monotonic())

    assert not app.should_stop
    async with app:
        assert not app.should_stop
        await wait_until(lambda: len(woke) == 1)
        pending = asyncio.ensure_future(app.sleep(60))
        await asyncio.sleep(0)
    assert app.should_stop
    await asyncio.wait_for(pending, 5)  # the stop woke it


def test_bad_definitions_are_clear_errors() -> None:
    app = test_app()
    with pytest.raises(ConfigurationError, match="Service subclass or instance"):
        app.service(object)
    with pytest.raises(ConfigurationError, match="async def"):
        faust.Service.task(lambda self: None)  # type: ignore[arg-type, return-value]
    with pytest.raises(ConfigurationError, match="interval > 0"):
        faust.Service.timer(0)
    with pytest.raises(ConfigurationError, match="add_dependency"):
        faust.Service().add_dependency(object())  # type: ignore[type-var]
    with pytest.raises(ConfigurationError, match="unknown keyword"):
        faust.Service(colour="blue")


async def test_a_failed_start_cleans_up_and_releases_the_local_folder(tmp_path: Path, app_id: str) -> None:
    """A service raising on start leaves nothing running: the broker is closed, so the local:// folder's lock
    is free for another App right away (before, it stayed held until app.stop())."""
    broker = f"local://{tmp_path / 'broker'}"
    app = faust.App(app_id, broker=broker)
    numbers = app.topic(f"{app_id}-numbers", value_type=int)
    seen: list[int] = []

    @app.agent(numbers)
    async def collect(stream):
        async for n in stream:
            seen.append(n)

    app.service(Failing)
    with pytest.raises(RuntimeError, match="cannot reach the warehouse"):
        await app.start()
    assert app.state == "init" and app.transport is None and not collect.running

    other = faust.App(app_id, broker=broker)  # the same folder, while the first App object still exists
    async with other:
        await other.topic(f"{app_id}-numbers", value_type=int).send(value=1)
    # and the first App can start once its service no longer fails
    app.services.clear()
    async with app:
        await wait_until(lambda: seen == [1])
