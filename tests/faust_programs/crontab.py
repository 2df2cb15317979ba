#!/usr/bin/env python
"""crontab: jobs at cron times, one in a pytz zone on the leader sending to a topic, daily ones in a zone and in UTC.

What faust-streaming's ``examples/crontab`` (tz_aware and tz_unaware) do:
a job every minute (here every second: Faust's cron reads a sixth field as
the seconds) and jobs once a day at a local hour.
"""
import random

import pytz

import streamnb as faust

app = faust.App(
    'crontab-example',
    broker='kafka://localhost:9092',
)


class Reading(faust.Record, serializer='json'):
    value: float


readings_topic = app.topic('readings', value_type=Reading)


@app.agent(readings_topic)
async def print_readings(readings):
    async for reading in readings:
        print(f'reading: {reading.value}')


@app.crontab('* * * * * *', timezone=pytz.timezone('US/Eastern'), on_leader=True)
async def publish_every_second():
    print('-- sent every second, on the leader --')
    await readings_topic.send(value=Reading(value=round(random.random(), 2)))


@app.crontab('0 19 * * *', tz=pytz.timezone('US/Eastern'))
async def publish_at_7pm_eastern():
    print('-- sent every day at 7 pm Eastern time --')


@app.crontab('0 20 * * *')
async def publish_at_8pm_utc():
    print('-- sent every day at 8 pm in the app timezone (UTC) --')


if __name__ == '__main__':
    app.main()
