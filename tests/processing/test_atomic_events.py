"""An event is all or nothing, at every stage of an agent (issue: a crash behind group_by).

Random pipelines (0-3 re-keyings, an optional filter, a plain and a windowed
table, a sink) over random input, with exceptions injected at random points
of random events: before the first table write, between two writes, after
the send. Some faults go away after one or two tries, some never do. The
tables and the sink's output must equal a reference that processed exactly
the events that were not dead-lettered, every persistent poison event must be
in the dead-letter topic once, and nothing may be counted twice.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
from conftest import kafka_bootstrap
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import streamnb as faust
from streamnb.testing import settle
from streamnb.transport.base import TP

BASE = 1_700_000_000.0
"""Event times start here (seconds); windows are 10 s."""
POINTS = ("before", "between", "after")
FOREVER = 99
"""A fault that never goes away: the event is dead-lettered after Agent.max_retries tries."""
FIELDS = ("user", "region", "shop")


@dataclass
class Scenario:
    events: list[dict[str, Any]]
    rekeys: list[str]
    modulus: int | None
    faults: dict[int, tuple[str, int]] = field(default_factory=dict)
    """event id -> (where it raises, how many tries fail)."""

    def key(self, event: dict[str, Any]) -> str:
        return str(event[self.rekeys[-1]] if self.rekeys else event["user"])

    def kept(self, event: dict[str, Any]) -> bool:
        return self.modulus is None or event["amount"] % self.modulus != 0

    def poisoned(self) -> set[int]:
        return {e["id"] for e in self.events if self.kept(e) and self.faults.get(e["id"], ("", 0))[1] == FOREVER}


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    n = draw(st.integers(1, 24))
    events = [
        {
            "id": i,
            "user": draw(st.sampled_from("abcd")),
            "region": draw(st.sampled_from(["north", "south"])),
            "shop": draw(st.sampled_from(["s1", "s2", "s3"])),
            "amount": draw(st.integers(1, 9)),
            "ts": draw(st.integers(0, 40)),
        }
        for i in range(n)
    ]
    rekeys = draw(st.lists(st.sampled_from(FIELDS), max_size=3))
    modulus = draw(st.none() | st.integers(2, 4))
    faulty = draw(st.lists(st.integers(0, n - 1), max_size=4, unique=True))
    faults = {i: (draw(st.sampled_from(POINTS)), draw(st.sampled_from([1, 2, FOREVER]))) for i in faulty}
    return Scenario(events, rekeys, modulus, faults)


def rich_scenario() -> Scenario:
    """Two re-keyings, a filter, and each kind of fault (once, twice, for ever) at each point."""
    events = [
        {"id": i, "user": "abcd"[i % 4], "region": ["north", "south"][i % 3 % 2], "shop": f"s{i % 3}",
         "amount": 1 + i % 7, "ts": 3 * i % 41}
        for i in range(24)
    ]
    faults = {1: ("before", FOREVER), 4: ("between", 1), 6: ("after", 2), 9: ("between", FOREVER),
              13: ("after", FOREVER), 17: ("before", 2)}
    return Scenario(events, ["region", "shop"], 5, faults)


class InjectedFault(Exception):
    """Raised by the agent on purpose."""


async def read_topic(app: faust.App, topic: str) -> list[Any]:
    transport = app.transport
    assert transport is not None
    out: list[Any] = []
    for p in range(await transport.partition_count(topic) or 0):
        tp = TP(topic, p)
        end = (await transport.end_offsets([tp]))[tp]
        out += await transport.read(tp, 0, end)
    return out


async def run_scenario(scenario: Scenario, broker: str, guarantee: str = "at_least_once") -> None:
    app_id = f"atomic-{uuid.uuid4().hex[:10]}"
    app = faust.App(app_id, broker=broker, topic_partitions=2, processing_guarantee=guarantee)
    orders = app.topic(f"{app_id}-orders", value_type=dict)
    out = app.topic(f"{app_id}-out", value_type=int, key_type=str)
    totals = app.Table("totals", default=int)
    per_window = app.Table("per_window", default=int).tumbling(10, expires=10**6)
    tries: Counter[tuple[int, str]] = Counter()

    def maybe_fail(event: dict[str, Any], point: str) -> None:
        fault = scenario.faults.get(event["id"])
        if fault is not None and fault[0] == point and tries[(event["id"], point)] < fault[1]:
            tries[(event["id"], point)] += 1
            raise InjectedFault(f"event {event['id']} at {point}")

    @app.agent(orders)
    async def process(stream: Any) -> None:
        for i, name in enumerate(scenario.rekeys):
            stream = stream.group_by(lambda v, name=name: v[name], name=f"{name}{i}")
        if scenario.modulus is not None:
            stream = stream.filter(lambda v: v["amount"] % scenario.modulus != 0)
        async for event in stream:
            key = scenario.key(event)
            maybe_fail(event, "before")
            totals[key] += event["amount"]
            maybe_fail(event, "between")
            per_window[key] += 1
            await out.send(key=key, value=event["id"])
            maybe_fail(event, "after")

    async with app:
        for event in scenario.events:
            await orders.send(key=event["user"], value=event, timestamp=BASE + event["ts"])
        await settle(app, timeout=120)

        done = [e for e in scenario.events if scenario.kept(e) and e["id"] not in scenario.poisoned()]
        want_totals: Counter[str] = Counter()
        want_windows: Counter[tuple[str, float]] = Counter()
        for e in done:
            want_totals[scenario.key(e)] += e["amount"]
            want_windows[(scenario.key(e), BASE + e["ts"] // 10 * 10)] += 1
        assert dict(totals.items()) == dict(want_totals)
        frame = per_window.as_dataframe(times="epoch")
        got_windows = {(row.key, float(row.window_start)): row.value for row in frame.itertuples()}
        assert got_windows == dict(want_windows)

        sent = sorted((out.decode_key(m.key), out.decode_value(m.value)) for m in await read_topic(app, out.name))
        assert sent == sorted((scenario.key(e), e["id"]) for e in done)  # every one, none twice

        dead = [json.loads(m.value)["id"] for m in await read_topic(app, f"{app_id}-process-dlq")]
        assert sorted(dead) == sorted(scenario.poisoned())  # each poison event once
        assert process.dead_lettered == len(scenario.poisoned())
        for m in await read_topic(app, f"{app_id}-process-dlq"):
            headers = dict(m.headers)
            assert b"InjectedFault" in headers["streamnb-error"]
            assert headers["streamnb-topic"].decode() in [orders.name, *app.topics]  # the stage's input


def examples(n: int) -> settings:
    """Hypothesis settings for ``n`` examples of a scenario that runs a whole app (no deadline, repeatable)."""
    return settings(max_examples=n, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@examples(30)
@given(scenarios())
@example(rich_scenario())
def test_memory(scenario: Scenario) -> None:
    asyncio.run(run_scenario(scenario, f"memory://atomic-{uuid.uuid4().hex[:8]}"))


@examples(10)
@given(scenarios())
@example(rich_scenario())
def test_local(scenario: Scenario) -> None:
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(run_scenario(scenario, f"local://{folder}/broker"))


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_kafka(guarantee: str) -> None:
    bootstrap = kafka_bootstrap()

    @examples(3)
    @given(scenarios())
    @example(rich_scenario())
    def check(scenario: Scenario) -> None:
        asyncio.run(run_scenario(scenario, f"kafka://{bootstrap}", guarantee))

    check()


def test_a_crash_behind_group_by_rolls_back_retries_and_dead_letters_the_event() -> None:
    """The issue's reproduction: amounts 1, 2, "lots", 4 for one user, behind group_by."""
    events = [
        {"id": i, "user": "u", "region": "north", "shop": "s1", "amount": 1, "ts": 0} for i in range(4)
    ]
    scenario = Scenario(events, ["user"], None, {2: ("between", FOREVER)})
    asyncio.run(run_scenario(scenario, f"memory://atomic-{uuid.uuid4().hex[:8]}"))
