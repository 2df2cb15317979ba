"""Benchmark: what the metrics cost, the page-view pipeline with metrics on vs off in the same run.

    python benchmarks/metrics.py [-n 300000] [--repeat 3] [--backends memory]

The pipeline of ``benchmarks/pageviews.py`` (JSON page views through
``group_by`` and a hopping-window count) runs with ``App(metrics=True)``
(the default: every batch, commit and send counted, lag and history sampled
every second) and with ``App(metrics=False)``, alternating, each run in its own
subprocess on the same payloads. It prints the median rates and their ratio.

Target: metrics cost at most 3% on ``memory://`` (on / off >= 0.97).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pageviews import PARTITIONS, SIZE, STEP, payloads, produce  # type: ignore[import-not-found]  # noqa: E402


def build_app(broker: str, app_id: str, metrics: bool):  # type: ignore[no-untyped-def]
    import streamnb as faust

    class PageView(faust.Record):
        id: str
        user: str
        page: str

    app = faust.App(app_id, broker=broker, topic_partitions=PARTITIONS, metrics=metrics)
    topic = app.topic("page_views", value_type=PageView)
    views = app.Table("views", default=int).hopping(SIZE, STEP, expires=3600)

    @app.agent(topic)
    async def count(stream):  # type: ignore[no-untyped-def]
        async for view in stream.group_by(PageView.page):
            views[view.page] += 1

    return app, topic, count


async def run(broker: str, n: int, metrics: bool) -> dict:
    from streamnb.testing import settle

    data = payloads(n)
    app, topic, count = build_app(broker, f"bench-{uuid.uuid4().hex[:6]}", metrics)
    await produce(app, topic, data)
    del data
    t, c = time.perf_counter(), time.process_time()
    await app.start()
    await settle(app, timeout=3600)
    elapsed, cpu = time.perf_counter() - t, time.process_time() - c
    counted = app.metrics().query("metric == 'streamnb_events_total' and agent == 'count'")["value"].sum()
    await app.stop()
    assert count.events_processed == n, count.events_processed
    assert counted == (n if metrics else 0), counted
    return {"events_per_s": n / elapsed, "cpu_events_per_s": n / cpu}


def child(backend: str, n: int, metrics: bool) -> None:
    if backend == "memory":
        broker = f"memory://bench-{uuid.uuid4().hex[:6]}"
    elif backend == "local":
        broker = f"local://{tempfile.mkdtemp(prefix='streamnb-bench-')}"
    else:
        raise SystemExit(f"unknown backend {backend}")
    print("RESULT " + json.dumps(asyncio.run(run(broker, n, metrics))), flush=True)


def measure(backend: str, n: int, metrics: bool) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", backend, "-n", str(n), "--metrics", "on" if metrics else "off"],
        capture_output=True, text=True,
    )
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not line:
        raise SystemExit(f"{backend} metrics={metrics}: FAILED\n{proc.stderr[-3000:]}")
    return json.loads(line[0][7:])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backends", default="memory")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--metrics", choices=["on", "off"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.n, args.metrics == "on")
        return
    print(f"{args.n:,} page views, group_by(page) + hopping({SIZE:g}s, {STEP:g}s) count, "
          f"{PARTITIONS} partitions; metrics on/off alternating, {args.repeat} runs each\n")
    print(f"{'backend':<10}{'off ev/s':>12}{'on ev/s':>12}{'on/off':>9}{'cpu on/off':>12}{'target':>8}")
    for backend in args.backends.split(","):
        runs: dict[bool, list[dict]] = {False: [], True: []}
        for _ in range(args.repeat):
            for metrics in (False, True):
                runs[metrics].append(measure(backend, args.n, metrics))
        off = statistics.median(r["events_per_s"] for r in runs[False])
        on = statistics.median(r["events_per_s"] for r in runs[True])
        cpu_off = statistics.median(r["cpu_events_per_s"] for r in runs[False])
        cpu_on = statistics.median(r["cpu_events_per_s"] for r in runs[True])
        target = 0.97 if backend == "memory" else None
        mark = "" if target is None else f"{target:>7.2f}" + (" ok" if on / off >= target else " MISSED")
        print(f"{backend:<10}{off:>12,.0f}{on:>12,.0f}{on / off:>9.3f}{cpu_on / cpu_off:>12.3f}{mark}")
    print("\non/off: median wall-clock rate with metrics over without; cpu: the same with CPU time "
          "(steadier on a shared machine). The target applies to the wall-clock ratio.")


if __name__ == "__main__":
    main()
