"""Versioned (as-of) stream–table joins: the rule against a brute-force statement of it, and agents on every broker.

The rule is :class:`streamnb.tables.versions.PartitionVersions` (the table's
versions) with :class:`streamnb.processing.joins.asof.GraceBuffer` (events held
for the grace); :func:`brute` restates what README says with no incremental
state: for every event, when it is joined and what the table held for its key
as of its timestamp at that moment.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import streamnb as faust
from streamnb.errors import ConfigurationError
from streamnb.processing.joins.asof import GraceBuffer
from streamnb.tables.versions import PartitionVersions
from streamnb.testing import settle, test_app

GRACE: float | None = 0.005
Record = tuple[str, str, int, Any]  # "S" (stream) or "T" (table), key, ts (ms), value (None: tombstone / dropped)
Out = tuple[str, int, Any, Any, int]  # key, ts, value, row, index of the record whose processing emitted it


def rule(records: list[Record], how: str, retention: int | None, grace: int | None) -> list[Out]:
    """The join's rule, as the agent applies it: the versions and the grace buffer."""
    versions = PartitionVersions(retention)
    buffer = None if grace is None else GraceBuffer(grace)
    out: list[Out] = []
    for at, (side, key, ts, value) in enumerate(records):
        if side == "T":
            versions.put(key, ts, value)
            continue
        if value is None:
            continue
        todo = [(key, ts, value)]
        if buffer is not None:
            todo = buffer.evict() if buffer.put(ts, key.encode(), (key, ts, value)) else todo
        for k, t, v in todo:
            row = versions.as_of(k, t)
            if row is not None or how == "left":
                out.append((k, t, v, row, at))
    return out


def merged(table: list[Record], stream: list[Record]) -> list[Record]:
    """Two partitions as the join reads them: the head with the smaller timestamp first, the table's at ties."""
    out, i, j = [], 0, 0
    while i < len(table) or j < len(stream):
        if j >= len(stream) or (i < len(table) and table[i][2] <= stream[j][2]):
            out.append(table[i])
            i += 1
        else:
            out.append(stream[j])
            j += 1
    return out


def brute(records: list[Record], how: str, retention: int | None, grace: int | None) -> list[Out]:
    """The same, stated directly (no incremental state)."""
    def kept(upto: int) -> list[tuple[int, Record]]:
        """Table records among the first ``upto`` that were taken (not older than their time − retention)."""
        taken: list[tuple[int, Record]] = []
        for i, r in enumerate(records[:upto]):
            if r[0] != "T":
                continue
            newest = max((t[1][2] for t in taken), default=None)
            if retention is None or newest is None or r[2] >= newest - retention:
                taken.append((i, r))
        return taken

    def row_as_of(upto: int, key: str, ts: int) -> Any:
        taken = kept(upto)
        newest = max((r[2] for _i, r in taken), default=None)
        mine = [(r[2], i, r[3]) for i, r in taken if r[1] == key]
        if not mine:
            return None
        if retention is not None and newest is not None and ts < newest - retention:
            last = max(mine)  # (latest timestamp, then the latest arrival at that timestamp)
            return last[2] if last[0] <= ts else None
        before = [m for m in mine if m[0] <= ts]
        return max(before)[2] if before else None

    stream = [(i, r) for i, r in enumerate(records) if r[0] == "S" and r[3] is not None]
    out: list[Out] = []
    emitted: set[int] = set()
    for at in range(len(records)):
        if records[at][0] != "S" or records[at][3] is None:
            continue
        seen = [(i, r) for i, r in stream if i <= at]
        if grace is None:
            due = [(at, records[at])]
        else:
            # The buffer's time: the largest timestamp of the events it took (too-late ones are not taken).
            time_before = max((r[2] for i, r in seen[:-1] if i not in too_late(seen[:-1], grace)), default=None)
            if time_before is not None and records[at][2] < time_before - grace:
                due = [(at, records[at])]
            else:
                now = max(r[2] for i, r in seen if i not in too_late(seen, grace))
                due = sorted(
                    ((i, r) for i, r in seen if i not in emitted and i not in too_late(seen, grace)
                     and r[2] <= now - grace),
                    key=lambda ir: (ir[1][2], ir[1][1].encode(), ir[0]),
                )
        for i, r in due:
            emitted.add(i)
            row = row_as_of(at + 1, r[1], r[2])
            if row is not None or how == "left":
                out.append((r[1], r[2], r[3], row, at))
    return out


def too_late(seen: list[tuple[int, Record]], grace: int) -> set[int]:
    """Events that came after the buffer's time − grace (joined at once, never held)."""
    late, time = set(), None
    for i, r in seen:
        if time is not None and r[2] < time - grace:
            late.add(i)
        elif time is None or r[2] > time:
            time = r[2]
    return late


records_strategy = st.lists(
    st.tuples(st.sampled_from("STT"), st.sampled_from("ab"), st.integers(0, 30),
              st.one_of(st.none(), st.integers(0, 99))),
    max_size=40,
)


