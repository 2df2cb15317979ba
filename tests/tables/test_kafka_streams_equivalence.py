"""streamnb's windowed tables against Kafka Streams 3.9 itself.

Random inputs (out of order, very late, ties exactly at ``end + grace`` and at
session gaps: times are drawn from a few dozen milliseconds with windows of a
few; and, from ``boundary_cases``, records of a window's key right after stream
time reached its closing instant or 1 ms before it, including records within
the gap of a session that just closed) go through Kafka Streams (``TopologyTestDriver``, the oracle in
tests/oracle) and through streamnb on ``memory://``; the windows, their final
values and the late counts must be identical.

Sliding windows: two behaviours of Kafka Streams are documented differences
(docs/event-time.md), so the sliding cases compare with Kafka Streams where
neither applies and, where its store retention drops an event, with Kafka's
own algorithm without that drop (tests/oracle/model.py): Kafka emits a
sliding window's final at ``end + grace`` while the window still accepts
events at that instant (streamnb closes it 1 ms later, once), and it builds
a new window from the windows that existed when its event came, so an event
refused by some windows can be missing from a window made later (the sliding
draw here sends events in order, within grace, or too late for any window).
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from oracle.kstreams import Emission, OracleCase, run_cases
from oracle.model import Simulation, _Sliding
from oracle.test_model import random_cases

import streamnb as faust
from streamnb.testing import settle, test_app

pytestmark = pytest.mark.slow

# Window rules only (no restart), and each case takes seconds: the module runs on memory://, and
# the kinds whose windows live in the stores on rocksdb:// (tumbling, hopping, session, sliding) run there too
# (test_windows_in_the_stores_...); restarts on rocksdb://: test_stored_kinds.py, test_event_time_restarts.py.
TABLE_STORES = ["memory://"]

PER_KIND = 120


class Event(faust.Record):
    case: int
    key: str
    value: int


def boundary_cases(kind: str, seed: int, n: int) -> list[OracleCase]:
    """Records placed on the closing instants (tumbling, hopping, session).

    After some records, stream time is moved (by another key) exactly to a window's
    or a session's ``end (+ gap) + grace`` or 1 ms before it, then a record of the
    window's key comes inside that window or within the session's gap (it would merge
    into the session that just closed, issue 24), or exactly on the edge.
    """
    rng = random.Random(seed)
    cases = []
    for i in range(n):
        size, grace = rng.choice([2, 5, 10]), rng.choice([0, 1, 2, 5])
        advance = rng.choice([a for a in (1, 2, 5) if a <= size])
        events: list[tuple[str, int, int]] = []
        now = 0
        for _ in range(rng.randrange(4, 30)):
            if not events or rng.random() < 0.4:
                t = max(0, now + rng.randrange(-grace - 2, 4))
                events.append((rng.choice("ab"), t, 1))
                now = max(now, t)
                continue
            key, t, _ = rng.choice(events)
            if kind == "session":
                end = max(u for k, u, _ in events if k == key and abs(u - t) <= size) if rng.random() < 0.5 else t
                closing, inside = end + size + grace, end + rng.choice([0, 1, size])
            else:
                step = size if kind == "tumbling" else advance
                end = (t // step) * step + size
                closing, inside = end + grace, end - rng.choice([1, size])
            mover = "c" if rng.random() < 0.7 else key
            events.append((mover, closing - rng.choice([0, 0, 1]), 1))
            events.append((key, max(0, inside), 1))
            now = max(now, closing, inside)
        if kind == "tumbling":
            cases.append(OracleCase.tumbling(size, grace, events, id=f"edge-tumbling-{i}"))
        elif kind == "hopping":
            cases.append(OracleCase.hopping(size, advance, grace, events, id=f"edge-hopping-{i}"))
        else:
            cases.append(OracleCase.session(size, grace, events, id=f"edge-session-{i}"))
    return cases


def sliding_cases(seed: int, n: int) -> list[OracleCase]:
    """In order, within grace of stream time (ties included), or too late for every window."""
    rng = random.Random(seed)
    cases = []
    for i in range(n):
        size, grace = rng.choice([1, 2, 5, 10]), rng.choice([0, 1, 2, 5, 10])
        now, events = -1, []
        for _ in range(rng.randrange(1, 40)):
            r = rng.random()
            if now < 0 or r < 0.5:
                t = max(now, 0) + rng.randrange(0, 4)
            elif r < 0.8:
                t = max(0, now - rng.randrange(0, grace + 1))
            else:
                last = now - grace - size - 1  # the newest time no window accepts
                t = now if last < 0 else rng.choice([last, rng.randrange(0, last + 1)])
            now = max(now, t)
            events.append((rng.choice("abc"), t, rng.randrange(1, 4)))
        cases.append(OracleCase.sliding(size, grace, events, id=f"sliding-{i}"))
    return cases


class _Unclamped(_Sliding):
    """Kafka's sliding-window algorithm with a store that keeps every window."""

    def fetch(self, key: str, low: int, high: int) -> list[tuple[int, tuple[int, int]]]:
        return sorted((s, v) for (k, s), v in self.store.items() if k == key and low <= s <= high)


def unclamped(case: OracleCase) -> Simulation:
    out = Simulation()
    sliding = _Unclamped(case, out)
    for at, (key, ts, value) in enumerate(case.events):
        sliding.process(at, key, ts, value)
    return out


