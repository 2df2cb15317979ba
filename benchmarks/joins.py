"""Benchmark: joins on a million events per side, against a bare Python loop doing the same matching.

    python benchmarks/joins.py [-n 1000000] [--backends memory,local] [--joins stream-stream,stream-table]
                               [--quix PYTHON]

Data (deterministic): orders and payments of 1,000 users, JSON values, each side
100 events per second of event time, up to 0.5 s out of order (less than
grace, so nothing is late), 8 partitions, keyed by user.

- ``stream-stream``: ``orders.join(payments, within=60, grace=1)`` (inner); every
  pair is counted.
- ``stream-table``: ``orders.join(customers, how="left")`` with
  ``customers = app.Table(..., source=topic)`` of 1,000 users (written first,
  updated every 1,000 orders), read in timestamp order with the orders.

The ceiling is a bare loop over the same bytes and the same order (each
partition's two inputs merged by timestamp): ``json.loads`` per record plus
the matching (per key, the other side's records of the last ``60 + 1`` s; or a
dict lookup). The stream–stream ceiling only counts the pairs, keeping
timestamps alone; ``bare_pairs`` (for information) also keeps the decoded
values and builds each ``(left, right)`` pair, as the join hands them over.
Neither expires records of keys that stop coming nor checks for late ones.
Producing the input is not timed; processing is timed from ``app.start()``
until every result is counted. Each figure comes twice: events per second of
wall time, and per second of this process's CPU time (``*_cpu_*``; Quix
Streams' process, its librdkafka threads included, for ``quix_cpu``), which
moves much less when other jobs share the machine. Each run checks its count of
results against the bare loop's.

``--quix PYTHON``: also run Quix Streams' ``join_interval`` (stream–stream)
and ``join_asof`` (stream–table) on the same data through the Kafka broker of
``STREAMNB_KAFKA`` (127.0.0.1:9092), with PYTHON an interpreter that has
``quixstreams`` installed (kept out of streamnb's own environment).

Targets: stream–table >= 0.5x the bare loop, stream–stream >= 0.3x; >= 3x Quix Streams.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sys
import time
import uuid
from collections import defaultdict, deque
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

USERS = 1_000
PARTITIONS = 8
RATE = 100.0
JITTER = 0.5
WITHIN = 60.0
GRACE = 1.0
T0 = 1_700_000_000.0

Record = tuple[bytes, bytes, float]  # key, value, timestamp


def side(n: int, seed: int, what: str) -> list[Record]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        user = f"user{rng.randrange(USERS)}"
        value = json.dumps({"id": i, "user": user, what: rng.randrange(1000)}, separators=(",", ":"))
        out.append((user.encode(), value.encode(), round(T0 + i / RATE + rng.random() * JITTER, 3)))
    return out


def customers() -> list[Record]:
    return [(f"user{u}".encode(), json.dumps({"user": f"user{u}", "tier": u % 3}).encode(), T0 - 1)
            for u in range(USERS)]


def partition_of(key: bytes) -> int:
    from streamnb.topics import partition_for_key

    return partition_for_key(key, PARTITIONS)


def by_partition(records: list[Record]) -> list[list[Record]]:
    out: list[list[Record]] = [[] for _ in range(PARTITIONS)]
    for r in records:
        out[partition_of(r[0])].append(r)
    return out


def merged(first: list[Record], second: list[Record]) -> list[list[tuple[int, Record]]]:
    """Per partition, ``first`` (tagged 1) and ``second`` (tagged 0) merged by timestamp, ``first`` at ties."""
    parts: list[list[tuple[int, Record]]] = []
    for a, b in zip(by_partition(first), by_partition(second)):
        out: list[tuple[int, Record]] = []
        parts.append(out)
        i = j = 0
        while i < len(a) or j < len(b):
            if j >= len(b) or (i < len(a) and a[i][2] <= b[j][2]):
                out.append((1, a[i]))
                i += 1
            else:
                out.append((0, b[j]))
                j += 1
    return parts


# -- the ceilings ------------------------------------------------------------------------


def bare_stream_stream(parts: list[list[tuple[int, Record]]]) -> tuple[int, float, float]:
    """Inner join within WITHIN, per partition: per key, the other side's recent records; (pairs, s, CPU s)."""
    loads = json.loads
    keep = WITHIN + GRACE
    pairs = 0
    t, c = time.perf_counter(), time.process_time()
    for order in parts:
        kept: tuple[dict[Any, deque[float]], dict[Any, deque[float]]] = (defaultdict(deque), defaultdict(deque))
        now = 0.0
        for is_right, (key, value, ts) in order:
            loads(value)
            if ts > now:
                now = ts
            other = kept[1 - is_right][key]
            while other and other[0] + keep < now:
                other.popleft()
            for o in other:
                if ts - WITHIN <= o <= ts + WITHIN:
                    pairs += 1
            kept[is_right][key].append(ts)
    return pairs, time.perf_counter() - t, time.process_time() - c


