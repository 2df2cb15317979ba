"""Benchmark: replaying and recording (issue: prototype on recorded traffic).

    python benchmarks/replay.py replay [-n 1000000]           # replay speed vs the same pipeline, wall clock
    python benchmarks/replay.py record [-n 1000000] [--kafka 127.0.0.1:9092]

``replay``: the page-view pipeline of ``pageviews.py`` (``group_by(page)``
and a hopping 60 s / 10 s window count) over the same 1,000,000 messages in
a ``local://`` folder, once on the wall clock (``App(...)``) and once replayed
under a virtual clock at ``speed=None`` (``App(..., clock="virtual",
history=False)``: the same pipeline, tables keeping one change per key and
commit as on the wall clock). A third run keeps every change
(``history=True``, the replay default, what ``table.at()`` needs).
Target: the replay at least 0.9 x the wall-clock run.

``record``: produce the messages into a fresh Kafka topic (8 partitions; not
timed), then read the whole topic with a plain group-less aiokafka consumer
(``getmany`` until the end: the ceiling), and record it with
``streamnb.record`` into a fresh ``local://`` folder; both timed as a whole
job, connecting included. Target: recording at least 0.5 x the plain read.

Each measurement runs in its own subprocess; the plain read and the
recording alternate three times in one, and the best of each counts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pageviews import PARTITIONS, SIZE, STEP, build_app, payloads  # noqa: E402


async def _fill(folder: str, n: int) -> None:
    """The input topic of the pipeline, in a local:// folder (not timed)."""
    from streamnb.topics import partition_for_key
    from streamnb.transport.base import ProducerRecord, TopicSpec
    from streamnb.transport.local import LocalTransport

    transport = LocalTransport(f"local://{folder}")
    await transport.start()
    await transport.create_topic(TopicSpec("page_views", PARTITIONS))
    chunk = []
    for key, value, ts in payloads(n):
        chunk.append(ProducerRecord("page_views", partition_for_key(key, PARTITIONS), key, value, ts, ()))
        if len(chunk) == 50_000:
            await transport.send(chunk)
            chunk = []
    await transport.send(chunk)
    await transport.stop()


