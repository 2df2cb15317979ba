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
import socket
import sys
import tomllib
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from conftest import kafka_bootstrap

import streamnb
from streamnb import cli
from streamnb.ranges import ranges
from streamnb.testing import settle, wait_until

REPO = Path(__file__).resolve().parents[2]
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
        if self.proc is None:  # never started (the test failed before)
            return 0
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        assert self.proc.returncode is not None
        return self.proc.returncode


async def run_cli(*args: str, env: dict[str, str] | None = None, script: Path | None = None) -> tuple[int, str, str]:
    """``python -m streamnb ARGS`` (``python SCRIPT ARGS``) in the test's folder: status, stdout, stderr."""
    command = [str(script)] if script is not None else ["-m", "streamnb"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *command, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{WORKERS}", **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ": error: " in line]


def log_lines(stderr: str, pattern: str) -> list[re.Match[str]]:
    """The matches of ``pattern`` in the message part of streamnb's log lines (``... INFO streamnb: <message>``)."""
    messages = (line.partition(" streamnb: ")[2] for line in stderr.splitlines() if " streamnb: " in line)
    return [m for m in map(re.compile(pattern).fullmatch, messages) if m is not None]


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
    worker = await CliWorker("solo", tmp_path, env, "-l", "debug").start()
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
        # A command needs the local:// folder the worker holds: one line saying so, exit status 1.
        code, _out, err = await run_cli("-A", "faust_worker", "produce", "--n", "1", env=env)
        assert code == 1, err
        [line] = error_lines(err)
        assert line.startswith("streamnb produce: error: the local:// folder ") and "Traceback" not in err, err
    finally:
        code = await worker.stop(signal.SIGINT)
    stderr = worker.stderr()
    assert code == 0, stderr
    assert "stopped; what the agents processed is committed" in stderr
    assert "Traceback" not in stderr.split("this view always fails")[-1]
    # What an operator reads: the restores, the assignment, and (at debug) every commit.
    restores = log_lines(stderr, r"table '(\w+)' restored partitions 0-3 from \S+: 0 records in \d+\.\d\d s")
    assert sorted(m.group(1) for m in restores) == ["counts", "everywhere"], stderr
    assert [m.group(0) for m in log_lines(stderr, r"count: assigned .*")] == ["count: assigned words[0-3]"], stderr
    commits = log_lines(stderr, r"count: committed (\d+) events and (\d+) records in \d+\.\d{3} s")
    assert sum(int(m.group(1)) for m in commits) == 200, stderr
    assert all(int(m.group(2)) > 0 for m in commits if int(m.group(1))), stderr  # table rows went with them
    # What it processed is durable: the same app reads its tables back and has nothing left to do.
    again = streamnb.App(app_id, broker=broker, topic_partitions=4)
    counts = again.Table("counts", default=int)
    again.topic(topic, key_type=str, value_type=str)
    async with again:
        await settle(again)
        assert dict(counts.data) == want


def check_rebalance_logs(topic: str, a: str, b: str, owned_a: str, owned_b: str) -> None:
    """What the operator reads once b joined a, which held everything: ``owned_a``/``owned_b`` as ranges."""
    logs = f"--- a ---\n{a}\n--- b ---\n{b}"
    assigned = r"count: assigned (\S+)(?: \((.*)\))?"
    first, *_, last = log_lines(a, assigned)
    assert first.groups() == (f"{topic}[0-3]", None), logs
    assert last.groups() == (f"{topic}[{owned_a}]", f"lost {topic}[{owned_b}]"), logs
    assert log_lines(b, assigned)[-1].group(1) == f"{topic}[{owned_b}]", logs
    done = log_lines(a, r"rebalance done in \d+\.\d\d s: this worker holds partitions (\S+) \((.*)\)")
    assert done and done[-1].groups() == (owned_a, "was 0-3"), logs
    # Each restored its table partitions from the changelog when it got them (b's: waited for; the global
    # table: all of them, at start).
    assert log_lines(a, r"table 'counts' restored partitions 0-3 from \S+-counts-changelog: 0 records in .*"), logs
    assert log_lines(b, r"table 'everywhere' restored partitions 0-3 from \S+: \d+ records in .*"), logs
    # aiokafka's own info lines (unsorted partition sets) are left out at -l info; its warnings stay.
    assert not re.search(r"\] INFO aiokafka", a + b), logs


@pytest.mark.kafka
@pytest.mark.slow
async def test_two_workers_split_the_partitions_and_route_table_requests(tmp_path: Path) -> None:
    broker = f"kafka://{kafka_bootstrap()}"
    app_id, topic = f"cli-{uuid.uuid4().hex[:8]}", f"words-{uuid.uuid4().hex[:8]}"
    env = {"BROKER_URL": broker, "WORKER_APP_ID": app_id, "WORKER_TOPIC": topic}
    a, b = CliWorker("a", tmp_path, env), CliWorker("b", tmp_path, env)
    await a.start()
    try:

        async def a_alone() -> bool:  # then b's arrival is a rebalance for a
            restored = log_lines(a.stderr(), r"table 'counts' restored partitions 0-3 from .*")
            return bool(restored) and (await a.get("/owned/"))[1] == {"partitions": [0, 1, 2, 3], "rebalancing": False}

        await wait_until(a_alone, 60, interval=0.1, what="worker a holds every partition")
        await b.start()
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
        # b's partitions show in /owned/ as soon as they are assigned, before their restore ends.
        restored_b = rf"table 'counts' restored partitions {ranges(owned['b'])} from \S+: 0 records in .*"
        await wait_until(lambda: bool(log_lines(b.stderr(), restored_b)), 30, what="b restored its partitions")
        check_rebalance_logs(topic, a.stderr(), b.stderr(), ranges(owned["a"]), ranges(owned["b"]))
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


async def test_commands_run_and_are_listed_from_streamnb_A_and_from_the_module(tmp_path: Path) -> None:
    broker = f"local://{tmp_path / 'data'}"
    app_id, topic = f"cli-{uuid.uuid4().hex[:8]}", "words"
    env = {"BROKER_URL": broker, "WORKER_APP_ID": app_id, "WORKER_TOPIC": topic}
    script = WORKERS / "faust_worker.py"
    # The same command, both ways: `streamnb -A module CMD` and `python module.py CMD` (app.main()).
    assert (await run_cli("-A", "faust_worker", "produce", "--n", "30", env=env))[:2] == (0, "sent 30 words\n")
    assert (await run_cli("produce", "--n", "20", env=env, script=script))[:2] == (0, "sent 20 words\n")
    # --help lists `check`, `salvage`, `worker` and the app's commands with their help text, wherever -A is given.
    for args, where in [(("-A", "faust_worker", "--help"), None), (("--help", "-A", "faust_worker"), None),
                        (("--app=faust_worker", "--help"), None), (("--help",), script)]:
        code, out, err = await run_cli(*args, env=env, script=where)
        assert code == 0, err
        listed = dict(re.findall(r"^  (\S+)\s+(.*)$", out.split("Commands:")[1], re.MULTILINE))
        assert listed == {"check": "Check a stopped local:// folder for damage.",
                          "salvage": "Copy what is intact of a local:// folder.",
                          "worker": "Run the app's agents, timers, tasks and web views until stopped.",
                          "produce": "Send N words (w0 to w12, keyed by themselves) to the words topic."}, (args, out)
    code, out, _ = await run_cli("-A", "faust_worker", "produce", "--help", env=env)
    assert code == 0 and "--n INTEGER  How many words." in out, out
    # Without -A there are no app commands, and the message says how to get them.
    code, _, err = await run_cli("produce", env=env)
    assert code == 2 and "no such command 'produce'" in err and "-A module[:attribute]" in err, err
    # What both commands sent is in the topic, once.
    reader = streamnb.App(app_id, broker=broker, topic_partitions=4)
    counts = reader.Table("counts", default=int)
    reader.topic(topic, key_type=str, value_type=str)

    @reader.agent(topic)
    async def count(stream):  # type: ignore[no-untyped-def]
        async for word in stream:
            counts[word] += 1

    async with reader:
        await settle(reader)
        assert dict(counts.data) == dict(Counter(words(30)) + Counter(words(20)))


BROKEN_MODULES = {
    "a setting's name": (
        "import streamnb\napp = streamnb.App('broken', brokr='memory://')\n",
        r"broken\.py:2: unknown setting 'brokr' for App\('broken'\); did you mean 'broker'\?.*",
    ),
    "a missing dependency": (
        "import streamnb\nimport no_such_dependency_here\napp = streamnb.App('broken', broker='memory://')\n",
        r"broken\.py:2: broken imports 'no_such_dependency_here', which is not installed here: install it .*",
    ),
    "an exception at import": (
        "import streamnb\napp = streamnb.App('broken', broker='memory://')\nrate = 1 / 0\n",
        r"broken\.py:3: importing broken raised ZeroDivisionError: division by zero; fix the module "
        r"\(--traceback prints the full traceback\)",
    ),
    "a syntax error": (
        "import streamnb\napp = streamnb.App('broken', broker='memory://'\n",
        r"broken\.py:2: '\(' was never closed; fix the module",
    ),
}


@pytest.mark.parametrize("what", BROKEN_MODULES)
async def test_a_module_that_fails_to_import_is_one_line_and_status_1(what: str, tmp_path: Path) -> None:
    source, message = BROKEN_MODULES[what]
    (tmp_path / "broken.py").write_text(source)
    for args, who in [(("worker", "-l", "info"), "streamnb worker"), (("--help",), "streamnb"),
                      (("produce",), "streamnb produce")]:
        code, out, err = await run_cli("-A", "broken", *args)
        assert (code, out) == (1, ""), err
        assert re.fullmatch(f"{who}: error: {message}\n", err), err  # the only line: no traceback
    # --traceback (before or after the command) prints the full traceback, then the same line.
    for args in (("--traceback", "-A", "broken", "worker"), ("-A", "broken", "worker", "--traceback")):
        code, _, err = await run_cli(*args)
        lines = err.splitlines()
        assert code == 1 and lines[0] == "Traceback (most recent call last):", err
        assert re.fullmatch(f"streamnb worker: error: {message}", lines[-1]), err


def listening_socket() -> socket.socket:
    """A loopback socket holding a port, as another worker's web server would."""
    held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    held.bind(("127.0.0.1", 0))
    held.listen()
    return held


async def test_a_taken_web_port_stops_the_worker_before_its_agents_join(tmp_path: Path) -> None:
    broker = f"local://{tmp_path / 'data'}"
    env = {"BROKER_URL": broker, "WORKER_APP_ID": f"cli-{uuid.uuid4().hex[:8]}", "WORKER_TOPIC": "words"}
    with listening_socket() as held:
        port = held.getsockname()[1]
        code, _, err = await run_cli("-A", "faust_worker", "worker", "-l", "info", "--web-port", str(port), env=env)
    assert code == 1, err
    [line] = error_lines(err)
    assert line.startswith(f"streamnb worker: error: the web server cannot listen on 127.0.0.1:{port} "), err
    assert "--web-port N" in line and "Traceback" not in err, err
    # Checked before anything joined a consumer group: no agent got partitions, no table was restored.
    assert not log_lines(err, r".*: assigned .*") and not log_lines(err, r"table .* restored .*"), err
    assert "streamnb worker: running" not in err, err


@pytest.mark.kafka
async def test_a_taken_web_port_on_kafka_never_joins_the_consumer_group(tmp_path: Path) -> None:
    bootstrap = kafka_bootstrap()
    app_id, topic = f"cli-{uuid.uuid4().hex[:8]}", f"words-{uuid.uuid4().hex[:8]}"
    env = {"BROKER_URL": f"kafka://{bootstrap}", "WORKER_APP_ID": app_id, "WORKER_TOPIC": topic}
    with listening_socket() as held:
        port = held.getsockname()[1]
        code, _, err = await run_cli("-A", "faust_worker", "worker", "-l", "info", "--web-port", str(port), env=env)
    assert code == 1, err
    [line] = error_lines(err)
    assert line.startswith(f"streamnb worker: error: the web server cannot listen on 127.0.0.1:{port} "), err
    assert not log_lines(err, r".*: assigned .*"), err
    # The group coordinator never saw a member: a group that was joined (even if left) is "Empty", not "Dead".
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([f"{app_id}-count"])
        [(_error, group, state, _protocol_type, _protocol, members, *_)] = response.groups
    finally:
        await admin.close()
    assert (group, state, members) == (f"{app_id}-count", "Dead", []), response
