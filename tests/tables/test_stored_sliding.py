"""Sliding windows on ``rocksdb://``: buckets in the stores, a bounded cache, restarts that load nothing, kill -9."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest
from windowhelpers import kill9_keeps_finals_exact, same_on_both_stores

import streamnb as faust
from streamnb.tables.state.stored_sliding import StoredSlidingState
from streamnb.tables.stores.windowkeys import BY_KEY, BY_TIME, END_BY_KEY, END_BY_TIME
from streamnb.testing import settle, wait_until

TABLE_STORES = ["rocksdb://"]  # (the app names its store)


class Sliding:
    """An app counting events per key in sliding windows of 10 s (grace 2 s, closed windows kept 30 s)."""

    def __init__(
        self, app_id: str, broker: str, datadir: Path, *, store: str = "rocksdb://", partitions: int = 2,
    ) -> None:
        self.app = app = faust.App(
            app_id, broker=broker, topic_partitions=partitions, datadir=str(datadir), store=store
        )
        self.partitions = partitions
        self.events = app.topic(f"{app_id}-events", key_type=str, value_type=int)
        self.closed: list[tuple[Any, Any]] = []
        table = app.Table("recent", default=int, on_window_close=lambda kw, v: self.closed.append((kw, v)))
        self.recent = table.sliding(10, expires=30, grace=2)

        @app.agent(self.events)
        async def count(stream: Any) -> None:
            async for event in stream.events():
                self.recent[event.key] += event.value

    async def send(self, events: list[tuple[str, float]]) -> None:
        for key, at in events:
            await self.events.send(key=key, value=1, timestamp=at)
        await settle(self.app)

    def frame(self) -> list[tuple[Any, ...]]:
        df = self.recent.as_dataframe(times="epoch")
        return sorted(df.itertuples(index=False, name=None), key=str)

    async def restored(self) -> None:
        await wait_until(lambda: self.recent.table.recovered_partitions == set(range(self.partitions)), 30.0)


def stored_rows(state: StoredSlidingState) -> tuple[int, int]:
    """Buckets and frozen finals in the stores, by key and by time."""
    by_key = sum(1 for store in state.stores.values() for _ in store.scan(BY_KEY, END_BY_KEY))
    by_time = sum(1 for store in state.stores.values() for _ in store.scan(BY_TIME, END_BY_TIME))
    return by_key, by_time


async def test_buckets_live_in_the_store_and_reads_equal_memory(
    app_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(StoredSlidingState, "cache_size", 60)
    # 120 keys, events at 1000, 1004, 1020 (left and right windows, some close); every third key an event at
    # 1025, then one at 1014 (later than grace: it freezes the closed windows holding it, and refuses some).
    events = [(f"k{i}", t) for t in (1000.0, 1004.0, 1020.0) for i in range(120)]
    events += [(f"k{i}", t) for t in (1025.0, 1014.0) for i in range(0, 120, 3)]
    memory = Sliding(f"{app_id}m", f"local://{tmp_path / 'm'}", tmp_path / "m-data", store="memory://", partitions=1)
    stored = Sliding(app_id, f"local://{tmp_path / 's'}", tmp_path / "s-data", partitions=1)
    async with memory.app, stored.app:
        await memory.send(events)
        await stored.send(events)
        state = stored.recent.state
        assert isinstance(state, StoredSlidingState)
        await memory.send([("fresh", 1030.0)])
        await stored.send([("fresh", 1030.0)])
        assert state._cached + len(state.by_key) <= 60 + 6  # noqa: SLF001  (the cache, within a tenth)
        assert len(stored.recent) == len(memory.recent) > 400
        assert stored.frame() == memory.frame()
        assert dict(stored.recent.items()) == dict(memory.recent.items())
        assert stored.recent["k3"][(1015.0, 1025.0)] == 2 and stored.recent["k3"][1025.0] == 2
        assert stored.recent["k4"][(994.0, 1004.0)] == 2 and stored.recent["k4"][(1000.001, 1010.001)] == 1
        for key in ("k3", "k4", "fresh", "nobody"):
            ours, theirs = stored.recent[key], memory.recent[key]
            assert (ours.current(), ours.value(), ours.now()) == (theirs.current(), theirs.value(), theirs.now())
        assert "nobody" not in stored.recent and "k7" in stored.recent
        assert stored.recent.late_windows == memory.recent.late_windows > 0
        assert sorted(stored.closed, key=str) == sorted(memory.closed, key=str) and len(stored.closed) >= 240
        frozen = 40  # (k0, k3, ...: the window (1004.001, 1014.001) closed before 1014 came)
        assert stored_rows(state) == (3 * 120 + 2 * 40 + frozen + 1,) * 2  # buckets and finals, by key and time
        await stored.send([("k0", 1100.0)])  # past every bucket's keep but k0's new one
        await memory.send([("k0", 1100.0)])
        assert dict(stored.recent.items()) == dict(memory.recent.items()) == {("k0", (1090.0, 1100.0)): 1}
        assert stored_rows(state) == (1, 1)
        assert sorted(stored.closed, key=str) == sorted(memory.closed, key=str)


async def test_a_restart_loads_no_bucket_and_closes_those_due_afterwards(
    app_id: str, durable_broker: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    datadir = tmp_path / "data"
    first = Sliding(app_id, durable_broker, datadir)
    async with first.app:
        await first.send([(f"k{i}", t) for t in (1000.0, 1004.0) for i in range(20)])
        expected = first.frame()
    assert set(first.closed) == {((f"k{i}", (990.0, 1000.0)), 1) for i in range(20)} and len(expected) == 3 * 20
    with caplog.at_level(logging.INFO, logger="streamnb"):
        again = Sliding(app_id, durable_broker, datadir)
        async with again.app:
            await again.restored()
            state = again.recent.state
            assert isinstance(state, StoredSlidingState) and not state.by_key and state._cached == 0  # noqa: SLF001
            assert again.frame() == expected and len(again.recent) == 60
            assert again.recent["k3"][(994.0, 1004.0)] == 2 and again.recent["k3"][1004.0] == 2
            assert not state.by_key and not state.times  # (reads of a key not cached do not cache it)
            await again.send([("k3", 1008.0)])  # a bucket next to k3's, read from the store
            assert again.recent["k3"][(998.0, 1008.0)] == 3 and again.recent["k3"][(1004.001, 1014.001)] == 1
            await again.send([(f"k{i}", 1030.0) for i in range(20)])  # closes the windows written before
            want = {((f"k{i}", (994.0, 1004.0)), 2) for i in range(20)}
            want |= {((f"k{i}", (1000.001, 1010.001)), 1) for i in range(20) if i != 3}
            want |= {(("k3", (1000.001, 1010.001)), 2), (("k3", (998.0, 1008.0)), 3), (("k3", (1004.001, 1014.001)), 1)}
            assert set(again.closed) == want and len(again.closed) == len(want)
    read = [int(m.group(1)) for r in caplog.records
            if (m := re.search(r"table 'recent' restored .*: (\d+) records", r.getMessage()))]
    loaded = [r for r in caplog.records if "rows from its store" in r.getMessage() and "'recent'" in r.getMessage()]
    assert read and read[0] == 0 and not loaded  # only the (empty) tail of the changelog, nothing loaded


async def test_windows_close_and_expire_as_in_memory_across_restarts(app_id: str, tmp_path: Path) -> None:
    """Three runs of the same events on both stores: the same windows, finals and late counts after each."""
    rounds = [
        [("a", 1000.0), ("b", 1003.0), ("a", 1004.0), ("c", 1001.0), ("b", 1020.0), ("a", 1010.0)],
        [("a", 1024.0), ("a", 1014.0), ("c", 1031.0), ("a", 1018.0), ("b", 1046.0), ("a", 1001.0)],  # freeze, late
        [("a", 1090.0), ("c", 1095.0), ("b", 1060.0)],  # every earlier bucket expires; 1060 is late
    ]
    await same_on_both_stores(
        lambda broker, datadir, store: Sliding(app_id, broker, datadir, store=store), lambda run: run.recent,
        rounds, tmp_path,
    )


@pytest.mark.slow
def test_local_kill9_keeps_sliding_finals_exact(tmp_path: Path) -> None:
    """kill -9 at random moments on ``local://``: the finals, open windows and stream time are exact."""
    kill9_keeps_finals_exact(tmp_path, "slidingkill", "sliding", "StoredSlidingState", seed=17)


