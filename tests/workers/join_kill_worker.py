"""A worker for the join kill -9 test: a stream–stream outer join on local://.

Usage: python join_kill_worker.py PATH prepare|run|finish

``prepare`` writes both input topics (out of order, late records, ties).
``run`` joins them, sending every result to the ``pairs`` topic in the
agent's transaction, and prints ``progress N`` every few results until it
is killed. ``finish`` processes what is left, then prints as JSON the
results in ``pairs`` and those the join rule gives for each partition's two
inputs merged in timestamp order.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from typing import Any

import streamnb as faust
from streamnb.processing.joins.windowed import LEFT, RIGHT, JoinWindow, WindowJoin
from streamnb.testing import settle
from streamnb.transport.base import TP

PARTITIONS = 3
path, mode = sys.argv[1], sys.argv[2]
app = faust.App("joinkill", broker=f"local://{path}", topic_partitions=PARTITIONS, commit_interval=0.02,
                stream_batch_size=7)
orders = app.topic("orders", key_type=str, value_type=int)
payments = app.topic("payments", key_type=str, value_type=int)
pairs = app.topic("pairs", key_type=str)
produced = 0


@app.agent(orders)
async def match(stream: Any) -> None:
    global produced
    async for left, right in stream.join(payments, within=5, grace=2, how="outer"):
        event = stream.current_event
        await pairs.send(key=event.key, value=[left, right], timestamp=event.timestamp)
        produced += 1
        if produced % 5 == 0:
            print("progress", produced, flush=True)


async def read_all(topic: str) -> list[list[Any]]:
    """Every record of ``topic``, per partition: [key, ts in ms, value]."""
    transport = app.transport
    assert transport is not None
    out = []
    for p in range(PARTITIONS):
        tp = TP(topic, p)
        end = (await transport.end_offsets([tp]))[tp]
        msgs = await transport.read(tp, 0, end, end + 1) if end else []
        out.append([[m.key.decode(), round(m.timestamp * 1000), json.loads(m.value)] for m in msgs])
    return out


def expected(lefts: list[list[Any]], rights: list[list[Any]]) -> list[list[Any]]:
    results = []
    for part_l, part_r in zip(lefts, rights):
        join = WindowJoin(JoinWindow.of(within=5, grace=2), "outer")
        merged, i, j = [], 0, 0
        while i < len(part_r) or j < len(part_l):
            if j >= len(part_l) or (i < len(part_r) and part_r[i][1] <= part_l[j][1]):
                merged.append((RIGHT, *part_r[i]))
                i += 1
            else:
                merged.append((LEFT, *part_l[j]))
                j += 1
        for side, key, ts, value in merged:
            results += [[r.key, r.timestamp, [r.left, r.right]] for r in join.process(side, key, ts, value)]
    return results


async def prepare() -> None:
    await app.connect()
    for topic in (orders, payments):
        await topic.declare()
    rng = random.Random(3)
    now = 100_000
    for v in range(1500):
        now += rng.choice([0, 500, 1000, 2000])
        ts = now - rng.choice([0, 0, 0, 1000, 5000, 7000, 20_000])
        topic = rng.choice([orders, payments])
        await topic.send(key=rng.choice("abcdefg"), value=v, timestamp=ts / 1000)
    await app.stop()


async def main() -> None:
    if mode == "prepare":
        await prepare()
        return
    async with app:
        if mode == "run":
            await asyncio.Event().wait()  # until killed
        await settle(app, timeout=120)
        await asyncio.sleep(1.0)  # the idle tail (right records after the last order) is taken on a tick
        await settle(app, timeout=120)
        got = [row for part in await read_all("pairs") for row in part]
        want = expected(await read_all("orders"), await read_all("payments"))
        print(json.dumps({"got": sorted(got, key=json.dumps), "want": sorted(want, key=json.dumps)}))


asyncio.run(main())
