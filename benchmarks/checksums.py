"""What the ``local://`` checksums cost: their share of the CPU time of the page-view pipeline.

Runs ``pageviews.py``'s pipeline (JSON page views, ``group_by(page)``, a
hopping-window count) on ``local://`` with every piece of checksum work
timed in CPU time of the thread doing it: computing a batch's CRC-32C when
it is written, checking it (and that batches tile) when read, the catalogue
rows' checksums, and the high-water mark written to ``LOCK`` after commits.
Prints that time as a share of the process's CPU time for the run. On a
shared machine this share is steadier than comparing two runs' rates, whose
noise is larger than the cost measured; ``--compare BASE`` also runs
``pageviews.py`` of another checkout (e.g. one without checksums)
alternately with this one and prints both medians.

Usage::

    python benchmarks/checksums.py -n 300000
    python benchmarks/checksums.py -n 300000 --compare /tmp/streamnb-base --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

spent = [0.0, 0]  # CPU seconds inside checksum work, calls


def timed(fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        began = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[0] += time.thread_time() - began
            spent[1] += 1

    return wrapper


def instrument() -> None:
    from streamnb.transport.local import catalogue, integrity, lockfile, log, store

    log.batch_row = timed(log.batch_row)  # writing: header + CRC of every batch
    integrity.verify_batch = timed(integrity.verify_batch)  # reading: CRC (and types) of every batch
    catalogue.row_crc = timed(catalogue.row_crc)  # partitions and offsets rows at every commit
    store.row_crc = timed(store.row_crc)  # committed offsets read
    lockfile.Lock.mark = timed(lockfile.Lock.mark)  # the high-water mark after commits


def share(n: int) -> dict[str, float]:
    from pageviews import run_app  # type: ignore[import-not-found]

    instrument()
    folder = tempfile.mkdtemp(prefix="streamnb-bench-")
    try:
        began = time.process_time()
        result = asyncio.run(run_app(f"local://{folder}", n))
        cpu = time.process_time() - began
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {**result, "process_cpu_s": cpu, "checksum_cpu_s": spent[0], "checksum_calls": spent[1]}


def pageviews_rate(root: str, n: int) -> tuple[float, float]:
    proc = subprocess.run(
        [sys.executable, os.path.join(root, "benchmarks", "pageviews.py"), "--child", "local", "-n", str(n)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": root}, check=True,
    )
    result = json.loads(proc.stdout.split("RESULT ", 1)[1])
    return result["events_per_s"], result["cpu_events_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=300_000)
    parser.add_argument("--compare", help="another checkout's root: run its pageviews.py alternately with this one")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(share(args.n)), flush=True)
        return
    proc = subprocess.run([sys.executable, __file__, "--child", "-n", str(args.n)], capture_output=True, text=True,
                          check=True)
    r = json.loads(proc.stdout.split("RESULT ", 1)[1])
    print(f"page-view pipeline on local://, {args.n:,} events: {r['events_per_s']:,.0f} events/s, "
          f"{r['process_cpu_s']:.2f} s CPU in all")
    print(f"  checksum work: {r['checksum_cpu_s'] * 1000:.1f} ms CPU in {r['checksum_calls']:,} calls = "
          f"{100 * r['checksum_cpu_s'] / r['process_cpu_s']:.2f}% of the CPU time")
    if args.compare:
        here = os.path.dirname(HERE)
        rates: dict[str, list[tuple[float, float]]] = {"this": [], "base": []}
        for _ in range(args.rounds):
            rates["base"].append(pageviews_rate(args.compare, args.n))
            rates["this"].append(pageviews_rate(here, args.n))
        for name, runs in rates.items():
            print(f"  {name:>4}: median {statistics.median(w for w, _ in runs):>9,.0f} events/s, "
                  f"{statistics.median(c for _, c in runs):>9,.0f} events/cpu-s over {len(runs)} runs "
                  f"({', '.join(f'{w:,.0f}' for w, _ in runs)})")


if __name__ == "__main__":
    main()