def bare_stream_stream_pairs(parts: list[list[tuple[int, Record]]]) -> tuple[int, float, float]:
    """As :func:`bare_stream_stream`, keeping the decoded values and handing each ``(left, right)`` pair over.

    What the join hands an agent; for information (``bare_pairs``): the
    targets are against the stricter :func:`bare_stream_stream`, which only
    counts.
    """
    loads = json.loads
    keep = WITHIN + GRACE
    pairs = 0
    t, c = time.perf_counter(), time.process_time()
    for order in parts:
        kept: tuple[dict[Any, deque[tuple[float, Any]]], dict[Any, deque[tuple[float, Any]]]] = (
            defaultdict(deque), defaultdict(deque))
        now = 0.0
        for is_right, (key, value, ts) in order:
            decoded = loads(value)
            if ts > now:
                now = ts
            other = kept[1 - is_right][key]
            while other and other[0][0] + keep < now:
                other.popleft()
            for o, o_value in other:
                if ts - WITHIN <= o <= ts + WITHIN:
                    pair = (o_value, decoded) if is_right else (decoded, o_value)
                    if pair:
                        pairs += 1
            kept[is_right][key].append((ts, decoded))
    return pairs, time.perf_counter() - t, time.process_time() - c


def bare_stream_table(parts: list[list[tuple[int, Record]]]) -> tuple[int, float, float]:
    loads = json.loads
    found = 0
    t, c = time.perf_counter(), time.process_time()
    for order in parts:
        table: dict[bytes, Any] = {}
        for is_table, (key, value, _ts) in order:
            if is_table:
                table[key] = loads(value)
            else:
                loads(value)
                if table.get(key) is not None:
                    found += 1
    return found, time.perf_counter() - t, time.process_time() - c


# -- streamnb ----------------------------------------------------------------------------


async def produce(app: Any, topic: Any, data: list[Record]) -> None:
    from streamnb.transport.base import ProducerRecord

    transport = await app.connect()
    await topic.declare()
    chunk = []
    for key, value, ts in data:
        chunk.append(ProducerRecord(topic.name, partition_of(key), key, value, ts, ()))
        if len(chunk) == 20_000:
            await transport.send(chunk)
            chunk = []
    if chunk:
        await transport.send(chunk)


async def run_streamnb(broker: str, join: str, orders: list[Record], others: list[Record],
                       want: int) -> tuple[float, float]:
    """(seconds, CPU seconds of this process) from ``app.start()`` until every result was counted."""
    import streamnb as faust
    from streamnb.testing import wait_until

    app_id = f"bench-{uuid.uuid4().hex[:6]}"
    app = faust.App(app_id, broker=broker, topic_partitions=PARTITIONS)
    order_topic = app.topic(f"{app_id}-orders", key_type=str)
    other_topic = app.topic(f"{app_id}-{'payments' if join == 'stream-stream' else 'customers'}", key_type=str)
    count = [0, 0]
    if join == "stream-stream":
        @app.agent(order_topic)
        async def match(stream: Any) -> None:
            async for _order, _payment in stream.join(other_topic, within=WITHIN, grace=GRACE):
                count[0] += 1
    else:
        table = app.Table("customers", source=other_topic)

        @app.agent(order_topic)
        async def enrich(stream: Any) -> None:
            async for _order, customer in stream.join(table, how="left"):
                count[1] += 1
                if customer is not None:
                    count[0] += 1

    await produce(app, other_topic, others)
    await produce(app, order_topic, orders)
    t, c = time.perf_counter(), time.process_time()
    await app.start()
    await wait_until(lambda: count[0] >= want and (join == "stream-stream" or count[1] >= len(orders)),
                     timeout=3600, interval=0.05)
    elapsed, cpu = time.perf_counter() - t, time.process_time() - c
    await app.stop()
    if count[0] != want:
        raise SystemExit(f"{join} on {broker}: {count[0]} results, the bare loop found {want}")
    return elapsed, cpu


