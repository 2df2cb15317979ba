"""Benchmark: a large table partition taken over after its owner is ``kill -9``ed, with and without a standby.

    python benchmarks/standby.py [--keys 1000000,5000000] [--kafka 127.0.0.1:9092] [--restart]

Two worker processes (``tests/workers/standby_worker.py``: a per-key count
on ``rocksdb://``, each worker with its own datadir, as on two machines)
share a topic of two partitions. The table's changelog partition 0 holds N
keys (written directly, as an app would have); partition 1 a few. Worker A
starts alone, restores partition 0 from the whole changelog, then worker B
joins: A keeps partition 0, B gets 1. With ``table_standby_replicas=1`` B
also follows partition 0's changelog into its own store; with 0 it does
not. Once everything settled (B's standby caught up), A is killed with
SIGKILL while events keep arriving on both partitions. Printed per run:

- ``rebalance -> first event``: seconds from the start of the rebalance on
  B (it loses its partitions when the group notices A is gone) to the first
  event of partition 0 that B processed: the restore, then processing;
- ``kill -> first event``: the same from the kill (adds Kafka's session
  timeout, 6 s here, until the group notices);
- ``records read``: changelog records B's restore read at the takeover.

With ``--restart``: a worker restarted on its datadir instead. The topic has
four partitions, N keys spread over them; no standbys. Worker A restores
all four, B joins (A keeps 0-1, B gets 2-3), A stops cleanly, B takes 0-1
over (reading their whole changelogs), events keep arriving, and A starts
again on the same datadir. Printed: the partitions A gets back, the
changelog records its restores read (against the changelogs' length and
what B read to take them over) and the seconds from A's start until they
are restored (including the process's start).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WORKER = ROOT / "tests" / "workers" / "standby_worker.py"
FAST_GROUP = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 500}


class Worker:
    """The worker script in a subprocess; its last JSON report is kept."""

    def __init__(self, config: dict[str, Any], log: Path) -> None:
        self.config, self.log = config, log
        self.state: dict[str, Any] = {}
        self.proc: asyncio.subprocess.Process | None = None
        self.reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.state = {}
        with open(self.log, "ab") as err:  # noqa: ASYNC230 - a local file, once
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, str(WORKER), json.dumps(self.config), stdout=subprocess.PIPE, stderr=err,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
            )
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for line in self.proc.stdout:
            try:
                self.state = json.loads(line)
            except ValueError:
                continue

    async def wait(self, what: str, check: Any, timeout: float = 900.0) -> None:
        deadline = time.monotonic() + timeout
        while not check(self.state):
            if self.proc is None or self.proc.returncode is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
                raise RuntimeError(f"worker: {what} did not happen; its last report {self.state}; its log:\n{tail}")
            await asyncio.sleep(0.1)

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(sig)
            await self.proc.wait()
        if self.reader is not None:
            await self.reader


async def write_changelog(bootstrap: str, app_id: str, topic: str, keys: int, partitions: int = 2) -> None:
    """The input topic and the changelog, written as the app writes it: N keys in partition 0 and 100 in
    partition 1 (``partitions=2``), else N keys spread over every partition."""
    import streamnb as faust
    from streamnb.transport.base import ProducerRecord

    app = faust.App(app_id, broker=f"kafka://{bootstrap}", topic_partitions=partitions, store="rocksdb://",
                    datadir=tempfile.mkdtemp())
    table = app.Table("counts", default=int)
    transport = await app.connect()
    await app.topic(topic).declare()
    await table.changelog.declare()
    name, batch = table.changelog.name, []
    for i in range(keys + 100):
        partition = (0 if i < keys else 1) if partitions == 2 else i % partitions
        batch.append(ProducerRecord(name, partition, b'"k%d"' % i, b"1", 1_700_000_000.0))
        if len(batch) == 100_000:
            await transport.send(batch)
            batch = []
    await transport.send(batch)
    await app.stop()


async def feed(bootstrap: str, topic: str, stop: asyncio.Event, partitions: int = 2) -> None:
    """An event on each partition every 20 ms, until ``stop``."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=1)
    await producer.start()
    try:
        i = 0
        while not stop.is_set():
            for partition in range(partitions):
                await producer.send(topic, key=b"f%d" % i, value=b"1", partition=partition)
            i += 1
            await asyncio.sleep(0.02)
    finally:
        await producer.stop()


async def takeover(bootstrap: str, app_id: str, topic: str, replicas: int, folder: Path) -> dict[str, Any]:
    """One run: A owns the large partition, B joins (with or without a standby), A is killed."""
    run = folder / f"replicas{replicas}"
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    base = {"bootstrap": bootstrap, "app_id": app_id, "topic": topic, "partitions": 2, "replicas": replicas,
            "kafka": FAST_GROUP, "report_interval": 0.1}
    a = Worker({**base, "datadir": str(run / "a")}, run / "a.log")
    b = Worker({**base, "datadir": str(run / "b")}, run / "b.log")
    stop = asyncio.Event()
    feeding = asyncio.ensure_future(feed(bootstrap, topic, stop))
    try:
        began = time.monotonic()
        await a.start()
        await a.wait("A restores partition 0", lambda s: "0" in s.get("recovered", {}) and s["assigned"] == [0, 1])
        cold = time.monotonic() - began
        await b.start()
        await b.wait("B gets partition 1", lambda s: s.get("assigned") == [1])
        await a.wait("A keeps partition 0", lambda s: s.get("assigned") == [0])
        if replicas:
            end = await changelog_end(bootstrap, f"{app_id}-counts-changelog")
            await b.wait("B's standby catches up", lambda s: s.get("positions", {}).get("0", -1) >= end)
        killed = time.monotonic()
        await a.stop(signal.SIGKILL)
        await b.wait("B processes partition 0", lambda s: "0" in s.get("takeover", {}))
        first = time.monotonic() - killed
        return {"replicas": replicas, "records read": b.state["recovered"]["0"][-1],
                "rebalance -> first event": b.state["takeover"]["0"], "kill -> first event": first,
                "cold": cold}
    finally:
        stop.set()
        await feeding
        await asyncio.gather(a.stop(), b.stop())


