#!/usr/bin/env python
"""isolated_partitions: one agent instance per partition; one partition's crashes leave the others alone.

What faust-streaming's ``examples/advanced/isolated_partitions_crashing``
does: an agent with ``isolated_partitions=True`` that prints which
partitions its stream serves, and crashes on some events, while a timer
keeps producing to every partition.
"""
import streamnb as faust

app = faust.App(
    'isolated-partitions-example',
    broker='kafka://localhost:9092',
)


class Withdrawal(faust.Record, serializer='json'):
    user: str
    amount: float


withdrawals_topic = app.topic('withdrawals', value_type=Withdrawal, partitions=4)
handled = []


@app.agent(withdrawals_topic, isolated_partitions=True)
async def track_withdrawals(withdrawals):
    async for withdrawal in withdrawals:
        if withdrawal.amount < 0:
            raise ValueError(f'negative withdrawal by {withdrawal.user}')
        partitions = sorted(tp.partition for tp in withdrawals.active_partitions)
        handled.append((partitions, withdrawal.user))
        print(f'partitions {partitions}: {withdrawal.user} withdrew {withdrawal.amount}')


sent = 0


@app.timer(interval=0.05)
async def produce():
    global sent
    for partition in range(4):
        amount = -1.0 if sent == 0 and partition == 1 else 10.0 + sent
        await withdrawals_topic.send(
            value=Withdrawal(user=f'user-{partition}', amount=amount), partition=partition,
        )
    sent += 1


if __name__ == '__main__':
    app.main()
