"""``history=True`` tables on ``rocksdb://``: every change in the changelog, rows and tumbling windows in the stores.

A restart loads no row and no window, yet reads, ``at()`` and ``history()`` answer as on ``memory://``;
a key written from several partitions keeps one row.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest

import streamnb as faust
from streamnb.tables.state.history import StoredHistoryState, StoredWindowedHistoryState
from streamnb.testing import settle, wait_until
from streamnb.transport import open_transport
from streamnb.transport.base import ProducerRecord, TopicSpec

TABLE_STORES = ["rocksdb://"]  # (the apps name their stores)

T0 = 1_700_000_000.0
EVENTS = [("a", 1, 0.0), ("b", 2, 1.0), ("a", 3, 2.0), ("a", 0, 4.0), ("c", 5, 12.0), ("b", 4, 13.0), ("a", 2, 15.0)]


class Sums:
    """An app (``history=True``) adding values per key, in a plain table and in tumbling windows of 10 s."""

    def __init__(self, app_id: str, broker: str, datadir: Path, store: str = "rocksdb://") -> None:
        self.app = app = faust.App(
            app_id, broker=broker, topic_partitions=2, datadir=str(datadir), store=store, history=True
        )
        self.events = app.topic(f"{app_id}-events", key_type=str, value_type=int)
        self.sums = app.Table("sums", default=int)
        self.counts = app.Table("counts", default=int).tumbling(10, expires=100)

        @app.agent(self.events)
        async def add(stream: Any) -> None:
            async for key, value in stream.items():
                self.sums[key] += value
                self.counts[key] += 1
                if value == 0:
                    del self.sums[key]

    async def send(self, events: list[tuple[str, int, float]]) -> None:
        transport = self.app.require_transport()
        await transport.send([self.events.record(key=k, value=v, timestamp=T0 + t) for k, v, t in events])
        await settle(self.app)

    async def reads(self) -> dict[str, Any]:
        """What a user reads of both tables, now, at two moments, and as their changes."""
        out: dict[str, Any] = {
            "sums": sorted(self.sums.items()), "len": len(self.sums), "b": self.sums["b"], "z": self.sums["z"],
            "in": ["a" in self.sums, "z" in self.sums],
            "counts": sorted(self.counts.items()), "a_now": self.counts["a"][(T0, T0 + 10)],
        }
        for moment in (T0 + 2.5, T0 + 13.0):
            snap = await self.sums.at(time=moment)
            windows = await self.counts.table.at(time=moment)
            out[f"at {moment - T0}"] = (sorted(snap.items()), sorted(windows.state.rows.items()))
        for key in ("a", "b"):
            df = await self.sums.history(key, times="epoch")
            out[f"history {key}"] = list(zip(df["time"], df["old_value"], df["new_value"], strict=True))
            windows_df = await self.counts.table.history(key, times="epoch")
            out[f"window history {key}"] = sorted(
                zip(windows_df["window_start"], windows_df["time"], windows_df["new_value"], strict=True)
            )
        return out

    async def restored(self) -> None:
        tables = (self.sums, self.counts.table)
        await wait_until(lambda: all(t.recovered_partitions == {0, 1} for t in tables), 30.0)
        await settle(self.app)


async def test_a_restart_loads_nothing_and_every_read_answers_as_on_memory(
    app_id: str, durable_broker: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    memory = Sums(f"{app_id}m", f"local://{tmp_path / 'm'}", tmp_path / "m-data", store="memory://")
    async with memory.app:
        await memory.send(EVENTS)  # (at once: one commit holds several changes of a key)
        expected = await memory.reads()
    assert [change[2] for change in expected["history a"]] == [1, 4, 4, None, 2]  # (+= 0 writes 4 again)
    first = Sums(app_id, durable_broker, tmp_path / "data")
    async with first.app:
        assert isinstance(first.sums.state, StoredHistoryState)
        assert isinstance(first.counts.state, StoredWindowedHistoryState)
        await first.send(EVENTS)
        assert await first.reads() == expected
    with caplog.at_level(logging.INFO, logger="streamnb"):
        again = Sums(app_id, durable_broker, tmp_path / "data")
        async with again.app:
            await again.restored()
            sums, counts = again.sums.state, again.counts.state
            assert isinstance(sums, StoredHistoryState) and isinstance(counts, StoredWindowedHistoryState)
            assert not sums.cache and not sums.pending and not counts.by_key  # no row, no window loaded ...
            assert await again.reads() == expected  # ... yet everything reads as on memory://
            await again.send([("b", 1, 16.0)])
            assert again.sums["b"] == 7 and again.counts["b"][(T0 + 10, T0 + 20)] == 2
            changes = await again.sums.history("b", times="epoch")
            assert changes["new_value"].tolist() == [2, 6, 7]
    lines = [r.getMessage() for r in caplog.records if re.search(r"table '(sums|counts)' restored", r.getMessage())]
    assert len(lines) >= 2 and all(": 0 records in" in line for line in lines), lines  # no tail, nothing loaded


class Counter:
    """An app (``history=True``) counting every event under one key, whatever the event's partition."""

    def __init__(self, broker: str, datadir: Path, store: str) -> None:
        self.app = app = faust.App(
            "moves", broker=broker, topic_partitions=4, datadir=str(datadir), store=store, history=True
        )
        self.ticks = app.topic("ticks", key_type=str, value_type=int)
        self.counts = app.Table("counts", default=int)

        @app.agent(self.ticks)
        async def count(stream: Any) -> None:
            async for tick in stream:
                self.counts["counter"] += 1  # one table key, written from every partition
                self.counts[f"last{tick % 2}"] = tick

    async def run(self, first: int, last: int) -> None:
        for i in range(first, last):  # round-robin over the partitions (keys k0..k7)
            await self.ticks.send(key=f"k{i % 8}", value=i, timestamp=T0 + i)
            # One commit per event, the key moving between partitions' stores at each. (Events of several
            # partitions in one commit are processed in no fixed order across partitions, so the values
            # compared would differ between runs; one commit writing a key from several partitions is
            # test_one_commit_writing_a_key_from_two_partitions_leaves_one_row and the replay test's.)
            await settle(self.app)

    async def reads(self) -> dict[str, Any]:
        listed = list(self.counts.items())
        assert len(listed) == len(dict(listed)), listed  # each key listed once
        snap = await self.counts.at(time=T0 + 17.5)
        df = await self.counts.history("counter", times="epoch")
        # (The order in which the partitions' events were processed differs from run to run: the counter's
        # value at a moment with it; every change is there once.)
        return {
            "rows": dict(listed), "len": len(self.counts), "counter": self.counts["counter"],
            "at": sorted((k, v) for k, v in snap.items() if k != "counter"),
            "history": sorted(df["new_value"]),
        }


