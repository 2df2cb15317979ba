"""Benchmark: table restarts and throughput, ``store="rocksdb://"`` against ``memory://``.

    python benchmarks/state.py restart [--keys 1000000,5000000] [--backends local,kafka] [--skip-memory]
                                       [--quix PYTHON]
    python benchmarks/state.py windows [--windows 2000000] [--backends local] [--skip-memory]
    python benchmarks/state.py sessions [--windows 2000000] [--backends local] [--skip-memory]
    python benchmarks/state.py sliding [--windows 2000000] [--backends local] [--skip-memory]
    python benchmarks/state.py sets [--keys 1000000] [--backends local,kafka] [--skip-memory]
    python benchmarks/state.py history [--windows 2000000] [--backends local,kafka] [--skip-memory]
    python benchmarks/state.py history-plain [--keys 1000000] [--backends local,kafka] [--skip-memory]
    python benchmarks/state.py pipeline [-n 500000] [--backends memory,local] [--table plain|session|sliding|history]

``restart`` writes a plain table's changelog of N keys (8 partitions, as an
app would), then starts the app in a fresh process and times ``app.start()``
until every table partition is served, with the peak RSS of that process:

- ``rocksdb cold``: an empty datadir (a new machine): the whole changelog is
  copied into RocksDB; its rate is compared with a plain read of the same
  changelog plus ``json.loads`` of each value, measured in the same run;
- ``rocksdb warm``: the restart after that (what a kernel restart costs):
  only the changelog written since the last commit is read;
- ``memory``: today's in-memory table, rebuilt from the whole changelog
  (``--skip-memory`` leaves it out);
- ``quix cold`` (``--quix PYTHON``, Kafka only): Quix Streams, run by
  ``PYTHON`` (an interpreter with ``quixstreams``, kept out of streamnb's
  environment), builds a store of the same N keys from an input topic and
  then restores it into an empty state dir from its own changelog
  (``benchmarks/quix_state.py``): seconds from ``Application.run`` until its
  recovery ends, and the recovery alone (without joining its group).

Each run prints its wall-clock seconds and the CPU seconds of its process
(RocksDB's background threads included), and both ratios to the plain read:
the machine is shared, and CPU time varies less with its load.

``windows`` does the same with a tumbling table (windows of a minute, ten
per key, never expiring) of N windows: on ``rocksdb://`` its windows stay
in the stores at a restart (nothing is loaded; reads go to the store), on
``memory://`` they are rebuilt from the whole changelog. ``sessions`` does it
with a session table of N sessions (ten per key, 30 s long, a gap of 10 s,
never expiring), ``sliding`` with a sliding table (windows of a minute, never
expiring) of N buckets (ten per key, a minute apart: each makes a left and a
right window, so about 2N windows).

``sets`` does the same with a ``SetTable`` of N keys (three members each),
``history`` with the tumbling table of ``windows`` (N windows) of an app made
with ``history=True`` (every change in an uncompacted changelog; here one per
window): on ``rocksdb://`` both keep their rows in the stores (a restart
loads nothing), on ``memory://`` they are rebuilt from the whole changelog.
``history-plain`` does it with the plain table of ``restart`` (N keys, one
change each) in an app made with ``history=True``: on ``rocksdb://`` its rows
stay in the stores too.

``pipeline`` runs N page views through ``group_by(user)`` and a plain
per-user count (10,000 keys) with the table on each store, same broker,
same run (``--table session``: a per-user count in session windows, each
view merging into its user's session; ``--table sliding``: in sliding windows
of a minute, each view a bucket of its own; ``--table history``: the plain count in an
app made with ``history=True``, every change in the changelog). Targets (README, "State and
restarts"): warm restart <= 1 s plus the tail at every size; peak RSS <=
400 MB; cold restore >= 1.0 x the plain read; pipeline on rocksdb >= 0.85 x
memory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PARTITIONS = 8
USERS = 10_000


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def broker_url(backend: str, folder: Path, kafka: str) -> str:
    return f"local://{folder / 'broker'}" if backend == "local" else f"kafka://{kafka}"


# -- children (each measurement in its own process) ------------------------------------------


T0 = 1_700_000_000.0
WINDOW = 60.0
WINDOWS_PER_KEY = 10


KINDS = ("plain", "windows", "sessions", "sliding", "sets", "history", "history-plain")
HISTORY = ("history", "history-plain")
"""The kinds whose app is made with ``history=True``."""
WINDOWED: dict[str, bool | str] = {"windows": True, "history": True, "sessions": "session", "sliding": "sliding"}
"""How each kind is windowed: tumbling (True), in sessions ("session"), sliding ("sliding"), or not (absent)."""
NEVER_EXPIRES = 10 * 365 * 86400.0


def define_table(app: object, store: str | None, kind: str) -> object:
    """The benchmarked table ``counts``: plain, in tumbling windows of a minute or sessions with a gap of
    10 s that never expire, or a set table.

    (``history``: the windows, ``history-plain``: the plain table; the app is made with ``history=True``.)
    """
    options = {} if store is None else {"store": store}
    if kind == "sets":
        return app.SetTable("counts", value_type=str, **options)  # type: ignore[attr-defined]
    table = app.Table("counts", default=int, **options)  # type: ignore[attr-defined]
    if kind == "sessions":
        return table.session(10.0, expires=NEVER_EXPIRES)
    if kind == "sliding":
        return table.sliding(WINDOW, expires=NEVER_EXPIRES)
    return table.tumbling(WINDOW, expires=NEVER_EXPIRES) if kind in ("windows", "history") else table


def row_value(kind: str, i: int, j: int) -> bytes:
    """The changelog value of row ``i`` (window ``j``)."""
    if kind == "sets":
        return b'{"members":["a%d","b%d","c"],"added":["a%d","b%d","c"],"removed":[]}' % (i, i, i, i)
    return b"%d" % (i + j)


def window_of(j: int, windowed: bool | str = True) -> tuple[float, float]:
    """The ``j``-th window (or session: its first half; sliding: the left window of bucket ``j``) of every key."""
    if windowed == "sliding":
        return T0 + WINDOW * (j - 1), T0 + WINDOW * j
    return T0 + WINDOW * j, T0 + WINDOW * j + (WINDOW / 2 if windowed == "session" else WINDOW)


async def write_changelog(url: str, app_id: str, keys: int, kind: str = "plain") -> None:
    """A changelog of ``keys`` rows: keys ``k<i>``, or (windowed kinds) keys x 10 windows or sessions."""
    import streamnb as faust
    from streamnb.transport.base import ProducerRecord

    windowed = WINDOWED.get(kind, False)
    app = faust.App(app_id, broker=url, topic_partitions=PARTITIONS, history=kind in HISTORY)
    view = define_table(app, None, kind)
    table = view.table if windowed else view  # type: ignore[attr-defined]
    transport = await app.connect()
    await table.changelog.declare()
    name = table.changelog.name
    batch: list[ProducerRecord] = []
    per_key = WINDOWS_PER_KEY if windowed else 1
    for row in range(keys):
        i, j = divmod(row, per_key)
        if windowed == "sliding":  # a bucket: the events of key i at the end of window j
            key = b'["k%d",%r]' % (i, window_of(j, windowed)[1])
        else:
            key = b'["k%d",[%r,%r]]' % ((i, *window_of(j, windowed))) if windowed else b'"k%d"' % i
        batch.append(ProducerRecord(name, i % PARTITIONS, key, row_value(kind, i, j), T0))
        if len(batch) == 100_000:
            await transport.send(batch)
            batch = []
    if batch:
        await transport.send(batch)
    if windowed:  # the stream time of every partition: the newest window's middle (a session's end)
        times = table.stream_times
        await times.declare(PARTITIONS)
        now = window_of(WINDOWS_PER_KEY - 1, windowed)[0] + WINDOW / 2
        await transport.send([times.record(p, now, now) for p in range(PARTITIONS)])
    await app.stop()


async def restart(url: str, app_id: str, store: str, datadir: str, kind: str = "plain") -> dict[str, float]:
    import streamnb as faust
    from streamnb.testing import wait_until

    windowed = WINDOWED.get(kind, False)
    app = faust.App(app_id, broker=url, topic_partitions=PARTITIONS, datadir=datadir, history=kind in HISTORY)
    view = define_table(app, store, kind)
    table = view.table if windowed else view  # type: ignore[attr-defined]
    source = app.topic(f"{app_id}-input", value_type=str)

    @app.agent(source)
    async def touch(stream: object) -> None:  # holds every partition on Kafka (tables come with them)
        async for _ in stream:  # type: ignore[attr-defined]
            pass

    started, cpu = time.perf_counter(), time.process_time()
    await app.start()
    await wait_until(lambda: table.recovered_partitions == set(range(PARTITIONS)), 3600, 0.001)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    check = view["k7"][window_of(3, windowed)] if windowed else table["k7"]  # type: ignore[index]
    expected: object = 10 if windowed else ({"a7", "b7", "c"} if kind == "sets" else 7)
    if windowed == "sliding":
        expected = (7 + 2) + (7 + 3)  # (window 3 holds buckets 2 and 3)
    await app.stop()
    assert check == expected, check
    return {"seconds": seconds, "cpu": cpu, "peak_mb": peak_mb()}


async def write_input(url: str, app_id: str, keys: int) -> None:
    """Quix Streams' input (``--quix``): one record per key ``k<i>``, value ``i``, in topic ``<app id>-quix``."""
    import streamnb as faust
    from streamnb.transport.base import ProducerRecord

    app = faust.App(app_id, broker=url, topic_partitions=PARTITIONS)
    topic = app.topic(f"{app_id}-quix", value_type=int)
    transport = await app.connect()
    await topic.declare()
    for at in range(0, keys, 100_000):
        await transport.send([ProducerRecord(topic.name, i % PARTITIONS, b"k%d" % i, b"%d" % i, T0, ())
                              for i in range(at, min(at + 100_000, keys))])
    await app.stop()


