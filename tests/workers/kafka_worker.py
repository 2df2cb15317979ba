"""A worker for the Kafka tests: one App process counting page views per user.

Usage: python kafka_worker.py CONFIG_JSON

CONFIG_JSON holds ``bootstrap``, ``app_id``, ``topic``, ``partitions`` and
optionally ``report_interval`` (seconds) and ``kafka`` (extra App keyword
arguments, e.g. ``{"session_timeout_ms": 6000}``).

The agent reads JSON page views ``{"user": ..., "n": ...}``, repartitions
them by user (``group_by``) and counts them per user in the table
``counts``. Every ``report_interval`` seconds the worker prints one JSON line:

    {"pid": ..., "assigned": [partitions], "counts": {user: n}, "total": n,
     "processed": n, "lag": n, "recovered": {partition: records}, "errors": n}

``assigned`` are the partition numbers this worker owns (so the table
partitions it holds), ``lag`` is what the whole consumer group has not
committed yet, ``recovered`` counts the changelog records read per partition
by table recovery. The worker stops on SIGTERM (committing) and can be
killed with SIGKILL at any moment.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from typing import Any

import streamnb as faust
from streamnb.testing import lag

config = json.loads(sys.argv[1])


class View(faust.Record):
    user: str
    n: int


app = faust.App(
    config["app_id"],
    broker=f"kafka://{config['bootstrap']}",
    topic_partitions=config["partitions"],
    commit_interval=0.2,
    stream_batch_size=500,
    **config.get("kafka", {}),
)
views = app.topic(config["topic"], value_type=View)
counts = app.Table("counts", default=int)
recovered: Counter[int] = Counter()
_recover = counts.recover


async def _counting_recover(partitions: Any = None) -> int:
    parts = None if partitions is None else sorted(partitions)
    before = {p: sum(1 for q in counts.state.partition_of.values() if q == p) for p in parts or ()}
    total = await _recover(partitions)
    for p in parts or ():
        recovered[p] += sum(1 for q in counts.state.partition_of.values() if q == p) - before.get(p, 0)
    return total


counts.recover = _counting_recover  # type: ignore[method-assign]


@app.agent(views)
async def count(stream):  # type: ignore[no-untyped-def]
    async for view in stream.group_by(View.user):
        counts[view.user] += 1


def emit(state: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(state) + "\n")
    sys.stdout.flush()


@app.timer(config.get("report_interval", 0.25))
async def report() -> None:
    try:
        behind = sum((await lag(app)).values())
    except Exception as exc:  # noqa: BLE001 - a broker hiccup: report, do not stop
        behind = -1
        print(f"lag failed: {exc!r}", file=sys.stderr, flush=True)
    emit({
        "pid": os.getpid(),
        "assigned": sorted(app._partitions.owned()),
        "counts": dict(counts.data),
        "total": sum(counts.data.values()),
        "processed": count.events_processed,
        "lag": behind,
        "recovered": {str(p): n for p, n in sorted(recovered.items())},
        "errors": count.crashes,
        "last_error": repr(count.last_error) if count.last_error else None,
    })


if __name__ == "__main__":
    app.run()
