"""streamnb's join rules against Kafka Streams 3.9 (tests/oracle/joins.py).

Stream–stream: the rule (streamnb/processing/joins/windowed.py) gives the same
multiset of (key, timestamp, left, right) as Kafka Streams on random two-sided
inputs read in timestamp order (ties frequent, pairs exactly ``before``/``after``
apart, records exactly at window end + grace == stream time), ended by a record far
ahead that closes everything; the late counts agree (none). Out of order, Kafka
Streams 3.9 departs from the contract in five ways; a test below pins the smallest
example of each, Kafka's output and streamnb's side by side (docs/joins.md). The
contract itself, late records included, is checked against a brute-force statement
of it in tests/processing/test_join_windowed.py.

Stream–table: the same results, in the same order, from streamnb on ``memory://``
(two topics) as from Kafka Streams fed the two partitions merged in timestamp order;
also with a versioned table (lookups as of the event's time, with or without a grace).
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from oracle.joins import JoinCase, Joined, merge_by_time, run_join_cases
from streamnb.processing.joins.windowed import LEFT, RIGHT, JoinWindow, WindowJoin
from streamnb.testing import settle, test_app, wait_until

pytestmark = pytest.mark.slow

SIDES = {"L": LEFT, "R": RIGHT}


def ours(case: JoinCase) -> tuple[list[Joined], int]:
    join = WindowJoin(JoinWindow(case.before_ms, case.after_ms, case.grace_ms), case.how)
    out = []
    for at, (side, key, ts, value) in enumerate(case.records):
        out += [Joined(r.key, r.timestamp, r.left, r.right, at) for r in join.process(SIDES[side], key, ts, value)]
    return out, join.late


# Windows (before, after, grace) where Kafka Streams' store retention (before + after + grace)
# hides no pair the window allows (see test_kafka_streams_misses_pairs_at_its_retention_edge).
WINDOWS = [(3, 3, 0), (5, 5, 0), (2, 6, 0), (6, 2, 0), (3, 3, 1), (0, 4, 1), (4, 0, 2), (0, 0, 1), (5, 5, 3)]


def well_behaved(seed: int, n: int) -> list[JoinCase]:
    """Both sides merged in timestamp order (ties frequent, pairs exactly before/after apart); a far record ends it."""
    rng = random.Random(seed)
    cases = []
    for i in range(n):
        how = ("inner", "left", "outer")[i % 3]
        before, after, grace = rng.choice(WINDOWS)
        now, records = 0, []
        for v in range(rng.randrange(1, 60)):
            now += rng.choice([0, 0, 0, 1, 1, 2, before, after, before + 1, after + 1])
            records.append((rng.choice("LR"), rng.choice("ab"), now, v))
        records.append(("L", "zz", now + 2 * (before + after + grace) + 10, 999))
        cases.append(JoinCase.stream_stream(how, before, after, grace, records, id=f"ss-{i}"))
    return cases


def test_stream_stream_joins_equal_kafka_streams_on_well_behaved_input() -> None:
    cases = well_behaved(24, 240)
    differ = []
    for case, result in zip(cases, run_join_cases(cases)):
        mine, late = ours(case)
        if Counter(r[:4] for r in mine) != Counter(r[:4] for r in result.results) or late != result.late:
            differ.append((case, sorted(mine, key=str), sorted(result.results, key=str), late, result.late))
    assert not differ, f"{len(differ)} of {len(cases)} differ; first: {differ[0]}"
    results = run_join_cases(cases)
    for how in ("left", "outer"):  # the draw made unmatched results of both sides
        assert any(r.left is None for res in results if res.case.how == how for r in res.results) == (how == "outer")
        assert any(r.right is None for res in results if res.case.how == how for r in res.results)
    assert sum(len(r.results) for r in results) > len(cases)


async def streamnb_stream_stream(case: JoinCase) -> list[tuple[Any, ...]]:
    """The case's two sides as two one-partition topics, written before the app starts, joined by an agent."""
    app = test_app(topic_partitions=1)
    left = app.topic("left", key_type=str, value_type=int)
    right = app.topic("right", key_type=str, value_type=int)
    out: list[tuple[Any, ...]] = []

    @app.agent(left)
    async def join(stream: Any) -> None:
        joined = stream.join(right, before=case.before_ms / 1000, after=case.after_ms / 1000,
                             grace=case.grace_ms / 1000, how=case.how)
        async for event in joined.events():
            out.append((event.key, round(event.timestamp * 1000), *event.value))

    await app.connect()
    for topic in (left, right):
        await topic.declare()
    for side, key, ts, value in case.records:
        await (left if side == "L" else right).send(key=key, value=value, timestamp=ts / 1000)
    want = len(ours(case)[0])
    async with app:
        await wait_until(lambda: len(out) >= want, timeout=30, what=f"{case.id}: {want} results")
        await settle(app)
        join.raise_if_crashed()
    return out


