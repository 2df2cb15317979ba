"""A worker without web views, scraped at ``/metrics`` by tests/metrics/test_worker_metrics.py.

Configured by the environment: ``BROKER_URL``, ``WORKER_APP_ID``,
``WORKER_TOPIC``, ``WORKER_GUARANTEE`` (``at_least_once`` or ``exactly_once``),
``WORKER_DELAY`` (seconds the agent spends per click, to build a backlog) and
``WORKER_PRODUCE`` (``GOOD,BAD``: the worker sends that many clicks and
undecodable messages itself at start, for brokers a test cannot reach from
another process, such as ``memory://``).
"""

import asyncio
import json
import os

import streamnb as faust
from streamnb.topics import partition_for_key
from streamnb.transport.base import ProducerRecord


class Click(faust.Record):
    page: str


app = faust.App(
    os.environ["WORKER_APP_ID"],
    topic_partitions=4,
    broker_commit_interval=0.2,
    processing_guarantee=os.environ.get("WORKER_GUARANTEE", "at_least_once"),
)
clicks = app.topic(os.environ["WORKER_TOPIC"], key_type=str, value_type=Click)
pages = app.Table("pages", default=int)
DELAY = float(os.environ.get("WORKER_DELAY", "0"))


@app.agent(clicks)
async def count(stream):
    async for click in stream:
        pages[click.page] += 1
        if DELAY:
            await asyncio.sleep(DELAY)


@app.task
async def produce_at_start():
    good, _, bad = os.environ.get("WORKER_PRODUCE", "0,0").partition(",")
    for i in range(int(good)):
        await clicks.send(key=f"p{i % 5}", value=Click(page=f"p{i % 5}"))
    transport = app.require_transport()
    for i in range(int(bad or 0)):  # not a Click: dead-lettered
        key = f"bad{i}".encode()
        partition = partition_for_key(key, 4)
        await transport.send([ProducerRecord(clicks.name, partition, key, json.dumps({"x": i}).encode(), 1.0, ())])


if __name__ == "__main__":
    app.main()
