"""Table–table joins (streamnb/tables/joins.py) in an app: the joined table and the changes sent to emit=."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from streamnb.errors import ConfigurationError, TableWriteError
from streamnb.tables.joins import LEFT, RIGHT, TableJoinRule
from streamnb.testing import test_app, wait_until
from streamnb.transport.base import TP


def draw(seed: int, n: int) -> list[tuple[str, str, float, int | None]]:
    rng = random.Random(seed)
    return [(rng.choice("LR"), rng.choice("abcd"), 100 + rng.randrange(0, 50), None if rng.random() < 0.3 else v)
            for v in range(n)]


def expected(how: str, records: list[tuple[str, str, float, int | None]]) -> tuple[dict[str, Any], list[Any]]:
    """The final rows and the changes, with both topics of one partition merged by timestamp (left first at ties)."""
    lefts = [r for r in records if r[0] == "L"]
    rights = [r for r in records if r[0] == "R"]
    merged, i, j = [], 0, 0
    while i < len(lefts) or j < len(rights):
        if j >= len(rights) or (i < len(lefts) and lefts[i][2] <= rights[j][2]):
            merged.append(lefts[i])
            i += 1
        else:
            merged.append(rights[j])
            j += 1
    rule = TableJoinRule(how)
    rows: dict[str, Any] = {}
    changes = []
    for side, key, ts, value in merged:
        change = rule.update(LEFT if side == "L" else RIGHT, key, round(ts * 1000), value)
        if change is not None:
            changes.append(change)
            if change[2] is None:
                rows.pop(key, None)
            else:
                rows[key] = change[2]
    return rows, changes


@pytest.mark.parametrize("how", ["inner", "left", "outer"])
async def test_a_joined_table_follows_both_topics_and_emits_its_changes(how: str) -> None:
    app = test_app(topic_partitions=1)
    people = app.topic("people", key_type=str, value_type=int)
    places = app.topic("places", key_type=str, value_type=int)
    left = app.Table("people", source=people)
    right = app.Table("places", source=places)
    joined = left.join(right, how=how, emit="changes")
    before, after = draw(3, 60), draw(4, 60)
    await app.connect()
    for topic in (people, places):
        await topic.declare()
    for side, key, ts, value in before:  # read at the start, not sent
        await (people if side == "L" else places).send(key=key, value=value, timestamp=ts)
    rows, _ = expected(how, before)
    async with app:
        await wait_until(lambda: dict(joined.items()) == rows and joined.version > 0, timeout=10)
        for side, key, ts, value in after:  # while it runs: each change sent
            await (people if side == "L" else places).send(key=key, value=value, timestamp=ts + 100)
        rows_after, changes = expected(how, before + [(s, k, t + 100, v) for s, k, t, v in after])
        _, first = expected(how, before)
        sent = changes[len(first):]
        emit = app.topics["changes"]
        tp = TP(emit.name, 0)

        async def arrived() -> bool:
            return (await app.transport.end_offsets([tp]))[tp] >= len(sent)

        await wait_until(arrived, timeout=10)
        msgs = await app.transport.read(tp, 0, len(sent))
    got = [(m.key.decode(), round(m.timestamp * 1000), None if m.value is None else json.loads(m.value))
           for m in msgs]
    assert got == [(k, t, None if p is None else {"left": p[0], "right": p[1]}) for k, t, p in sent]
    assert dict(joined.items()) == rows_after
    assert len(sent) > 10


def test_a_joined_table_is_read_only_and_needs_sourced_tables() -> None:
    app = test_app()
    left = app.Table("a", source=app.topic("a"))
    joined = left.join(app.Table("b", source=app.topic("b")))
    with pytest.raises(TableWriteError, match="read-only"):
        joined["k"] = 1
    with pytest.raises(ConfigurationError, match="source=topic"):
        left.join(app.Table("c", default=int))
    with pytest.raises(ConfigurationError, match="'inner', 'left' or 'outer'"):
        left.join(app.Table("d", source=app.topic("d")), how="cross")


async def test_a_joined_table_is_a_table_the_views_show() -> None:
    app = test_app(topic_partitions=1)
    people, places = app.topic("people", key_type=str, value_type=str), app.topic("places", key_type=str,
                                                                                  value_type=str)
    joined = app.Table("people", source=people).join(app.Table("places", source=places), how="left")
    from streamnb.notebook.views import live_table

    async with app:
        await people.send(key="u1", value="Ann")
        await places.send(key="u1", value="Paris")
        await wait_until(lambda: dict(joined.items()) == {"u1": ("Ann", "Paris")}, timeout=10)
        frame = joined.as_dataframe()
        assert list(frame["key"]) == ["u1"]
        assert live_table(joined) is not None
