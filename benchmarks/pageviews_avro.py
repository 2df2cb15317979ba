"""Benchmark: the page-view pipeline with Avro values (schema registry framing) next to the JSON one.

    python benchmarks/pageviews_avro.py [-n 1000000] [--backends memory,kafka] [--kafka 127.0.0.1:9092]

The same 1,000,000 page views as ``pageviews.py`` (group_by(page) and a
hopping 60 s / 10 s window count), once as JSON and once as Avro in
Confluent's wire format (magic byte, schema id, body) with the schema in a
schema registry (``scripts/schema_registry.py``, in the measuring process).
Each format is measured against its own ceiling, a bare loop over the same
payloads: ``json.loads`` for JSON, fastavro's ``schemaless_reader`` for Avro,
plus one dict increment per window. Target: Avro's ratio to its ceiling at
least JSON's ratio to its own. Each measurement runs in its own subprocess.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from io import BytesIO
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "scripts"))

import pageviews  # noqa: E402
from pageviews import PARTITIONS, SIZE, STEP, peak_mb  # noqa: E402

PAGE_VIEW_SCHEMA = {
    "type": "record",
    "name": "PageView",
    "fields": [{"name": name, "type": "string"} for name in ("id", "user", "page")],
}


def avro_payloads(n: int) -> list[tuple[bytes, bytes, float]]:
    """The JSON benchmark's page views as Confluent-framed Avro with schema id 1."""
    from fastavro import parse_schema, schemaless_writer

    schema = parse_schema(PAGE_VIEW_SCHEMA)
    out = []
    for key, value, ts in pageviews.payloads(n):
        buf = BytesIO()
        buf.write(b"\x00\x00\x00\x00\x01")
        schemaless_writer(buf, schema, json.loads(value))
        out.append((key, buf.getvalue(), ts))
    return out


def run_avro_ceiling(n: int) -> dict[str, Any]:
    from fastavro import parse_schema, schemaless_reader

    from streamnb.tables.windows import HoppingWindow

    data = avro_payloads(n)
    schema = parse_schema(PAGE_VIEW_SCHEMA)
    window = HoppingWindow(SIZE, STEP)
    counts: dict[Any, int] = defaultdict(int)
    read, new = schemaless_reader, BytesIO
    t, c = time.perf_counter(), time.process_time()
    for _key, value, ts in data:
        bio = new(value)
        bio.seek(5)
        page = read(bio, schema, None)["page"]
        for w in window.ranges(ts):
            counts[(page, w)] += 1
    elapsed, cpu = time.perf_counter() - t, time.process_time() - c
    assert sum(counts.values()) == n * int(SIZE / STEP)
    return {"events_per_s": n / elapsed, "cpu_events_per_s": n / cpu, "seconds": elapsed, "peak_mb": peak_mb()}


async def run_avro_app(broker: str, n: int) -> dict[str, Any]:
    from schema_registry import SchemaRegistryServer

    import streamnb as faust
    from streamnb.testing import settle

    server = SchemaRegistryServer().start()
    try:
        data = avro_payloads(n)
        app_id = f"bench-avro-{uuid.uuid4().hex[:6]}"
        kafka = broker.startswith("kafka://")

        class PageView(faust.Record):
            id: str
            user: str
            page: str

        app = faust.App(app_id, broker=broker, topic_partitions=PARTITIONS, schema_registry=server.url)
        topic = app.topic(f"{app_id}-page_views" if kafka else "page_views", value_type=PageView,
                          value_serializer="avro")
        await topic.prepare()  # registers the schema: id 1, as in the payloads
        assert topic.encode_value(PageView(id="0", user="u", page="/"))[:5] == b"\x00\x00\x00\x00\x01"  # type: ignore[index]
        closed = [0]

        def window_closed(key: Any, value: int) -> None:
            closed[0] += value

        views = app.Table("views", default=int, on_window_close=window_closed).hopping(SIZE, STEP, expires=3600)

        @app.agent(topic)
        async def count(stream):  # type: ignore[no-untyped-def]
            async for view in stream.group_by(PageView.page):
                views[view.page] += 1

        t = time.perf_counter()
        await pageviews.produce(app, topic, data)
        produce_s = time.perf_counter() - t
        del data
        t, c = time.perf_counter(), time.process_time()
        await app.start()
        if kafka:
            while count.events_processed < n and not count.crashes:
                await asyncio.sleep(0.05)
        await settle(app, timeout=3600)
        elapsed, cpu = time.perf_counter() - t, time.process_time() - c
        # The last commit may still be landing: on_window_close (which counts the
        # expired windows) runs once it has, at the latest when the app stops.
        await app.stop()
        total = sum(views.data.values()) + closed[0]
        late = views.late_windows  # window updates refused: event times more than `expires` behind
        assert count.dead_lettered == 0, count.last_error
        if kafka:
            from kafka_bench import delete_topics  # type: ignore[import-not-found]

            await delete_topics(broker.partition("://")[2], prefix=app_id)
        assert total + late == n * int(SIZE / STEP), (total, late, n, count.events_processed)
        return {
            "events_per_s": n / elapsed, "cpu_events_per_s": n / cpu, "seconds": elapsed,
            "produce_s": produce_s, "peak_mb": peak_mb(), "late_windows": late,
            "registry_requests": len(server.requests),
        }
    finally:
        server.stop()


