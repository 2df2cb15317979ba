#!/usr/bin/env python
"""hello_world: a timer sends greetings to a topic; an agent prints them."""
import streamnb as faust

app = faust.App(
    'hello-world',
    broker='kafka://localhost:9092',
)

greetings_topic = app.topic('greetings', value_type=str)


@app.agent(greetings_topic)
async def print_greetings(greetings):
    async for greeting in greetings:
        print(greeting)


@app.timer(0.3)
async def produce():
    for n in range(10):
        await greetings_topic.send(value=f'hello {n}')


if __name__ == '__main__':
    app.main()
