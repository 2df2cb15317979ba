"""Faust's ways of defining things: channel keywords on agents, channels, partial functions, as_ansitable."""

from __future__ import annotations

import functools
from datetime import timedelta
from typing import Any

import pytest

import streamnb as faust
from streamnb.errors import ConfigurationError
from streamnb.testing import settle, wait_until


class Word(faust.Record):
    text: str


def memory_app(app_id: str, **options: Any) -> faust.App:
    return faust.App(app_id, broker=f"memory://{app_id}", **options)


async def test_agent_channel_keywords_define_its_own_topic(app_id: str) -> None:
    app = memory_app(app_id)
    seen: list[Any] = []

    @app.agent(value_type=Word, key_type=str, partitions=3)
    async def words(stream):  # type: ignore[no-untyped-def]
        async for key, word in stream.items():
            seen.append((key, word))

    topic = words.channel
    assert (topic.name, topic.partitions, topic.value_type, topic.key_type) == (f"{app_id}-words", 3, Word, str)

    @app.agent("named", value_type=int)
    async def named(stream):  # type: ignore[no-untyped-def]
        async for n in stream:
            seen.append(n)

    assert app.topics["named"].value_type is int
    async with app:
        await words.send(key="k", value=Word(text="hi"))
        await app.topics["named"].send(value=7)
        await wait_until(lambda: len(seen) == 2, 10)
    assert ("k", Word(text="hi")) in seen and 7 in seen


def test_agent_keywords_streamnb_lacks_say_so(app_id: str) -> None:
    app = memory_app(app_id)
    topic = app.topic("t")

    async def agent(stream: Any) -> None:
        async for _ in stream:
            pass

    with pytest.raises(ConfigurationError, match="give them to app.topic"):
        app.agent(topic, value_type=str)
    with pytest.raises(ConfigurationError, match="use_reply_headers=False"):
        app.agent(topic, use_reply_headers=False)
    with pytest.raises(ConfigurationError, match="unknown keyword 'valuetype'"):
        app.agent(valuetype=str)
    app.agent(topic, isolated_partitions=False, help="documented", use_reply_headers=True)(agent)


async def test_channels_and_partial_functions(app_id: str) -> None:
    app = memory_app(app_id)
    numbers = app.channel(value_type=int)
    doubled = app.channel(value_type=int)
    assert (numbers.name, doubled.name, numbers.partitions) == (f"{app_id}-channel-0", f"{app_id}-channel-1", 1)
    out: list[int] = []

    async def scale(factor: int, stream: Any) -> Any:
        async for n in stream:
            yield n * factor

    async def collect(into: list[int], stream: Any) -> None:
        async for n in stream:
            into.append(n)

    async def send_some(channel: faust.ChannelT) -> None:
        for n in range(3):
            await channel.send(value=n)

    app.agent(numbers, name="scale", sink=[doubled])(functools.partial(scale, 2))
    app.agent(doubled, name="collect")(functools.partial(collect, out))
    app.task(functools.partial(send_some, numbers))
    assert "send_some" in app.tasks
    async with app:
        await wait_until(lambda: out == [0, 2, 4], 10)


def test_windows_take_timedeltas(app_id: str) -> None:
    app = memory_app(app_id)
    table = app.Table("t", default=int).tumbling(timedelta(seconds=10), expires=timedelta(minutes=1))
    assert (table.window.size, table.window.expires) == (10.0, 60.0)
    hopping = app.Table("h", default=int).hopping(timedelta(seconds=10), timedelta(seconds=5))
    assert (hopping.window.size, hopping.window.step) == (10.0, 5.0)


async def test_as_ansitable_names_the_columns(app_id: str) -> None:
    app = memory_app(app_id)
    words = app.topic("words", value_type=str)
    counts = app.Table("counts", default=int)

    @app.agent(words)
    async def count(stream):  # type: ignore[no-untyped-def]
        async for word in stream:
            counts[word] += 1

    async with app:
        for word in ["b", "a", "b"]:
            await words.send(value=word)
        await settle(app)
    text = counts.as_ansitable(key="word", value="count", title="$$ TALLY $$", sort=True)
    lines = text.splitlines()
    assert lines[0] == "$$ TALLY $$"
    assert [c.strip() for c in lines[2].strip("|").split("|")] == ["word", "count"]
    assert [line.split("|")[1].strip() for line in lines[4:6]] == ["a", "b"]
    by_count = counts.as_ansitable(sortkey=lambda row: -row[1])
    assert by_count.splitlines()[4].split("|")[1].strip() == "b"