async def test_stream_stream_agents_equal_kafka_streams() -> None:
    """The agent, reading two topics, against Kafka Streams fed the records in timestamp order."""
    cases = well_behaved(25, 60)
    differ = []
    for case, result in zip(cases, run_join_cases(cases)):
        mine = await streamnb_stream_stream(case)
        if Counter(mine) != Counter(tuple(r[:4]) for r in result.results):
            differ.append((case, mine, result.results))
    assert not differ, f"{len(differ)} of {len(cases)} differ; first: {differ[0]}"


def table_cases(seed: int, n: int) -> list[JoinCase]:
    rng = random.Random(seed)
    cases = []
    for i in range(n):
        stream, table = [], []
        for v in range(rng.randrange(1, 50)):
            key = rng.choice("abc")
            ts = rng.randrange(0, 30)
            if rng.random() < 0.45:
                table.append(("T", key, ts, None if rng.random() < 0.15 else v))
            else:
                stream.append(("S", key, ts, None if rng.random() < 0.05 else v))
        records = merge_by_time(table, stream)
        cases.append(JoinCase.stream_table(("inner", "left")[i % 2], records, id=f"st-{i}"))
    return cases


async def streamnb_stream_table(case: JoinCase) -> tuple[list[tuple[str, int, Any, Any]], int]:
    """The case's two sides as two one-partition topics, written before the app starts."""
    app = test_app(topic_partitions=1)
    stream_topic = app.topic("orders", key_type=str, value_type=int)
    table_topic = app.topic("customers", key_type=str, value_type=int)
    if case.kind == "stream-globaltable":
        table = app.GlobalTable("customers", source=table_topic)
    else:
        table = app.Table("customers", source=table_topic)
    out: list[tuple[str, int, Any, Any]] = []
    stats: list[Any] = []

    @app.agent(stream_topic)
    async def join(stream: Any) -> None:
        joined = stream.join(table, how=case.how)
        stats.append(joined.join_stats)
        async for event in joined.events():
            value, row = event.value
            out.append((event.key, round(event.timestamp * 1000), value, row))

    await app.connect()
    for topic in (stream_topic, table_topic):
        await topic.declare()
    for side, key, ts, value in case.records:
        await (table_topic if side == "T" else stream_topic).send(key=key, value=value, timestamp=ts / 1000)
    async with app:
        await settle(app)
        join.raise_if_crashed()
    return out, stats[0].dropped if stats else 0


@pytest.mark.parametrize("globally", [False, True])
async def test_stream_table_joins_equal_kafka_streams(globally: bool) -> None:
    cases = table_cases(31 + globally, 40)
    if globally:  # a global table is read to its end before the stream (as Kafka Streams bootstraps it)
        cases = [JoinCase.stream_table(c.how, [r for r in c.records if r[0] == "T"] +
                                       [r for r in c.records if r[0] == "S"], globally=True, id=c.id) for c in cases]
    kafka = run_join_cases(cases)
    differ = []
    for case, result in zip(cases, kafka):
        mine, dropped = await streamnb_stream_table(case)
        theirs = [(r.key, r.timestamp, r.left, r.right) for r in result.results]
        if mine != theirs or dropped != result.late:
            differ.append((case, mine, theirs, dropped, result.late))
    assert not differ, f"{len(differ)} of {len(cases)} differ; first: {differ[0]}"
    assert sum(len(r.results) for r in kafka) > len(cases) and sum(r.late for r in kafka) > 0