async def restart(bootstrap: str, keys: int, away: float = 3.0) -> dict[str, Any]:
    """One run of ``--restart`` (see the module docstring)."""
    app_id = f"standby-restart-{uuid.uuid4().hex[:8]}"
    topic = f"{app_id}-events"
    await write_changelog(bootstrap, app_id, topic, keys, partitions=4)
    run = Path(tempfile.mkdtemp(prefix="standby-restart-"))
    base = {"bootstrap": bootstrap, "app_id": app_id, "topic": topic, "partitions": 4, "replicas": 0,
            "kafka": FAST_GROUP, "report_interval": 0.1}
    a = Worker({**base, "datadir": str(run / "a")}, run / "a.log")
    b = Worker({**base, "datadir": str(run / "b")}, run / "b.log")
    stop = asyncio.Event()
    feeding = asyncio.ensure_future(feed(bootstrap, topic, stop, 4))
    try:
        await a.start()
        await a.wait("A restores everything", lambda s: s.get("assigned") == [0, 1, 2, 3]
                     and len(s.get("recovered", {})) == 4)
        await b.start()
        await b.wait("B gets two partitions", lambda s: len(s.get("assigned", ())) == 2
                     and all(str(p) in s.get("recovered", {}) for p in s["assigned"]))
        await a.wait("A keeps two", lambda s: len(s.get("assigned", ())) == 2)
        mine = list(a.state["assigned"])
        await a.stop()
        await b.wait("B takes A's partitions over", lambda s: s.get("assigned") == [0, 1, 2, 3]
                     and all(str(p) in s.get("recovered", {}) for p in mine))
        b_read = sum(b.state["recovered"][str(p)][-1] for p in mine)
        await asyncio.sleep(away)  # (events keep arriving: the tail A will read)
        started = time.monotonic()
        await a.start()
        await a.wait("A is back", lambda s: len(s.get("assigned", ())) == 2
                     and all(str(p) in s.get("recovered", {}) for p in s["assigned"]))
        back = time.monotonic() - started
        return {"held": mine, "back": list(a.state["assigned"]), "keys": keys, "b read": b_read,
                "a read": sum(a.state["recovered"][str(p)][-1] for p in a.state["assigned"]), "seconds": back}
    finally:
        stop.set()
        await feeding
        await asyncio.gather(a.stop(), b.stop())
        shutil.rmtree(run, ignore_errors=True)


async def changelog_end(bootstrap: str, changelog: str) -> int:
    """The end offset of the changelog's partition 0 now."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tp = TopicPartition(changelog, 0)
        return int((await consumer.end_offsets([tp]))[tp])
    finally:
        await consumer.stop()


async def bench(bootstrap: str, keys: int) -> list[dict[str, Any]]:
    app_id = f"standby-bench-{uuid.uuid4().hex[:8]}"
    topic = f"{app_id}-events"
    began = time.monotonic()
    await write_changelog(bootstrap, app_id, topic, keys)
    print(f"  wrote {keys:,} changelog records in {time.monotonic() - began:.1f} s", flush=True)
    folder = Path(tempfile.mkdtemp(prefix="standby-bench-"))
    try:
        return [await takeover(bootstrap, app_id, topic, replicas, folder) for replicas in (1, 0)]
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", default="1000000", help="comma-separated key counts of the large partition")
    parser.add_argument("--kafka", default=os.environ.get("STREAMNB_KAFKA", "127.0.0.1:9092"))
    parser.add_argument("--restart", action="store_true", help="a worker restarted on its datadir instead")
    args = parser.parse_args()
    if args.restart:
        print("| keys (4 partitions) | A held | A got back | records A's restores read | records B read to take "
              "them over | A's start -> restored (s) |")
        print("|---|---|---|---|---|---|")
        for keys in (int(k) for k in args.keys.split(",")):
            row = asyncio.run(restart(args.kafka, keys))
            print(f"| {keys:,} | {row['held']} | {row['back']} | {row['a read']:,} | {row['b read']:,} "
                  f"| {row['seconds']:.2f} |", flush=True)
        return
    print("| keys in the partition | standby | records read at takeover | rebalance -> first event (s) "
          "| kill -> first event (s) | owner's cold restore (s) |")
    print("|---|---|---|---|---|---|")
    for keys in (int(k) for k in args.keys.split(",")):
        rows = asyncio.run(bench(args.kafka, keys))
        for row in rows:
            print(f"| {keys:,} | {'yes' if row['replicas'] else 'no'} | {row['records read']:,} "
                  f"| {row['rebalance -> first event']:.2f} | {row['kill -> first event']:.2f} "
                  f"| {row['cold']:.1f} |", flush=True)
        with_standby, without = rows
        print(f"  ratio without/with standby (rebalance -> first event): "
              f"{without['rebalance -> first event'] / with_standby['rebalance -> first event']:.1f}x", flush=True)


if __name__ == "__main__":
    main()
