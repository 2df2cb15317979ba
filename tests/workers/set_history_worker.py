"""A worker for the kill -9 tests of set tables and ``history=True`` tables on ``rocksdb://``.

Usage: python set_history_worker.py BROKER_URL APP_ID DATADIR run|finish

``run`` keeps appending numbered events to the input topic while its agent
adds and discards members of a :class:`~streamnb.SetTable` and writes the
newest number per key to a plain table of an app made with ``history=True``,
until it is killed. ``finish`` processes whatever is left and prints, as JSON,
what streamnb holds (the sets, the plain rows, every change of each key, and
what the restore read), next to what the input says it should be, replayed
here in offset order.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
from collections import defaultdict
from typing import Any

import streamnb as faust
from streamnb.testing import settle
from streamnb.transport.base import TP

PARTITIONS, KEYS = 2, 6

broker, app_id, datadir, mode = sys.argv[1:5]
app = faust.App(app_id, broker=broker, topic_partitions=PARTITIONS, commit_interval=0.05, stream_batch_size=100,
                store="rocksdb://", datadir=datadir, history=True)
numbers = app.topic(f"{app_id}-numbers", key_type=str, value_type=int)
members = app.SetTable("members", value_type=int)
latest = app.Table("latest", default=int)


def operation(n: int) -> tuple[str, int]:
    """What event ``n`` (of key ``n % KEYS``) does to its key's set: adds, and every third removes one added before."""
    return ("discard", (n - 2 * KEYS) % 20) if (n // KEYS) % 3 == 2 else ("add", n % 20)


@app.agent(numbers)
async def apply(stream):  # type: ignore[no-untyped-def]
    async for key, n in stream.items():
        do, member = operation(n)
        if do == "add":
            members[key].add(member)
        else:
            members[key].discard(member)
        latest[key] = n


async def produce_forever() -> None:
    transport = app.transport
    assert transport is not None
    ends = await transport.end_offsets([TP(numbers.name, p) for p in range(PARTITIONS)])
    n = sum(ends.values())
    while True:
        await transport.send([numbers.record(key=f"k{i % KEYS}", value=i) for i in range(n, n + 50)])
        n += 50
        await asyncio.sleep(0.01)


async def read_all(name: str) -> list[Any]:
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
            out.extend(msgs)
            pos = msgs[-1].offset + 1
    return out


def expected(inputs: list[Any]) -> dict[str, Any]:
    """Replay the input by the rules (one key lives in one partition: offset order is its order)."""
    sets: dict[str, set[int]] = defaultdict(set)
    changes: dict[str, list[int]] = defaultdict(list)
    for m in inputs:
        key, n = numbers.decode_key(m.key), numbers.decode_value(m.value)
        do, member = operation(n)
        if do == "add":
            sets[key].add(member)
        else:
            sets[key].discard(member)
        changes[key].append(n)
    return {
        "sets": {k: sorted(v) for k, v in sorted(sets.items()) if v},
        "latest": {k: v[-1] for k, v in sorted(changes.items())},
        "history": dict(sorted(changes.items())),
    }


class Restores(logging.Handler):
    """Collects the restore log lines: ``{table: [records read, rows loaded from the store]}``."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seen: dict[str, list[int]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        m = re.search(r"table '(\w+)' restored .*: (\d+) records(?: after (\d+) rows)?", record.getMessage())
        if m:
            seen = self.seen.setdefault(m.group(1), [0, 0])
            seen[0] += int(m.group(2))
            seen[1] += int(m.group(3) or 0)


async def main() -> None:
    restores = Restores()
    logging.getLogger("streamnb").addHandler(restores)
    logging.getLogger("streamnb").setLevel(logging.INFO)
    async with app:
        if mode == "run":
            print("ready", flush=True)
            await produce_forever()
            return
        await settle(app, timeout=180)
        apply.raise_if_crashed()
        inputs = await read_all(numbers.name)
        ours = {
            "sets": {k: sorted(v) for k, v in sorted(members.items())},
            "latest": dict(sorted(latest.items())),
            "history": {
                k: [int(v) for v in (await latest.history(k))["new_value"]] for k in sorted(latest.keys())
            },
        }
        print(json.dumps({"ours": ours, "expected": expected(inputs), "restores": restores.seen,
                          "events": len(inputs)}))


asyncio.run(main())