def pinned(case: JoinCase) -> tuple[list[tuple[Any, ...]], int, list[tuple[Any, ...]], int]:
    [kafka] = run_join_cases([case])
    mine, late = ours(case)
    return [tuple(r) for r in kafka.results], kafka.late, [tuple(r) for r in mine], late


def test_kafka_streams_emits_an_out_of_order_left_record_unmatched_at_once() -> None:
    # within 5, grace 10. L k@10 comes after stream time 20: on time (10 + 5 + 10 >= 20) but its
    # window end (15) is behind stream time, so Kafka emits (L10, None) at once, then (L10, R12)
    # when R k@12 comes: two results for one record. streamnb keeps it and yields the pair only.
    case = JoinCase.stream_stream("left", 5, 5, 10, [("R", "x", 20, 1), ("L", "k", 10, 2), ("R", "k", 12, 3)])
    kafka, kafka_late, mine, late = pinned(case)
    assert kafka == [("k", 10, 2, None, 1), ("k", 12, 2, 3, 2)] and kafka_late == 0
    assert mine == [("k", 12, 2, 3, 2)] and late == 0


def test_kafka_streams_joins_records_after_their_grace() -> None:
    # within 5, grace 1: at stream time 30, R k@12 is late (12 + 5 + 1 < 30). Kafka still joins it
    # with L k@10 (and, in an outer join, after emitting (L10, None)) and counts nothing; streamnb
    # counts it late and joins nothing.
    records = [("L", "k", 10, 1), ("R", "x", 30, 2), ("R", "k", 12, 3)]
    kafka, kafka_late, mine, late = pinned(JoinCase.stream_stream("inner", 5, 5, 1, records))
    assert (kafka, kafka_late) == ([("k", 12, 1, 3, 2)], 0)
    assert (mine, late) == ([], 1)
    kafka, kafka_late, mine, late = pinned(JoinCase.stream_stream("outer", 5, 5, 1, records))
    assert (kafka, kafka_late) == ([("k", 10, 1, None, 1), ("k", 12, 1, 3, 2)], 0)
    assert (mine, late) == ([("k", 10, 1, None, 1)], 1)


def test_kafka_streams_misses_pairs_at_its_retention_edge() -> None:
    # Kafka's join stores keep before + after + grace behind their newest record, exclusive: with
    # within 0 and grace 0, records at the same time never join.
    kafka, _, mine, _ = pinned(JoinCase.stream_stream("inner", 0, 0, 0, [("L", "k", 5, 1), ("R", "k", 5, 2)]))
    assert kafka == [] and mine == [("k", 5, 1, 2, 1)]


def test_kafka_streams_joins_a_record_whose_window_closed() -> None:
    # before 0, after 4, grace 0. R b@1's window ([1 - 4, 1 + 0]) closes when L a@4 comes; L b@0
    # (on time: 0 + 4 >= 4) then lies in it. Kafka still finds R b@1 in its store and joins;
    # streamnb dropped R b@1 when its window closed.
    case = JoinCase.stream_stream("inner", 0, 4, 0, [("R", "b", 1, 0), ("L", "a", 4, 1), ("L", "b", 0, 2)])
    kafka, _, mine, _ = pinned(case)
    assert kafka == [("b", 1, 2, 0, 2)] and mine == []


def test_kafka_streams_holds_unmatched_results_back() -> None:
    # before 0, after 10, outer. At L x@6 (stream time 6) R j@5 has closed (5 + 0 < 6); Kafka
    # sweeps its outer store oldest first and stops at L k@0, still open (0 + 10 >= 6), so
    # (None, R5) waits for L x@11. streamnb yields it at L x@6.
    case = JoinCase.stream_stream(
        "outer", 0, 10, 0, [("L", "k", 0, 1), ("R", "j", 5, 2), ("L", "x", 6, 3), ("L", "x", 11, 4)]
    )
    kafka, _, mine, _ = pinned(case)
    assert kafka[:2] == [("k", 0, 1, None, 3), ("j", 5, None, 2, 3)]
    assert mine[:2] == [("j", 5, None, 2, 2), ("k", 0, 1, None, 3)]