def quix_restore(python: str, kafka: str, app_id: str, keys: int, folder: Path) -> dict[str, float]:
    """Quix Streams (another interpreter) builds a store of ``keys`` keys, then restores it into an empty
    state dir from its changelog (benchmarks/quix_state.py): the restore's figures."""
    script, topic, group = str(Path(__file__).with_name("quix_state.py")), f"{app_id}-quix", f"{app_id}-quix"
    for what, state in (("fill", "quix-filled"), ("restore", "quix-restored")):
        out = subprocess.run([python, script, what, kafka, topic, str(keys), group, str(folder / state)],
                             capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise SystemExit(f"quix {what} failed:\n{out.stderr[-3000:]}")
    got: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    if got["records"] != keys or got["partitions"] != PARTITIONS:
        raise SystemExit(f"quix restored {got['records']} records of {got['partitions']} partitions, "
                         f"not {keys} of {PARTITIONS}")
    return got


async def plain_read(url: str, app_id: str) -> dict[str, float]:
    import streamnb as faust
    from streamnb.transport.base import TP

    app = faust.App(app_id, broker=url, topic_partitions=PARTITIONS)
    table = app.Table("counts", default=int)  # (the changelog's name is the same for both kinds)
    transport = await app.connect()
    started, cpu = time.perf_counter(), time.process_time()
    records = 0
    loads = json.loads
    for p in range(PARTITIONS):
        tp = TP(table.changelog.name, p)
        start = (await transport.beginning_offsets([tp]))[tp]
        end = (await transport.end_offsets([tp]))[tp]
        while start < end:
            msgs = await transport.read(tp, start, end, 50_000)
            if not msgs:
                break
            for m in msgs:
                loads(m.value)
            records += len(msgs)
            start = msgs[-1].offset + 1
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    await app.stop()
    return {"seconds": seconds, "cpu": cpu, "records": records}


async def pipeline(
    url: str, app_id: str, store: str, datadir: str, n: int, table: str = "plain"
) -> dict[str, float]:
    import streamnb as faust
    from streamnb.testing import settle
    from streamnb.transport.base import ProducerRecord

    class View(faust.Record):
        user: str
        page: str

    app = faust.App(app_id, broker=url, topic_partitions=PARTITIONS, datadir=datadir, history=table == "history")
    views = app.topic(f"{app_id}-views", value_type=View)
    per_user = app.Table("per_user", default=int, store=store)
    if table == "session":  # (views 1 ms apart: a user's views about 10 s apart, one growing session each)
        per_user = per_user.session(60.0, expires=NEVER_EXPIRES)
    elif table == "sliding":  # (views 1 ms apart: about six of a user's views in each window)
        per_user = per_user.sliding(60.0, expires=NEVER_EXPIRES)

    @app.agent(views)
    async def count(stream: object) -> None:
        async for view in stream.group_by(View.user):  # type: ignore[attr-defined]
            per_user[view.user] += 1

    transport = await app.connect()
    await views.declare()
    rng = random.Random(42)
    batch: list[ProducerRecord] = []
    for i in range(n):
        user = f"user{rng.randrange(USERS)}"
        value = json.dumps({"user": user, "page": f"/p/{i % 100}"}).encode()
        at = 1_700_000_000.0 + (i / 1000 if table in ("session", "sliding") else i)
        batch.append(ProducerRecord(views.name, i % PARTITIONS, user.encode(), value, at))
        if len(batch) == 100_000:
            await transport.send(batch)
            batch = []
    if batch:
        await transport.send(batch)
    started = time.perf_counter()
    await app.start()
    await settle(app, timeout=3600)
    seconds = time.perf_counter() - started
    if table == "sliding":  # (every view went in: stream time reached the last one's)
        newest = max(per_user.stream_time(p) for p in range(PARTITIONS))  # type: ignore[attr-defined]
        await app.stop()
        assert newest == 1_700_000_000.0 + (n - 1) / 1000, newest
        return {"events_per_s": n / seconds, "peak_mb": peak_mb()}
    total = sum(v for _k, v in per_user.items())
    await app.stop()
    assert total == n, (total, n)
    return {"events_per_s": n / seconds, "peak_mb": peak_mb()}


def child(args: argparse.Namespace) -> None:
    spec = json.loads(args.child)
    kind = spec.pop("kind")
    if "table" in spec and kind != "pipeline":  # (the table's kind, for write and restart)
        spec["kind"] = spec.pop("table")
    fn = {"write": write_changelog, "restart": restart, "plain": plain_read, "pipeline": pipeline,
          "input": write_input}[kind]
    result = asyncio.run(fn(**spec))  # type: ignore[operator]
    print(json.dumps(result or {}))


def run_child(**spec: object) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise SystemExit(f"child {spec} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# -- the runs --------------------------------------------------------------------------------


def run_restart(args: argparse.Namespace, kind: str = "plain") -> None:
    windowed = WINDOWED.get(kind, False)
    what = "windows" if windowed else "keys"
    print(f"{kind} table")
    print(f"{'backend':8} {what:>10} {'run':14} {'seconds':>9} {'CPU s':>7} {'peak MB':>8} {'records/s':>11} "
          f"{'ratio':>6} {'CPU ratio':>9}")
    for backend in args.backends.split(","):
        for keys in [int(k) for k in (args.windows if windowed else args.keys).split(",")]:
            folder = Path(tempfile.mkdtemp(prefix="streamnb-state-"))
            try:
                url, app_id = broker_url(backend, folder, args.kafka), f"state-{uuid.uuid4().hex[:8]}"
                run_child(kind="write", url=url, app_id=app_id, keys=keys, table=kind)
                datadir = str(folder / "data")
                plain = run_child(kind="plain", url=url, app_id=app_id)
                plain_rate = plain["records"] / plain["seconds"]
                plain_cpu_rate = plain["records"] / plain["cpu"]
                rows = [("plain read", plain, 1.0, 1.0)]
                restart = {"kind": "restart", "url": url, "app_id": app_id, "datadir": datadir, "table": kind}
                cold = run_child(**restart, store="rocksdb://")
                rows.append(("rocksdb cold", cold, keys / cold["seconds"] / plain_rate,
                             keys / cold["cpu"] / plain_cpu_rate))
                warm = run_child(**restart, store="rocksdb://")
                rows.append(("rocksdb warm", warm, 0.0, 0.0))
                if not args.skip_memory:
                    memory = run_child(**restart, store="memory://")
                    rows.append(("memory", memory, keys / memory["seconds"] / plain_rate,
                                 keys / memory["cpu"] / plain_cpu_rate))
                if args.quix and backend == "kafka":
                    run_child(kind="input", url=url, app_id=app_id, keys=keys)
                    quix = quix_restore(args.quix, args.kafka, app_id, keys, folder)
                    rows.append(("quix cold", quix, keys / quix["seconds"] / plain_rate,
                                 keys / quix["cpu"] / plain_cpu_rate))
                for name, got, ratio, cpu_ratio in rows:
                    rate = keys / got["seconds"] if ratio else 0.0
                    print(f"{backend:8} {keys:>10,} {name:14} {got['seconds']:>9.2f} {got['cpu']:>7.2f} "
                          f"{got.get('peak_mb', 0.0):>8.0f} {rate:>11,.0f} {ratio:>6.2f} {cpu_ratio:>9.2f}", flush=True)
                if args.quix and backend == "kafka":
                    wall, cpu = quix["seconds"] / cold["seconds"], quix["cpu"] / cold["cpu"]
                    alone = quix["recovery_seconds"]
                    print(f"{backend:8} {keys:>10,} rocksdb cold vs quix cold: {wall:.2f}x wall, {cpu:.2f}x CPU; "
                          f"vs Quix's recovery alone ({alone:.2f} s, without joining its group): "
                          f"{alone / cold['seconds']:.2f}x", flush=True)
            finally:
                shutil.rmtree(folder, ignore_errors=True)


def run_pipeline(args: argparse.Namespace) -> None:
    print(f"{'backend':8} {'store':12} {'events/s':>10} {'peak MB':>8} {'ratio':>6}")
    for backend in args.backends.split(","):
        results = {}
        for _round in range(args.rounds):  # alternating, best of each
            for store in ("memory://", "rocksdb://"):
                folder = Path(tempfile.mkdtemp(prefix="streamnb-state-"))
                try:
                    url = f"memory://{uuid.uuid4().hex[:8]}" if backend == "memory" else broker_url(
                        backend, folder, args.kafka)
                    got = run_child(kind="pipeline", url=url, app_id=f"pipe-{uuid.uuid4().hex[:8]}", store=store,
                                    datadir=str(folder / "data"), n=args.n, table=args.table)
                finally:
                    shutil.rmtree(folder, ignore_errors=True)
                best = results.get(store)
                if best is None or got["events_per_s"] > best["events_per_s"]:
                    results[store] = got
        base = results["memory://"]["events_per_s"]
        for store, got in results.items():
            print(f"{backend:8} {store:12} {got['events_per_s']:>10,.0f} {got['peak_mb']:>8.0f} "
                  f"{got['events_per_s'] / base:>6.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="?", default="restart",
                        choices=["restart", "windows", "sessions", "sliding", "sets", *HISTORY, "pipeline"])
    parser.add_argument("--keys", default="1000000,5000000")
    parser.add_argument("--windows", default="2000000")
    parser.add_argument("-n", type=int, default=500_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--table", choices=["plain", "session", "sliding", "history"], default="plain",
                        help="pipeline: the counting table (history: plain, in an app made with history=True)")
    parser.add_argument("--backends", default=None)
    parser.add_argument("--kafka", default=os.environ.get("STREAMNB_KAFKA", "127.0.0.1:9092"))
    parser.add_argument("--skip-memory", action="store_true", help="restart/windows: skip the memory:// rebuild")
    parser.add_argument("--quix", default=None, help="restart on kafka: also Quix Streams' restore, with this "
                        "Python (quixstreams installed)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.quix and (args.what != "restart" or "kafka" not in (args.backends or "local,kafka").split(",")):
        parser.error("--quix compares a plain table's cold restore on Kafka: use it with `restart` and the "
                     "kafka backend")
    if args.what in ("restart", "windows", "sessions", "sliding", "sets", *HISTORY):
        args.backends = args.backends or "local,kafka"
        run_restart(args, {"restart": "plain"}.get(args.what, args.what))
    else:
        args.backends = args.backends or "memory,local"
        run_pipeline(args)


if __name__ == "__main__":
    main()