async def test_keys_whose_buckets_expired_leave_the_cache(
    app_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys come and go: the cache stays within its size though its keys' buckets expired (a key counts too)."""
    monkeypatch.setattr(StoredSlidingState, "cache_size", 30)
    run = Sliding(app_id, f"local://{tmp_path / 'b'}", tmp_path / "data", partitions=1)
    async with run.app:
        state = run.recent.state
        assert isinstance(state, StoredSlidingState)
        for round_ in range(10):  # 10 new keys a round; each round expires the buckets of the one before
            await run.send([(f"r{round_}k{i}", 1000.0 + 100 * round_) for i in range(10)])
            assert len(state.by_key) <= 30 + 20  # (the cache, plus what one commit wrote or deleted)
            assert set(state.times) == set(state.by_key)
        assert len(run.recent) == 10 and state._cached <= 30  # noqa: SLF001
        assert sum(1 for _ in state.stores[0].scan(BY_KEY, END_BY_KEY)) == 10


async def test_a_key_written_from_several_partitions_reads_as_in_memory(tmp_path: Path) -> None:
    """One table key written from every partition (no ``group_by``): its buckets sit in several partitions'
    stores, and its windows are merged from all of them, as in memory -- before and after a restart."""

    def make(store: str) -> tuple[faust.App, Any, Any, list[Any]]:
        app = faust.App("moves", broker=f"local://{tmp_path / store[:3]}", topic_partitions=4, store=store,
                        datadir=str(tmp_path / f"{store[:3]}-data"))
        ticks = app.topic("ticks", key_type=str, value_type=int)
        closed: list[Any] = []
        recent = app.Table("recent", default=int, on_window_close=lambda kw, v: closed.append((kw, v))).sliding(
            10, expires=3600)

        @app.agent(ticks)
        async def count(stream: Any) -> None:
            async for _tick in stream:
                recent["counter"] += 1  # one table key, written from every partition

        return app, ticks, recent, closed

    seen: dict[str, list[Any]] = {}
    for store in ("memory://", "rocksdb://"):
        app, ticks, recent, closed = make(store)
        async with app:
            for i in range(40):  # round-robin over the partitions (keys k0..k7), event times 0..39 s
                await ticks.send(key=f"k{i % 8}", value=i, timestamp=1_000.0 + i)
                if i % 5 == 4:
                    await settle(app)
            await settle(app)
            listed = list(recent.items())
            assert len(listed) == len(dict(listed))  # (each window listed once)
            seen[store] = [dict(listed), recent["counter"][(1020.0, 1030.0)], sorted(closed, key=str)]
        again, _ticks, recent, _closed = make(store)
        async with again:
            await wait_until(lambda r=recent: r.table.recovered_partitions == {0, 1, 2, 3}, 30.0)
            listed = list(recent.items())
            assert len(listed) == len(dict(listed))
            seen[store].append(dict(listed))
    assert seen["rocksdb://"] == seen["memory://"]
    assert seen["memory://"][1] == 11 and len(seen["memory://"][0]) == 79 and seen["memory://"][2]


async def test_a_store_of_the_version_that_held_sliding_windows_in_memory_is_rebuilt(
    app_id: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Stores written as rows (the compacted image a version before kept) are rebuilt from the changelog."""
    from streamnb.tables.stores.rocksdb import RocksDBStore

    broker, datadir = f"local://{tmp_path / 'b'}", tmp_path / "data"
    first = Sliding(app_id, broker, datadir)
    async with first.app:
        await first.send([(f"k{i}", t) for t in (1000.0, 1004.0) for i in range(6)])
        expected = first.frame()
    for partition in (0, 1):  # (as that version left them: the layout of plain rows)
        store = RocksDBStore(datadir / app_id / "recent" / str(partition), 8 << 20)
        store.open()
        assert store.layout == "sliding"
        store.layout = ""
        store.close()
    with caplog.at_level(logging.WARNING, logger="streamnb"):
        again = Sliding(app_id, broker, datadir)
        async with again.app:
            await again.restored()
            assert again.frame() == expected and isinstance(again.recent.state, StoredSlidingState)
    assert any("rebuilding its store" in r.getMessage() and "holds rows" in r.getMessage() for r in caplog.records)
