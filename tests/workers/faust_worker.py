"""A Faust-style module deployed with ``streamnb -A faust_worker worker`` (tests/worker/test_cli.py).

Configured by the environment, as a deployment would be: ``BROKER_URL``
(Faust's variable), ``WORKER_APP_ID``, ``WORKER_TOPIC``. Words arrive keyed
by themselves; ``counts`` counts them (each worker its partitions) and the
global table ``everywhere`` mirrors the counts on every worker. Web views:
``/count/{word}/`` (routed to the worker owning the word), ``/everywhere/``
(this worker's copy of the global table) and ``/owned/`` (its partitions).
The command ``produce --n N`` sends N words (``streamnb -A faust_worker produce``,
or ``python faust_worker.py produce``).
"""

import os

import streamnb as faust
from streamnb.cli import option

app = faust.App(
    os.environ["WORKER_APP_ID"],
    topic_partitions=4,
    broker_commit_interval=0.2,
    broker_session_timeout=6.0,
    broker_heartbeat_interval=0.5,
    store="rocksdb://",
)
words = app.topic(os.environ["WORKER_TOPIC"], key_type=str, value_type=str)
counts = app.Table("counts", default=int)
everywhere = app.GlobalTable("everywhere", default=int)


@app.agent(words)
async def count(stream):
    async for word in stream:
        counts[word] += 1
        everywhere[word] = counts[word]


@app.page("/count/{word}/")
@app.table_route(table=counts, match_info="word")
async def get_count(web, request, word):
    return web.json({word: counts[word]})


@app.page("/everywhere/")
async def get_everywhere(web, request):
    return web.json(dict(everywhere.items()))


@app.page("/owned/")
async def get_owned(web, request):
    return web.json({"partitions": sorted(app.owned_partitions()), "rebalancing": app.rebalancing})


@app.page("/fail/")
async def fail(web, request):
    raise RuntimeError("this view always fails")


@app.command(option("--n", type=int, default=100, help="How many words."))
async def produce(self, n):
    """Send N words (w0 to w12, keyed by themselves) to the words topic."""
    for i in range(n):
        await words.send(key=f"w{i % 13}", value=f"w{i % 13}")
    self.say(f"sent {n} words")


if __name__ == "__main__":
    app.main()
