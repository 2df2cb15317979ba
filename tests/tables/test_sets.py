"""Set tables: Faust's add/discard operations, recorded in the changelog, undone on a crash, recovered."""

from __future__ import annotations

from typing import Any

import pytest

import streamnb as faust
from streamnb.errors import ConfigurationError, TableWriteError
from streamnb.tables.sets import SetState
from streamnb.tables.state.base import Dirty
from streamnb.testing import settle, wait_until
from streamnb.transaction import MISSING
from streamnb.transport.base import TP


class Person(faust.Record):
    name: str


async def changelog_values(app: faust.App, table: Any) -> list[tuple[Any, Any]]:
    transport = app.require_transport()
    out = []
    for p in range(table.changelog.partition_count):
        tp = TP(table.changelog.name, p)
        end = (await transport.end_offsets([tp]))[tp]
        if end:
            for m in await transport.read(tp, 0, end):
                out.append((table.changelog.key_codec.loads(m.key), table.changelog.decode_value(m.value)))
    return out


def make(app_id: str, broker: str) -> tuple[faust.App, Any, Any]:
    app = faust.App(app_id, broker=broker, topic_partitions=2)
    ops = app.topic(f"{app_id}-ops", key_type=str, value_type=dict)
    people = app.SetTable("people", value_type=str)

    @app.agent(ops)
    async def apply(stream):  # type: ignore[no-untyped-def]
        async for location, op in stream.items():
            where = people[location]
            if op["do"] == "add":
                where.add(op["who"])
            elif op["do"] == "discard":
                where.discard(op["who"])
            elif op["do"] == "update":
                where |= set(op["who"])
            elif op["do"] == "clear":
                where.clear()
            elif op["do"] == "crash":
                where.add("ghost")
                raise RuntimeError("after a write")

    return app, ops, people


async def test_operations_are_recorded_and_recovered(app_id: str, broker: str) -> None:
    app, ops, people = make(app_id, broker)
    async with app:
        apply = app.agents["apply"]
        for n, (location, op) in enumerate([
            ("paris", {"do": "add", "who": "alice"}), ("paris", {"do": "add", "who": "bob"}),
            ("oslo", {"do": "update", "who": ["carol", "dave"]}), ("paris", {"do": "discard", "who": "alice"}),
            ("rome", {"do": "add", "who": "eve"}), ("rome", {"do": "clear"}),
        ]):
            await ops.send(key=location, value=op)
            await wait_until(lambda n=n: apply.events_processed == n + 1, 30, what=f"operation {n} processed")
            await settle(app)  # one commit per operation: one changelog record each
        assert people["paris"] == {"bob"} and "alice" not in people["paris"] and len(people["oslo"]) == 2
        assert "rome" not in people and people["rome"] == set() and people.get("rome") is None
        assert people.get("oslo") == {"carol", "dave"}
        records = await changelog_values(app, people)
    assert ("paris", {"members": ["alice", "bob"], "added": ["bob"], "removed": []}) in records
    assert ("paris", {"members": ["bob"], "added": [], "removed": ["alice"]}) in records
    assert ("oslo", {"members": ["carol", "dave"], "added": ["carol", "dave"], "removed": []}) in records
    assert ("rome", {"members": [], "added": [], "removed": ["eve"]}) in records
    if broker.startswith("memory://"):
        return
    again, _ops, people_again = make(app_id, broker)
    async with again:
        await people_again.recover()
        assert dict(people_again.data) == {"paris": {"bob"}, "oslo": {"carol", "dave"}}


async def test_a_crash_undoes_the_set_operations(app_id: str) -> None:
    app, ops, people = make(app_id, f"memory://{app_id}")
    apply = app.agents["apply"]
    apply.max_retries = 2
    async with app:
        await ops.send(key="paris", value={"do": "add", "who": "alice"})
        await ops.send(key="paris", value={"do": "crash"})
        await wait_until(lambda: apply.dead_lettered == 1, 10)
        await settle(app)
        assert people["paris"] == {"alice"}  # "ghost" was added by the failing event, and undone
        records = await changelog_values(app, people)
    assert all("ghost" not in value["members"] for _key, value in records)


async def test_writes_belong_in_agents_and_sets_are_not_assigned(app_id: str) -> None:
    app = faust.App(app_id, broker=f"memory://{app_id}")
    people = app.SetTable("people", value_type=str)
    with pytest.raises(TableWriteError, match="inside an agent"):
        people["paris"].add("alice")
    with pytest.raises(ConfigurationError, match=r"table\[key\]\.add"):
        people["paris"] = {"alice"}
    with pytest.raises(ConfigurationError, match="clear"):
        del people["paris"]
    with pytest.raises(ConfigurationError, match="cannot be windowed"):
        people.tumbling(10)
    with pytest.raises(ConfigurationError, match="cannot be windowed"):
        people.sliding(10)
    with pytest.raises(ConfigurationError, match="empty set"):
        app.SetTable("other", default=set)
    with pytest.raises(ConfigurationError, match="start_manager"):
        app.SetTable("managed", start_manager=True)


def test_set_state_changes_restore_and_load() -> None:
    state = SetState()
    dirty: Dirty[Any] = Dirty()
    state.change(dirty, "k", lambda s: s.update({1, 2}), partition=1, timestamp=3.0)
    state.change(dirty, "k", lambda s: s.discard(1), partition=1, timestamp=4.0)
    assert list(state.changes(dirty)) == [("k", 1, {"members": [2], "added": [2], "removed": []}, 4.0)]
    dirty = Dirty()
    state.change(dirty, "k", lambda s: s.add(5), partition=1)
    state.restore(dirty)
    assert state.rows == {"k": {2}}
    state.load("j", {"members": [[1, 2], [3, 4]]}, 0)  # JSON arrays come back as tuples
    assert state.rows["j"] == {(1, 2), (3, 4)}
    state.load("j", MISSING, 0)
    assert "j" not in state.rows
    assert state.drop_partitions({1}) and state.rows == {}


async def test_record_members(app_id: str) -> None:
    app = faust.App(app_id, broker=f"memory://{app_id}")
    joins = app.topic("joins", key_type=str, value_type=Person)
    people = app.SetTable("people", value_type=Person)

    @app.agent(joins)
    async def join(stream):  # type: ignore[no-untyped-def]
        async for location, person in stream.items():
            people[location].add(person)

    async with app:
        await joins.send(key="paris", value=Person(name="alice"))
        await settle(app)
        records = await changelog_values(app, people)
    assert people["paris"] == {Person(name="alice")}
    state = SetState(people.decode_member)
    state.load("paris", records[-1][1], 0)
    assert state.rows == {"paris": {Person(name="alice")}}
