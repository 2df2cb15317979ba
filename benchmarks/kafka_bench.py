"""Kafka figures: the raw aiokafka consume rate, and table recovery from a changelog.

    python benchmarks/kafka_bench.py ceiling  [-n 1000000] [--kafka 127.0.0.1:9092]
    python benchmarks/kafka_bench.py recovery [-n 1000000] [--kafka 127.0.0.1:9092]

``ceiling`` (also ``benchmarks/pageviews.py``'s ``kafka-ceiling`` mode, through
:func:`raw_consume_rate`): the page-view payloads of ``pageviews.py`` are
produced to a fresh 8-partition topic (not timed), then a plain
``AIOKafkaConsumer`` reads them back with ``getmany`` and ``json.loads``
each value, nothing else (timed from the consumer's start).

``recovery``: a changelog of ``n`` keys is written as a table writes it (JSON
keys and integer values, 8 partitions; not timed). Then a plain aiokafka
consumer reads the whole topic (and, separately, also decodes every key and
value), and a fresh App holding that table starts and rebuilds it: the
figures are the time from ``app.start()`` until every key is back, and the
part of it spent inside ``Table.recover``.

Needs a broker (``bash scripts/kafka.sh up``). Every run uses new topics and
deletes them afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

FETCH = {  # what streamnb's consumers ask for (streamnb/transport/kafka.py)
    "max_partition_fetch_bytes": 4 * 1024 * 1024,
    "fetch_max_bytes": 64 * 1024 * 1024,
}


def peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _transport(bootstrap: str) -> Any:
    from streamnb.transport.kafka import KafkaTransport

    transport = KafkaTransport(f"kafka://{bootstrap}", client_id="kafka-bench")
    await transport.start()
    return transport


async def produce_pageviews(bootstrap: str, topic: str, n: int, partitions: int) -> float:
    """The page views of pageviews.py into ``topic`` (keyed by user, murmur2); returns seconds."""
    from pageviews import payloads

    from streamnb.topics import partition_for_key
    from streamnb.transport.base import ProducerRecord, TopicSpec

    transport = await _transport(bootstrap)
    try:
        t = time.perf_counter()
        await transport.create_topic(TopicSpec(topic, partitions))
        chunk: list[ProducerRecord] = []
        for key, value, ts in payloads(n):
            chunk.append(ProducerRecord(topic, partition_for_key(key, partitions), key, value, ts, ()))
            if len(chunk) == 20_000:
                await transport.send(chunk)
                chunk = []
        if chunk:
            await transport.send(chunk)
        return time.perf_counter() - t
    finally:
        await transport.stop()


async def delete_topics(bootstrap: str, *, prefix: str = "", names: tuple[str, ...] = ()) -> None:
    """Delete benchmark topics (by exact name, or every topic starting with ``prefix``)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        doomed = set(names)
        if prefix:
            doomed |= {t for t in await admin.list_topics() if t.startswith(prefix)}
        if doomed:
            await admin.delete_topics(sorted(doomed))
    except Exception as exc:  # noqa: BLE001 - cleanup only
        print(f"(could not delete topics {sorted(doomed)}: {exc!r})", file=sys.stderr)
    finally:
        await admin.close()


async def read_all(bootstrap: str, topic: str, partitions: int, n: int, decode: str = "value") -> tuple[int, float]:
    """Read ``n`` records of ``topic`` from the start with a plain consumer; returns (records, seconds).

    ``decode``: ``value`` json-decodes every value, ``both`` keys and values, ``none`` nothing.
    """
    loads = json.loads
    t = time.perf_counter()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, auto_offset_reset="earliest", **FETCH
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        count = 0
        while count < n:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for records in batches.values():
                if decode == "value":
                    for record in records:
                        loads(record.value)
                elif decode == "both":
                    table = {}
                    for record in records:
                        table[loads(record.key)] = loads(record.value)
                count += len(records)
        return count, time.perf_counter() - t
    finally:
        await consumer.stop()


async def raw_consume_rate(bootstrap: str, n: int) -> dict[str, float]:
    """The raw aiokafka consume rate (getmany + json.loads per value) on pageviews.py's payloads.

    The same events, keys and partitioning (8 partitions, murmur2 by user) as
    ``pageviews.py --backends kafka``; producing them is not timed.
    """
    from pageviews import PARTITIONS

    topic = f"bench-raw-{uuid.uuid4().hex[:8]}"
    try:
        produce_s = await produce_pageviews(bootstrap, topic, n, PARTITIONS)
        c = time.process_time()
        count, seconds = await read_all(bootstrap, topic, PARTITIONS, n, decode="value")
        cpu = time.process_time() - c
    finally:
        await delete_topics(bootstrap, names=(topic,))
    assert count == n, (count, n)
    return {
        "events_per_s": n / seconds, "cpu_events_per_s": n / cpu, "seconds": seconds,
        "produce_s": produce_s, "peak_mb": peak_mb(),
    }