async def test_a_key_written_from_several_partitions_keeps_one_row(tmp_path: Path) -> None:
    memory = Counter(f"local://{tmp_path / 'm'}", tmp_path / "m-data", "memory://")
    stored = Counter(f"local://{tmp_path / 's'}", tmp_path / "s-data", "rocksdb://")
    async with memory.app:
        await memory.run(0, 40)
        expected = await memory.reads()  # (as it runs: a memory:// restart keeps the copy of the partition read last)
    assert expected["rows"] == {"counter": 40, "last0": 38, "last1": 39}
    assert expected["history"] == list(range(1, 41)) and expected["at"]
    async with stored.app:
        await stored.run(0, 40)
        assert await stored.reads() == expected
    async with stored.app:  # restarted: reads the stores, loads nothing
        assert await stored.reads() == expected
        state = stored.counts.state
        assert isinstance(state, StoredHistoryState) and not state.pending
        # Each key is in one partition's store only.
        held = {p: dict(store.rows()) for p, store in state.stores.items()}
        assert sum(len(rows) for rows in held.values()) == 3, held
        await stored.run(40, 50)
        assert stored.counts["counter"] == 50 and len(stored.counts) == 3


def test_one_commit_writing_a_key_from_two_partitions_leaves_one_row(tmp_path: Path) -> None:
    """Each write is a changelog record, so both partitions' stores get the key: the one not written last drops it."""
    import json

    from streamnb.tables.state.base import Dirty
    from streamnb.tables.stores.rocksdb import RocksDBStore

    stores = {p: RocksDBStore(tmp_path / str(p), 8 << 20) for p in (0, 1, 2)}
    for store in stores.values():
        store.open()
    state = StoredHistoryState(
        lambda k: json.dumps(k).encode(), lambda b: json.loads(b), lambda b: json.loads(b), stores)

    def commit(writes: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
        dirty: Dirty[list[Any]] = Dirty()
        for key, value, partition in writes:
            state.write(dirty, key, value, partition, T0)
        changes = list(state.changes(dirty))
        for change in changes:  # (what the table does once the commit landed: each record to its partition's store)
            stores[change.partition].apply([(json.dumps(change.key).encode(), json.dumps(change.value).encode())], None)
        state.flushed()
        return [(c.key, c.value, c.partition) for c in changes]

    def where() -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for p, store in stores.items():
            for kb, _vb in store.rows():
                out.setdefault(json.loads(kb), []).append(p)
        return out

    assert commit([("a", 1, 0), ("a", 2, 1), ("b", 1, 2)]) == [("a", 1, 0), ("a", 2, 1), ("b", 1, 2)]
    assert where() == {"a": [1], "b": [2]} and state.rows["a"] == 2
    commit([("a", 3, 1), ("a", 4, 2), ("a", 5, 1), ("b", 2, 0), ("b", 3, 2)])  # (b: back where it was)
    assert where() == {"a": [1], "b": [2]} and (state.rows["a"], state.rows["b"]) == (5, 3)
    state.cache.clear()
    assert dict(state.rows.items()) == {"a": 5, "b": 3} and len(state.rows) == 2


async def replayed(broker: str, store: str, datadir: Path) -> dict[str, Any]:
    """Replay page views keyed by user into a count per page written without ``group_by``; what it reads."""
    app = faust.App("replayed", broker=broker, clock="virtual", topic_partitions=4, store=store, datadir=str(datadir))
    views = app.topic("views", key_type=str, value_type=str)
    counts = app.Table("counts", default=int)

    @app.agent(views)
    async def count(stream: Any) -> None:
        async for page in stream:
            counts[page] += 1  # the page, written from the partition of the user's view

    async with app:
        await app.clock.idle(timeout=60)
        count.raise_if_crashed()
        listed = list(counts.items())
        assert len(listed) == len(dict(listed)), listed  # each page listed once
        out = {"rows": dict(listed), "len": len(counts), "at": sorted((await counts.at(time=T0 + 20)).items())}
        out["history"] = (await counts.history("/cart", times="epoch")).to_dict("records")
        await app.clock.seek(T0 + 15)  # back: from the start of the recording, fresh tables, up to T0 + 15
        await app.clock.idle(timeout=60)
        listed = list(counts.items())
        assert len(listed) == len(dict(listed)), listed
        out["again"] = dict(listed)
    return out


async def test_a_replay_writing_a_table_from_every_partition_reads_as_on_memory(tmp_path: Path) -> None:
    pages = ["/", "/cart", "/about"]
    results = {}
    for store in ("memory://", "rocksdb://"):
        url = f"local://{tmp_path / store[:6]}"
        transport = open_transport(url, client_id="writer")
        await transport.start()
        await transport.create_topic(TopicSpec("views", 4))
        await transport.send([  # a user's views in their partition; every page from every partition
            ProducerRecord("views", i % 4, f'"u{i % 4}"'.encode(), f'"{pages[i % 3]}"'.encode(), T0 + i * 0.5)
            for i in range(90)
        ])
        await transport.stop()
        results[store] = await replayed(url, store, tmp_path / f"{store[:6]}-data")
    expected = results["memory://"]
    assert expected["rows"] == {"/": 30, "/cart": 30, "/about": 30}
    assert expected["again"] == {"/": 11, "/cart": 10, "/about": 10}  # (the views of T0 .. T0 + 15)
    assert len(expected["history"]) == 30 and expected["at"]
    assert results["rocksdb://"] == expected  # rows, at(), history(): the same, once each
