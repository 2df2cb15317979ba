#!/usr/bin/env python
"""windowing/tumbling: count events in tumbling windows of 1 s and read them back."""
from datetime import timedelta
from random import random

import streamnb as faust

app = faust.App('windowing', broker='kafka://localhost:9092')


class Model(faust.Record, serializer='json'):
    random: float


TOPIC = 'tumbling_topic'

tumbling_topic = app.topic(TOPIC, value_type=Model)
tumbling_table = app.Table(
    'tumbling_table',
    default=int).tumbling(1, expires=timedelta(minutes=10))


@app.agent(tumbling_topic)
async def print_windowed_events(stream):
    async for _ in stream:
        tumbling_table['counter'] += 1
        value = tumbling_table['counter']
        print(f'now(): {value.now()} current(): {value.current()} value(): {value.value()} '
              f'delta(3): {value.delta(3)}')


@app.timer(0.1, on_leader=True)
async def publish_every_tenth():
    await tumbling_topic.send(value=Model(random=round(random(), 2)))


if __name__ == '__main__':
    app.main()
