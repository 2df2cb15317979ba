"""Stream–stream joins in agents (streamnb/processing/joins/stream_stream.py) on every broker.

Both topics are written before the app starts; the agent's results must be
exactly what the rule (WindowJoin, itself checked against a brute-force
statement and Kafka Streams) gives for the two partitions merged in timestamp
order, the right side first at equal timestamps.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from oracle.joins import merge_by_time

import streamnb as faust
from streamnb.errors import ConfigurationError, PartitionMismatchError
from streamnb.events import Event
from streamnb.processing.joins.pairs import Pairs, as_events
from streamnb.processing.joins.stream_stream import JoinDirty, StreamStreamJoin
from streamnb.processing.joins.windowed import LEFT, RIGHT, JoinWindow, WindowJoin
from streamnb.testing import settle, wait_until
from streamnb.transport.base import TP, Message

Record = tuple[str, str, int, int]  # side, key, ts in ms, value


def draw(seed: int, n: int) -> tuple[list[Record], list[Record]]:
    """Out-of-order records on both sides, some very late, ties at the window edges (within 5 s, grace 2 s)."""
    rng = random.Random(seed)
    lefts: list[Record] = []
    rights: list[Record] = []
    now = 100_000
    for v in range(n):
        r = rng.random()
        now += rng.choice([0, 1000, 2000, 5000]) if r < 0.6 else 0
        ts = now - (rng.choice([0, 1000, 5000, 7000, 20_000]) if r >= 0.6 else 0)
        side = rng.choice("LR")
        (lefts if side == "L" else rights).append((side, rng.choice(["a", "b", "c"]), ts, v))
    return lefts, rights


def expected(how: str, lefts: list[Record], rights: list[Record]) -> tuple[list[tuple[Any, ...]], int]:
    join = WindowJoin(JoinWindow.of(within=5, grace=2), how)
    out = []
    for side, key, ts, value in merge_by_time(rights, lefts):
        for r in join.process(LEFT if side == "L" else RIGHT, key, ts, value):
            out.append((r.key, r.timestamp, r.left, r.right))
    return out, join.late


async def run(broker: str, app_id: str, how: str, lefts: list[Record], rights: list[Record],
              count: int | None = None, **options: Any) -> tuple[list[tuple[Any, ...]], Any, list[Any]]:
    app = faust.App(app_id, broker=broker, topic_partitions=1)
    orders = app.topic(f"{app_id}-orders", key_type=str, value_type=int)
    payments = app.topic(f"{app_id}-payments", key_type=str, value_type=int)
    out: list[tuple[Any, ...]] = []
    stats: list[Any] = []
    late: list[Any] = []

    @app.agent(orders)
    async def match(stream: Any) -> None:
        joined = stream.join(payments, within=5, grace=2, how=how, on_late=late.append, **options)
        stats.append(joined.join_stats)
        async for left, right in joined:
            event = stream.current_event
            out.append((event.key, round(event.timestamp * 1000), left, right))

    await app.connect()
    for topic in (orders, payments):
        await topic.declare()
    for topic, records in ((payments, rights), (orders, lefts)):
        for _side, key, ts, value in records:
            await topic.send(key=key, value=value, timestamp=ts / 1000)
    wanted = len(expected(how, lefts, rights)[0]) if count is None else count
    async with app:
        # right records after the last left one are taken once the left partition is idle
        await wait_until(lambda: len(out) >= wanted, timeout=60, what=f"{wanted} results")
        await settle(app, timeout=60)
        match.raise_if_crashed()
    return out, stats[0], late


@pytest.mark.parametrize("how", ["inner", "left", "outer"])
async def test_an_agent_joins_two_topics_as_the_rule_says(broker: str, app_id: str, how: str) -> None:
    lefts, rights = draw(5, 120)
    out, stats, late = await run(broker, app_id, how, lefts, rights)
    want, want_late = expected(how, lefts, rights)
    assert out == want
    assert stats.late == want_late == len(late) > 0
    assert len(want) > 20


async def test_late_records_are_counted_and_routed(app_id: str) -> None:
    # Merged: L100, L90 (late: 90 + 5 + 2 < 100), R101 (joins L100), R80 (late), L102 (joins R101).
    lefts = [("L", "a", 100_000, 1), ("L", "a", 90_000, 2), ("L", "a", 102_000, 5)]
    rights = [("R", "a", 101_000, 3), ("R", "a", 80_000, 4)]
    out, stats, late = await run(f"memory://{app_id}", app_id, "inner", lefts, rights)
    assert out == [("a", 101_000, 1, 3), ("a", 102_000, 5, 3)]
    assert stats.late == 2 and [(e.topic.endswith("orders"), e.value) for e in late] == [(True, 2), (False, 4)]


async def test_late_records_go_to_the_late_topic(app_id: str) -> None:
    app = faust.App(app_id, broker=f"memory://{app_id}", topic_partitions=1)
    orders = app.topic("orders", key_type=str, value_type=int)
    payments = app.topic("payments", key_type=str, value_type=int)

    @app.agent(orders)
    async def match(stream: Any) -> None:
        async for _pair in stream.join(payments, within=5, late_topic=True):
            pass

    async with app:
        await orders.send(key="a", value=1, timestamp=100.0)
        await orders.send(key="a", value=2, timestamp=90.0)
        await settle(app)
        late = app.topics[f"{app_id}-match-join-payments-late"]
        tp = TP(late.name, 0)
        msgs = await app.transport.read(tp, 0, (await app.transport.end_offsets([tp]))[tp])
    assert [(m.value, m.timestamp) for m in msgs] == [(b"2", 90.0)]
    assert ("streamnb-join", b"match-join-payments") in msgs[0].headers


def test_stream_stream_options_are_checked() -> None:
    app = faust.App("opts", broker="memory://opts")
    stream = app.topic("orders", partitions=2).stream()
    with pytest.raises(ConfigurationError, match="needs a time window: within="):
        stream.join(app.topic("payments", partitions=2))
    with pytest.raises(ConfigurationError, match="on do\\(es\\) not apply to a stream–stream join"):
        stream.join(app.topic("payments", partitions=2), within=5, on=lambda v: v)
    with pytest.raises(ConfigurationError, match="'inner', 'left' or 'outer'"):
        stream.join(app.topic("payments", partitions=2), within=5, how="full")
    with pytest.raises(PartitionMismatchError, match="'orders' has 2 partitions but 'refunds' has 3"):
        stream.join(app.topic("refunds", partitions=3), within=5)


async def test_kept_records_survive_a_restart(durable_broker: str, app_id: str) -> None:
    """Half the input, stop, the rest, start again: what one join would give for the halves one after the other."""
    lefts, rights = draw(9, 160)
    halves = [(lefts[:50], rights[:50]), (lefts[50:], rights[50:])]
    join = WindowJoin(JoinWindow.of(within=5, grace=2), "outer")
    want: list[list[tuple[Any, ...]]] = []
    for half_l, half_r in halves:  # each half merged, the right side's rest taken when the left is idle
        want.append([(r.key, r.timestamp, r.left, r.right) for side, key, ts, value in merge_by_time(half_r, half_l)
                     for r in join.process(LEFT if side == "L" else RIGHT, key, ts, value)])
    out1, _stats, _late = await run(durable_broker, app_id, "outer", *halves[0], count=len(want[0]))
    out2, stats, _late = await run(durable_broker, app_id, "outer", *halves[1], count=len(want[1]))
    assert (out1, out2) == (want[0], want[1])
    assert stats.late == join.late > 0  # the count went on from the changelog
    assert len(out1) > 10 and len(out2) > 10


async def test_a_revoked_partition_is_read_again_from_the_changelog(app_id: str) -> None:
    """After a rebalance took the partition away (its work committed), the join starts it again from the changelog."""
    lefts, rights = draw(13, 120)
    app = faust.App(app_id, broker=f"memory://{app_id}", topic_partitions=1)
    orders = app.topic("orders", key_type=str, value_type=int)
    payments = app.topic("payments", key_type=str, value_type=int)
    out: list[tuple[Any, ...]] = []
    joins: list[Any] = []

    @app.agent(orders)
    async def match(stream: Any) -> None:
        joined = stream.join(payments, within=5, grace=2, how="outer")
        joins.append(joined)
        async for left, right in joined:
            event = stream.current_event
            out.append((event.key, round(event.timestamp * 1000), left, right))

    join = WindowJoin(JoinWindow.of(within=5, grace=2), "outer")
    want = []
    halves = [(lefts[:60], rights[:60]), (lefts[60:], rights[60:])]
    for half_l, half_r in halves:
        want.append([(r.key, r.timestamp, r.left, r.right) for side, key, ts, value in merge_by_time(half_r, half_l)
                     for r in join.process(LEFT if side == "L" else RIGHT, key, ts, value)])
    async with app:
        for half, (half_l, half_r) in enumerate(halves):
            for topic, records in ((payments, half_r), (orders, half_l)):
                for _side, key, ts, value in records:
                    await topic.send(key=key, value=value, timestamp=ts / 1000)
            count = sum(len(w) for w in want[: half + 1])
            await wait_until(lambda count=count: len(out) >= count, timeout=30)
            await settle(app)
            if half == 0:
                kept = joins[0].join_stats.buffered_left + joins[0].join_stats.buffered_right
                assert kept > 0
                await app.on_partitions_revoked.send(app, revoked={TP(orders.name, 0)})
    assert out == want[0] + want[1]


def test_changelog_snapshots_hold_any_bytes_and_the_current_matched_flags() -> None:
    """A snapshot's rows (encoded once per record, flags at each snapshot) load back as the records' bytes and flags."""
    app = faust.App("rows", broker="memory://rows")
    orders, payments = (app.topic(name, key_serializer="raw", value_serializer="raw") for name in ("o", "p"))
    join = StreamStreamJoin(app, orders, payments, "outer", JoinWindow.of(within=5), "match")
    state = join.joins[0] = WindowJoin(join.window, join.how)
    odd = bytes(range(256)) + '"\\é\u2028'.encode()

    def snapshot() -> list[list[Any]]:
        (record,) = join.changelog_records(JoinDirty({0: ()}), 0.0)
        rows: list[list[Any]] = join.changelog.value_codec.loads(record.value)["rows"]
        return rows

    out: list[Any] = []
    join.process(state, LEFT, Message("orders", 0, 0, 1.0, None, odd, ()), None, "a", out)
    join.process(state, LEFT, Message("orders", 0, 1, 2.0, odd, b"2", ()), "k", 2, out)
    assert snapshot() == [[LEFT, None, 1000, odd.decode("latin-1"), False],
                          [LEFT, odd.decode("latin-1"), 2000, "2", False]]
    join.process(state, RIGHT, Message("payments", 0, 0, 3.0, b"k", b"3", ()), "k", 3, out)
    assert [row[4] for row in snapshot()] == [False, True, True]  # the pair flips both flags
    restored = WindowJoin(join.window, join.how)
    restored.load([join._row(row) for row in snapshot()], state.stream_time)
    assert [(s, ts, v[:2], m) for s, _k, ts, v, m in restored.rows()] == [
        (s, ts, v[:2], m) for s, _k, ts, v, m in state.rows()]


def test_pair_events_are_whole_events() -> None:
    """Pairs are Events built without __init__: every slot set, the cause's message unless time or key differ."""
    app = faust.App("pairs", broker="memory://pairs")
    join = StreamStreamJoin(app, app.topic("orders"), app.topic("payments"), "inner", JoinWindow.of(within=5),
                            "match")
    state = join.joins[0] = WindowJoin(join.window, join.how)
    out: list[Any] = []
    late = Message("payments", 0, 0, 4.0, b"k", b"4", ())
    join.process(state, RIGHT, late, "k", 4, out)
    cause = Message("orders", 0, 0, 3.0, b"k", b"3", ())
    join.process(state, LEFT, cause, "k", 3, out)
    left_first = Message("orders", 0, 1, 5.0, b'"k"', b"5", ())  # the same key, other bytes
    join.process(state, LEFT, left_first, "k", 5, out)
    cause_r = Message("payments", 0, 1, 6.0, b"k", b"6", ())
    join.process(state, RIGHT, cause_r, "k", 6, out)
    assert [type(item) for item in out] == [Pairs, Pairs, Pairs]  # one per record that made pairs
    events = as_events(out)
    assert all(hasattr(e, slot) for e in events for slot in Event.__slots__)
    assert [(e.key, e.value, e.message) for e in events] == [
        ("k", (3, 4), cause._replace(timestamp=4.0)),  # at the later time: a message of its own
        ("k", (5, 4), left_first),
        ("k", (3, 6), cause_r._replace(key=b"k")),
        ("k", (5, 6), cause_r._replace(key=b'"k"')),  # the left record's key bytes
    ]


