"""Throughput of the ``local://`` transport for small messages.

Prints, as wall-clock msg/s and as msg per CPU-second (steadier on a busy
machine), appends/s (``send`` in batches), reads/s (``read`` over whole
partitions, as table recovery does), consumer reads/s (``getmany``) and a
pass-through pipeline (``getmany`` + ``commit(offsets, records)``), with the
same figures for ``memory://`` as a yardstick.

Usage::

    python benchmarks/transport_local.py            # 1,000,000 messages
    python benchmarks/transport_local.py -n 200000 --batch 1000 --sync full
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from streamnb.transport.base import TP, ProducerRecord, RebalanceListener, TopicSpec, Transport  # noqa: E402
from streamnb.transport.local import LocalTransport  # noqa: E402
from streamnb.transport.memory import MemoryTransport  # noqa: E402

PARTITIONS = 4


async def _nothing(_: set[TP]) -> None:
    return None


def _rate(n: int, timing: tuple[float, float]) -> str:
    wall, cpu = timing
    return f"{n / wall:>10,.0f} msg/s {n / cpu:>10,.0f} msg/cpu-s"


class _Clock:
    """Wall time and CPU time (all threads of the process) of a block."""

    def __enter__(self) -> _Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *_: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu

    @property
    def timing(self) -> tuple[float, float]:
        return self.wall, self.cpu


async def run(transport: Transport, n: int, batch: int) -> dict[str, tuple[float, float]]:
    await transport.start()
    await transport.create_topic(TopicSpec("in", PARTITIONS))
    await transport.create_topic(TopicSpec("out", PARTITIONS))
    now = time.time()
    records = [
        ProducerRecord("in", i % PARTITIONS, b"user-%d" % (i % 1000), b'{"n": %d, "page": "/a"}' % i, now + i * 1e-6)
        for i in range(n)
    ]
    figures: dict[str, tuple[float, float]] = {}

    with _Clock() as clock:
        for i in range(0, n, batch):
            await transport.send(records[i : i + batch])
    figures["append (send)"] = clock.timing

    clock = _Clock().__enter__()
    got = 0
    for p in range(PARTITIONS):
        tp = TP("in", p)
        end = (await transport.end_offsets([tp]))[tp]
        offset = 0
        while offset < end:
            chunk = await transport.read(tp, offset, end, 10_000)
            got += len(chunk)
            offset = chunk[-1].offset + 1
    assert got == n, got
    clock.__exit__()
    figures["read (range)"] = clock.timing

    consumer = transport.consumer("bench", ["in"], RebalanceListener(_nothing, _nothing))
    await consumer.start()
    got = 0
    with _Clock() as clock:
        while got < n:
            got += len(await consumer.getmany(1.0, 10_000))
    figures["getmany"] = clock.timing
    await consumer.stop()

    consumer = transport.consumer("pipe", ["in"], RebalanceListener(_nothing, _nothing))
    await consumer.start()
    got = 0
    with _Clock() as clock:
        while got < n:
            messages = await consumer.getmany(1.0, batch)
            got += len(messages)
            offsets = {TP(m.topic, m.partition): m.offset + 1 for m in messages}
            out = [ProducerRecord("out", m.partition, m.key, m.value, m.timestamp) for m in messages]
            await consumer.commit(offsets, out)
    figures["getmany + commit"] = clock.timing
    await consumer.stop()
    await transport.stop()
    return figures


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1_000_000, help="messages (default 1,000,000)")
    parser.add_argument("--batch", type=int, default=10_000, help="records per send/commit (default 10,000)")
    parser.add_argument("--sync", choices=["normal", "full"], default="normal")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="streamnb-bench-") as folder:
        results = {
            "local": await run(LocalTransport(f"local://{folder}?sync={args.sync}"), args.n, args.batch),
            "memory": await run(MemoryTransport("memory://bench"), args.n, args.batch),
        }
        size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
    print(f"{args.n:,} messages of ~30 bytes, {PARTITIONS} partitions, batches of {args.batch:,}, sync={args.sync}")
    for name in results["local"]:
        local, memory = _rate(args.n, results["local"][name]), _rate(args.n, results["memory"][name])
        print(f"  {name:17} local {local}   memory {memory}")
    print(f"  store size on disk: {size / 1e6:.1f} MB (two topics)")


if __name__ == "__main__":
    asyncio.run(main())