def table_table_cases(seed: int, n: int) -> list[JoinCase]:
    rng = random.Random(seed)
    cases = []
    for i in range(n):
        records = [
            (rng.choice("LR"), rng.choice("abc"), rng.randrange(0, 30), None if rng.random() < 0.3 else v)
            for v in range(rng.randrange(1, 40))
        ]
        cases.append(JoinCase("table-table", ("inner", "left", "outer")[i % 3], tuple(records), id=f"tt-{i}"))
    return cases


def test_table_table_joins_equal_kafka_streams() -> None:
    """The rule of streamnb/tables/joins.py gives Kafka Streams' updates, tombstones and timestamps, in order."""
    from streamnb.tables.joins import LEFT as TL
    from streamnb.tables.joins import RIGHT as TR
    from streamnb.tables.joins import TableJoinRule

    cases = table_table_cases(41, 300)
    results = run_join_cases(cases)
    differ = []
    for case, result in zip(cases, results):
        rule = TableJoinRule(case.how)
        mine = []
        for at, (side, key, ts, value) in enumerate(case.records):
            change = rule.update(TL if side == "L" else TR, key, ts, value)
            if change is not None:
                pair = change[2] or (None, None)
                mine.append((change[0], change[1], *pair, at))
        if mine != [tuple(r) for r in result.results]:
            differ.append((case, mine, result.results))
    assert not differ, f"{len(differ)} of {len(cases)} differ; first: {differ[0]}"
    assert sum(1 for r in results for e in r.results if e.left is None and e.right is None) > 20  # tombstones


def versioned_cases(seed: int, n: int) -> list[JoinCase]:
    """Random stream–versioned-table cases: out of order on both sides, tombstones, null values, records beyond
    the retention, events held for the grace (or none), ties."""
    rng = random.Random(seed)
    cases = []
    for i in range(n):
        retention = rng.choice([0, 4, 10, 1000])
        grace = rng.choice([None, 0, 2, 4])
        if grace is not None and grace > retention:
            grace = retention
        stream, table = [], []
        for v in range(rng.randrange(1, 50)):
            key = rng.choice("abc")
            ts = rng.randrange(0, 40)
            if rng.random() < 0.45:
                table.append(("T", key, ts, None if rng.random() < 0.15 else v))
            else:
                stream.append(("S", key, ts, None if rng.random() < 0.05 else v))
        records = merge_by_time(table, stream)
        cases.append(JoinCase.versioned(("inner", "left")[i % 2], retention, grace, records, id=f"vt-{i}"))
    return cases


def versioned_rule(case: JoinCase) -> list[tuple[str, int, Any, Any]]:
    """streamnb's rule on a case (tests/processing/test_join_asof.py checks it against a brute force)."""
    from streamnb.processing.joins.asof import GraceBuffer
    from streamnb.tables.versions import PartitionVersions

    versions = PartitionVersions(case.retention_ms)
    buffer = None if case.grace_ms < 0 else GraceBuffer(case.grace_ms)
    out = []
    for side, key, ts, value in case.records:
        if side == "T":
            versions.put(key, ts, value)
        elif value is not None:
            todo = [(key, ts, value)]
            if buffer is not None and buffer.put(ts, key.encode(), (key, ts, value)):
                todo = buffer.evict()
            for k, t, v in todo:
                row = versions.as_of(k, t)
                if row is not None or case.how == "left":
                    out.append((k, t, v, row))
    return out


