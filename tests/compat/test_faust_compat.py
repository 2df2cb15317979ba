"""Faust's example programs run on streamnb with only the import changed, on every broker.

The programs live in ``tests/faust_programs/`` (written anew from what
faust-streaming's examples do, with the same Faust API calls). Each test
loads one as a module with the broker URL replaced (``BROKER_URL`` for the
programs that name none) and, because the suite shares one Kafka, with its
app id and topic names given a unique suffix; then it starts the app in the
test's event loop and checks what the program computes: counts, sets,
windows that close, a web request answered.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

import streamnb
from streamnb.testing import settle, wait_until
from streamnb.transport.base import TP

PROGRAMS = Path(__file__).parents[1] / "faust_programs"

# The names each program gives its app and topics (made unique per test run).
NAMES = {
    "hello_world": ["hello-world", "greetings"],
    "leader": ["leader-example"],
    "word_count": ["word-counts", "posts"],
    "windowed_aggregation": ["windowed-agg", "raw-event", "agg-event"],
    "hopping": ["windowing", "hopping_topic"],
    "tumbling": ["windowing", "tumbling_topic"],
    "hopping_2": ["windowed-hopping", "raw-event"],
    "tableofset": ["table-of-sets", "people_joining", "people_leaving"],
    "withdrawals": ["faust-withdrawals", "withdrawals"],
    "tabletest": ["tabletest", "countstopic"],
    "bound_agent": ["bound_agent"],
    "crontab": ["crontab-example", "readings"],
    "rpc": ["rpc-example", "rpc-square", "rpc-scale"],
    "service": ["service-example"],
    "isolated_partitions": ["isolated-partitions-example", "withdrawals"],
}


def load(name: str, broker: str, folder: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Import program ``name`` with ``broker`` as its broker and unique names."""
    text = (PROGRAMS / f"{name}.py").read_text()
    assert "import streamnb as faust" in text and "import faust" not in text.replace("import streamnb as faust", "")
    suffix = uuid.uuid4().hex[:8]
    for original in NAMES[name]:
        text = re.sub(rf"(['\"]){re.escape(original)}\1", rf"\g<1>{original}-{suffix}\1", text)
    text = text.replace("'kafka://localhost:9092'", repr(broker)).replace("'aiokafka://'", repr(broker))
    monkeypatch.setenv("BROKER_URL", broker)
    path = folder / f"{name}_{suffix}.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    monkeypatch.setattr(sys, "modules", sys.modules)  # restored after the test
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def program(broker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    loaded: list[ModuleType] = []

    def make(name: str) -> ModuleType:
        module = load(name, broker, tmp_path, monkeypatch)
        loaded.append(module)
        return module

    yield make
    for module in loaded:
        sys.modules.pop(module.__name__, None)


async def get_json(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, json.loads(await response.text())


async def read_all(app: streamnb.App, topic: streamnb.Topic[Any, Any]) -> list[Any]:
    """Every value of ``topic``, decoded (what the program sent there)."""
    transport = app.require_transport()
    out = []
    for p in range(topic.partition_count):
        tp = TP(topic.name, p)
        end = (await transport.end_offsets([tp]))[tp]
        start = (await transport.beginning_offsets([tp]))[tp]
        while start < end:
            msgs = await transport.read(tp, start, end)
            if not msgs:  # the rest holds no message (transaction markers, exactly-once)
                break
            out.extend(topic.decode_value(m.value) for m in msgs)
            start = msgs[-1].offset + 1
    return out


async def test_hello_world(program: Any, capsys: pytest.CaptureFixture[str]) -> None:
    hello = program("hello_world")
    async with hello.app:
        await wait_until(lambda: hello.print_greetings.events_processed >= 10, 30, what="ten greetings printed")
    printed = capsys.readouterr().out.splitlines()
    assert {f"hello {n}" for n in range(10)} <= set(printed)


async def test_leader(program: Any, capsys: pytest.CaptureFixture[str]) -> None:
    leader = program("leader")
    async with leader.app:
        await wait_until(lambda: leader.say.events_processed >= 3, 30, what="three greetings from the leader")
        assert leader.app.is_leader()
    printed = capsys.readouterr().out
    assert printed.count("PUBLISHING ON LEADER!") >= 3
    assert re.search(r"0\.\d+", printed), printed  # the raw values the agent printed


async def test_word_count(program: Any, capsys: pytest.CaptureFixture[str]) -> None:
    wc = program("word_count")
    wc.app.conf.web_enabled = True  # a test is no worker: ask for the web server
    wc.app.conf.web_port = 0
    async with wc.app:
        await wait_until(lambda: all(wc.word_counts[w] == wc.COPIES for w in wc.WORDS), 30, what="words counted")
        status, body = await get_json(f"{wc.app.web.url}/count/bee/")
        assert (status, body) == (200, {"bee": wc.COPIES})
        status, body = await get_json(f"{wc.app.web.url}/last/cat/")
        assert (status, body) == (200, {"cat": {w: wc.COPIES for w in wc.WORDS}})
        await wait_until(lambda: "$$ TALLY $$" in capsys.readouterr().out, 10, what="the task's tally")
    assert wc.app.id == "word-counts-" + wc.app.id.rsplit("-", 1)[1]  # version=1 keeps the id


async def _windows(module: ModuleType, table: Any, agent: Any, per_event: int) -> None:
    async with module.app:
        await wait_until(lambda: agent.events_processed >= 15, 30, what="fifteen events counted")
    # Every event was counted once in each window holding it; none expired (expires=10 min).
    counted = sum(value for (_key, _window), value in table.items())
    assert counted == per_event * agent.events_processed
    newest = max(window for (_key, window), _value in table.items())
    assert newest[1] - newest[0] == table.window.size


async def test_windowing_hopping(program: Any, capsys: pytest.CaptureFixture[str]) -> None:
    hopping = program("hopping")
    await _windows(hopping, hopping.hopping_table, hopping.print_windowed_events, per_event=2)
    assert "current(): " in capsys.readouterr().out


async def test_windowing_tumbling(program: Any) -> None:
    tumbling = program("tumbling")
    await _windows(tumbling, tumbling.tumbling_table, tumbling.print_windowed_events, per_event=1)


async def test_windowed_aggregation(program: Any, capsys: pytest.CaptureFixture[str]) -> None:
    agg = program("windowed_aggregation")
    async with agg.app:
        sent: list[Any] = []

        async def two_windows_closed() -> bool:
            sent[:] = await read_all(agg.app, agg.sink)
            return len(sent) >= 2

        await wait_until(two_windows_closed, 30, interval=0.1, what="two windows closed")
    assert all(isinstance(a, agg.AggModel) and a.count > 0 and 0 <= a.mean < 1 for a in sent), sent
    starts = [float(a.date.timestamp() if hasattr(a.date, "timestamp") else a.date) for a in sent]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)  # one record per window, in order
    assert "processing window:" in capsys.readouterr().out


async def test_windowing_hopping_2(program: Any, capsys: pytest.CaptureFixture[str]) -> None:
    hopping = program("hopping_2")
    printed: list[str] = []

    def closed() -> list[tuple[float, int]]:
        printed.extend(capsys.readouterr().out.splitlines())
        found = [re.match(r"processing window: (\d+) events, timestamp (\S+)", line) for line in printed]
        return [(float(m.group(2)), int(m.group(1))) for m in found if m]

    async with hopping.app:
        await wait_until(lambda: len(closed()) >= 3, 30, what="three hopping windows closed")
    windows = closed()
    assert all(n > 0 for _start, n in windows), windows
    starts = [start for start, _n in windows]
    assert starts == sorted(set(starts)) and all(start % hopping.STEP == 0 for start in starts)


async def test_tableofset(program: Any, broker: str, capsys: pytest.CaptureFixture[str]) -> None:
    sets = program("tableofset")
    assert sets.app.id.startswith("table-of-sets-") and sets.app.id.endswith("-v2")  # version=2
    async with sets.app:
        for name in ("alice", "bob", "carol"):
            await sets.joining.invoke("paris", name)
        await sets.joining.invoke("oslo", "dave")
        await wait_until(lambda: sets.table["paris"] == {"alice", "bob", "carol"}, 30, what="three in paris")
        await sets.leaving.invoke("paris", "bob")
        await sets.leaving.invoke("oslo", "dave")
        await wait_until(lambda: sets.table["paris"] == {"alice", "carol"} and "oslo" not in sets.table, 30,
                         what="bob and dave left")
        await settle(sets.app)
        records = await read_all(sets.app, sets.table.changelog)
        printed: list[str] = []

        def dumped() -> bool:  # the timer's as_ansitable() of the table
            printed.append(capsys.readouterr().out)
            text = "".join(printed)
            return "TABLE NOW:" in text and bool(re.search(r"\| paris +\| \{'(alice|carol)', '(alice|carol)'\}", text))

        await wait_until(dumped, 10, what="the table dumped by the timer")
    assert {"members": ["alice", "carol"], "added": [], "removed": ["bob"]} in records
    if not broker.startswith("memory://"):  # the sets come back from the changelog
        again = streamnb.App(sets.app.conf.name, broker=broker, version=2, topic_partitions=4)
        table = again.SetTable("people", value_type=str)
        async with again:
            await table.recover()
            assert dict(table.data) == {"paris": {"alice", "carol"}}


async def test_withdrawals(program: Any) -> None:
    w = program("withdrawals")
    async with w.app:
        await w.produce.invoke("--max-latency", "0", "--max-messages", "120")
        await settle(w.app)
        sent = await read_all(w.app, w.withdrawals_topic)
        totals: dict[str, float] = {}  # (read while the app runs: its rocksdb:// stores close when it stops)
        for (user, _window), amount in w.user_to_total.items():
            totals[user] = totals.get(user, 0) + amount
    assert len(sent) == 120 and all(isinstance(x.date, type(sent[0].date)) for x in sent)
    per_user: dict[str, float] = {}
    for x in sent:
        per_user[x.user] = per_user.get(x.user, 0) + x.amount
    assert totals.keys() == per_user.keys()
    assert all(abs(totals[u] - per_user[u]) < 1e-6 for u in per_user)
    assert w.app.id.endswith("-v5")


async def test_tabletest(program: Any) -> None:
    t = program("tabletest")
    t.app.conf.web_enabled = True
    t.app.conf.web_port = 0
    async with t.app:
        await t.produce.invoke()
        await wait_until(lambda: all(t.counts[str(p)] == t.EXPECTED_SUM for p in range(4)), 30,
                         what="every partition summed")
        status, body = await get_json(f"{t.app.web.url}/count/2/")
        assert (status, body) == (200, {"2": t.EXPECTED_SUM})
        await t.add_single_changelog.invoke()
    assert t.out_of_order == []
    assert {p: t.seen[p] for p in t.seen} == {str(p): t.ITERATIONS - 1 for p in range(4)}


async def test_bound_agent(program: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    bound = program("bound_agent")
    monkeypatch.setattr(bound.app, "main", lambda *args: None)  # main() ends with app.main(): not here
    bound.main()
    app = bound.app
    stage2 = app.agents["stage2-agent"]
    async with app:
        await wait_until(lambda: stage2.events_processed >= 8, 30, what="actions through both stages")
        await settle(app)
        channels = [t for name, t in app.topics.items() if "-channel-" in name]
        actions, passed, dead = [await read_all(app, c) for c in channels]
    assert len(actions) >= 12 and len(passed) >= 8
    assert all(int(a.device_id) % 3 != 0 for a in passed)
    assert {(d.stage, int(d.record.device_id) % 3) for d in dead} == {("stage1", 0), ("stage2", 1)}


async def test_crontab(program: Any, capsys: pytest.CaptureFixture[str]) -> None:
    cron = program("crontab")
    async with cron.app:
        await wait_until(lambda: cron.print_readings.events_processed >= 3, 30, what="three readings from the crontab")
        assert cron.app.is_leader()
    printed = capsys.readouterr().out
    assert printed.count("-- sent every second, on the leader --") >= 3
    assert re.search(r"reading: [01]\.\d+", printed), printed
    # The daily jobs are due at 19:00 in New York and 20:00 UTC, within a day.
    now = time.time()
    eastern = datetime.fromtimestamp(cron.app.timers["publish_at_7pm_eastern"].next_after(now), ZoneInfo("US/Eastern"))
    in_utc = datetime.fromtimestamp(cron.app.timers["publish_at_8pm_utc"].next_after(now), UTC)
    assert (eastern.hour, eastern.minute, in_utc.hour, in_utc.minute) == (19, 0, 20, 0)
    assert 0 < eastern.timestamp() - now <= 86400 and 0 < in_utc.timestamp() - now <= 86400


async def test_rpc(program: Any, capsys: pytest.CaptureFixture[str]) -> None:
    rpc = program("rpc")
    caller = rpc.app.timers["call_the_agents"]
    async with rpc.app:
        await wait_until(lambda: caller.runs >= 2, 60, what="two rounds of calls answered")
        assert await rpc.square.ask(3.0) == 9.0
        assert await rpc.scale.join([1.0, 2.0]) == [100.0, 200.0]
    assert caller.last_error is None
    printed = capsys.readouterr().out
    assert "squares: [2.25, 4.0, 9.0, 20.25]" in printed, printed
    assert "scaled: [25.0, 50.0]" in printed and "keyed: [100.0, 200.0]" in printed
    assert sorted(re.findall(r"reply: (\S+)", printed))[:2] == ["25.0", "25.0"]
    assert set(re.findall(r"reply: (\S+)", printed)) == {"25.0", "36.0"}
    assert "asked: 144.0" in printed


async def test_service(program: Any, capsys: pytest.CaptureFixture[str]) -> None:
    svc = program("service")
    (background,) = svc.app.services
    async with svc.app:
        await wait_until(lambda: background.wakeups >= 3 and background.ticks >= 3, 30, what="the service's task")
        assert background.state == "running"
    assert background.state == "stopped"
    printed = capsys.readouterr().out
    lines = [line for line in printed.splitlines() if line.startswith("BACKGROUND SERVICE")]
    assert lines == ["BACKGROUND SERVICE STARTING", "BACKGROUND SERVICE RUNNING", "BACKGROUND SERVICE STOPPING"]
    assert printed.count("BACKGROUND TASK WAKE UP") == background.wakeups


async def test_isolated_partitions(program: Any) -> None:
    iso = program("isolated_partitions")
    agent = iso.track_withdrawals
    async with iso.app:
        users = {f"user-{p}" for p in range(4)}
        await wait_until(lambda: agent.dead_lettered == 1 and {u for _, u in iso.handled} >= users,
                         60, what="every partition handled, the bad withdrawal dead-lettered")
    assert agent.crashes == agent.max_retries  # only partition 1's instance crashed
    settled = [(p, u) for p, u in iso.handled if len(p) == 1]
    assert settled and all(p == [int(u[-1])] for p, u in settled)


def test_every_program_is_tested() -> None:
    tested = {name[len("test_"):].replace("windowing_", "") for name in globals() if name.startswith("test_")}
    assert set(NAMES) <= tested, set(NAMES) - tested
    assert {p.stem for p in PROGRAMS.glob("*.py")} == set(NAMES)


def test_programs_change_only_the_import() -> None:
    for path in PROGRAMS.glob("*.py"):
        text = path.read_text()
        imports = re.findall(r"^(?:import|from) (\S+)", text, re.MULTILINE)
        assert "faust" not in imports and not any(i.startswith("faust.") for i in imports), path
        assert "import streamnb as faust" in text, path
