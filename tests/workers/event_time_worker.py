"""A worker for the event-time restart tests: windows that close, final results, late events.

Usage: python event_time_worker.py BROKER_URL APP_ID run|finish [STORE [GUARANTEE]]

``run`` keeps appending readings (slightly out of order, some far too late)
to the input topic while its agent counts them in tumbling windows of 10 s
with 3 s of grace, sending each closed window's final value to a topic,
until it is killed. ``finish`` processes whatever is left and prints, as
JSON, what streamnb holds (finals sent, open windows, stream time, late
events) next to what the input says it should be, recomputed here by the
rules (stream time per partition, ``end + grace``).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections import Counter, defaultdict

import streamnb as faust
from streamnb.testing import settle
from streamnb.transport.base import TP

SIZE, GRACE, PARTITIONS = 10.0, 3.0, 2


class Reading(faust.Record):
    sensor: str
    n: int


broker, app_id, mode = sys.argv[1], sys.argv[2], sys.argv[3]
store = sys.argv[4] if len(sys.argv) > 4 else "memory://"  # where the table keeps its windows
guarantee = sys.argv[5] if len(sys.argv) > 5 else "at_least_once"
app = faust.App(app_id, broker=broker, topic_partitions=PARTITIONS, commit_interval=0.05, stream_batch_size=200,
                store=store, processing_guarantee=guarantee)
readings = app.topic(f"{app_id}-readings", key_type=str, value_type=Reading)
finals = app.topic(f"{app_id}-finals")
per10 = app.Table("per10", default=int, emit_final=finals, late_topic=True).tumbling(SIZE, grace=GRACE)


@app.agent(readings)
async def count(stream):  # type: ignore[no-untyped-def]
    async for reading in stream:
        per10[reading.sensor] += 1


def timestamp(n: int) -> float:
    ts = 1000.0 + n * 0.05 - (n * 7919 % 31) * 0.05  # up to 1.5 s out of order
    if n % 97 == 0:
        ts -= 40.0  # far too late: its window closed long ago
    return ts


async def produce_forever() -> None:
    transport = app.transport
    assert transport is not None
    ends = await transport.end_offsets([TP(readings.name, p) for p in range(PARTITIONS)])
    n = sum(ends.values())
    while True:
        records = []
        for _ in range(100):
            sensor = f"s{n % 5}"
            records.append(readings.record(key=sensor, value=Reading(sensor=sensor, n=n), timestamp=timestamp(n)))
            n += 1
        await transport.send(records)
        await asyncio.sleep(0.01)


async def read_all(name: str) -> list[list]:  # type: ignore[type-arg]
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
            out.extend([p, m] for m in msgs)
            pos = msgs[-1].offset + 1
    return out


def expected(inputs: list[list]) -> dict:  # type: ignore[type-arg]
    """Replay the input by the rules: per partition, in offset order."""
    windows: dict[tuple[str, float], int] = Counter()
    partition_of: dict[str, int] = {}
    late = 0
    stream_time: dict[int, float] = defaultdict(lambda: float("-inf"))
    for p, m in inputs:
        reading = Reading.loads(m.value)
        ts = m.timestamp
        stream_time[p] = max(stream_time[p], ts)
        start = (ts // SIZE) * SIZE
        if round((start + SIZE + GRACE) * 1000) <= round(stream_time[p] * 1000):
            late += 1
            continue
        windows[(reading.sensor, start)] += 1
        partition_of[reading.sensor] = p
    closed, open_ = {}, {}
    for (sensor, start), value in windows.items():
        now = stream_time[partition_of[sensor]]
        name = json.dumps([sensor, start, start + SIZE])
        if round((start + SIZE + GRACE) * 1000) <= round(now * 1000):
            closed[name] = value
        else:
            open_[name] = value
    return {"finals": closed, "open": open_, "late": late, "stream_time": {str(p): t for p, t in stream_time.items()}}


async def main() -> None:
    async with app:
        if mode == "run":
            print("ready", flush=True)
            await produce_forever()
            return
        await settle(app, timeout=180)
        count.raise_if_crashed()
        sent = Counter()
        for _p, m in await read_all(finals.name):
            final = json.loads(m.value)
            sent[json.dumps([final["key"], final["window_start"], final["window_end"]])] += 1
            assert isinstance(final["value"], int)
        values = {}
        for _p, m in await read_all(finals.name):
            final = json.loads(m.value)
            values[json.dumps([final["key"], final["window_start"], final["window_end"]])] = final["value"]
        ours = {
            "finals": values,
            "sent": dict(sent),
            "open": {
                json.dumps([k, w[0], w[1]]): v for (k, w), v in per10.items() if not per10.state.is_closed(k, w)
            },
            "late_topic": len(await read_all(per10.table.late_topic.name)),  # type: ignore[union-attr]
            "stream_time": {str(p): per10.stream_time(p) for p in range(PARTITIONS)},
        }
        print(json.dumps({"ours": ours, "expected": expected(await read_all(readings.name))}))


asyncio.run(main())