def kafka_finals(case: OracleCase, finals: list[Emission]) -> list[tuple[str, int, int, int]]:
    """The final value of each window as streamnb emits it (sliding: the last, once closed 1 ms later)."""
    if case.kind != "sliding":
        return sorted((e.key, e.start, e.end, e.value) for e in finals if e.value is not None)
    last: dict[tuple[str, int, int], int] = {}
    for e in finals:
        last[(e.key, e.start, e.end)] = e.value  # type: ignore[assignment]
    now = max(ts for _key, ts, _value in case.events)
    return sorted((k, s, e, v) for (k, s, e), v in last.items() if e + case.grace_ms < now)


def define(app: faust.App, case: OracleCase, finals: list[Any]) -> Any:
    table = app.Table(
        f"case-{case.id}", default=int, partitions=1,
        on_window_close=lambda key, value: finals.append((key[0], key[1], value)),
    )
    grace = case.grace_ms / 1000
    if case.kind == "tumbling":
        return table.tumbling(case.size_ms / 1000, grace=grace)  # type: ignore[operator]
    if case.kind == "hopping":
        return table.hopping(case.size_ms / 1000, case.advance_ms / 1000, grace=grace)  # type: ignore[operator]
    if case.kind == "sliding":
        return table.sliding(case.size_ms / 1000, grace=grace)  # type: ignore[operator]
    return table.session(case.gap_ms / 1000, grace=grace)  # type: ignore[operator]


async def run_streamnb(
    cases: list[OracleCase], store: str = "memory://"
) -> list[tuple[list[tuple[str, int, int, int]], int, list[Any]]]:
    """Every case through one app: one table per case, one agent writing them in input order."""
    app = test_app(topic_partitions=1, store=store)
    events = app.topic("events", value_type=Event)
    finals: list[list[Any]] = [[] for _ in cases]
    tables = [define(app, case, finals[i]) for i, case in enumerate(cases)]
    if store == "rocksdb://":  # (the windows live in the stores, not in memory)
        assert all(type(t.state).__name__.startswith("Stored") for t in tables)

    @app.agent(events)
    async def aggregate(stream):  # type: ignore[no-untyped-def]
        async for event in stream:
            tables[event.case][event.key] += event.value

    async with app:
        for i, case in enumerate(cases):
            for key, ts, value in case.events:
                await events.send(value=Event(case=i, key=key, value=value), timestamp=ts / 1000)
        await settle(app, timeout=120)
        aggregate.raise_if_crashed()
        await asyncio.sleep(0)  # on_window_close runs right after each commit
    out = []
    for i, table in enumerate(tables):
        emitted = [(key, round(w[0] * 1000), round(w[1] * 1000), value) for key, w, value in finals[i]]
        out.append((sorted(emitted), table.late_windows, finals[i]))
    return out


@pytest.mark.parametrize("kind", ["tumbling", "hopping", "session", "sliding"])
async def test_windows_finals_and_late_counts_equal_kafka_streams(kind: str) -> None:
    await equal_kafka_streams(kind, "memory://")


@pytest.mark.parametrize("kind", ["tumbling", "hopping", "session", "sliding"])
async def test_windows_in_the_stores_equal_kafka_streams_on_rocksdb(kind: str) -> None:
    """The same cases with the windows in RocksDB (``StoredWindowedState``, ``StoredSessionState``,
    ``StoredSlidingState``): the same."""
    await equal_kafka_streams(kind, "rocksdb://")


async def equal_kafka_streams(kind: str, store: str) -> None:
    if kind == "sliding":
        cases = sliding_cases(7, PER_KIND * 2)
    else:
        cases = [c for c in random_cases(11, PER_KIND) if c.kind == kind] + boundary_cases(kind, 13, PER_KIND)
    kafka = run_cases(cases)
    ours = await run_streamnb(cases, store)

    differ, retention = [], 0
    for case, result, (finals, late, emitted) in zip(cases, kafka, ours):
        expected_finals, expected_late = kafka_finals(case, result.finals), result.late
        if kind == "sliding":
            reference = unclamped(case)
            if kafka_finals(case, reference.finals) != expected_finals or reference.late != expected_late:
                retention += 1  # Kafka's store dropped a window it still needed: its rules without that drop
                expected_finals, expected_late = kafka_finals(case, reference.finals), reference.late
        if (finals, late) != (expected_finals, expected_late):
            differ.append((case, finals, late, expected_finals, expected_late))
        ends = [w[1] for _key, w, _value in emitted]
        assert ends == sorted(ends), f"{case.id}: finals not in order of window end: {emitted}"
    assert not differ, f"{len(differ)} of {len(cases)} differ; first: {differ[0]}"
    # The draw exercised what it is meant to: finals and late events.
    assert sum(len(r.finals) for r in kafka) > len(cases)
    assert sum(r.late for r in kafka) > 0
    if kind == "sliding":
        print(f"sliding: {retention} of {len(cases)} cases hit Kafka's store-retention drop")


def test_boundary_draw_hits_the_closing_instants() -> None:
    """The boundary draw puts records within the gap of a session at the instant it closed (issue 24)."""
    hits = 0
    for case in boundary_cases("session", 13, PER_KIND):
        assert case.gap_ms is not None
        events = case.events
        for i in range(1, len(events) - 1):
            key, t, _ = events[i + 1]
            closing = events[i][1]
            ends = [u for k, u, _ in events[: i] if k == key and u + case.gap_ms + case.grace_ms == closing]
            newest = max(u for _, u, _ in events[: i + 1])
            if ends and closing == newest and any(0 <= t - e <= case.gap_ms for e in ends):
                hits += 1
    assert hits >= PER_KIND // 2
