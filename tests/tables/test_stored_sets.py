"""Set tables on ``rocksdb://``: sets in the stores behind a bounded cache, restarts that load nothing, kill -9."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import streamnb as faust
from streamnb.tables.state.stored_sets import StoredSetState
from streamnb.testing import settle, wait_until

TABLE_STORES = ["rocksdb://"]  # (the apps name their stores)

WORKER = Path(__file__).parents[1] / "workers" / "set_history_worker.py"
ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}


class People:
    """An app keeping who is where: ``{"add": name}`` / ``{"discard": name}`` / ``{"clear": True}`` per location."""

    def __init__(self, app_id: str, broker: str, datadir: Path, *, store: str = "rocksdb://") -> None:
        self.app = app = faust.App(app_id, broker=broker, topic_partitions=2, datadir=str(datadir), store=store)
        self.ops = app.topic(f"{app_id}-ops", key_type=str, value_type=dict)
        self.people = app.SetTable("people", value_type=str)

        @app.agent(self.ops)
        async def apply(stream: Any) -> None:
            async for location, op in stream.items():
                where = self.people[location]
                if "add" in op:
                    where.add(op["add"])
                elif "discard" in op:
                    where.discard(op["discard"])
                else:
                    where.clear()

    async def send(self, ops: list[tuple[str, dict[str, Any]]]) -> None:
        for location, op in ops:
            await self.ops.send(key=location, value=op)
        await settle(self.app)

    def reads(self, keys: list[str]) -> dict[str, Any]:
        """Everything a user reads of the table (sorted, so two stores compare)."""
        people = self.people
        df = people.as_dataframe()
        return {
            "items": sorted((k, sorted(v)) for k, v in people.items()),
            "data": sorted((k, sorted(v)) for k, v in people.data.items()),
            "len": len(people),
            "frame": sorted((k, sorted(v)) for k, v in zip(df["key"], df["value"], strict=True)),
            "get": {k: people.get(k) for k in keys},
            "in": {k: k in people for k in keys},
            "sets": {k: (sorted(people[k]), len(people[k]), "p0" in people[k]) for k in keys},
        }

    async def restored(self) -> None:
        await wait_until(lambda: self.people.recovered_partitions == {0, 1}, 30.0)
        await settle(self.app)


def state_of(people: Any) -> StoredSetState:
    state = people.state
    assert isinstance(state, StoredSetState)
    return state


def stored_rows(state: StoredSetState) -> int:
    return sum(1 for store in state.stores.values() for _ in store.rows())


def ops_for(keys: int) -> list[tuple[str, dict[str, Any]]]:
    """Every location gets three people, then one leaves; every fifth location is emptied."""
    ops: list[tuple[str, dict[str, Any]]] = []
    for i in range(keys):
        ops += [(f"l{i}", {"add": f"p{j}"}) for j in range(3)]
        ops.append((f"l{i}", {"discard": "p1"}))
        if i % 5 == 0:
            ops.append((f"l{i}", {"clear": True}))
    return ops


async def test_sets_live_in_the_store_and_memory_holds_a_bounded_cache(
    app_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(StoredSetState, "cache_size", 20)
    memory = People(f"{app_id}m", f"local://{tmp_path / 'm'}", tmp_path / "m-data", store="memory://")
    stored = People(app_id, f"local://{tmp_path / 's'}", tmp_path / "s-data")
    keys = ["l0", "l1", "l7", "l99", "nowhere"]
    async with memory.app, stored.app:
        for app in (memory, stored):
            await app.send(ops_for(100))
        state = state_of(stored.people)
        assert len(state.cache) <= 20 and not state.pending  # (the commit landed: nothing pending)
        assert stored_rows(state) == 80  # every set on disk, the 20 emptied ones deleted
        assert stored.reads(keys) == memory.reads(keys)
        assert stored.people["l7"] == {"p0", "p2"} and "l0" not in stored.people and stored.people["l0"] == set()
        assert "rows~" in repr(stored.people)  # (an estimate: no scan)
        # Sets read from the store change as cached ones do (the set on disk is not changed in place).
        state.cache.clear()
        for app in (memory, stored):
            await app.send([("l7", {"add": "p9"}), ("l0", {"add": "p9"}), ("l3", {"clear": True})])
        assert stored.reads(keys) == memory.reads(keys) and stored.people["l7"] == {"p0", "p2", "p9"}
        assert stored_rows(state) == 80 and len(state.cache) <= 20


async def test_a_restart_loads_no_set_and_reads_them_from_the_store(
    app_id: str, durable_broker: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    datadir = tmp_path / "data"
    first = People(app_id, durable_broker, datadir)
    keys = ["l0", "l1", "l2", "l29", "nowhere"]
    async with first.app:
        await first.send(ops_for(30))
        expected = first.reads(keys)
    assert expected["len"] == 24
    with caplog.at_level(logging.INFO, logger="streamnb"):
        again = People(app_id, durable_broker, datadir)
        async with again.app:
            await again.restored()
            state = state_of(again.people)
            assert not state.cache and not state.pending  # nothing loaded ...
            assert again.reads(keys) == expected  # ... yet every read is right
            await again.send([("l1", {"add": "p7"}), ("l0", {"add": "p7"}), ("l2", {"discard": "p0"})])
            expected = again.reads(keys)
    assert expected["sets"]["l1"][0] == ["p0", "p2", "p7"] and expected["get"]["l0"] == {"p7"}
    lines = [r.getMessage() for r in caplog.records if "table 'people' restored" in r.getMessage()]
    assert lines and all(re.search(r": 0 records in", line) for line in lines), lines  # no tail, no rows loaded
    last = People(app_id, durable_broker, datadir)
    async with last.app:
        await last.restored()
        assert last.reads(keys) == expected


async def test_a_set_table_keeps_its_sets_in_memory_on_memory_and_global_tables_hold_them_whole(
    app_id: str, tmp_path: Path
) -> None:
    app = faust.App(app_id, broker=f"local://{tmp_path / 'b'}", datadir=str(tmp_path / "d"), store="rocksdb://")
    assert isinstance(app.SetTable("stored", value_type=str).state, StoredSetState)
    assert not isinstance(app.SetTable("kept", value_type=str, store="memory://").state, StoredSetState)
    assert not isinstance(app.SetGlobalTable("everywhere", value_type=str, store="rocksdb://").state, StoredSetState)


def run_and_kill(broker: str, app_id: str, datadir: Path, kills: int, seed: int) -> dict[str, Any]:
    import random

    rng = random.Random(seed)
    for _ in range(kills):
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), broker, app_id, str(datadir), "run"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == b"ready", proc.stderr.read() if proc.stderr else line
        time.sleep(rng.uniform(0.3, 1.5))  # the moment of the kill, at random
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
    done = subprocess.run(
        [sys.executable, str(WORKER), broker, app_id, str(datadir), "finish"],
        capture_output=True, env=ENV, timeout=400,
    )
    assert done.returncode == 0, done.stderr.decode()[-4000:]
    result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return result


@pytest.mark.slow
def test_local_kill9_keeps_sets_and_history_exact(tmp_path: Path) -> None:
    """Sets and a ``history=True`` table on ``rocksdb://``, killed at random moments: exact after the restarts."""
    result = run_and_kill(f"local://{tmp_path / 'broker'}", "sethistory", tmp_path / "data", kills=4, seed=11)
    ours, expected = result["ours"], result["expected"]
    assert result["events"] > 500, "too little input to test anything"
    assert ours["sets"] == expected["sets"] and len(expected["sets"]) == 6
    assert ours["latest"] == expected["latest"]
    assert ours["history"] == expected["history"]  # every change once, in order: nothing lost, nothing twice
    # The last start read the changelogs only from where the stores stopped, and loaded no row from them
    # (the history=True plain table's rows live in its stores too).
    assert all(loaded == 0 for _read, loaded in result["restores"].values()), result["restores"]
    assert set(result["restores"]) == {"members", "latest"}, result["restores"]