async def run_replay(mode: str, n: int) -> dict:
    from streamnb.testing import settle

    folder = tempfile.mkdtemp(prefix="streamnb-replay-bench-")
    try:
        await _fill(folder, n)
        broker = f"local://{folder}"
        if mode == "wall":
            app, _topic, views, count = build_app(broker, "bench")
        else:
            import streamnb as faust

            original = faust.App
            history = mode == "virtual-history"
            faust.App = lambda *a, **k: original(*a, clock="virtual", history=history, **k)  # type: ignore[misc]
            try:
                app, _topic, views, count = build_app(broker, "bench")
            finally:
                faust.App = original  # type: ignore[misc]
        t, c = time.perf_counter(), time.process_time()
        await app.start()
        if mode == "wall":
            await settle(app, timeout=3600)
        else:
            await app.clock.idle()
        elapsed, cpu = time.perf_counter() - t, time.process_time() - c
        total = sum(views.data.values()) + views.closed[0]
        late = views.late_events
        await app.stop()
        assert count.events_processed == n, (count.events_processed, n)
        return {
            "events_per_s": n / elapsed, "cpu_events_per_s": n / cpu, "seconds": elapsed,
            "windows_counted": total, "late_events": late, "expected": n * int(SIZE / STEP),
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def _produce_kafka(bootstrap: str, topic: str, n: int) -> None:
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=512 * 1024)
    await producer.start()
    try:
        from streamnb.topics import partition_for_key

        pending = []
        for key, value, ts in payloads(n):
            pending.append(await producer.send(
                topic, value, key=key, partition=partition_for_key(key, PARTITIONS), timestamp_ms=int(ts * 1000)
            ))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def plain_read(bootstrap: str, topic: str, n: int) -> dict:
    """Read the whole topic with a group-less aiokafka consumer, as fast as it goes.

    Timed like ``streamnb.record``: the whole job, connecting included.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition

    t = time.perf_counter()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest",
        max_partition_fetch_bytes=8 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        got = 0
        todo = {tp for tp in tps if ends[tp] > 0}
        for tp in tps:
            consumer.seek(tp, 0)
        while todo:
            batches = await consumer.getmany(*todo, timeout_ms=500, max_records=20_000)
            for tp, records in batches.items():
                got += len(records)
                if records and records[-1].offset + 1 >= ends[tp]:
                    todo.discard(tp)
    finally:
        await consumer.stop()
    elapsed = time.perf_counter() - t
    assert got == n, (got, n)
    return {"messages_per_s": n / elapsed, "seconds": elapsed}


async def run_record(bootstrap: str, topic: str, n: int) -> dict:
    import streamnb

    folder = tempfile.mkdtemp(prefix="streamnb-record-bench-")
    try:
        t = time.perf_counter()
        summary = await streamnb.record(f"kafka://{bootstrap}", topic, to=f"local://{folder}", progress=False)
        elapsed = time.perf_counter() - t
        assert int(summary["messages"].sum()) == n, summary
        return {"messages_per_s": n / elapsed, "seconds": elapsed}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


async def read_and_record(bootstrap: str, topic: str, n: int, rounds: int = 3) -> dict:
    """Alternate a plain read and a recording ``rounds`` times; the best of each (the machine is shared)."""
    reads, records = [], []
    for _ in range(rounds):
        reads.append(await plain_read(bootstrap, topic, n))
        records.append(await run_record(bootstrap, topic, n))
    return {
        "plain-read": max(reads, key=lambda r: r["messages_per_s"]),
        "record": max(records, key=lambda r: r["messages_per_s"]),
    }


def child(mode: str, n: int, kafka: str, topic: str) -> None:
    if mode in ("wall", "virtual", "virtual-history"):
        result = asyncio.run(run_replay(mode, n))
    elif mode == "produce":
        asyncio.run(_produce_kafka(kafka, topic, n))
        result = {}
    elif mode == "read-and-record":
        result = asyncio.run(read_and_record(kafka, topic, n))
    else:
        raise SystemExit(f"unknown mode {mode}")
    print("RESULT " + json.dumps(result), flush=True)


def _run(mode: str, args: argparse.Namespace, topic: str = "") -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", mode, "-n", str(args.n), "--kafka", args.kafka, "--topic", topic],
        capture_output=True, text=True,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{mode} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["replay", "record"], nargs="?", default="replay")
    parser.add_argument("-n", type=int, default=1_000_000)
    parser.add_argument("--kafka", default=os.environ.get("STREAMNB_KAFKA", "127.0.0.1:9092"))
    parser.add_argument("--topic", default="")
    parser.add_argument("--repeat", type=int, default=2, help="replay: runs of each mode (the best counts)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.n, args.kafka, args.topic)
        return
    if args.what == "replay":
        results = {}
        for _ in range(args.repeat):  # alternating; the best of each counts (the machine is shared)
            for mode in ("wall", "virtual", "virtual-history"):
                r = _run(mode, args)
                if mode not in results or r["events_per_s"] > results[mode]["events_per_s"]:
                    results[mode] = r
        base = results["wall"]["events_per_s"]
        print(f"{args.n:,} page views through group_by + hopping window count on local://")
        for mode, r in results.items():
            print(f"  {mode:16s} {r['events_per_s']:>10,.0f} events/s  x{r['events_per_s'] / base:.2f}  "
                  f"({r['seconds']:.1f} s, late events {r['late_events']})")
        ratio = results["virtual"]["events_per_s"] / base
        print(f"replay (speed=None) / wall clock: {ratio:.2f} (target >= 0.9: {'met' if ratio >= 0.9 else 'missed'})")
    else:
        topic = f"bench-record-{uuid.uuid4().hex[:8]}"
        _run("produce", args, topic)
        results = _run("read-and-record", args, topic)
        ratio = results["record"]["messages_per_s"] / results["plain-read"]["messages_per_s"]
        print(f"{args.n:,} messages, {PARTITIONS} partitions, from Kafka")
        for mode, r in results.items():
            print(f"  {mode:12s} {r['messages_per_s']:>10,.0f} messages/s ({r['seconds']:.1f} s)")
        print(f"record / plain aiokafka read: {ratio:.2f} (target >= 0.5: {'met' if ratio >= 0.5 else 'missed'})")


if __name__ == "__main__":
    main()
