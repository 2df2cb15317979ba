"""Benchmark: 1,000,000 events through each window kind, and the memory of session state.

    python benchmarks/windows.py [-n 1000000] [--backends memory,local] [--kinds tumbling,hopping,sliding,session]

Each measurement runs in its own subprocess (so peak memory is its own) on
the same payloads: JSON page views of 1,000 users, 100 events per second of
event time (so 10,000 s of event time for a million events), up to 0.5 s out
of order. An agent counts them per user (the message key) in one windowed
table of each kind:

    tumbling(60)  hopping(60, 10)  sliding(60)  session(30)     all with grace=1

with ``on_window_close`` counting the final results. Windows close and
expire as event time advances, so state stays bounded; the report shows the
windows (or, for sliding windows, the event-time buckets) kept, sampled every
second, and the process's resident memory (RSS) when processing starts, at
a quarter, half and three quarters of the way through, at its end, and its
peak. ``session-keep`` is the same session count with
``expires`` of a year: closed sessions are never deleted, so what is kept
grows with the input -- the contrast that shows expiry is what bounds it.

The ceiling is a bare Python loop over the same bytes: ``json.loads`` plus
one dict increment per event (the least any windowed count costs). Producing
the input is not timed; processing is timed from ``app.start()`` until every
event is processed and committed.

Target: sliding and session at least half the hopping rate (per backend).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

USERS = 1_000
PARTITIONS = 8
RATE = 100.0  # events per second of event time
JITTER = 0.5  # seconds out of order, at most
GRACE = 1.0
KINDS = ("tumbling", "hopping", "sliding", "session")
T0 = 1_700_000_000.0


def payloads(n: int) -> list[tuple[bytes, bytes, float]]:
    """(key, value, timestamp) triples; deterministic."""
    rng = random.Random(7)
    out = []
    for i in range(n):
        user = f"user{rng.randrange(USERS)}"
        value = json.dumps({"id": i, "user": user, "page": f"/page/{rng.randrange(100)}"}, separators=(",", ":"))
        out.append((user.encode(), value.encode(), T0 + i / RATE + rng.random() * JITTER))
    return out


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def run_ceiling(n: int) -> dict[str, Any]:
    data = payloads(n)
    counts: dict[Any, int] = defaultdict(int)
    loads = json.loads
    t, c = time.perf_counter(), time.process_time()
    for _key, value, ts in data:
        user = loads(value)["user"]
        counts[(user, ts // 60)] += 1
    elapsed, cpu = time.perf_counter() - t, time.process_time() - c
    assert sum(counts.values()) == n
    return {"events_per_s": n / elapsed, "cpu_events_per_s": n / cpu, "seconds": elapsed, "peak_mb": peak_mb()}


def define(table: Any, kind: str) -> Any:
    if kind == "tumbling":
        return table.tumbling(60, grace=GRACE)
    if kind == "hopping":
        return table.hopping(60, 10, grace=GRACE)
    if kind == "sliding":
        return table.sliding(60, grace=GRACE)
    if kind == "session":
        return table.session(30, grace=GRACE)
    if kind == "session-keep":
        return table.session(30, grace=GRACE, expires=365 * 24 * 3600)
    raise SystemExit(f"unknown window kind {kind}")


def kept(view: Any, kind: str) -> int:
    """What the state holds: windows, sessions, or (sliding) event-time buckets and final values."""
    state = view.state
    if kind == "sliding":
        return sum(len(b) for b in state.buckets.values()) + sum(len(f) for f in state.finals.values())
    return len(state)


def build_app(broker: str, app_id: str, kind: str) -> tuple[Any, Any, Any, dict[str, int]]:
    import streamnb as faust

    class PageView(faust.Record):
        id: int
        user: str
        page: str

    app = faust.App(app_id, broker=broker, topic_partitions=PARTITIONS)
    topic = app.topic("page_views", value_type=PageView)
    finals = {"windows": 0, "total": 0}

    def window_closed(key: Any, value: int) -> None:
        finals["windows"] += 1
        finals["total"] += value

    view = define(app.Table("views", default=int, on_window_close=window_closed), kind)

    @app.agent(topic)
    async def count(stream):  # type: ignore[no-untyped-def]
        async for page_view in stream:
            view[page_view.user] += 1

    return app, topic, view, finals


async def produce(app: Any, topic: Any, data: list[tuple[bytes, bytes, float]]) -> None:
    from streamnb.topics import partition_for_key
    from streamnb.transport.base import ProducerRecord

    transport = await app.connect()
    await topic.declare()
    chunk = []
    for key, value, ts in data:
        chunk.append(ProducerRecord(topic.name, partition_for_key(key, PARTITIONS), key, value, ts, ()))
        if len(chunk) == 20_000:
            await transport.send(chunk)
            chunk = []
    if chunk:
        await transport.send(chunk)


async def run_app(broker: str, n: int, kind: str, profile: str | None) -> dict[str, Any]:
    from streamnb.testing import settle

    data = payloads(n)
    app, topic, view, finals = build_app(broker, f"bench-{uuid.uuid4().hex[:6]}", kind)
    t = time.perf_counter()
    await produce(app, topic, data)
    produce_s = time.perf_counter() - t
    del data
    samples: list[int] = []
    rss: list[float] = []

    async def sample() -> None:
        while True:
            samples.append(kept(view, kind))
            rss.append(rss_mb())
            await asyncio.sleep(1.0)

    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
    rss_start = rss_mb()
    t, c = time.perf_counter(), time.process_time()
    if profiler is not None:
        profiler.enable()
    await app.start()
    sampler = asyncio.get_running_loop().create_task(sample())
    await settle(app, timeout=3600)
    if profiler is not None:
        profiler.disable()
    elapsed, cpu = time.perf_counter() - t, time.process_time() - c
    sampler.cancel()
    rss_end = rss_mb()
    samples.append(kept(view, kind))
    rss.append(rss_end)
    late, late_windows = view.late_events, view.late_windows
    open_total = sum(v for (key, w), v in view.items() if not view.state.is_closed(key, w))
    await app.stop()
    if profiler is not None:
        profiler.dump_stats(profile)
    # Each event counts once in each of its windows, closed (a final) or open, unless refused as late.
    if kind in ("tumbling", "hopping"):
        per_event = 1 if kind == "tumbling" else 6
        assert finals["total"] + open_total + late_windows == per_event * n, (finals, open_total, late_windows)
    elif kind != "sliding":
        assert finals["total"] + open_total + late == n, (finals, open_total, late, n)
    return {
        "events_per_s": n / elapsed, "cpu_events_per_s": n / cpu, "seconds": elapsed, "produce_s": produce_s,
        "peak_mb": peak_mb(), "rss_start_mb": rss_start, "rss_end_mb": rss_end,
        "rss_quarters_mb": [rss[min(len(rss) - 1, len(rss) * q // 4)] for q in (1, 2, 3)] + [rss_end],
        "kept_max": max(samples), "kept_end": samples[-1], "finals": finals["windows"],
        "late_events": late, "late_windows": late_windows,
    }


def child(mode: str, n: int, profile: str | None) -> None:
    if mode == "ceiling":
        result = run_ceiling(n)
    else:
        backend, kind = mode.split(":")
        if backend == "memory":
            result = asyncio.run(run_app(f"memory://bench-{uuid.uuid4().hex[:6]}", n, kind, profile))
        elif backend == "local":
            folder = tempfile.mkdtemp(prefix="streamnb-bench-")
            try:
                result = asyncio.run(run_app(f"local://{folder}", n, kind, profile))
            finally:
                shutil.rmtree(folder, ignore_errors=True)
        else:
            raise SystemExit(f"unknown backend {backend}")
    print("RESULT " + json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("-n", type=int, default=1_000_000)
    parser.add_argument("--backends", default="memory,local")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--keep", action=argparse.BooleanOptionalAction, default=True,
                        help="also run session-keep (sessions that never expire) on the last backend")
    parser.add_argument("--profile", metavar="DIR", help="write a cProfile of each run to DIR")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--profile-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.n, args.profile_file)
        return
    backends = args.backends.split(",")
    modes = ["ceiling"] + [f"{b}:{k}" for b in backends for k in args.kinds.split(",")]
    if args.keep:
        modes.append(f"{backends[-1]}:session-keep")
    results: dict[str, dict[str, Any]] = {}
    for mode in modes:
        cmd = [sys.executable, __file__, "--child", mode, "-n", str(args.n)]
        if args.profile and mode != "ceiling":
            Path(args.profile).mkdir(parents=True, exist_ok=True)
            cmd += ["--profile-file", str(Path(args.profile) / f"{mode.replace(':', '-')}.prof")]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not line:
            print(f"{mode}: FAILED\n{proc.stderr[-3000:]}")
            continue
        results[mode] = json.loads(line[0][7:])
        print(f"{mode}: {results[mode]['events_per_s']:,.0f} events/s", file=sys.stderr, flush=True)
    report(args.n, results)


def report(n: int, results: dict[str, dict[str, Any]]) -> None:
    ceiling = results.get("ceiling", {}).get("events_per_s")
    print(
        f"\n{n:,} page views, {USERS:,} users (the table key), {RATE:g} events/s of event time, up to {JITTER:g} s "
        f"out of order, {PARTITIONS} partitions, grace {GRACE:g} s\n"
    )
    print(
        f"{'run':<22}{'events/s':>11}{'seconds':>9}{'x ceil':>8}{'x hop':>7}{'cpu x hop':>10}"
        f"{'kept max':>10}{'kept end':>10}"
        f"{'finals':>11}{'late':>6}{'RSS MB: start':>15}{'1/4':>6}{'1/2':>6}{'3/4':>6}{'end':>6}{'peak':>6}"
    )
    for mode, r in results.items():
        if mode == "ceiling":
            print(f"{'bare loop (ceiling)':<22}{r['events_per_s']:>11,.0f}{r['seconds']:>9.2f}{1:>8.2f}")
            continue
        backend = mode.split(":")[0]
        hop = results.get(f"{backend}:hopping", {}).get("events_per_s")
        x_ceil = r["events_per_s"] / ceiling if ceiling else float("nan")
        x_hop = r["events_per_s"] / hop if hop else float("nan")
        cpu_hop = results.get(f"{backend}:hopping", {}).get("cpu_events_per_s")
        cpu_x_hop = r["cpu_events_per_s"] / cpu_hop if cpu_hop else float("nan")
        print(
            f"{mode:<22}{r['events_per_s']:>11,.0f}{r['seconds']:>9.2f}{x_ceil:>8.2f}{x_hop:>7.2f}{cpu_x_hop:>10.2f}"
            f"{r['kept_max']:>10,}{r['kept_end']:>10,}{r['finals']:>11,}{r['late_events']:>6,}"
            f"{r['rss_start_mb']:>15.0f}" + "".join(f"{q:>6.0f}" for q in r["rss_quarters_mb"])
            + f"{r['peak_mb']:>6.0f}"
        )
    print(
        "\nx ceil: rate / the bare loop's (json.loads + one dict increment per event); x hop: rate / hopping's on "
        "the same backend (target for sliding and session: >= 0.5); cpu x hop: the same with CPU time (steadier "
        "on a shared machine). kept: windows (sessions; for sliding, "
        "event-time buckets and final values) in the table's state, sampled every second during the run; RSS: "
        "resident memory when processing starts, a quarter, half, three quarters of the way, at the end; peak "
        "includes producing the input."
    )
    for mode, r in results.items():
        if mode.endswith((":sliding", ":session")):
            hop = results.get(mode.split(":")[0] + ":hopping", {}).get("events_per_s")
            if hop:
                ratio = r["events_per_s"] / hop
                cpu = r["cpu_events_per_s"] / results[mode.split(":")[0] + ":hopping"]["cpu_events_per_s"]
                print(f"{mode}: {ratio:.2f} x hopping (cpu {cpu:.2f}) -- target 0.50 "
                      + ("met" if ratio >= 0.5 else "MISSED"))


if __name__ == "__main__":
    main()