async def run_quix(python: str, join: str, orders: list[Record], others: list[Record]
                   ) -> tuple[float, float, int]:
    """The same data on the Kafka broker, through Quix Streams (benchmarks/quix_joins.py, another interpreter)."""
    import streamnb as faust

    bootstrap = os.environ.get("STREAMNB_KAFKA", "127.0.0.1:9092")
    app_id = f"quix-{uuid.uuid4().hex[:6]}"
    app = faust.App(app_id, broker=f"kafka://{bootstrap}", topic_partitions=PARTITIONS)
    left, right = app.topic(f"{app_id}-orders"), app.topic(f"{app_id}-other")
    await produce(app, right, others)
    await produce(app, left, orders)
    await app.stop()
    script = Path(__file__).with_name("quix_joins.py")
    proc = await asyncio.create_subprocess_exec(
        python, str(script), join, bootstrap, left.name, right.name, str(len(orders) + len(others)),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"Quix Streams failed ({proc.returncode})")
    result = json.loads(out.decode().strip().splitlines()[-1])
    return float(result["seconds"]), float(result["cpu_seconds"]), int(result["results"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=1_000_000, help="events per side")
    parser.add_argument("--backends", default="memory,local", help="memory, local, kafka")
    parser.add_argument("--joins", default="stream-stream,stream-table")
    parser.add_argument("--quix", default=None, help="a Python with quixstreams installed")
    args = parser.parse_args()
    n = args.n
    orders = side(n, 1, "amount")
    report: dict[str, Any] = {"events_per_side": n}
    for join in args.joins.split(","):
        if join == "stream-stream":
            others = side(n, 2, "paid")
            parts = merged(others, orders)
            want, bare, bare_cpu = bare_stream_stream(parts)
            events = 2 * n
            also, bare_pairs, _ = bare_stream_stream_pairs(parts)
            assert also == want
        else:
            updates = side(n // 1000, 3, "tier")
            others = customers() + updates
            want, bare, bare_cpu = bare_stream_table(merged(others, orders))
            events = n
        line: dict[str, Any] = {"results": want, "bare_events_per_s": round(events / bare),
                                "bare_cpu_events_per_s": round(events / bare_cpu)}
        if join == "stream-stream":
            line["bare_pairs_events_per_s"] = round(events / bare_pairs)
        for backend in args.backends.split(","):
            broker = {
                "memory": f"memory://bench-{uuid.uuid4().hex[:6]}",
                "local": f"local:///tmp/streamnb-bench-{uuid.uuid4().hex[:6]}",
                "kafka": f"kafka://{os.environ.get('STREAMNB_KAFKA', '127.0.0.1:9092')}",
            }[backend]
            try:
                elapsed, cpu = asyncio.run(run_streamnb(broker, join, orders, others, want))
            finally:
                if backend == "local":  # the run's own folder (a million events per side: hundreds of MB)
                    shutil.rmtree(broker.removeprefix("local://"), ignore_errors=True)
            line[f"{backend}_events_per_s"] = round(events / elapsed)
            line[f"{backend}_vs_bare"] = round(bare / elapsed, 3)
            line[f"{backend}_cpu_events_per_s"] = round(events / cpu)
            line[f"{backend}_cpu_vs_bare"] = round(bare_cpu / cpu, 3)
            if join == "stream-stream":
                line[f"{backend}_vs_bare_pairs"] = round(bare_pairs / elapsed, 3)
        if args.quix:
            elapsed, quix_cpu, results = asyncio.run(run_quix(args.quix, join, orders, others))
            line["quix_events_per_s"] = round(events / elapsed)
            line["quix_cpu_events_per_s"] = round(events / quix_cpu)
            line["quix_results"] = results
            for backend in args.backends.split(","):
                line[f"{backend}_vs_quix"] = round(line[f"{backend}_events_per_s"] / line["quix_events_per_s"], 2)
                line[f"{backend}_cpu_vs_quix"] = round(
                    line[f"{backend}_cpu_events_per_s"] / line["quix_cpu_events_per_s"], 2)
        report[join] = line
        print(join, json.dumps(line), flush=True)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
