"""App lifecycle: start/stop, re-created apps, app.run() in a script."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import streamnb as faust
from streamnb.testing import settle, test_app, wait_until
from streamnb.transport.memory import MemoryTransport


async def test_lifecycle_states_and_idempotent_start() -> None:
    app = test_app()
    assert app.state == "init"
    await app.start()
    await app.start()
    assert app.state == "running"
    await app.stop()
    assert app.state == "stopped"
    await app.stop()
    async with app:
        assert app.state == "running"
    assert app.state == "stopped"


async def test_recreating_the_app_replaces_the_running_one(tmp_path: Path) -> None:
    url = f"local://{tmp_path / 'b'}"
    seen: list[int] = []

    def cell() -> tuple[faust.App, faust.Topic, faust.Agent]:
        app = faust.App("same", broker=url, topic_partitions=1)
        topic = app.topic("n", value_type=int)

        @app.agent(topic)
        async def collect(stream):
            async for n in stream:
                seen.append(n)

        return app, topic, collect

    first, topic, _ = cell()
    await first.start()
    await topic.send(value=1)
    await wait_until(lambda: seen == [1])
    second, topic, collect = cell()  # the notebook cell, run again
    await second.start()  # waits for the first app to stop, then opens the same folder
    assert first.state == "stopped"
    await topic.send(value=2)
    await settle(second)
    assert seen == [1, 2]
    await second.stop()


def test_app_run_blocks_until_sigterm(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import streamnb as faust

            app = faust.App("script", broker="local://{tmp_path / 'b'}", topic_partitions=1)

            @app.task
            async def hello():
                print("running", flush=True)

            app.run()
            print("stopped cleanly", flush=True)
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    # run() installs its signal handlers before it starts the app, so before the task prints.
    assert proc.stdout.readline().strip() == "running"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "stopped cleanly" in out


async def test_failing_task_and_timer_are_reported() -> None:
    app = test_app()

    @app.task
    async def broken():
        raise ValueError("boom")

    runs: list[int] = []

    @app.timer(0.02)
    async def flaky():
        runs.append(1)
        if len(runs) == 1:
            raise ValueError("first run fails")

    async with app:
        await wait_until(lambda: app.tasks["broken"].last_error is not None and len(runs) >= 3)
        assert "boom" in (app.tasks["broken"].last_traceback or "")
        assert isinstance(app.timers["flaky"].last_error, ValueError)


def test_broker_options_that_do_not_apply_fail_when_the_app_is_made(tmp_path: Path) -> None:
    for broker in ("memory://", f"local://{tmp_path / 'data'}"):
        with pytest.raises(faust.ConfigurationError, match=r"security_protocol=\.\.\. applies only to kafka://"):
            faust.App("x", broker=broker, security_protocol="SSL")
        with pytest.raises(faust.ConfigurationError, match=r"session_timeout_ms=\.\.\. applies only to kafka://"):
            faust.App("x", broker=broker, session_timeout_ms=5)
    assert not (tmp_path / "data").exists()  # checked without opening the folder
    # Security options left at None are not options at all.
    assert faust.App("x", broker="memory://", security_protocol=None, ssl_context=None).state == "init"


def test_processing_guarantee_must_be_one_the_broker_gives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(faust.ConfigurationError, match=r"processing_guarantee must be one of"):
        faust.App("x", broker="memory://", processing_guarantee="exactly-once")
    for broker in ("memory://", f"local://{tmp_path / 'data'}", "kafka://127.0.0.1:9092"):
        assert faust.App("x", broker=broker, processing_guarantee="at_least_once").state == "init"
        assert faust.App("x", broker=broker, processing_guarantee="exactly_once").processing_guarantee == "exactly_once"
    # A backend that cannot give it is refused before anything connects.
    monkeypatch.setattr(MemoryTransport, "guarantees", frozenset({"at_least_once"}))
    with pytest.raises(faust.ConfigurationError, match=r"'exactly_once' is not available on memory://.*at_least_once"):
        faust.App("x", broker="memory://", processing_guarantee="exactly_once")


def test_commit_interval_defaults_to_the_guarantee() -> None:
    assert faust.App("x", broker="memory://").commit_interval == 1.0
    assert faust.App("x", broker="memory://", processing_guarantee="exactly_once").commit_interval == 0.1
    assert faust.App("x", broker="memory://", commit_interval=0.5).commit_interval == 0.5
    with pytest.raises(faust.ConfigurationError, match="commit_interval must be a number of seconds"):
        faust.App("x", broker="memory://", commit_interval=-1)
