"""A worker for the standby-replica tests and benchmark: one App process counting events per key on rocksdb://.

Usage: python standby_worker.py CONFIG_JSON

CONFIG_JSON holds ``bootstrap``, ``app_id``, ``topic``, ``partitions``,
``datadir`` (this worker's own, as on another machine), ``replicas``
(``table_standby_replicas``) and optionally ``report_interval`` (seconds)
and ``kafka`` (extra App keyword arguments, e.g. ``{"session_timeout_ms": 6000}``).

The agent reads raw events keyed by a string and counts them per key in the
``rocksdb://`` table ``counts``. Every ``report_interval`` seconds the
worker prints one JSON line::

    {"pid": ..., "assigned": [partitions], "standby": [partitions],
     "positions": {partition: changelog offset its standby store read to},
     "recovered": {partition: [changelog records read by each restore]},
     "processed": n, "takeover": {partition: seconds}, "standby_records": n}

``takeover`` gives, for each partition this worker gained in a rebalance,
the seconds from the rebalance's start (this worker losing its partitions)
to the first event of that partition processed. The worker stops on
SIGTERM (committing) and can be killed with SIGKILL at any moment.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import defaultdict
from typing import Any

import streamnb as faust

config = json.loads(sys.argv[1])

app = faust.App(
    config["app_id"],
    broker=f"kafka://{config['bootstrap']}",
    topic_partitions=config["partitions"],
    store="rocksdb://",
    datadir=config["datadir"],
    table_standby_replicas=config["replicas"],
    commit_interval=0.2,
    stream_batch_size=2000,
    **config.get("kafka", {}),
)
events = app.topic(config["topic"], key_type=str, value_type=int)
counts = app.Table("counts", default=int)

recovered: dict[int, list[int]] = defaultdict(list)
_recover = counts.recover


async def _recover_each(partitions: Any = None) -> int:
    """Restore one partition at a time, noting the changelog records each read."""
    if partitions is None:
        return await _recover(None)
    total = 0
    for p in sorted(partitions):
        before = set(counts.recovered_partitions)
        read = await _recover([p])
        if p not in before:
            recovered[p].append(read)
        total += read
    return total


counts.recover = _recover_each  # type: ignore[method-assign]

rebalance_started: float | None = None
held: set[int] = set()
gained_at: dict[int, float] = {}  # partition -> when the rebalance that gave it to this worker started
takeover: dict[int, float] = {}


@app.on_rebalance_start.connect
async def _started(sender: Any, **kwargs: Any) -> None:
    global rebalance_started
    rebalance_started = time.monotonic()


@app.on_partitions_assigned.connect
async def _assigned(sender: Any, assigned: Any = (), **kwargs: Any) -> None:
    now = set(app.owned_partitions())
    for p in now - held:
        if rebalance_started is not None:
            gained_at[p] = rebalance_started
    held.clear()
    held.update(now)


@app.agent(events)
async def count(stream):  # type: ignore[no-untyped-def]
    async for event in stream.events():
        counts[event.key] += 1
        began = gained_at.pop(event.partition, None)
        if began is not None:
            takeover[event.partition] = time.monotonic() - began


@app.timer(config.get("report_interval", 0.25))
async def report() -> None:
    positions = app.standbys.positions().get("counts", {})
    sys.stdout.write(json.dumps({
        "pid": os.getpid(),
        "assigned": sorted(app.owned_partitions()),
        "standby": sorted(app.standby_partitions()),
        "positions": {str(p): o for p, o in positions.items()},
        "recovered": {str(p): n for p, n in sorted(recovered.items())},
        "processed": count.events_processed,
        "takeover": {str(p): s for p, s in takeover.items()},
        "standby_records": app.standbys.records,
        "errors": count.crashes,
    }) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    app.run()