async def raw_group_by_rate(bootstrap: str, n: int) -> dict[str, float]:
    """The same dataflow as ``pageviews.py``'s app, hand-written on plain aiokafka.

    One process, no streamnb: a consumer reads the page views (getmany +
    json.loads), a producer re-keys each by page into an 8-partition
    repartition topic (batches per partition, as streamnb sends them), a
    second consumer reads that topic back (getmany + json.loads) and counts
    every event into its hopping windows in a dict. No offsets are committed
    and no changelog is written: what it costs to do group_by over Kafka at
    all, in Python, before any framework.
    """
    from aiokafka import AIOKafkaProducer
    from pageviews import PARTITIONS, SIZE, STEP

    from streamnb.tables.windows import HoppingWindow
    from streamnb.topics import partition_for_key
    from streamnb.transport.base import TopicSpec

    topic = f"bench-raw-{uuid.uuid4().hex[:8]}"
    repartition = f"{topic}-repartition"
    loads = json.loads
    window = HoppingWindow(SIZE, STEP)
    counts: dict[tuple[str, Any], int] = {}
    try:
        produce_s = await produce_pageviews(bootstrap, topic, n, PARTITIONS)
        transport = await _transport(bootstrap)
        try:
            await transport.create_topic(TopicSpec(repartition, PARTITIONS))  # waits for the leaders
        finally:
            await transport.stop()
        t, c = time.perf_counter(), time.process_time()
        options = dict(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                       auto_offset_reset="earliest", fetch_max_wait_ms=20, **FETCH)
        source, sink = AIOKafkaConsumer(**options), AIOKafkaConsumer(**options)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=2, max_batch_size=256 * 1024)
        await asyncio.gather(source.start(), sink.start(), producer.start())
        routes: dict[str, tuple[bytes, int]] = {}

        async def forward() -> None:
            source.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
            forwarded = 0
            while forwarded < n:
                batches = await source.getmany(timeout_ms=1000, max_records=10_000)
                by_partition: dict[int, list[tuple[bytes, bytes, int]]] = {}
                for records in batches.values():
                    for record in records:
                        page = loads(record.value)["page"]
                        route = routes.get(page)
                        if route is None:
                            key = page.encode()
                            route = routes[page] = (key, partition_for_key(key, PARTITIONS))
                        by_partition.setdefault(route[1], []).append((route[0], record.value, record.timestamp))
                        forwarded += 1
                deliveries = []
                for partition, group in by_partition.items():
                    batch = producer.create_batch()
                    for key, value, timestamp in group:
                        if batch.append(key=key, value=value, timestamp=timestamp) is None:
                            deliveries.append(await producer.send_batch(batch, repartition, partition=partition))
                            batch = producer.create_batch()
                            batch.append(key=key, value=value, timestamp=timestamp)
                    batch.close()
                    deliveries.append(await producer.send_batch(batch, repartition, partition=partition))
                await asyncio.gather(*deliveries)

        async def count() -> None:
            sink.assign([TopicPartition(repartition, p) for p in range(PARTITIONS)])
            seen = 0
            while seen < n:
                batches = await sink.getmany(timeout_ms=1000, max_records=10_000)
                for records in batches.values():
                    for record in records:
                        page = loads(record.value)["page"]
                        for w in window.ranges(record.timestamp / 1000):
                            counts[(page, w)] = counts.get((page, w), 0) + 1
                    seen += len(records)

        try:
            await asyncio.gather(forward(), count())
        finally:
            await asyncio.gather(source.stop(), sink.stop(), producer.stop())
        seconds, cpu = time.perf_counter() - t, time.process_time() - c
    finally:
        await delete_topics(bootstrap, names=(topic, repartition))
    assert sum(counts.values()) == n * int(SIZE / STEP)
    return {
        "events_per_s": n / seconds, "cpu_events_per_s": n / cpu, "seconds": seconds,
        "produce_s": produce_s, "peak_mb": peak_mb(),
    }