async def test_pairs_are_the_same_through_events_values_and_a_filter(app_id: str) -> None:
    """`async for` hands over the pairs alone; .events() and an operation after the join see the same events."""
    lefts, rights = draw(21, 120)
    app = faust.App(app_id, broker=f"memory://{app_id}", topic_partitions=1)
    orders = app.topic("orders", key_type=str, value_type=int)
    payments = app.topic("payments", key_type=str, value_type=int)
    seen: dict[str, list[tuple[Any, ...]]] = {"values": [], "events": [], "filter": []}

    def as_row(event: Event[Any, Any]) -> tuple[Any, ...]:
        return (event.key, round(event.timestamp * 1000), *event.value, event.offset)

    @app.agent(orders)
    async def by_values(stream: Any) -> None:
        async for left, right in stream.join(payments, within=5, grace=2, how="outer"):
            event = stream.current_event
            assert stream.current_event is event and event.value == (left, right)  # asked again: the same
            seen["values"].append(as_row(event))

    @app.agent(orders)
    async def by_events(stream: Any) -> None:
        async for event in stream.join(payments, within=5, grace=2, how="outer").events():
            assert stream.current_event is event
            seen["events"].append(as_row(event))

    @app.agent(orders)
    async def filtered(stream: Any) -> None:
        async for left, right in stream.join(payments, within=5, grace=2, how="outer").filter(lambda pair: True):
            seen["filter"].append(as_row(stream.current_event))
            assert stream.current_event.value == (left, right)

    want = len(expected("outer", lefts, rights)[0])
    async with app:
        for topic, records in ((payments, rights), (orders, lefts)):
            for _side, key, ts, value in records:
                await topic.send(key=key, value=value, timestamp=ts / 1000)
        await wait_until(lambda: all(len(rows) >= want for rows in seen.values()), timeout=30)
        await settle(app)
        for agent in (by_values, by_events, filtered):
            agent.raise_if_crashed()
    assert seen["values"] == seen["events"] == seen["filter"]
    assert [row[:4] for row in seen["values"]] == expected("outer", lefts, rights)[0]


async def test_the_right_topics_rest_is_joined_as_soon_as_the_left_is_read(app_id: str) -> None:
    """The right records after the last left one are taken when the left stream has been read, not a tick later."""
    app = faust.App(app_id, broker=f"memory://{app_id}", topic_partitions=1)
    app.poll_interval = 600.0  # a tick interval longer than the test may wait
    orders = app.topic("orders", key_type=str, value_type=int)
    payments = app.topic("payments", key_type=str, value_type=int)
    out: list[tuple[Any, Any]] = []

    @app.agent(orders)
    async def match(stream: Any) -> None:
        async for pair in stream.join(payments, within=5):
            out.append(pair)

    await app.connect()
    for topic in (orders, payments):
        await topic.declare()
    await orders.send(key="a", value=1, timestamp=100.0)
    await payments.send(key="a", value=2, timestamp=101.0)  # after the last order: the right side's rest
    async with app:
        await wait_until(lambda: out == [(1, 2)], timeout=30, what="the pair of the right side's rest")
        match.raise_if_crashed()
