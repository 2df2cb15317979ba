"""Tumbling and hopping windows on ``rocksdb://``: in the stores, a bounded cache, restarts that load nothing."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest

import streamnb as faust
from streamnb.tables.state.stored_windows import StoredWindowedState
from streamnb.tables.stores.rocksdb import RocksDBStore
from streamnb.tables.stores.windowkeys import BY_KEY, BY_TIME, END_BY_KEY, END_BY_TIME
from streamnb.testing import settle, wait_until

TABLE_STORES = ["rocksdb://"]  # (the app names its store)


class Windows:
    """An app counting events per key in tumbling windows of 10 s (closed windows kept 20 s more)."""

    def __init__(
        self, app_id: str, broker: str, datadir: Path, *, store: str = "rocksdb://", kind: str = "tumbling",
        partitions: int = 2,
    ) -> None:
        self.app = app = faust.App(
            app_id, broker=broker, topic_partitions=partitions, datadir=str(datadir), store=store
        )
        self.partitions = partitions
        self.events = app.topic(f"{app_id}-events", key_type=str, value_type=int)
        self.closed: list[tuple[Any, Any]] = []
        table = app.Table("views", default=int, on_window_close=lambda kw, v: self.closed.append((kw, v)))
        if kind == "tumbling":
            self.views = table.tumbling(10, expires=30, grace=0)
        elif kind == "hopping":
            self.views = table.hopping(10, 5, expires=40, grace=5)  # (closed windows stay readable 35 s)
        else:
            self.views = table.session(5, expires=30)

        @app.agent(self.events)
        async def count(stream: Any) -> None:
            async for event in stream.events():
                self.views[event.key] += event.value

    async def send(self, events: list[tuple[str, float]]) -> None:
        for key, at in events:
            await self.events.send(key=key, value=1, timestamp=at)
        await settle(self.app)

    def frame(self) -> list[tuple[Any, ...]]:
        df = self.views.as_dataframe(times="epoch")
        return sorted(df.itertuples(index=False, name=None), key=str)

    async def restored(self) -> None:
        await wait_until(lambda: self.views.table.recovered_partitions == set(range(self.partitions)), 30.0)


def events_of(keys: int, times: list[float]) -> list[tuple[str, float]]:
    return [(f"k{i}", t) for t in times for i in range(keys)]


async def test_windows_live_in_the_store_and_memory_holds_a_bounded_cache(
    app_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(StoredWindowedState, "cache_size", 40)
    events = events_of(150, [1000.0, 1010.0, 1021.0])  # 450 windows; the first two close, the last stays open
    memory = Windows(f"{app_id}m", f"local://{tmp_path / 'm'}", tmp_path / "m-data", store="memory://", partitions=1)
    stored = Windows(app_id, f"local://{tmp_path / 's'}", tmp_path / "s-data", partitions=1)
    async with memory.app, stored.app:
        await memory.send(events)
        await stored.send(events)
        state = stored.views.state
        assert isinstance(state, StoredWindowedState)
        # A key not cached, written once every commit landed: the cache goes back within its size (what a
        # commit writes stays until it lands, so a large commit may hold more for a while).
        await memory.send([("fresh", 1021.0)])
        await stored.send([("fresh", 1021.0)])
        assert state._cached <= 40 and len(state.by_key) <= 40  # noqa: SLF001
        assert len(stored.views) == len(memory.views) == 451
        assert stored.frame() == memory.frame()
        assert dict(stored.views.items()) == dict(memory.views.items())
        assert stored.views["k7"][(1010.0, 1020.0)] == 1 and stored.views["k7"][1025.0] == 1
        assert stored.views["k149"].current() == 1 and stored.views["nobody"].current() == 0
        assert "k3" in stored.views and "nobody" not in stored.views
        assert stored.views.table["k3", (1000.0, 1010.0)] == 1
        assert "rows~" in repr(stored.views) and "rows~" in repr(stored.views.table)  # (an estimate: no scan)
        # The same windows closed; those closing together come out in key order (as Kafka Streams), memory:// in
        # the order they were created.
        assert sorted(stored.closed, key=str) == sorted(memory.closed, key=str) and len(stored.closed) == 300
        firsts = [kw[0] for kw, _v in stored.closed[:150]]
        assert firsts == sorted(firsts) != [kw[0] for kw, _v in memory.closed[:150]]
        rows = {p: sum(1 for _ in store.scan(BY_KEY, END_BY_KEY)) for p, store in state.stores.items()}
        by_time = {p: sum(1 for _ in store.scan(BY_TIME, END_BY_TIME)) for p, store in state.stores.items()}
        assert sum(rows.values()) == 451 and by_time == rows  # every window in the store, by key and by time
        await stored.send([("k0", 1060.0)])  # 1060 >= end + expires of every window but k0's own new one
        await memory.send([("k0", 1060.0)])
        assert dict(stored.views.items()) == dict(memory.views.items()) == {("k0", (1060.0, 1070.0)): 1}
        assert sum(1 for store in state.stores.values() for _ in store.scan(BY_TIME, END_BY_TIME)) == 1


async def test_a_restart_loads_no_window_and_closes_those_due_afterwards(
    app_id: str, durable_broker: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    datadir = tmp_path / "data"
    first = Windows(app_id, durable_broker, datadir)
    async with first.app:
        await first.send(events_of(20, [1000.0, 1005.0]))
        expected = first.frame()
    assert first.closed == [] and len(expected) == 20
    with caplog.at_level(logging.INFO, logger="streamnb"):
        again = Windows(app_id, durable_broker, datadir)
        async with again.app:
            await again.restored()
            state = again.views.state
            assert isinstance(state, StoredWindowedState) and not state.by_key  # nothing loaded
            assert again.frame() == expected and again.views["k3"][(1000.0, 1010.0)] == 2
            assert again.views.stream_time(0) == 1005.0 or again.views.stream_time(1) == 1005.0
            await again.send([(f"k{i}", 1012.0) for i in range(20)])  # closes the windows written before
            assert sorted(again.closed, key=str) == sorted(((f"k{i}", (1000.0, 1010.0)), 2) for i in range(20))
    read = [int(m.group(1)) for r in caplog.records
            if (m := re.search(r"table 'views' restored .*: (\d+) records", r.getMessage()))]
    assert read and read[0] == 0  # only the (empty) tail of the changelog


async def test_a_table_that_changed_kind_rebuilds_its_store(
    app_id: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broker, datadir = f"local://{tmp_path / 'broker'}", tmp_path / "data"
    first = Windows(app_id, broker, datadir)
    async with first.app:
        await first.send([("a", 1000.0), ("a", 1001.0)])
    with caplog.at_level(logging.WARNING, logger="streamnb"):
        sessions = Windows(app_id, broker, datadir, kind="session")
        async with sessions.app:
            await sessions.restored()
            assert sessions.views.state.__class__.__name__ == "StoredSessionState"
    assert any("changed kind" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="streamnb"):
        back = Windows(app_id, broker, datadir)
        async with back.app:
            await back.restored()
            assert dict(back.views.items()) == {("a", (1000.0, 1010.0)): 2}  # rebuilt from the changelog
    assert any("changed kind" in r.getMessage() for r in caplog.records)


def test_the_store_layout_is_kept_with_the_rows(tmp_path: Path) -> None:
    store = RocksDBStore(tmp_path / "views" / "0", 8 << 20)
    store.open()
    assert store.layout == ""
    store.layout = "windows"
    store.close()
    store.open()
    assert store.layout == "windows"
    store.close()


async def test_hopping_windows_close_and_expire_as_in_memory_across_restarts(app_id: str, tmp_path: Path) -> None:
    """Three runs of the same events on both stores: the same windows, finals and late counts after each."""
    rounds = [
        [("a", 1000.0), ("b", 1003.0), ("a", 1012.0), ("c", 1001.0), ("b", 1020.0)],
        [("a", 1024.0), ("a", 1009.0), ("c", 1031.0), ("b", 1046.0)],  # (1009: late for some windows)
        [("a", 1090.0), ("c", 1095.0), ("b", 1060.0)],  # every earlier window expires; 1060 is late
    ]
    seen: dict[str, list[Any]] = {"memory://": [], "rocksdb://": []}
    for store in seen:
        broker, datadir = f"local://{tmp_path / store[:3] / 'broker'}", tmp_path / store[:3] / "data"
        closed: list[Any] = []
        for events in rounds:
            run = Windows(app_id, broker, datadir, store=store, kind="hopping")
            run.closed = closed
            async with run.app:
                await run.restored()
                await run.send(events)
                seen[store].append((run.frame(), dict(run.views.late_events_by_partition()), run.views.late_windows))
        seen[store].append(sorted(closed, key=str))
    assert seen["rocksdb://"] == seen["memory://"]
    frames = [frame for frame, _late, _windows in seen["memory://"][:3]]
    assert frames[0] and frames[1] and len(frames[2]) < len(frames[1])  # (windows were written, then expired)
    assert seen["memory://"][2][2] > 0 and seen["memory://"][3]  # (late updates and finals happened)
