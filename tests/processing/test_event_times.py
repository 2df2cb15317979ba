"""Timestamps that make sense: send() refuses what is no time, agents dead-letter stored ones, a guard for the future.

Every test runs on memory://, local:// and kafka:// (Kafka stores whole
milliseconds: nan and inf cannot reach it, negative times can).
"""

from __future__ import annotations

import math
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import streamnb as faust
from streamnb.errors import ConfigurationError, EventTimeError
from streamnb.testing import settle
from streamnb.transport import open_transport
from streamnb.transport.base import TP, ProducerRecord, TopicSpec

YEAR_2100 = 4_102_444_800.0
T0 = 1_700_000_000.0


async def read_all(app: faust.App, topic: str) -> list[Any]:
    transport = app.require_transport()
    out = []
    for p in range(await transport.partition_count(topic) or 0):
        tp = TP(topic, p)
        out += await transport.read(tp, 0, (await transport.end_offsets([tp]))[tp])
    return out


def stored_bad_times(broker: str) -> list[float]:
    """Timestamps that are no event time and that the broker can store (through the transport, not send())."""
    negative = [-5.0, -0.001]  # -0.001: Kafka's "no timestamp" (-1 ms)
    if broker.startswith("kafka"):  # whole milliseconds
        return negative
    if broker.startswith("local"):  # sqlite keeps inf, not nan
        return [math.inf, -math.inf, *negative]
    return [math.nan, math.inf, -math.inf, *negative]


async def test_send_refuses_timestamps_that_are_no_time(broker: str, app_id: str) -> None:
    app = faust.App(app_id, broker=broker, topic_partitions=1)
    topic = app.topic(f"{app_id}-events", value_type=int)
    async with app:
        for bad in (math.nan, math.inf, -math.inf, -1.0, "2024-01-01", True, [1]):
            with pytest.raises(EventTimeError, match=r"is not a time: send epoch seconds as a finite number >= 0"):
                await topic.send(value=1, timestamp=bad)
        with pytest.raises(faust.ValidationError):  # (an EventTimeError is a ValidationError)
            topic.send_soon(value=1, timestamp=math.nan)
        assert (await topic.send(value=1, timestamp=datetime(2024, 1, 1, tzinfo=UTC))).timestamp == 1_704_067_200.0
        assert (await topic.send(value=1, timestamp=0)).timestamp == 0.0
        import numpy as np

        assert (await topic.send(value=1, timestamp=np.float64(T0))).timestamp == T0


@pytest.mark.parametrize("group_by", [False, True], ids=["direct", "group_by"])
async def test_stored_messages_whose_timestamp_is_no_time_are_dead_lettered(
    broker: str, app_id: str, group_by: bool
) -> None:
    app = faust.App(app_id, broker=broker, topic_partitions=1)
    topic = app.topic(f"{app_id}-events", partitions=1, value_type=str)
    per_minute = app.Table("per_minute", default=int, partitions=1).tumbling(60, expires=3600)
    seen: list[str] = []

    @app.agent(topic)
    async def count(stream: Any) -> None:
        source = stream.group_by(lambda v: v, name="v") if group_by else stream
        async for value in source:
            per_minute[value] += 1
            seen.append(value)

    bad = stored_bad_times(broker)
    now = round(time.time(), 3)  # (Kafka keeps whole milliseconds)
    async with app:
        await topic.send(value="a", timestamp=now)
        await app.require_transport().send(
            [ProducerRecord(topic.name, 0, None, b'"bad%d"' % i, ts) for i, ts in enumerate(bad)]
        )
        await topic.send(value="b", timestamp=now + 1)
        await settle(app)
        assert seen == ["a", "b"]
        assert count.crashes == 0 and count.dead_lettered == len(bad)
        assert per_minute.stream_time(0) == now + 1
        dlq = await read_all(app, f"{app_id}-count-dlq")
        assert [m.value for m in dlq] == [b'"bad%d"' % i for i in range(len(bad))]
        for m, ts in zip(dlq, bad):
            headers = dict(m.headers)
            assert headers["streamnb-error"].startswith(b"EventTimeError: ")
            assert b"timestamp" in headers["streamnb-error"]
            assert headers["streamnb-timestamp"] == repr(ts).encode()
            assert headers["streamnb-topic"] == topic.name.encode()
            assert 0 <= m.timestamp < math.inf  # the dead letter itself is stamped with the app's time