@settings(max_examples=400, deadline=None)
@given(records_strategy, st.sampled_from(["inner", "left"]), st.sampled_from([None, 0, 3, 8, 40]),
       st.sampled_from([None, 0, 2, 5]))
def test_the_rule_equals_its_brute_force_statement(records: list[Record], how: str, retention: int | None,
                                                    grace: int | None) -> None:
    if grace is not None and retention is not None and grace > retention:
        grace = retention
    assert rule(records, how, retention, grace) == brute(records, how, retention, grace)


def test_grace_buffer_orders_by_time_then_key_bytes_then_arrival() -> None:
    buffer = GraceBuffer(grace=2)
    for ts, key, item in [(5, b"b", 1), (5, b"a", 2), (4, b"b", 3), (5, b"a", 4), (9, b"a", 5)]:
        assert buffer.put(ts, key, item)
    assert buffer.evict() == [3, 2, 4, 1] and len(buffer) == 1
    assert not buffer.put(6, b"a", 6)  # 6 < 9 - 2


def test_options_that_do_not_apply_are_errors() -> None:
    app = test_app()
    topic = app.topic("customers")
    with pytest.raises(ConfigurationError, match="not both"):
        app.Table("c", source=topic, history=True, versioned=60)
    with pytest.raises(ConfigurationError, match="follows a topic"):
        app.Table("plain", history=True)
    with pytest.raises(ConfigurationError, match="global table"):
        app.GlobalTable("g", source=topic, history=True)
    with pytest.raises(ConfigurationError, match="versioned="):
        app.Table("c", source=topic, versioned="a minute")
    plain = app.Table("latest", source=app.topic("other"))
    versioned = app.Table("v", source=app.topic("third"), versioned=timedelta(seconds=30))
    assert versioned.versions is not None and versioned.versions.retention == 30_000
    stream = app.stream("orders")
    with pytest.raises(ConfigurationError, match="only a versioned table"):
        stream.join(plain, grace=5)
    with pytest.raises(ConfigurationError, match="exceeds the table's history retention"):
        stream.join(versioned, grace=31)
    with pytest.raises(ConfigurationError, match="stream–stream"):
        stream.join(versioned, within=5)
    assert stream.join(versioned, how="left", grace=30).stage == "join(v, left, grace=30.0 s)"


async def test_agents_look_the_table_up_as_of_each_event(broker: str, app_id: str) -> None:
    """Out-of-order table records and held events, through an agent reading two topics, restarted midway
    (the held events come back from the join's changelog)."""
    # Two runs of the app, each reading what was written before it started: the table's partition and the
    # stream's merged in timestamp order (the table's first at ties), as the join reads them.
    parts = [
        merged([("T", "k", 10, 1), ("T", "k", 20, 2), ("T", "k", 12, 3), ("T", "k", 13, 4)],
               [("S", "k", 15, 7), ("S", "k", 14, 8)]),
        merged([("T", "j", 1, 6)], [("S", "j", 16, 5), ("S", "k", 25, 9), ("S", "k", 40, 10)]),
    ]
    assert parts[0][:4] == [("T", "k", 10, 1), ("S", "k", 15, 7), ("S", "k", 14, 8), ("T", "k", 20, 2)]
    want = rule(parts[0] + parts[1], "left", 100, 5)
    # S15 and S14 are held over the restart; T12 and T13 come after them, out of order, and are seen.
    assert [(k, t, v, r) for k, t, v, r, _ in want] == [
        ("k", 14, 8, 4), ("k", 15, 7, 4), ("j", 16, 5, 6), ("k", 25, 9, 2),
    ]
    out: list[tuple[str, int, Any, Any]] = []
    rows: list[dict[str, Any]] = []
    for part in parts:
        app = faust.App(app_id, broker=broker, topic_partitions=1)
        stream_topic = app.topic(f"{app_id}-orders", key_type=str, value_type=int)
        table_topic = app.topic(f"{app_id}-customers", key_type=str, value_type=int)
        table = app.Table("customers", source=table_topic, versioned=0.1)

        @app.agent(stream_topic)
        async def join(stream: Any, table: Any = table) -> None:
            async for event in stream.join(table, how="left", grace=GRACE).events():
                value, row = event.value
                current = stream.current_event
                out.append((current.key, round(current.timestamp * 1000), value, row))

        await app.connect()
        for side, key, ts, value in part:
            topic = table.source if side == "T" else stream_topic
            await topic.send(key=key, value=value, timestamp=ts / 1000)
        async with app:
            await settle(app)
            join.raise_if_crashed()
            rows.append(dict(table))
    assert out == [(k, t, v, r) for k, t, v, r, _ in want], repr((out, join.crashes, join.last_error))
    # table[k] is the newest version: T k@12 and T k@13, out of order, went into the history only (the first
    # run read the table as far as its stream, up to T k@10; the second reads it again from the start).
    assert rows == [{"k": 1}, {"k": 2, "j": 6}]
