"""Every kind of table on ``rocksdb://``: the same contents after a restart, which reads only the changelog's tail."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest

import streamnb as faust
from streamnb.tables.persistence import TableStore
from streamnb.testing import settle, wait_until

TABLE_STORES = ["rocksdb://"]  # (the app names its store)


class Tables:
    """An app writing one table of every kind from the same events."""

    def __init__(self, app_id: str, broker: str, datadir: Path, *, history: bool = False) -> None:
        self.app = app = faust.App(
            app_id, broker=broker, topic_partitions=2, datadir=str(datadir), store="rocksdb://", history=history,
        )
        self.events = app.topic(f"{app_id}-events", key_type=str, value_type=float)
        self.tumbling = app.Table("tumbling", default=int).tumbling(10, expires=1000)
        self.hopping = app.Table("hopping", default=int).hopping(10, 5, expires=1000)
        self.sliding = app.Table("sliding", default=int).sliding(10, expires=1000)
        self.session = app.Table("session", default=int).session(5, expires=1000)
        self.sets = app.SetTable("sets", value_type=str)
        self.everywhere = app.GlobalTable("everywhere", default=int, store="rocksdb://")  # (not from App(store=))
        self.plain = app.Table("plain", default=int)

        @app.agent(self.events)
        async def write(stream: Any) -> None:
            async for event in stream.events():
                key, at = event.key, event.value
                self.tumbling[key] += 1
                self.hopping[key] += 1
                self.sliding[key] += 1
                self.session[key] += 1
                self.sets[key].add(f"t{int(at)}")
                self.everywhere[key] += 1
                self.plain[key] = int(at)

    def tables(self) -> dict[str, Any]:
        out = {"tumbling": self.tumbling.table, "hopping": self.hopping.table, "sliding": self.sliding.table,
               "session": self.session.table, "sets": self.sets, "everywhere": self.everywhere, "plain": self.plain}
        return out

    async def restored(self) -> None:
        """Wait until every table holds both partitions (on Kafka, once they are assigned)."""
        await wait_until(lambda: all(t.recovered_partitions == {0, 1} for t in self.tables().values()), 30.0)
        await settle(self.app)

    def contents(self) -> dict[str, Any]:
        tables = self.tables()
        out: dict[str, Any] = {name: dict(t.data.items()) for name, t in tables.items()}
        out["sets"] = {k: set(v) for k, v in self.sets.state.rows.items()}
        out["stream_time"] = {
            name: dict(t.state.stream_time) for name, t in tables.items() if hasattr(t.state, "stream_time")
        }
        return out

    async def send(self, events: list[tuple[str, float]]) -> None:
        for key, at in events:
            await self.events.send(key=key, value=at, timestamp=1_000.0 + at)
        await settle(self.app)


def restores(caplog: pytest.LogCaptureFixture) -> dict[str, tuple[int, int]]:
    """``{table: (changelog records read, rows loaded from the store)}`` from the restore log lines."""
    out: dict[str, tuple[int, int]] = {}
    for r in caplog.records:
        m = re.search(r"table '(\w+)' restored .*: (\d+) records(?: after (\d+) rows from its store)?", r.getMessage())
        if m:
            read, stored = out.get(m.group(1), (0, 0))
            out[m.group(1)] = (read + int(m.group(2)), stored + int(m.group(3) or 0))
    return out


EVENTS = [("a", 1.0), ("b", 2.0), ("a", 3.0), ("c", 12.0), ("a", 14.0), ("b", 30.0), ("a", 31.0), ("c", 50.0)]


@pytest.mark.parametrize("history", [False, True], ids=["compacted", "history"])
async def test_every_kind_comes_back_from_its_store_reading_only_the_tail(
    app_id: str, durable_broker: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, history: bool
) -> None:
    datadir = tmp_path / "data"
    first = Tables(app_id, durable_broker, datadir, history=history)
    async with first.app:
        await first.send(EVENTS[:5])
        await first.send(EVENTS[5:])
        expected = first.contents()
        if history:
            assert first.plain.history_kept and first.tumbling.table.history_kept
    assert expected["tumbling"] and expected["session"] and expected["sets"] and expected["everywhere"]
    with caplog.at_level(logging.INFO, logger="streamnb"):
        again = Tables(app_id, durable_broker, datadir, history=history)
        async with again.app:
            await again.restored()
            assert again.contents() == expected
    seen = restores(caplog)
    # Rows read from the stores as needed (with history=True, sliding tables are held in memory):
    stored = ["sets", "tumbling", "hopping", "plain", "session"] + ([] if history else ["sliding"])
    kinds = ["tumbling", "hopping", "sliding", "session", "sets", "everywhere", "plain"]
    held = [name for name in kinds if name not in stored]
    assert {name: seen[name][0] for name in [*held, *stored]} == dict.fromkeys([*held, *stored], 0)
    assert all(seen[name][1] > 0 for name in held)  # loaded from the stores, not from the changelog
    assert all(seen[name][1] == 0 for name in stored)  # nothing loaded: served from the stores
    if history:
        async with again.app:
            df = await again.plain.history("a")
            assert df["new_value"].tolist() == [1.0, 3.0, 14.0, 31.0]  # every change, read from the changelog


async def test_commits_the_store_missed_are_read_from_the_tail(
    app_id: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kill -9 between the broker's commit and the stores' writes: the restart reads those commits again."""
    broker, datadir = f"local://{tmp_path / 'broker'}", tmp_path / "data"
    first = Tables(app_id, broker, datadir)
    async with first.app:
        await first.send(EVENTS[:5])
        with monkeypatch.context() as patched:
            patched.setattr(TableStore, "committed", lambda self: None)  # these never reach the stores
            await first.send(EVENTS[5:])
        expected = first.contents()
    with caplog.at_level(logging.INFO, logger="streamnb"):
        again = Tables(app_id, broker, datadir)
        async with again.app:
            await again.restored()
            assert again.contents() == expected
    seen = restores(caplog)
    assert all(0 < seen[name][0] <= 3 * len(EVENTS[5:]) for name in again.tables())  # just what the stores missed


async def test_a_windowed_store_ahead_of_its_changelog_is_rebuilt(
    app_id: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """memory:// forgets its topics at a restart; the datadir keeps the stores: they must not serve their rows."""
    datadir = tmp_path / "data"
    first = Tables(app_id, f"memory://{app_id}-1", datadir)
    async with first.app:
        await first.send(EVENTS[:3])
    with caplog.at_level(logging.WARNING, logger="streamnb"):
        again = Tables(app_id, f"memory://{app_id}-2", datadir)
        async with again.app:
            await again.restored()
            await again.send([("z", 100.0)])
            assert dict(again.tumbling.table.data.items()) == {("z", (1100.0, 1110.0)): 1}
            assert {k: set(v) for k, v in again.sets.state.rows.items()} == {"z": {"t100"}}
    assert any("past its end" in r.getMessage() for r in caplog.records)
