#!/usr/bin/env python
"""windowing/hopping_2: keep the events of each hopping window in a list; report each window as it closes."""
import sys
from datetime import datetime, timedelta
from time import time

import streamnb as faust


class RawModel(faust.Record):
    date: datetime
    value: float


TOPIC = 'raw-event'
TABLE = 'hopping_table'
KAFKA = 'kafka://localhost:9092'
CLEANUP_INTERVAL = 10
WINDOW = 2
STEP = 1
WINDOW_EXPIRES = 1
PARTITIONS = 1

app = faust.App('windowed-hopping', broker=KAFKA, topic_partitions=PARTITIONS)

app.conf.table_cleanup_interval = CLEANUP_INTERVAL
source = app.topic(TOPIC, value_type=RawModel)


def window_processor(key, events):
    start = key[1][0]
    print(f'processing window: {len(events)} events, timestamp {start}')


hopping_table = (
    app.Table(
        TABLE,
        default=list,
        partitions=PARTITIONS,
        on_window_close=window_processor,
    )
    .hopping(WINDOW, STEP, expires=timedelta(seconds=WINDOW_EXPIRES))
    .relative_to_field(RawModel.date)
)


@app.agent(source)
async def print_windowed_events(stream):
    async for event in stream:
        value_list = hopping_table['events'].value()

        if len(value_list) > 0:
            event.value = value_list[-1].value + 1
        print('Received: ' + str(event))

        value_list.append(event)
        hopping_table['events'] = value_list


@app.timer(0.05)
async def produce():
    await source.send(value=RawModel(value=1, date=int(time())))


if __name__ == '__main__':
    if len(sys.argv) < 2:
        sys.argv.extend(['worker', '-l', 'info'])
    app.main()
