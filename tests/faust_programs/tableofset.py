"""tableofset: who is at which location, as a table of sets; people join and leave by command."""
import streamnb as faust
from streamnb.cli import argument

app = faust.App(
    'table-of-sets',
    origin='tests.faust_programs.tableofset',
    topic_partitions=4,
    version=2,
)

table = app.SetTable(
    'people', value_type=str,
)

joining_topic = app.topic('people_joining', key_type=str, value_type=str)
leaving_topic = app.topic('people_leaving', key_type=str, value_type=str)


@app.agent(joining_topic)
async def join(stream):
    async for location, name in stream.items():
        print(f'- {name.capitalize()} joined {location}')
        table[location].add(name)
        print(f'NOW AT {location}: {table[location]!r}')


@app.agent(leaving_topic)
async def leave(stream):
    async for location, name in stream.items():
        print(f'- {name.capitalize()} left {location}')
        table[location].discard(name)
        print(f'NOW AT {location}: {table[location]!r}')


@app.command(
    argument('location'),
    argument('name'),
)
async def joining(self, location: str, name: str):
    await joining_topic.send(key=location, value=name)


@app.command(
    argument('location'),
    argument('name'),
)
async def leaving(self, location: str, name: str):
    await leaving_topic.send(key=location, value=name)


@app.timer(0.5)
async def _dump():
    print(f'TABLE NOW:\n{table.as_ansitable()}')


if __name__ == '__main__':
    app.main()
