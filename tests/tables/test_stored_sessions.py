"""Session windows on ``rocksdb://``: in the stores, a bounded cache, restarts that load nothing, kill -9."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest
from windowhelpers import kill9_keeps_finals_exact, same_on_both_stores

import streamnb as faust
from streamnb.tables.state.stored_sessions import StoredSessionState
from streamnb.tables.stores.windowkeys import BY_KEY, BY_TIME, END_BY_KEY, END_BY_TIME
from streamnb.testing import settle, wait_until

TABLE_STORES = ["rocksdb://"]  # (the app names its store)


class Sessions:
    """An app counting events per key in sessions (gap 5 s, closed sessions kept 30 s more)."""

    def __init__(
        self, app_id: str, broker: str, datadir: Path, *, store: str = "rocksdb://", partitions: int = 2,
    ) -> None:
        self.app = app = faust.App(
            app_id, broker=broker, topic_partitions=partitions, datadir=str(datadir), store=store
        )
        self.partitions = partitions
        self.events = app.topic(f"{app_id}-events", key_type=str, value_type=int)
        self.closed: list[tuple[Any, Any]] = []
        table = app.Table("visits", default=int, on_window_close=lambda kw, v: self.closed.append((kw, v)))
        self.visits = table.session(5, expires=30, grace=2)

        @app.agent(self.events)
        async def count(stream: Any) -> None:
            async for event in stream.events():
                self.visits[event.key] += event.value

    async def send(self, events: list[tuple[str, float]]) -> None:
        for key, at in events:
            await self.events.send(key=key, value=1, timestamp=at)
        await settle(self.app)

    def frame(self) -> list[tuple[Any, ...]]:
        df = self.visits.as_dataframe(times="epoch")
        return sorted(df.itertuples(index=False, name=None), key=str)

    async def restored(self) -> None:
        await wait_until(lambda: self.visits.table.recovered_partitions == set(range(self.partitions)), 30.0)


def stored_rows(state: StoredSessionState) -> tuple[int, int]:
    """Sessions in the stores, by key and by time."""
    by_key = sum(1 for store in state.stores.values() for _ in store.scan(BY_KEY, END_BY_KEY))
    by_time = sum(1 for store in state.stores.values() for _ in store.scan(BY_TIME, END_BY_TIME))
    return by_key, by_time


async def test_sessions_live_in_the_store_and_memory_holds_a_bounded_cache(
    app_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(StoredSessionState, "cache_size", 40)
    # 150 keys: a session at 1000-1003, one at 1020 (the first closes); for 50 of them an event at 1026 (a
    # session of its own) and one at 1023 that merges both into 1020-1026.
    events = [(f"k{i}", t) for t in (1000.0, 1003.0, 1020.0) for i in range(150)]
    events += [(f"k{i}", t) for t in (1026.0, 1023.0) for i in range(0, 150, 3)]
    memory = Sessions(f"{app_id}m", f"local://{tmp_path / 'm'}", tmp_path / "m-data", store="memory://", partitions=1)
    stored = Sessions(app_id, f"local://{tmp_path / 's'}", tmp_path / "s-data", partitions=1)
    async with memory.app, stored.app:
        await memory.send(events)
        await stored.send(events)
        state = stored.visits.state
        assert isinstance(state, StoredSessionState)
        await memory.send([("fresh", 1030.0)])
        await stored.send([("fresh", 1030.0)])
        assert state._cached <= 40 and len(state.by_key) <= 40  # noqa: SLF001
        assert len(stored.visits) == len(memory.visits) == 301
        assert stored.frame() == memory.frame()
        assert dict(stored.visits.items()) == dict(memory.visits.items())
        assert stored.visits["k3"][(1020.0, 1026.0)] == 3 and stored.visits["k3"][1024.0] == 3
        assert stored.visits["k4"][(1000.0, 1003.0)] == 2 and stored.visits["k4"][1001.0] == 2
        for key in ("k3", "k4", "fresh", "nobody"):
            ours, theirs = stored.visits[key], memory.visits[key]
            assert (ours.current(), ours.value(), ours.now()) == (theirs.current(), theirs.value(), theirs.now())
        assert stored.visits["fresh"].current() == 1 and stored.visits["k3"].current() == 0  # (at 1030)
        assert "nobody" not in stored.visits and "k7" in stored.visits
        assert sorted(stored.closed, key=str) == sorted(memory.closed, key=str) and len(stored.closed) == 250
        assert stored_rows(state) == (301, 301)  # every session in the store, by key and by end
        await stored.send([("k0", 1080.0)])  # past end + gap + expires of every session but k0's new one
        await memory.send([("k0", 1080.0)])
        assert dict(stored.visits.items()) == dict(memory.visits.items()) == {("k0", (1080.0, 1080.0)): 1}
        assert stored_rows(state) == (1, 1)
        assert sorted(stored.closed, key=str) == sorted(memory.closed, key=str) and len(stored.closed) == 301


async def test_a_restart_loads_no_session_and_closes_those_due_afterwards(
    app_id: str, durable_broker: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    datadir = tmp_path / "data"
    first = Sessions(app_id, durable_broker, datadir)
    async with first.app:
        await first.send([(f"k{i}", t) for t in (1000.0, 1004.0) for i in range(20)])
        expected = first.frame()
    assert first.closed == [] and len(expected) == 20
    with caplog.at_level(logging.INFO, logger="streamnb"):
        again = Sessions(app_id, durable_broker, datadir)
        async with again.app:
            await again.restored()
            state = again.visits.state
            assert isinstance(state, StoredSessionState) and not state.by_key and state._cached == 0  # noqa: SLF001
            assert again.frame() == expected and len(again.visits) == 20
            assert again.visits["k3"][(1000.0, 1004.0)] == 2 and again.visits["k3"][1002.0] == 2
            assert not state.by_key  # (reads of a key not cached do not cache it)
            await again.send([("k3", 1008.0)])  # merges into k3's session, read from the store
            assert again.visits["k3"][(1000.0, 1008.0)] == 3
            assert ("k3", (1000.0, 1004.0)) not in dict(again.visits.items())  # (merged away)
            await again.send([(f"k{i}", 1020.0) for i in range(20)])  # closes the sessions written before
            want = [((f"k{i}", (1000.0, 1008.0 if i == 3 else 1004.0)), 3 if i == 3 else 2) for i in range(20)]
            assert sorted(again.closed, key=str) == sorted(want, key=str)
    read = [int(m.group(1)) for r in caplog.records
            if (m := re.search(r"table 'visits' restored .*: (\d+) records", r.getMessage()))]
    assert read and read[0] == 0  # only the (empty) tail of the changelog


async def test_sessions_close_and_expire_as_in_memory_across_restarts(app_id: str, tmp_path: Path) -> None:
    """Three runs of the same events on both stores: the same sessions, finals and late counts after each."""
    rounds = [
        [("a", 1000.0), ("b", 1003.0), ("a", 1004.0), ("c", 1001.0), ("b", 1020.0), ("a", 1010.0)],
        [("a", 1024.0), ("a", 1014.0), ("c", 1031.0), ("a", 1018.0), ("b", 1046.0), ("a", 1001.0)],  # merge, late
        [("a", 1090.0), ("c", 1095.0), ("b", 1060.0)],  # every earlier session expires; 1060 is late
    ]
    await same_on_both_stores(
        lambda broker, datadir, store: Sessions(app_id, broker, datadir, store=store), lambda run: run.visits,
        rounds, tmp_path,
    )


@pytest.mark.slow
def test_local_kill9_keeps_sessions_and_finals_exact(tmp_path: Path) -> None:
    """kill -9 at random moments on ``local://``: the finals, open sessions and stream time are exact."""
    kill9_keeps_finals_exact(tmp_path, "sessionkill", "session", "StoredSessionState", seed=11)


async def test_keys_whose_sessions_expired_leave_the_cache(
    app_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keys come and go: the cache stays within its size though its keys' sessions expired (a key counts too)."""
    monkeypatch.setattr(StoredSessionState, "cache_size", 30)
    run = Sessions(app_id, f"local://{tmp_path / 'b'}", tmp_path / "data", partitions=1)
    async with run.app:
        state = run.visits.state
        assert isinstance(state, StoredSessionState)
        for round_ in range(10):  # 10 new keys a round; each round expires the sessions of the one before
            await run.send([(f"r{round_}k{i}", 1000.0 + 100 * round_) for i in range(10)])
            assert len(state.by_key) <= 30 + 20  # (the cache, plus what one commit wrote or deleted)
        assert len(run.visits) == 10 and state._cached <= 30  # noqa: SLF001
        assert sum(1 for _ in state.stores[0].scan(BY_KEY, END_BY_KEY)) == 10