async def recovery(bootstrap: str, n: int, partitions: int = 8) -> dict[str, float]:
    """Time to rebuild a table of ``n`` keys from its changelog, beside a plain read of that topic."""
    import streamnb as faust
    from streamnb.topics import partition_for_key
    from streamnb.transport.base import ProducerRecord, TopicSpec

    app_id = f"bench-recovery-{uuid.uuid4().hex[:6]}"
    changelog = f"{app_id}-counts-changelog"
    out: dict[str, float] = {"keys": n}
    try:
        # A changelog as a table writes it: JSON key, JSON (int) value, compacted.
        transport = await _transport(bootstrap)
        try:
            t = time.perf_counter()
            await transport.create_topic(TopicSpec(changelog, partitions, compacted=True))
            chunk: list[ProducerRecord] = []
            now = time.time()
            for i in range(n):
                key = json.dumps(f"user-{i}").encode()
                chunk.append(ProducerRecord(changelog, partition_for_key(key, partitions), key, b"%d" % (i % 977), now))
                if len(chunk) == 50_000:
                    await transport.send(chunk)
                    chunk = []
            if chunk:
                await transport.send(chunk)
            out["write_s"] = time.perf_counter() - t
        finally:
            await transport.stop()

        count, out["plain_read_s"] = await read_all(bootstrap, changelog, partitions, n, decode="none")
        assert count == n, (count, n)
        count, out["plain_read_decode_s"] = await read_all(bootstrap, changelog, partitions, n, decode="both")
        assert count == n, (count, n)

        # A restarted worker: the same app id, a table and the agent that writes it.
        app = faust.App(app_id, broker=f"kafka://{bootstrap}", topic_partitions=partitions)
        source = app.topic(f"{app_id}-events", value_type=str)
        counts = app.Table("counts", default=int)

        @app.agent(source)
        async def count_events(stream):  # type: ignore[no-untyped-def]
            async for word in stream:
                counts[word] += 1

        in_recover = [0.0]
        recover = counts.recover

        async def timed_recover(parts: Any = None) -> int:
            t0 = time.perf_counter()
            try:
                return await recover(parts)
            finally:
                in_recover[0] += time.perf_counter() - t0

        counts.recover = timed_recover  # type: ignore[method-assign,assignment]
        t, c = time.perf_counter(), time.process_time()
        await app.start()
        try:
            while len(counts.data) < n or len(counts.recovered_partitions) < partitions:
                await asyncio.sleep(0.01)
            out["app_ready_s"] = time.perf_counter() - t
            out["app_cpu_s"] = time.process_time() - c
            out["table_recover_s"] = in_recover[0]
            assert counts[f"user-{n - 1}"] == (n - 1) % 977
        finally:
            await app.stop()
        out["peak_mb"] = peak_mb()
    finally:
        await delete_topics(bootstrap, prefix=app_id)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["ceiling", "recovery"])
    parser.add_argument("-n", type=int, default=1_000_000)
    parser.add_argument("--kafka", default=os.environ.get("STREAMNB_KAFKA", "127.0.0.1:9092"))
    args = parser.parse_args()
    if args.what == "ceiling":
        r = asyncio.run(raw_consume_rate(args.kafka, args.n))
        print(f"raw aiokafka consume (getmany + json.loads), {args.n:,} page views, 8 partitions:")
        print(f"  {r['events_per_s']:,.0f} events/s ({r['seconds']:.2f} s; cpu {r['cpu_events_per_s']:,.0f} events/s; "
              f"produce {r['produce_s']:.1f} s untimed; peak {r['peak_mb']:.0f} MB)")
        return
    r = asyncio.run(recovery(args.kafka, args.n))
    n = args.n
    print(f"table of {n:,} keys recovered from its changelog (8 partitions) on a restart:")
    print(f"  app.start() until every key is back : {r['app_ready_s']:7.2f} s  ({n / r['app_ready_s']:,.0f} keys/s; "
          f"cpu {r['app_cpu_s']:.2f} s)")
    print(f"    of which inside Table.recover     : {r['table_recover_s']:7.2f} s  "
          f"({n / r['table_recover_s']:,.0f} keys/s)")
    print(f"  plain aiokafka read, no decoding    : {r['plain_read_s']:7.2f} s  "
          f"({n / r['plain_read_s']:,.0f} records/s)")
    print(f"  plain aiokafka read + json key/value: {r['plain_read_decode_s']:7.2f} s  "
          f"({n / r['plain_read_decode_s']:,.0f} records/s)")
    print(f"  recovery / plain read               : {r['table_recover_s'] / r['plain_read_s']:7.2f} x  "
          f"(/ read+decode: {r['table_recover_s'] / r['plain_read_decode_s']:.2f} x)")
    print(f"  (writing the changelog, untimed: {r['write_s']:.1f} s; peak {r['peak_mb']:.0f} MB)")


if __name__ == "__main__":
    main()
