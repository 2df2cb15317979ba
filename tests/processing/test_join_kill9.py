"""A stream–stream join on local:// killed with SIGKILL again and again: its results stay exact."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).parents[1] / "workers" / "join_kill_worker.py"


@pytest.mark.slow
def test_sigkill_mid_join_keeps_results_exact(tmp_path: Path) -> None:
    rng = random.Random(11)
    folder = tmp_path / "broker"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    prepared = subprocess.run([sys.executable, str(WORKER), str(folder), "prepare"], capture_output=True, env=env,
                              timeout=120)
    assert prepared.returncode == 0, prepared.stderr.decode()
    kills = 0
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, str(WORKER), str(folder), "run"],
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
    done = subprocess.run([sys.executable, str(WORKER), str(folder), "finish"], capture_output=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    result = json.loads(done.stdout.decode().strip().splitlines()[-1])
    assert kills == 5
    assert len(result["want"]) > 300
    assert result["got"] == result["want"]  # nothing lost, nothing twice
