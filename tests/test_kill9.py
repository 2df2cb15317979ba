"""local:// is exactly-once: kill -9 a worker mid-stream, again and again, tables stay exact."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

WORKER = Path(__file__).parent / "workers" / "kill_worker.py"


@pytest.mark.slow
def test_sigkill_mid_stream_keeps_tables_exact(tmp_path: Path) -> None:
    rng = random.Random(7)
    folder = tmp_path / "broker"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    kills = 0
    for _ in range(6):
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), str(folder), "run"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == b"ready", proc.stderr.read() if proc.stderr else line
        time.sleep(rng.uniform(0.2, 1.2))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        kills += 1
    done = subprocess.run(
        [sys.executable, str(WORKER), str(folder), "finish"], capture_output=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr.decode()
    result = json.loads(done.stdout.decode().strip().splitlines()[-1])
    assert kills == 6
    assert sum(result["expected"].values()) > 1000, "the workers produced too little to test anything"
    assert result["counts"] == result["expected"]
    assert result["windows"] == result["expected_windows"]
