"""The worker command and custom commands, run as a deployment runs them: in their own processes.

``python -m streamnb`` is the ``streamnb`` console script (both call
``streamnb.cli:cli``). The deployed module is ``tests/workers/faust_worker.py``,
configured through the environment (``BROKER_URL``, as in Faust).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import tomllib
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from conftest import kafka_bootstrap

import streamnb
from streamnb import cli
from streamnb.testing import settle, wait_until

REPO = Path(__file__).resolve().parent.parent
WORKERS = REPO / "tests" / "workers"


class CliWorker:
    """``python -m streamnb -A faust_worker worker ...`` in a subprocess."""

    def __init__(self, name: str, folder: Path, env: dict[str, str], *args: str) -> None:
        self.name = name
        self.stderr_path = folder / f"{name}.stderr"
        self.env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{WORKERS}", **env}
        self.args = args
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""

    async def start(self) -> CliWorker:
        with open(self.stderr_path, "wb") as stderr:  # noqa: ASYNC230 - a local file, once
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "streamnb", "-A", "faust_worker", "worker", "-l", "info", "--web-port", "0",
                *self.args, stdout=asyncio.subprocess.DEVNULL, stderr=stderr, env=self.env,
            )
        await wait_until(lambda: "streamnb worker: running" in self.stderr() or self.exited(), 60,
                         what=f"worker {self.name} running")
        assert not self.exited(), self.stderr()
        found = re.search(r"web views at (http://\S+)", self.stderr())
        assert found, self.stderr()
        self.url = found.group(1)
        return self

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def exited(self) -> bool:
        return self.proc is not None and self.proc.returncode is not None

    async def get(self, path: str) -> tuple[int, Any, str]:
        async with aiohttp.ClientSession() as session, session.get(self.url + path) as response:
            return response.status, json.loads(await response.text()), response.headers.get("X-Streamnb-Worker", "")

    async def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        assert self.proc.returncode is not None
        return self.proc.returncode


async def produce(broker: str, topic: str, words: list[str]) -> None:
    app = streamnb.App(f"producer-{uuid.uuid4().hex[:8]}", broker=broker, topic_partitions=4)
    target = app.topic(topic, key_type=str, value_type=str)
    async with app:
        for word in words:
            await target.send(key=word, value=word)


def words(n: int) -> list[str]:
    return [f"w{i % 13}" for i in range(n)]


async def test_worker_runs_serves_and_stops_cleanly_on_sigint(tmp_path: Path) -> None:
    broker = f"local://{tmp_path / 'data'}"
    app_id, topic = f"cli-{uuid.uuid4().hex[:8]}", "words"
    await produce(broker, topic, words(200))  # the worker owns the folder while it runs: produce first
    env = {"BROKER_URL": broker, "WORKER_APP_ID": app_id, "WORKER_TOPIC": topic}
    worker = await CliWorker("solo", tmp_path, env).start()
    try:
        want = dict(Counter(words(200)))

        async def counted() -> bool:
            return (await worker.get("/everywhere/"))[1] == want

        await wait_until(counted, 60, interval=0.1, what="the worker counted every word")
        assert await worker.get("/count/w3/") == (200, {"w3": want["w3"]}, worker.url)
        # A view that raises answers 500 with the message, and the worker keeps serving.
        status, body, _ = await worker.get("/fail/")
        assert (status, body["error"], body["type"]) == (500, "this view always fails", "RuntimeError")
        assert (await worker.get("/owned/"))[:2] == (200, {"partitions": [0, 1, 2, 3], "rebalancing": False})
    finally:
        code = await worker.stop(signal.SIGINT)
    assert code == 0, worker.stderr()
    assert "stopped; what the agents processed is committed" in worker.stderr()
    assert "Traceback" not in worker.stderr().split("this view always fails")[-1]
    # What it processed is durable: the same app reads its tables back and has nothing left to do.
    again = streamnb.App(app_id, broker=broker, topic_partitions=4)
    counts = again.Table("counts", default=int)
    again.topic(topic, key_type=str, value_type=str)
    async with again:
        await settle(again)
        assert dict(counts.data) == want


@pytest.mark.kafka
@pytest.mark.slow
async def test_two_workers_split_the_partitions_and_route_table_requests(tmp_path: Path) -> None:
    broker = f"kafka://{kafka_bootstrap()}"
    app_id, topic = f"cli-{uuid.uuid4().hex[:8]}", f"words-{uuid.uuid4().hex[:8]}"
    env = {"BROKER_URL": broker, "WORKER_APP_ID": app_id, "WORKER_TOPIC": topic}
    a = await CliWorker("a", tmp_path, env).start()
    b = await CliWorker("b", tmp_path, env).start()
    try:
        owned: dict[str, set[int]] = {}

        async def split() -> bool:
            for worker in (a, b):
                _status, body, _ = await worker.get("/owned/")
                owned[worker.name] = set(body["partitions"])
                if body["rebalancing"]:
                    return False
            return bool(owned["a"]) and bool(owned["b"]) and owned["a"] | owned["b"] == {0, 1, 2, 3} \
                and not owned["a"] & owned["b"]

        await wait_until(split, 90, interval=0.2, what="the two workers split the four partitions")
        await produce(broker, topic, words(300))
        want = dict(Counter(words(300)))

        async def everywhere() -> bool:
            return [(await worker.get("/everywhere/"))[1] for worker in (a, b)] == [want, want]

        # The global table: each worker holds every word, not only those of its partitions.
        await wait_until(everywhere, 60, interval=0.2, what="both workers hold the whole global table")
        answered_by: set[str] = set()
        for word, n in want.items():
            status, body, by = await a.get(f"/count/{word}/")
            assert (status, body) == (200, {word: n}), (word, by)
            answered_by.add(by)
        assert answered_by == {a.url, b.url}  # a forwarded the words b owns
    finally:
        codes = await asyncio.gather(a.stop(), b.stop())
    assert codes == [0, 0], a.stderr()[-3000:] + b.stderr()[-3000:]
    for worker in (a, b):
        assert "stopped; what the agents processed is committed" in worker.stderr()


@pytest.mark.kafka
async def test_a_custom_command_runs_from_the_shell(tmp_path: Path) -> None:
    broker = f"kafka://{kafka_bootstrap()}"
    suffix = uuid.uuid4().hex[:8]
    program = (REPO / "tests" / "faust_programs" / "tableofset.py").read_text()
    program = program.replace("'table-of-sets'", f"'table-of-sets-{suffix}'")
    program = program.replace("'people_joining'", f"'people_joining_{suffix}'")
    path = tmp_path / "tableofset.py"
    path.write_text(program)
    env = {**os.environ, "PYTHONPATH": str(REPO), "BROKER_URL": broker}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(path), "joining", "paris", "alice", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    reader = streamnb.App(f"reader-{suffix}", broker=broker)
    joining = reader.topic(f"people_joining_{suffix}", key_type=str, value_type=str)
    seen: list[tuple[str, str]] = []

    @reader.agent(joining)
    async def collect(stream):  # type: ignore[no-untyped-def]
        async for key, value in stream.items():
            seen.append((key, value))

    async with reader:
        await wait_until(lambda: seen == [("paris", "alice")], 30, what="the command's message")


def test_commands_are_listed_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    app = streamnb.App("cli-help", broker="memory://")

    @app.command(cli.argument("location"), cli.option("--times", type=int, default=1))
    async def joining_party(self: cli.AppCommand, location: str, times: int) -> None:
        """Somebody joins."""

    with pytest.raises(SystemExit) as exit_:
        cli.main(app, ["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "worker" in out and "joining-party" in out


async def test_invoke_parses_like_the_shell() -> None:
    app = streamnb.App(f"cli-{uuid.uuid4().hex[:8]}", broker=f"memory://{uuid.uuid4().hex}")
    calls: list[Any] = []

    @app.command(cli.argument("location"), cli.option("--times", type=int, default=1))
    async def joining(self: cli.AppCommand, location: str, times: int) -> None:
        calls.append((self.app is app, location, times))

    @app.command()
    async def ping() -> None:  # no `self`: called without it, as in Faust
        calls.append("ping")

    await joining.invoke("paris", "--times", "3")
    await ping.invoke()
    assert calls == [(True, "paris", 3), "ping"]
    assert app.transport is None  # a command connects for its run only
    with pytest.raises(streamnb.ConfigurationError, match="async def"):
        app.command()(lambda: None)


def test_worker_needs_an_app(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(None, ["worker"])
    assert exit_.value.code == 2
    assert "-A module[:attribute]" in capsys.readouterr().err
    (tmp_path / "two_apps.py").write_text(
        "import streamnb\nfirst = streamnb.App('one', broker='memory://')\nsecond = streamnb.App('two', broker='memory://')\n"
    )
    with pytest.raises(SystemExit) as exit_:
        cli.main(None, ["-A", "two_apps", "worker"])
    assert exit_.value.code == 2
    assert "several Apps (first, second); name one: -A two_apps:first" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        cli.main(None, ["-A", "no_such_module_here", "worker"])
    assert "no module 'no_such_module_here'" in capsys.readouterr().err
    assert cli.find_app("two_apps:second").id == "two"


def test_the_console_script_is_the_cli() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["streamnb"] == "streamnb.cli:cli"
    assert callable(cli.cli)
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(d.startswith("aiohttp") for d in extras["web"])
