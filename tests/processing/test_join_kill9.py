"""A stream–stream join on local:// killed with SIGKILL again and again: its results stay exact."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import kafka_bootstrap

WORKER = Path(__file__).parents[1] / "workers" / "join_kill_worker.py"


def kill_runs(where: str, extra: list[str], runs: int, seed: int) -> dict[str, Any]:
    """Prepare the input, start the worker ``runs`` times and SIGKILL it mid-join, then finish; its JSON."""
    rng = random.Random(seed)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    prepared = subprocess.run([sys.executable, str(WORKER), where, "prepare", *extra], capture_output=True,
                              env=env, timeout=120)
    assert prepared.returncode == 0, prepared.stderr.decode()
    kills = 0
    for _ in range(runs):
        proc = subprocess.Popen([sys.executable, str(WORKER), where, "run", *extra],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        assert proc.stdout is not None
        for _ in range(rng.randint(2, 12)):  # killed after a random number of results
            line = proc.stdout.readline()
            if not line.startswith(b"progress"):
                proc.kill()
                pytest.fail(f"worker printed {line!r}; stderr:\n{proc.stderr.read().decode()[-3000:]}")  # type: ignore[union-attr]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        kills += 1
    done = subprocess.run([sys.executable, str(WORKER), where, "finish", *extra], capture_output=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    assert kills == runs
    result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    assert len(result["want"]) > 300
    return result


@pytest.mark.slow
def test_sigkill_mid_join_keeps_results_exact(tmp_path: Path) -> None:
    result = kill_runs(str(tmp_path / "broker"), [], 5, 11)
    assert result["got"] == result["want"]  # nothing lost, nothing twice


@pytest.mark.slow
@pytest.mark.kafka
@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_sigkill_mid_join_on_kafka(app_id: str, guarantee: str) -> None:
    result = kill_runs(f"kafka://{kafka_bootstrap()}", [app_id, guarantee], 3, 12)
    got = Counter(json.dumps(r) for r in result["got"])
    want = Counter(json.dumps(r) for r in result["want"])
    assert not want - got  # nothing lost
    if guarantee == "exactly_once":
        assert got == want  # nothing twice either
