#!/usr/bin/env python
"""rpc: one part of the app calls agents and waits for what they yield (ask, join, map, kvjoin).

What faust-streaming's ``examples/advanced/rpc`` does: two agents that
compute something for each value, and a timer that calls them through the
reply topic, printing the replies in input order (``join``) and as they
come (``map``).
"""
import streamnb as faust

app = faust.App(
    'rpc-example',
    broker='kafka://localhost:9092',
    reply_create_topic=True,
)

square_topic = app.topic('rpc-square', value_type=float)
scale_topic = app.topic('rpc-scale', value_type=float)


@app.agent(square_topic)
async def square(stream):
    async for value in stream:
        yield value * value


@app.agent(scale_topic)
async def scale(stream):
    async for value in stream:
        yield value * 100


@app.timer(interval=0.5)
async def call_the_agents():
    # join: the replies in the order of the values
    print('squares:', await square.join([1.5, 2.0, 3.0, 4.5]))
    print('scaled:', await scale.join([0.25, 0.5]))
    # kvjoin: (key, value) pairs, replies in order
    print('keyed:', await scale.kvjoin([('a', 1.0), ('b', 2.0)]))
    # map: the replies as they come (not ordered)
    async for reply in square.map([5.0, 6.0]):
        print(f'reply: {reply!r}')
    # ask: one value, one reply
    print('asked:', await square.ask(12.0))


if __name__ == '__main__':
    app.main()
