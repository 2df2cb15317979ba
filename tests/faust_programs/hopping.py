#!/usr/bin/env python
"""windowing/hopping: count events in hopping windows (2 s long, one every 1 s) and read them back."""
from datetime import timedelta
from random import random

import streamnb as faust

app = faust.App('windowing', broker='kafka://localhost:9092')


class Model(faust.Record, serializer='json'):
    random: float


TOPIC = 'hopping_topic'

hopping_topic = app.topic(TOPIC, value_type=Model)
hopping_table = app.Table(
    'hopping_table',
    default=int).hopping(2, 1, expires=timedelta(minutes=10))


@app.agent(hopping_topic)
async def print_windowed_events(stream):
    async for _ in stream:
        hopping_table['counter'] += 1
        value = hopping_table['counter']
        print(f'now(): {value.now()} current(): {value.current()} value(): {value.value()} '
              f'delta(3): {value.delta(3)}')


@app.timer(0.1, on_leader=True)
async def publish_every_tenth():
    await hopping_topic.send(value=Model(random=round(random(), 2)))


if __name__ == '__main__':
    app.main()
