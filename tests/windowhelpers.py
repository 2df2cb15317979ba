"""Helpers of the stored windowed-table tests: the same restarts on both stores, and kill -9 runs of a worker."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

WORKER = Path(__file__).parent / "workers" / "window_kill_worker.py"
ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}


async def same_on_both_stores(
    make: Callable[[str, Path, str], Any], table: Callable[[Any], Any], rounds: list[list[tuple[str, float]]],
    tmp_path: Path,
) -> None:
    """Each round of events in a new run of the app ``make(broker, datadir, store)`` makes, on both stores:
    the same windows, late counts and finals after each (``table(run)``: its windowed table)."""
    seen: dict[str, list[Any]] = {"memory://": [], "rocksdb://": []}
    for store in seen:
        broker, datadir = f"local://{tmp_path / store[:3] / 'broker'}", tmp_path / store[:3] / "data"
        closed: list[Any] = []
        for events in rounds:
            run = make(broker, datadir, store)
            run.closed = closed
            async with run.app:
                await run.restored()
                await run.send(events)
                seen[store].append((run.frame(), dict(table(run).late_events_by_partition()), table(run).late_windows))
        seen[store].append(sorted(closed, key=str))
    assert seen["rocksdb://"] == seen["memory://"]
    frames = [frame for frame, _late, _windows in seen["memory://"][:3]]
    assert frames[0] and frames[1] and len(frames[2]) < len(frames[1])  # (windows were written, then expired)
    assert seen["memory://"][2][2] > 0 and seen["memory://"][3]  # (late updates and finals happened)


def kill9_keeps_finals_exact(tmp_path: Path, group: str, kind: str, state: str, seed: int) -> None:
    """The worker killed with SIGKILL at 4 random moments on ``local://``, then finished: the finals (each
    sent once), open windows and stream time are those of a run never killed; ``state``: its state class."""
    broker, rng = f"local://{tmp_path / 'broker'}", random.Random(seed)
    for _ in range(4):
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), broker, group, "run", "rocksdb://", kind],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == b"ready", proc.stderr.read() if proc.stderr else line
        time.sleep(rng.uniform(0.5, 2.0))  # the moment of the kill, at random
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
    done = subprocess.run(
        [sys.executable, str(WORKER), broker, group, "finish", "rocksdb://", kind],
        capture_output=True, env=ENV, timeout=400,
    )
    assert done.returncode == 0, done.stderr.decode()[-4000:]
    result = json.loads(done.stdout.decode().strip().splitlines()[-1])
    ours, expected = result["ours"], result["expected"]
    assert ours["state"] == state
    assert len(expected["finals"]) > 20 and expected["open"], "too little input to test anything"
    assert ours["finals"] == expected["finals"]
    assert all(n == 1 for n in ours["sent"].values()), {k: n for k, n in ours["sent"].items() if n > 1}
    assert ours["open"] == expected["open"]
    assert ours["stream_time"] == expected["stream_time"]
