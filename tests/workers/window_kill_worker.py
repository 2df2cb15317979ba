"""A worker for the session- and sliding-window restart tests: windows that close (sliding: freeze) and expire,
final results.

Usage: python window_kill_worker.py BROKER_URL APP_ID run|finish STORE session|sliding

``run`` keeps appending events of a few users (out of order by up to
0.16 s, pauses longer than the gap or size now and then, some far too late;
sliding: some later than grace but within the size, which freeze closed
windows) to the input topic while its agent counts them in session windows
(gap 2 s, grace 1 s) or sliding windows (size 2 s, grace 0.1 s), closed
windows kept 5 s, sending each closed window's final value to a topic, until
it is killed. ``finish`` processes whatever is left and prints, as JSON, the
finals sent and the windows still open, next to what the input says they
should be: the same events, per partition in offset order, through the
in-memory state of that kind itself (no app, no restart).
"""

from __future__ import annotations

import asyncio
import json
import operator
import sys
from collections import Counter
from typing import Any

import streamnb as faust
from streamnb.tables.state.base import Dirty
from streamnb.tables.state.sessions import SessionState
from streamnb.tables.state.sliding import SlidingState
from streamnb.tables.windows import SessionWindow, SlidingWindow
from streamnb.testing import settle
from streamnb.transport.base import TP

SIZE, EXPIRES, PARTITIONS = 2.0, 5.0, 2  # (SIZE: a session's gap, a sliding window's size)

broker, app_id, mode, store, kind = sys.argv[1:6]
SLIDING = kind == "sliding"
GRACE = 0.1 if SLIDING else 1.0
app = faust.App(app_id, broker=broker, topic_partitions=PARTITIONS, commit_interval=0.05, stream_batch_size=200,
                store=store)
clicks = app.topic(f"{app_id}-clicks", key_type=str, value_type=int)
finals = app.topic(f"{app_id}-finals")
table = app.Table("visits", default=int, emit_final=finals)
visits = (table.sliding if SLIDING else table.session)(SIZE, expires=EXPIRES, grace=GRACE)


@app.agent(clicks)
async def count(stream):  # type: ignore[no-untyped-def]
    async for event in stream.events():
        visits[event.key] += 1


def timestamp(n: int) -> float:
    ts = 1000.0 + n * 0.01 + (n // 400) * 3.0 - (n * 7919 % 17) * 0.01  # a pause longer than the size every 400
    if n % 89 == 0:
        ts -= 20.0  # far too late: every window holding it closed long ago
    elif n % 31 == 0 and SLIDING:
        ts -= 1.0  # later than grace, within the size: some windows holding it closed (frozen), others open
    return ts


async def produce_forever() -> None:
    transport = app.transport
    assert transport is not None
    ends = await transport.end_offsets([TP(clicks.name, p) for p in range(PARTITIONS)])
    n = sum(ends.values())
    while True:
        records = [clicks.record(key=f"u{i % 7}", value=1, timestamp=timestamp(i)) for i in range(n, n + 100)]
        n += 100
        await transport.send(records)
        await asyncio.sleep(0.01)


async def read_all(name: str) -> list[tuple[int, Any]]:
    transport = app.transport
    assert transport is not None
    out = []
    for p in range(PARTITIONS):
        tp = TP(name, p)
        end = (await transport.end_offsets([tp]))[tp]
        pos = (await transport.beginning_offsets([tp]))[tp]
        while pos < end:
            msgs = await transport.read(tp, pos, end)
            if not msgs:
                break
            out.extend((p, m) for m in msgs)
            pos = msgs[-1].offset + 1
    return out


def name(key: str, start: float, end: float) -> str:
    return json.dumps([key, start, end])


def expected(inputs: list[tuple[int, Any]]) -> dict[str, Any]:
    """The input through the in-memory state, per partition in offset order, closed at the end."""
    state: Any = (SlidingState(SlidingWindow(SIZE, expires=EXPIRES, grace=GRACE), operator.add) if SLIDING
                  else SessionState(SessionWindow(SIZE, expires=EXPIRES, grace=GRACE), operator.add))
    dirty: Dirty[Any] = Dirty()
    for p, m in inputs:
        state.update(dirty, m.key.decode(), operator.add, 1, m.timestamp, p, int)  # (str keys: raw UTF-8)
    closed = {name(c.key, *c.window): c.value for c in state.before_commit(None, dirty)}
    open_ = {name(k, *w): v for (k, w), v in state.items() if not state.is_closed(k, w)}
    return {"finals": closed, "open": open_, "stream_time": {str(p): t for p, t in state.stream_time.items()}}


async def main() -> None:
    async with app:
        if mode == "run":
            print("ready", flush=True)
            await produce_forever()
            return
        await settle(app, timeout=180)
        count.raise_if_crashed()
        sent: Counter[str] = Counter()
        values = {}
        for _p, m in await read_all(finals.name):
            final = json.loads(m.value)
            window = name(final["key"], final["window_start"], final["window_end"])
            sent[window] += 1
            values[window] = final["value"]
        ours = {
            "finals": values,
            "sent": dict(sent),
            "open": {name(k, *w): v for (k, w), v in visits.items() if not visits.state.is_closed(k, w)},
            "stream_time": {str(p): visits.stream_time(p) for p in range(PARTITIONS)},
            "state": type(visits.state).__name__,
        }
        print(json.dumps({"ours": ours, "expected": expected(await read_all(clicks.name))}))


asyncio.run(main())