@pytest.mark.parametrize("guarded", [True, False], ids=["guard", "no-guard"])
async def test_an_event_far_ahead_of_the_clock_is_dead_lettered_when_guarded(
    broker: str, app_id: str, guarded: bool
) -> None:
    skew = timedelta(hours=1) if guarded else None
    app = faust.App(app_id, broker=broker, topic_partitions=1, max_event_time_skew=skew)
    topic = app.topic(f"{app_id}-events", partitions=1, value_type=str)
    per_minute = app.Table("per_minute", default=int, partitions=1).tumbling(60, expires=3600)

    @app.agent(topic)
    async def count(stream: Any) -> None:
        async for value in stream:
            per_minute[value] += 1

    now = round(time.time(), 3)  # (Kafka keeps whole milliseconds)
    async with app:
        await topic.send(value="a", timestamp=now)
        await topic.send(value="future", timestamp=YEAR_2100)
        await topic.send(value="b", timestamp=now + 1)
        await settle(app)
        assert count.crashes == 0
        if guarded:
            assert count.dead_lettered == 1 and per_minute.late_events == 0
            assert per_minute.stream_time(0) == now + 1  # the future event moved nothing
            assert sorted(k for k, _w in per_minute.data) == ["a", "b"]
            (letter,) = await read_all(app, f"{app_id}-count-dlq")
            reason = dict(letter.headers)["streamnb-error"].decode()
            assert "2100-01-01T00:00:00+00:00 is 7" in reason and "years ahead of the clock" in reason
            assert "max_event_time_skew (3600 s)" in reason
        else:  # Kafka Streams' rule: stream time moves to 2100 for good, later events are late
            assert count.dead_lettered == 0 and per_minute.stream_time(0) == YEAR_2100
            assert per_minute.late_events == 1


def test_max_event_time_skew_is_checked() -> None:
    for bad in (-1, 0, "1h", math.inf, math.nan, True):
        with pytest.raises(ConfigurationError, match="max_event_time_skew"):
            faust.App("skew", broker="memory://", max_event_time_skew=bad)
    app = faust.App("skew", broker="memory://", max_event_time_skew=timedelta(minutes=5))
    assert app.max_event_time_skew == 300.0 and app.conf.max_event_time_skew == 300.0
    assert faust.App("skew", broker="memory://").max_event_time_skew is None


class Reading(faust.Record):
    sensor: str
    at: float


async def test_an_event_time_field_that_is_no_time_is_dead_lettered_at_once(broker: str, app_id: str) -> None:
    app = faust.App(app_id, broker=broker, topic_partitions=1, max_event_time_skew=3600)
    topic = app.topic(f"{app_id}-readings", partitions=1, value_type=Reading)
    raw = app.topic(f"{app_id}-readings", partitions=1, value_serializer="raw")
    per_minute = app.Table("per_minute", default=int, partitions=1).tumbling(60, expires=3600)
    by_field = per_minute.relative_to_field(Reading.at)

    @app.agent(topic)
    async def count(stream: Any) -> None:
        async for reading in stream:
            by_field[reading.sensor] += 1

    app.topics[topic.name] = topic
    now = round(time.time(), 3)  # (Kafka keeps whole milliseconds)
    async with app:
        await topic.send(value=Reading(sensor="a", at=now))
        await raw.send(value=b'{"sensor": "nan", "at": NaN}')
        await topic.send(value=Reading(sensor="future", at=YEAR_2100))
        await topic.send(value=Reading(sensor="b", at=now + 1))
        await settle(app, timeout=60)
        assert count.dead_lettered == 2 and count.crashes == 2  # once each, no retries
        assert sorted(k for k, _w in per_minute.data) == ["a", "b"]
        reasons = [dict(m.headers)["streamnb-error"].decode() for m in await read_all(app, f"{app_id}-count-dlq")]
        assert "field 'at'=nan is not a time" in reasons[0]
        assert "field 'at': its time 2100-01-01" in reasons[1]


@pytest.fixture(params=["memory", "local"])
def folder(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return f"memory://times-{uuid.uuid4().hex[:10]}"
    return f"local://{tmp_path / 'slice'}"


async def test_a_replay_dead_letters_what_is_far_ahead_of_its_time_and_holds_nothing_back(folder: str) -> None:
    """One event dated 2100 (and one at nan) in the middle of a recorded partition, under a virtual clock."""
    transport = open_transport(folder, client_id="writer")
    await transport.start()
    await transport.create_topic(TopicSpec("views", 2))
    records = [ProducerRecord("views", i % 2, None, b'"p%d"' % (i % 3), T0 + i) for i in range(200)]
    records[101] = records[101]._replace(timestamp=YEAR_2100)
    records[121] = records[121]._replace(timestamp=math.nan)
    for i in range(150, 200, 2):  # partition 0 pauses for two hours, then goes on: not too far ahead
        records[i] = records[i]._replace(timestamp=T0 + i + 7200)
    await transport.send(records)
    await transport.stop()
    app = faust.App(f"rp-{uuid.uuid4().hex[:6]}", broker=folder, clock="virtual", topic_partitions=2,
                    max_event_time_skew=3600)
    views = app.topic("views", partitions=2)
    per_minute = app.Table("per_minute", default=int).tumbling(60, expires=10**9)

    @app.agent(views)
    async def count(stream: Any) -> None:
        async for page in stream.group_by(lambda v: v, name="page"):
            per_minute[page] += 1

    async with app:
        await app.clock.idle(timeout=60)
        assert count.crashes == 0 and count.dead_lettered == 2
        assert sum(per_minute.data.values()) == 198
        assert per_minute.late_events == 0  # nothing was held back behind the 2100 event
        assert app.clock.time < YEAR_2100
