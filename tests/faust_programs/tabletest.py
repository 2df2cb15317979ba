#!/usr/bin/env python
"""tabletest: per-partition sequences summed into a table, checked for order, served over HTTP."""
import asyncio
import json

import streamnb as faust

ITERATIONS = 50
EXPECTED_SUM = sum(range(ITERATIONS))

app = faust.App(
    'tabletest',
    broker='kafka://localhost:9092',
    store='rocksdb://',
    origin='tests.faust_programs.tabletest',
    version=1,
    topic_partitions=4,
    stream_buffer_maxsize=16368,
)

source_topic = app.topic('countstopic', key_type=str, value_type=int)
counts = app.Table('counts', default=int)
seen = {}
prev_offsets = {}
out_of_order = []


@app.agent(source_topic)
async def count(stream):
    async for event in stream.events():
        partition = event.key
        number = event.value
        prev = seen.get(partition)
        if prev is not None and number != prev + 1:
            print(f'!!! PREV {partition} WAS {prev} NOW {number} '
                  f'(offset {event.message.offset}, previous {prev_offsets.get(partition)})')
            out_of_order.append((partition, prev, number))
        seen[partition] = number
        prev_offsets[partition] = event.message.offset
        counts[str(partition)] += number


@app.page('/count/{partition}/')
@app.table_route(table=counts, match_info='partition')
async def get_count(web, request, partition):
    return web.json({
        partition: counts[str(partition)],
    })


@app.on_rebalance_complete.connect
async def on_rebalance_complete(sender, **kwargs):
    print(counts.as_ansitable(
        key='partition',
        value='count',
        title='$$ TALLY - after rebalance $$',
        sort=True,
    ))


@app.timer(0.5)
async def dump_count():
    if not app.rebalancing:
        print(counts.as_ansitable(
            key='partition',
            value='count',
            title='$$ TALLY $$',
            sort=True,
        ))


@app.command()
async def produce():
    for i in range(ITERATIONS):
        last_fut = None
        for j in range(app.conf.topic_partitions):
            last_fut = await source_topic.send(
                key=str(j), value=i, partition=j)
        if not i % 10:
            await last_fut  # the latest send is delivered
            await asyncio.sleep(0.01)
            print(i)


@app.command()
async def add_single_changelog():
    topic = counts.changelog_topic
    await topic.send(key=0, value=json.dumps(0), partition=0)


if __name__ == '__main__':
    import sys
    if len(sys.argv) < 2:
        sys.argv.extend(['worker', '-l', 'info'])
    app.main()