async def streamnb_versioned(case: JoinCase) -> tuple[list[tuple[str, int, Any, Any]], int]:
    """The case through an agent: two one-partition topics written before the app starts."""
    app = test_app(topic_partitions=1)
    stream_topic = app.topic("orders", key_type=str, value_type=int)
    table_topic = app.topic("customers", key_type=str, value_type=int)
    table = app.Table("customers", source=table_topic, versioned=case.retention_ms / 1000)
    grace = None if case.grace_ms < 0 else case.grace_ms / 1000
    out: list[tuple[str, int, Any, Any]] = []
    stats: list[Any] = []

    @app.agent(stream_topic)
    async def join(stream: Any) -> None:
        joined = stream.join(table, how=case.how, grace=grace)
        stats.append(joined.join_stats)
        async for event in joined.events():
            value, row = event.value
            out.append((event.key, round(event.timestamp * 1000), value, row))

    await app.connect()
    for topic in (stream_topic, table_topic):
        await topic.declare()
    for side, key, ts, value in case.records:
        await (table_topic if side == "T" else stream_topic).send(key=key, value=value, timestamp=ts / 1000)
    assert table.versions is not None
    async with app:
        await settle(app)
        join.raise_if_crashed()
        # Kafka's dropped-records-total counts the stream's null values and the table records its versioned
        # store refused (older than stream time − retention): here join_stats.dropped and table.versions.expired.
        dropped = (stats[0].dropped if stats else 0) + table.versions.expired
    return out, dropped


def test_versioned_stream_table_rule_equals_kafka_streams() -> None:
    """Lookups as of the event's time, grace buffer included: the same results in the same order, 400 cases."""
    cases = versioned_cases(51, 400)
    kafka = run_join_cases(cases)
    differ = []
    for case, result in zip(cases, kafka):
        mine = versioned_rule(case)
        theirs = [(r.key, r.timestamp, r.left, r.right) for r in result.results]
        if mine != theirs:
            differ.append((case, mine, theirs))
    assert not differ, f"{len(differ)} of {len(cases)} differ; first: {differ[0]}"
    # The draw reached what matters: held events, answers beyond the retention, out-of-order table records.
    assert sum(len(r.results) for r in kafka) > 2 * len(cases)


async def test_versioned_stream_table_agents_equal_kafka_streams() -> None:
    """The agent reading two topics (versioned=, grace=), against Kafka Streams fed them merged in timestamp order."""
    # A last null-valued event, far ahead, moves the table to its end (dropped and counted by both).
    cases = [JoinCase.versioned(c.how, c.retention_ms, None if c.grace_ms < 0 else c.grace_ms,
                                [*c.records, ("S", "zz", 1000, None)], id=c.id) for c in versioned_cases(52, 40)]
    kafka = run_join_cases(cases)
    differ = []
    for case, result in zip(cases, kafka):
        mine, dropped = await streamnb_versioned(case)
        theirs = [(r.key, r.timestamp, r.left, r.right) for r in result.results]
        if mine != theirs or dropped != result.late:
            differ.append((case, mine, theirs, dropped, result.late))
    assert not differ, f"{len(differ)} of {len(cases)} differ; first: {differ[0]}"


def test_the_readme_example_of_a_versioned_join_in_kafka_streams_and_here() -> None:
    """README's example ("Versioned tables"), unversioned, versioned and with a grace, in Kafka Streams and here."""
    records = merge_by_time([("T", "k", 10, 1), ("T", "k", 20, 2), ("T", "k", 12, 3), ("T", "k", 13, 4)],
                            [("S", "k", 15, 7), ("S", "k", 14, 8), ("S", "k", 25, 9), ("S", "k", 40, 10)])
    assert [r[:3] for r in records] == [("T", "k", 10), ("S", "k", 15), ("S", "k", 14), ("T", "k", 20),
                                        ("T", "k", 12), ("T", "k", 13), ("S", "k", 25), ("S", "k", 40)]
    plain, versioned, graced = run_join_cases([
        JoinCase.stream_table("left", records, id="plain"),
        JoinCase.versioned("left", 100, None, records, id="versioned"),
        JoinCase.versioned("left", 100, 5, records, id="grace"),
    ])
    assert [(r.timestamp, r.right, r.at) for r in plain.results] == [(15, 1, 1), (14, 1, 2), (25, 4, 6), (40, 4, 7)]
    assert [(r.timestamp, r.right) for r in versioned.results] == [(15, 1), (14, 1), (25, 2), (40, 2)]
    assert [(r.timestamp, r.right, r.at) for r in graced.results] == [(14, 4, 6), (15, 4, 6), (25, 2, 7)]
    for result in (versioned, graced):
        assert versioned_rule(result.case) == [(r.key, r.timestamp, r.left, r.right) for r in result.results]
