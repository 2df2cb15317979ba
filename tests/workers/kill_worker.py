"""A worker for the kill -9 test: produces and counts page views on local://.

Usage: python kill_worker.py PATH run|finish [STORE]

``run`` keeps appending batches of page views to the input topic while its
agent counts them (plain and hopping-window tables, through group_by), and
prints ``batch N`` after each, until it is killed. ``finish`` processes
whatever is left, then prints the tables and the counts recomputed from the
input topic as JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter

import streamnb as faust
from streamnb.tables.windows import window_ranges
from streamnb.testing import settle, wait_until
from streamnb.transport.base import TP


class View(faust.Record):
    page: str
    n: int


path, mode = sys.argv[1], sys.argv[2]
store = sys.argv[3] if len(sys.argv) > 3 else "memory://"  # where the tables keep their rows
app = faust.App("killtest", broker=f"local://{path}", topic_partitions=4, commit_interval=0.05,
                stream_batch_size=300)
views = app.topic("views", value_type=View)
counts = app.Table("counts", default=int, store=store)
windows = app.Table("windows", default=int, store=store).hopping(10, 5, expires=1e12)


@app.agent(views)
async def count(stream):
    async for view in stream.group_by(View.page):
        counts[view.page] += 1
        windows[view.page] += 1


async def produce_forever() -> None:
    transport = app.transport
    assert transport is not None
    ends = await transport.end_offsets([TP("views", p) for p in range(4)])
    n = sum(ends.values())
    batches = 0
    while True:
        records = []
        for _ in range(200):
            records.append(views.record(key=str(n), value=View(page=f"/p{n % 11}", n=n), timestamp=1000.0 + n * 0.37))
            n += 1
        await transport.send(records)
        batches += 1
        # A backlog of a few batches at most: the next one goes out once the agent has
        # processed as many messages as all but the last three (group_by copies count too).
        await wait_until(lambda sent=(batches - 3) * 200: count.events_processed >= sent, timeout=60)
        print("batch", batches, flush=True)


async def main() -> None:
    async with app:
        if mode == "run":
            print("ready", flush=True)
            await produce_forever()
            return
        await settle(app, timeout=120)
        transport = app.transport
        assert transport is not None
        expected: Counter[str] = Counter()
        expected_windows: Counter[str] = Counter()
        for p in range(4):
            tp = TP("views", p)
            end = (await transport.end_offsets([tp]))[tp]
            pos = 0
            while pos < end:
                msgs = await transport.read(tp, pos, end)
                for m in msgs:
                    view = View.loads(m.value)
                    expected[view.page] += 1
                    for w in window_ranges(m.timestamp, 10, 5):
                        expected_windows[json.dumps([view.page, w.start, w.end])] += 1
                pos = msgs[-1].offset + 1
        print(json.dumps({
            "counts": dict(counts.data),
            "expected": dict(expected),
            "windows": {json.dumps([k, w[0], w[1]]): v for (k, w), v in windows.data.items()},
            "expected_windows": dict(expected_windows),
            "processed": count.events_processed,
        }))


asyncio.run(main())