def child(mode: str, n: int, kafka: str) -> None:
    fmt, _, where = mode.partition("-")
    if mode == "json-ceiling":
        result = pageviews.run_ceiling(n)
    elif mode == "avro-ceiling":
        result = run_avro_ceiling(n)
    else:
        broker = f"kafka://{kafka}" if where == "kafka" else f"memory://bench-{uuid.uuid4().hex[:6]}"
        result = asyncio.run(pageviews.run_app(broker, n) if fmt == "json" else run_avro_app(broker, n))
    print("RESULT " + json.dumps(result), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1_000_000)
    parser.add_argument("--backends", default="memory")
    parser.add_argument("--kafka", default=os.environ.get("STREAMNB_KAFKA", "127.0.0.1:9092"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.n, args.kafka)
        return
    modes = ["json-ceiling", "avro-ceiling"]
    for backend in args.backends.split(","):
        modes += [f"json-{backend}", f"avro-{backend}"]
    results: dict[str, dict[str, Any]] = {}
    for mode in modes:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", mode, "-n", str(args.n), "--kafka", args.kafka],
            capture_output=True, text=True,
        )
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not line:
            print(f"{mode}: FAILED\n{proc.stderr[-3000:]}")
            continue
        results[mode] = json.loads(line[0][7:])
    print(f"\n{args.n:,} page views, group_by(page) + hopping({SIZE:g}s, {STEP:g}s) count, {PARTITIONS} partitions\n")
    print(f"{'run':<16}{'events/s':>12}{'seconds':>10}{'peak MB':>10}{'x own ceiling':>15}{'x cpu ceiling':>15}")
    for mode, r in results.items():
        fmt = mode.partition("-")[0]
        ceiling = results.get(f"{fmt}-ceiling")
        ratio = r["events_per_s"] / ceiling["events_per_s"] if ceiling else float("nan")
        cpu_ratio = r["cpu_events_per_s"] / ceiling["cpu_events_per_s"] if ceiling else float("nan")
        print(f"{mode:<16}{r['events_per_s']:>12,.0f}{r['seconds']:>10.2f}{r['peak_mb']:>10.0f}"
              f"{ratio:>15.2f}{cpu_ratio:>15.2f}")
    for backend in args.backends.split(","):
        j, a = results.get(f"json-{backend}"), results.get(f"avro-{backend}")
        jc, ac = results.get("json-ceiling"), results.get("avro-ceiling")
        if j and a and jc and ac:
            jr, ar = j["events_per_s"] / jc["events_per_s"], a["events_per_s"] / ac["events_per_s"]
            print(f"\n{backend}: avro {ar:.2f} x its ceiling, json {jr:.2f} x its ceiling: target avro >= json "
                  + ("ok" if ar >= jr else "MISSED") + f"; registry requests during the avro run: "
                  f"{a.get('registry_requests')}")


if __name__ == "__main__":
    main()
