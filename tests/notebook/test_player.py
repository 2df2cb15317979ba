"""The replay player and the ``%streamnb record``/``history`` magics, through a real IPython shell."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from IPython.core.error import UsageError
from nbhelpers import Shell, memory_url, shell_fixture

import streamnb
from streamnb.errors import ConfigurationError
from streamnb.notebook.magics import Pending
from streamnb.notebook.player import Player, player
from streamnb.notebook.replay_magics import parse_duration
from streamnb.testing import wait_until
from streamnb.transport import open_transport
from streamnb.transport.base import ProducerRecord, TopicSpec

T0 = 1_700_000_000.0


ipy = shell_fixture


async def recorded(url: str, n: int = 50) -> None:
    transport = open_transport(url, client_id="writer")
    await transport.start()
    await transport.create_topic(TopicSpec("views", 2))
    await transport.send([
        ProducerRecord("views", i % 2, None, f'{{"page": "/p{i % 3}"}}'.encode(), T0 + i) for i in range(n)
    ])
    await transport.stop()


APP = """
import streamnb
app = streamnb.App("player", broker="{url}", clock="virtual", speed=0, topic_partitions=2)
views = app.topic("views", partitions=2)
counts = app.Table("counts", default=int)

@app.agent(views)
async def count(stream):
    async for view in stream:
        counts[view["page"]] += 1
"""


async def test_the_player_seeks_steps_plays_and_pauses(ipy: Shell) -> None:
    url = memory_url()
    await recorded(url)
    await ipy.ok(APP.format(url=url))
    await ipy.ok("%streamnb start")
    widget = await ipy.ok("app.player()")
    assert isinstance(widget, Player) and widget.running
    app = ipy.ns["app"]
    counts = ipy.ns["counts"]
    assert widget.scrubber.min == T0 and widget.scrubber.max == T0 + 49

    widget.goto.value = T0 + 20.5  # typing a time: a seek
    await wait_until(lambda: widget.seeks == 1, timeout=20)
    assert sum(counts.data.values()) == 21 and app.clock.time == T0 + 20.5
    widget.refresh()
    assert "2023-11-14 22:13:40.500 UTC" in widget.label.value and "paused" in widget.label.value
    assert abs(widget.scrubber.value - (T0 + 20.5)) < 1e-6

    widget.scrubber.value = T0 + 5  # back: fresh tables, played up to then
    await wait_until(lambda: widget.seeks == 2, timeout=20)
    assert sum(counts.data.values()) == 6

    widget.step_event.click()
    await wait_until(lambda: widget.seeks == 3, timeout=20)
    assert sum(counts.data.values()) == 7
    widget.step_time.click()  # +10 s
    await wait_until(lambda: widget.seeks == 4, timeout=20)
    assert sum(counts.data.values()) == 17

    widget.speed.value = "max"
    widget.play.value = True  # play (as fast as possible) to the end
    await app.clock.idle(timeout=20)
    assert sum(counts.data.values()) == 50
    widget.play.value = False
    assert app.clock.paused


async def test_the_player_needs_a_virtual_clock(ipy: Shell) -> None:
    app = streamnb.App("wall", broker=memory_url())
    with pytest.raises(ConfigurationError, match="clock='virtual'"):
        player(app)


async def test_history_magic_shows_every_change_of_a_key(ipy: Shell) -> None:
    url = memory_url()
    await recorded(url, n=9)
    await ipy.ok(APP.format(url=url).replace("speed=0", "speed=None"))
    await ipy.ok("%streamnb start")
    await ipy.ok("await app.clock.idle()")
    df = await ipy.ok("%streamnb history counts /p1")
    assert isinstance(df, pd.DataFrame) and df["new_value"].tolist() == [1, 2, 3]
    assert df["old_value"].tolist() == [None, 1, 2]
    result = await ipy.run("%streamnb history nope /p1")
    assert isinstance(result.error_in_exec, UsageError) and "no table 'nope'" in str(result.error_in_exec)


def test_durations() -> None:
    assert parse_duration("10m") == 600 and parse_duration("2h") == 7200 and parse_duration("30") == 30
    with pytest.raises(UsageError, match="duration"):
        parse_duration("soon")


async def test_record_magic_usage_errors(ipy: Shell, tmp_path: Path) -> None:
    result = await ipy.run("%streamnb record views --to local://x")
    assert isinstance(result.error_in_exec, UsageError) and "--from" in str(result.error_in_exec)
    result = await ipy.run("%streamnb record views --from kafka://127.0.0.1:9092 --to local://x --n 0")
    assert isinstance(result.error_in_exec, UsageError) and "--n" in str(result.error_in_exec)


@pytest.mark.kafka
async def test_record_magic_records_a_kafka_topic(ipy: Shell, tmp_path: Path) -> None:
    from conftest import kafka_bootstrap
    from kafkahelpers import Producer, create_topic, unique

    bootstrap = kafka_bootstrap()
    topic = unique("magic-views")
    await create_topic(bootstrap, topic, 2)
    async with Producer(bootstrap) as producer:
        await producer.send(topic, [(f"u{i}", {"page": "/"}) for i in range(30)])
    summary = await ipy.ok(f"%streamnb record {topic} --from kafka://{bootstrap} --to local://{tmp_path}/s --n 20")
    assert isinstance(summary, pd.DataFrame) and int(summary["messages"].sum()) == 20
    assert not isinstance(summary, Pending)
