"""local:// is exactly-once: kill -9 a worker mid-stream, again and again, tables stay exact."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).parents[1] / "workers" / "kill_worker.py"


def failure(proc: subprocess.Popen[bytes], line: bytes) -> str:
    proc.kill()
    return f"worker printed {line!r}; stderr:\n" + (proc.stderr.read().decode()[-3000:] if proc.stderr else "")


@pytest.mark.slow
@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_sigkill_mid_stream_keeps_tables_exact(tmp_path: Path, store: str) -> None:
    """With rocksdb:// a kill may land between the broker's commit and the store's write: the restore repairs it."""
    rng = random.Random(7)
    folder = tmp_path / "broker"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    kills = 0
    for _ in range(6):
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), str(folder), "run", store],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == b"ready", failure(proc, line)
        for expected in range(1, rng.randint(5, 30) + 1):  # killed after a random number of batches
            line = proc.stdout.readline()
            assert line.split() == [b"batch", b"%d" % expected], failure(proc, line)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        kills += 1
    done = subprocess.run(
        [sys.executable, str(WORKER), str(folder), "finish", store], capture_output=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr.decode()
    result = json.loads(done.stdout.decode().strip().splitlines()[-1])
    assert kills == 6
    assert sum(result["expected"].values()) >= 6 * 5 * 200  # each run sent at least five batches
    assert result["counts"] == result["expected"]
    assert result["windows"] == result["expected_windows"]
