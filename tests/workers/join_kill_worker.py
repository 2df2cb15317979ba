"""A worker for the join kill -9 test: a stream–stream outer join on local://.

Usage: python join_kill_worker.py PATH|kafka://HOST:PORT prepare|run|finish [APP_ID] [GUARANTEE]

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
app_id = sys.argv[3] if len(sys.argv) > 3 else "joinkill"
guarantee = sys.argv[4] if len(sys.argv) > 4 else "at_least_once"
broker = path if path.startswith("kafka://") else f"local://{path}"
app = faust.App(app_id, broker=broker, topic_partitions=PARTITIONS, commit_interval=0.02, stream_batch_size=7,
                processing_guarantee=guarantee)
orders = app.topic(f"{app_id}-orders", key_type=str, value_type=int)
payments = app.topic(f"{app_id}-payments", key_type=str, value_type=int)
pairs = app.topic(f"{app_id}-pairs", key_type=str)
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
        msgs, pos = [], 0
        while pos < end:  # (Kafka: offsets of transaction markers hold no record)
            batch = await transport.read(tp, pos, end, end + 1)
            if not batch:
                break
            msgs += batch
            pos = batch[-1].offset + 1
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
        got = [row for part in await read_all(pairs.name) for row in part]
        want = expected(await read_all(orders.name), await read_all(payments.name))
        print(json.dumps({"got": sorted(got, key=json.dumps), "want": sorted(want, key=json.dumps)}))


asyncio.run(main())
