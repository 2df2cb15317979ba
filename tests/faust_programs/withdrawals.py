#!/usr/bin/env python
"""withdrawals: sum withdrawals per user (hourly windows) and per country (10 s windows); a command produces them.

Start a worker, then produce::

    $ python withdrawals.py worker -l info
    $ python withdrawals.py produce --max-messages 100
"""
import asyncio
import random
from datetime import UTC, datetime
from itertools import count

import streamnb as faust
from streamnb.cli import option


class Withdrawal(faust.Record, isodates=True, serializer='json'):
    user: str
    country: str
    amount: float
    date: datetime = None


app = faust.App(
    'faust-withdrawals',
    version=5,
    broker='aiokafka://',
    store='rocksdb://',
    origin='tests.faust_programs.withdrawals',
    topic_partitions=4,
)
withdrawals_topic = app.topic('withdrawals', value_type=Withdrawal)

user_to_total = app.Table(
    'user_to_total', default=int,
).tumbling(3600).relative_to_stream()

country_to_total = app.Table(
    'country_to_total', default=int,
).tumbling(10.0, expires=10.0).relative_to_stream()


@app.agent(withdrawals_topic)
async def track_user_withdrawal(withdrawals):
    async for withdrawal in withdrawals:
        user_to_total[withdrawal.user] += withdrawal.amount


@app.agent()
async def track_country_withdrawal(withdrawals):
    async for withdrawal in withdrawals.group_by(Withdrawal.country):
        country_to_total[withdrawal.country] += withdrawal.amount


@app.command(
    option('--max-latency',
           type=float, default=0.5, envvar='PRODUCE_LATENCY',
           help='Wait at most this many seconds between two withdrawals.'),
    option('--max-messages',
           type=int, default=None,
           help='Stop after this many withdrawals (default: never).'),
)
async def produce(self, max_latency: float, max_messages: int):
    """Produce random withdrawals."""
    for i, withdrawal in enumerate(generate_withdrawals(max_messages)):
        await withdrawals_topic.send(key=withdrawal.user, value=withdrawal)
        if not i % 50:
            self.say(f'+SEND {i}')
        if max_latency:
            await asyncio.sleep(random.uniform(0, max_latency))


def generate_withdrawals_dict(n: int = None):
    countries = [f'country_{i}' for i in range(4)]
    weights = [0.7, 0.1, 0.1, 0.1]
    users = [f'user_{i}' for i in range(50)]
    for _ in range(n) if n is not None else count():
        yield {
            'user': random.choice(users),
            'amount': round(random.uniform(0, 1000), 2),
            'country': random.choices(countries, weights)[0],
            'date': datetime.now(UTC).isoformat(),
        }


def generate_withdrawals(n: int = None):
    for d in generate_withdrawals_dict(n):
        yield Withdrawal(**d)


if __name__ == '__main__':
    app.main()
