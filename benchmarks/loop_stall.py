"""The longest stall of the event loop while streamnb commits a million keys and reads large messages.

A notebook kernel runs every widget and cell on one event loop: a step of
processing that holds it for a second freezes them all. A ticker task
sleeps 5 ms again and again and measures its own lateness; the longest
lateness is the longest stall. Two scenarios, each on the chosen brokers:

* ``commit``: one event makes the agent write ``--keys`` distinct keys to a
  table (the agent itself yields every 10,000 writes, as any long agent
  should), then the commit writes them all: changelog records encoded,
  the sqlite transaction written, the table told it is durable;
* ``recover``: an app starts on that folder and restores the table from
  its changelog;
* ``read``: ``--messages`` messages of ``--size`` MB each are read by an
  agent (``len`` of each value) and committed.

Target: at most about 100 ms. Each line gives the median of ``--repeat``
runs (and each run's worst stall), and the scenario's time (keys or MB per
second): the throughput cost of not stalling. The first line is the worst
stall of an idle loop: on a busy machine other processes add their own.

Usage::

    python benchmarks/loop_stall.py                               # 1,000,000 keys, 60 x 10 MB
    python benchmarks/loop_stall.py --keys 100000 --messages 20 --size 2 --backends memory,local
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import streamnb as faust  # noqa: E402
from streamnb.testing import settle  # noqa: E402
from streamnb.transport import open_transport  # noqa: E402
from streamnb.transport.base import ProducerRecord, TopicSpec  # noqa: E402

TICK = 0.005


class Ticker:
    """A task that sleeps :data:`TICK` s again and again and keeps its worst lateness (while ``armed``)."""

    def __init__(self, armed: bool = True) -> None:
        self.worst = 0.0
        self.armed = armed
        self.task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(TICK)
            if self.armed:
                self.worst = max(self.worst, loop.time() - start - TICK)

    async def __aenter__(self) -> Ticker:
        self.task = asyncio.get_running_loop().create_task(self._run())
        await asyncio.sleep(2 * TICK)  # ticking before the work starts
        return self

    async def __aexit__(self, *_: object) -> None:
        await asyncio.sleep(2 * TICK)  # a wake-up after the work, to see how late it is
        assert self.task is not None
        self.task.cancel()


def url(backend: str, folder: str, name: str) -> str:
    return f"memory://stall-{name}-{os.getpid()}" if backend == "memory" else f"local://{folder}/{name}"


async def commit_keys(broker: str, keys: int) -> tuple[float, float]:
    """(worst stall, seconds) of the commit of one event that wrote ``keys`` distinct keys.

    The ticker is armed when the agent's own loop (which yields every 1,000
    writes) is done: what it then measures is streamnb's commit alone.
    """
    app = faust.App("stall-commit", broker=broker, topic_partitions=1)
    go = app.topic("go", partitions=1, value_type=int)
    table = app.Table("wide", default=int, partitions=1)
    ticker = Ticker(armed=False)
    written: list[float] = []

    @app.agent(go)
    async def write(stream: Any) -> None:
        async for n in stream:
            for i in range(n):
                table[i] = i
                if i % 1_000 == 999:
                    await asyncio.sleep(0)
            written.append(time.perf_counter())
            ticker.armed = True  # what follows is the commit

    async with app:
        async with ticker:
            await go.send(value=keys)
            await settle(app, timeout=600)
        took = time.perf_counter() - written[0]
        write.raise_if_crashed()
        assert len(table.data) == keys
    return ticker.worst, took


async def recover_keys(broker: str, keys: int) -> tuple[float, float]:
    """(worst stall, seconds) of an app's start that restores a table of ``keys`` keys from its changelog."""
    await commit_keys(broker, keys)  # (the table to restore; not timed)
    gc.collect()
    app = faust.App("stall-commit", broker=broker, topic_partitions=1)
    table = app.Table("wide", default=int, partitions=1)
    async with Ticker() as ticker:
        start = time.perf_counter()
        await app.start()
        took = time.perf_counter() - start
    try:
        assert len(table.data) == keys
    finally:
        await app.stop()
    return ticker.worst, took


async def idle(seconds: float) -> float:
    """The worst stall of an idle loop over ``seconds``: what the machine itself adds (other processes)."""
    async with Ticker() as ticker:
        await asyncio.sleep(seconds)
    return ticker.worst


async def read_large(broker: str, messages: int, size_mb: int) -> tuple[float, float]:
    """(worst stall, seconds to read and commit ``messages`` values of ``size_mb`` MB)."""
    transport = open_transport(broker, client_id="fill")
    await transport.start()
    await transport.create_topic(TopicSpec("large", 2))
    value = b"x" * (size_mb * 1024 * 1024)
    for i in range(messages):
        await transport.send([ProducerRecord("large", i % 2, None, value, time.time())])
    await transport.stop()
    del value
    app = faust.App("stall-read", broker=broker, topic_partitions=2)
    large = app.topic("large", partitions=2, value_serializer="raw")
    seen = app.Table("seen", default=int, partitions=2)

    @app.agent(large)
    async def measure(stream: Any) -> None:
        async for data in stream:
            seen[len(data)] += 1

    async with Ticker() as ticker:
        start = time.perf_counter()
        async with app:
            await settle(app, timeout=600)
            measure.raise_if_crashed()
            took = time.perf_counter() - start
    return ticker.worst, took


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--messages", type=int, default=60)
    parser.add_argument("--size", type=int, default=10, help="MB per message")
    parser.add_argument("--backends", default="local,memory")
    parser.add_argument("--only", choices=["commit", "recover", "read"], default=None)
    parser.add_argument("--repeat", type=int, default=3, help="runs per scenario; the median is shown")
    args = parser.parse_args()
    print(f"idle loop: worst stall {await idle(3.0) * 1000:.1f} ms (the machine's own noise)", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        for backend in args.backends.split(","):
            scenarios = []
            if args.only in (None, "commit"):
                scenarios.append(("commit", f"commit {args.keys:,} keys", args.keys, "keys/s"))
            if args.only in (None, "recover"):
                scenarios.append(("recover", f"restore {args.keys:,} keys", args.keys, "keys/s"))
            if args.only in (None, "read"):
                scenarios.append(("read", f"read {args.messages} x {args.size} MB", args.messages * args.size, "MB/s"))
            for kind, what, amount, unit in scenarios:
                stalls, times = [], []
                for run in range(args.repeat):
                    gc.collect()  # (the previous run's app and table: not this run's pauses)
                    where = url(backend, folder, f"{kind}{run}")
                    if kind == "commit":
                        stall, took = await commit_keys(where, args.keys)
                    elif kind == "recover":
                        stall, took = await recover_keys(where, args.keys)
                    else:
                        stall, took = await read_large(where, args.messages, args.size)
                    stalls.append(stall)
                    times.append(took)
                print(f"{backend:>7} {what}: worst stall {median(stalls) * 1000:7.1f} ms "
                      f"(runs: {', '.join(f'{s * 1000:.0f}' for s in stalls)}); "
                      f"{median(times):6.2f} s ({amount / median(times):,.0f} {unit})", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
