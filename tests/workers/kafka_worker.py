"""A worker for the Kafka tests: one App process counting page views per user.

Usage: python kafka_worker.py CONFIG_JSON

CONFIG_JSON holds ``bootstrap``, ``app_id``, ``topic``, ``partitions`` and
optionally ``report_interval`` (seconds), ``kafka`` (extra App keyword
arguments, e.g. ``{"session_timeout_ms": 6000}``), ``guarantee``
(``at_least_once`` or ``exactly_once``), ``sink`` (a topic that gets
``{"n": n}`` for every view), ``final`` (a topic that gets the final count of
every closed one-second tumbling window per user), ``await_mid_event`` (the
agent awaits between counting a view and sending it on) and ``fault``.

The agent reads JSON page views ``{"user": ..., "n": ...}``, repartitions
them by user (``group_by``) and counts them per user in the table
``counts`` (and, with ``final``, per user and one-second window of event
time in ``per_second``, grace 0). ``fault`` injects a fault into the
exactly-once commit: ``{"step": "offsets_sent", "topic_suffix": "-repartition",
"after": 3, "action": "kill"}`` sends the worker SIGKILL (``"stop"``:
SIGSTOP) the third time a transaction of a partition of a topic ending in
``-repartition`` reaches that step (its records and offset are stored, not
yet committed). Every ``report_interval`` seconds the worker prints one JSON line:

    {"pid": ..., "assigned": [partitions], "counts": {user: n}, "total": n,
     "processed": n, "lag": n, "recovered": {partition: records}, "errors": n}

``assigned`` are the partition numbers this worker owns (so the table
partitions it holds), ``lag`` is what the whole consumer group has not
committed yet, ``recovered`` counts the changelog records read per partition
by table recovery. The worker stops on SIGTERM (committing) and can be
killed with SIGKILL at any moment.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections import Counter
from typing import Any

import streamnb as faust
from streamnb.testing import lag
from streamnb.transport.base import TP

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
    # The tests count the rows each restore rebuilds from the changelog: memory:// tables, unless one asks.
    store=config.get("store", "memory://"),
    processing_guarantee=config.get("guarantee", "at_least_once"),
    **config.get("kafka", {}),
)
views = app.topic(config["topic"], value_type=View)
counts = app.Table("counts", default=int)
sinks = [app.topic(config["sink"])] if config.get("sink") else []
per_second = (
    app.Table("per_second", default=int, emit_final=config["final"]).tumbling(1.0, grace=0.0, expires=3600.0)
    if config.get("final") else None
)
fault = config.get("fault")
await_mid_event = bool(config.get("await_mid_event"))
fault_seen = Counter[str]()


def inject(step: str, tp: TP) -> None:
    """The fault hook of the exactly-once commit (see ``fault`` above)."""
    assert fault is not None
    if step != fault["step"] or not tp.topic.endswith(fault.get("topic_suffix", "")):
        return
    fault_seen[step] += 1
    if fault_seen[step] == fault["after"]:
        print(f"fault: {fault['action']} at {step} of {tp}", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL if fault["action"] == "kill" else signal.SIGSTOP)


if fault is not None:
    from streamnb.transport.kafka.transactions import PartitionTransactions

    PartitionTransactions.fault_hook = inject
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


@app.agent(views, sink=sinks)
async def count(stream):  # type: ignore[no-untyped-def]
    async for view in stream.group_by(View.user):
        counts[view.user] += 1
        if per_second is not None:
            per_second[view.user] += 1
        if await_mid_event:
            await asyncio.sleep(0)  # an agent awaiting between an event's effects (e.g. an HTTP call)
        yield {"n": view.n}


@app.task
async def dump_tasks_on_sigusr1() -> None:
    """SIGUSR1 prints every asyncio task's stack to stderr (the tests ask for it when a worker stalls)."""

    def dump() -> None:
        for task in asyncio.all_tasks():
            print(f"--- {task.get_name()}", file=sys.stderr)
            task.print_stack(limit=12, file=sys.stderr)
        sys.stderr.flush()

    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump)


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
        "assigned": sorted(app.owned_partitions()),
        "counts": dict(counts.data),
        "total": sum(counts.data.values()),
        "processed": count.events_processed,
        "lag": behind,
        "recovered": {str(p): n for p, n in sorted(recovered.items())},
        "errors": count.crashes,
        "last_error": repr(count.last_error) if count.last_error else None,
        "transactions": transactions(),
    })


def transactions() -> dict[str, float]:
    """Exactly-once: the metrics' transaction counts by outcome (``streamnb_transactions_total``)."""
    frame = app.metrics()
    rows = frame[frame["metric"] == "streamnb_transactions_total"]
    return {str(outcome): float(value) for outcome, value in rows.groupby("outcome")["value"].sum().items()} \
        if not rows.empty else {}


if __name__ == "__main__":
    app.run()
