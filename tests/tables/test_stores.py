"""Tables on RocksDB (``store="rocksdb://"``): the same behaviour, restarts that read only the tail, faults."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest

import streamnb as faust
from streamnb.tables.stores.rocksdb import RocksDBStore
from streamnb.testing import settle, wait_until
from streamnb.transport.base import TP, Message

TABLE_STORES = ["rocksdb://"]  # (these tests name their store)


def make_app(app_id: str, broker: str, datadir: Path, partitions: int = 4) -> tuple[faust.App, Any, Any]:
    app = faust.App(app_id, broker=broker, topic_partitions=partitions, datadir=str(datadir))
    words = app.topic(f"{app_id}-words", value_type=str)
    counts = app.Table("counts", default=int, store="rocksdb://")

    @app.agent(words)
    async def count(stream: Any) -> None:
        async for word in stream:
            if word.startswith("-"):
                del counts[word[1:]]
            else:
                counts[word] += 1

    return app, words, counts


def restored(caplog: pytest.LogCaptureFixture) -> list[int]:
    """Records read by each restore the log reported."""
    return [int(m.group(1)) for r in caplog.records if (m := re.search(r"restored .*: (\d+) records", r.getMessage()))]


async def test_a_rocksdb_table_reads_and_writes_like_a_dict(broker: str, app_id: str, tmp_path: Path) -> None:
    app, words, counts = make_app(app_id, broker, tmp_path / "data")
    async with app:
        for word in ["a", "b", "a", "c", "a", "-c"]:
            await words.send(key=word.strip("-"), value=word)
        await settle(app)
        assert counts["a"] == 3 and counts["b"] == 1 and counts["zzz"] == 0  # the default
        assert "c" not in counts and "a" in counts
        assert dict(counts.items()) == {"a": 3, "b": 1}
        assert len(counts) == 2 and sorted(counts) == ["a", "b"]
        frame = counts.as_dataframe().sort_values("key")
        assert list(frame["key"]) == ["a", "b"] and list(frame["value"]) == [3, 1]
        assert counts.store == "rocksdb://" and "store=rocksdb://" in repr(counts)
        assert len(counts.as_dataframe(limit=1)) == 1
        counts.whole_frame_limit = 0  # a table too big to read whole: it says how to ask for part of it
        with pytest.raises(faust.ConfigurationError, match=r"as_dataframe\(limit="):
            counts.as_dataframe()
        with pytest.raises(TypeError, match="inside an agent"):
            counts.data["x"] = 1


async def test_rows_stay_readable_after_the_app_stops_and_the_folder_is_free(
    broker: str, app_id: str, tmp_path: Path
) -> None:
    """After app.stop() the stores are open for reading only: the rows (and windows) read as before the stop,
    another App can open the same folder at once, and the next start writes on."""
    app, words, counts = make_app(app_id, broker, tmp_path / "data")
    per_minute = app.Table("per_minute", default=int, store="rocksdb://").tumbling(60, expires=3600)
    seen = app.topic(f"{app_id}-seen", value_type=str)

    @app.agent(seen)
    async def window(stream: Any) -> None:
        async for word in stream:
            per_minute[word] += 1

    async with app:
        for word in ["a", "b", "a"]:
            await words.send(key=word, value=word)
            await seen.send(key=word, value=word, timestamp=120.0)
        await settle(app)
    assert dict(counts.items()) == {"a": 2, "b": 1} and counts["a"] == 2 and len(counts) == 2
    assert sorted(per_minute.items()) == [(("a", (120.0, 180.0)), 2), (("b", (120.0, 180.0)), 1)]
    again, words2, counts2 = make_app(app_id, broker, tmp_path / "data")  # (its stores open for writing)
    async with again:
        await words2.send(key="a", value="a")
        await settle(again)
        assert counts2["a"] == 3
    assert counts2["a"] == 3 and counts["a"] == 2  # (the first app read its stores as it stopped)


async def test_a_restart_reads_only_the_changelog_written_since(
    durable_broker: str, app_id: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    datadir = tmp_path / "data"
    app, words, counts = make_app(app_id, durable_broker, datadir)
    async with app:
        for i in range(300):
            await words.send(key=f"w{i % 30}", value=f"w{i % 30}")
        await settle(app)
    with caplog.at_level(logging.INFO, logger="streamnb"):
        app, words, counts = make_app(app_id, durable_broker, datadir)
        async with app:
            # (on Kafka the table partitions come with the consumer's assignment)
            await wait_until(lambda: counts.recovered_partitions == {0, 1, 2, 3}, 30)
            assert counts["w7"] == 10 and len(counts) == 30
            before = restored(caplog)
            assert before and sum(before) <= 8  # at most Kafka's transaction markers, never the 300 changes
            await words.send(key="w7", value="w7")
            await settle(app)
            assert counts["w7"] == 11


async def test_the_store_catches_up_when_a_commit_never_reached_it(
    app_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """What a kill -9 between the broker's commit and the store's write leaves: the restore repairs it."""
    from streamnb.tables.persistence import TableStore

    broker, datadir = f"local://{tmp_path / 'broker'}", tmp_path / "data"
    app, words, counts = make_app(app_id, broker, datadir)
    async with app:
        for word in ["a", "b"]:
            await words.send(key=word, value=word)
        await settle(app)
        monkeypatch.setattr(TableStore, "committed", lambda self: None)  # these never reach the store
        for word in ["a", "c", "a"]:
            await words.send(key=word, value=word)
        await settle(app)
        assert dict(counts.items()) == {"a": 3, "b": 1, "c": 1}  # served from what is pending meanwhile
    monkeypatch.undo()
    with caplog.at_level(logging.INFO, logger="streamnb"):
        app, words, counts = make_app(app_id, broker, datadir)
        async with app:
            assert dict(counts.items()) == {"a": 3, "b": 1, "c": 1}
            assert 0 < sum(restored(caplog)) <= 3  # just the changelog records the store had missed


async def test_a_store_ahead_of_its_changelog_is_rebuilt_loudly(
    app_id: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """memory:// loses the changelog at a restart, the datadir keeps the store: it must not serve stale rows."""
    datadir = tmp_path / "data"
    app, words, counts = make_app(app_id, f"memory://{app_id}-1", datadir)
    async with app:
        await words.send(key="a", value="a")
        await settle(app)
        assert counts["a"] == 1
    with caplog.at_level(logging.WARNING, logger="streamnb"):
        app, words, counts = make_app(app_id, f"memory://{app_id}-2", datadir)
        async with app:
            assert dict(counts.items()) == {}
    assert any("past its end" in r.getMessage() and "rebuilding" in r.getMessage() for r in caplog.records)


class ChangelogLog:
    """A changelog partition whose head can be deleted (what retention or a recreated topic do)."""

    distributed = False
    url = "memory://changelog-log"

    def __init__(self, records: list[tuple[bytes, bytes | None]]) -> None:
        self.records = {offset: kv for offset, kv in enumerate(records)}

    async def beginning_offsets(self, tps: list[TP]) -> dict[TP, int]:
        return {tp: min(self.records, default=0) for tp in tps}

    async def end_offsets(self, tps: list[TP]) -> dict[TP, int]:
        return {tp: max(self.records, default=-1) + 1 for tp in tps}

    async def read(self, tp: TP, start: int, stop: int, max_records: int = 10_000) -> list[Message]:
        return [
            Message(tp.topic, tp.partition, o, 0.0, k, v, ()) for o, (k, v) in sorted(self.records.items())
            if start <= o < stop
        ][:max_records]


async def test_a_changelog_whose_head_was_deleted_past_the_store_rebuilds_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = faust.App("st-trunc", broker="memory://", datadir=str(tmp_path))
    table = app.Table("counts", default=int, store="rocksdb://")
    assert table.persistence is not None
    log = ChangelogLog([(b'"a"', b"1"), (b'"b"', b"1"), (b'"a"', b"2")])
    assert await table.persistence.recover(log, 0) == 3  # type: ignore[arg-type]
    assert dict(table.items()) == {"a": 2, "b": 1}
    table.persistence.close()
    log.records.update({3: (b'"a"', b"7"), 4: (b'"z"', b"1")})
    for offset in range(4):  # the head goes, past where the store stopped (3)
        del log.records[offset]
    with caplog.at_level(logging.WARNING, logger="streamnb"):
        assert await table.persistence.recover(log, 0) == 1  # type: ignore[arg-type]
    assert dict(table.items()) == {"z": 1}  # what the changelog holds, not the store
    assert any("records were deleted" in r.getMessage() for r in caplog.records)
    table.persistence.close()


def test_a_store_held_by_another_owner_is_a_clear_error(tmp_path: Path) -> None:
    first = RocksDBStore(tmp_path / "t" / "0", 8 << 20, table="counts")
    first.open()
    try:
        with pytest.raises(faust.StoreLockedError, match=r"held by another process \(pid \d+"):
            RocksDBStore(tmp_path / "t" / "0", 8 << 20, table="counts").open()
    finally:
        first.close()


async def test_a_corrupt_store_is_wiped_and_rebuilt_from_the_changelog(
    app_id: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broker, datadir = f"local://{tmp_path / 'broker'}", tmp_path / "data"
    app, words, counts = make_app(app_id, broker, datadir)
    async with app:
        for word in ["a", "b", "a"]:
            await words.send(key=word, value=word)
        await settle(app)
    for current in (datadir / app_id / "counts").glob("*/CURRENT"):
        current.write_bytes(b"MANIFEST-999999\n")  # points at nothing: RocksDB cannot open it
    with caplog.at_level(logging.WARNING, logger="streamnb"):
        app, words, counts = make_app(app_id, broker, datadir)
        async with app:
            assert dict(counts.items()) == {"a": 2, "b": 1}
    assert any("cannot be opened" in r.getMessage() and "wiping" in r.getMessage() for r in caplog.records)


def test_a_store_of_another_format_is_rebuilt(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = RocksDBStore(tmp_path / "t" / "0", 8 << 20)
    store.open()
    store.apply([(b'"a"', b"1")], 1)
    store.db.put(b"v", b"0")
    store.close()
    with caplog.at_level(logging.WARNING, logger="streamnb"):
        store.open()
    assert store.resume is None and store.get(b'"a"') is None
    assert any("has format" in r.getMessage() for r in caplog.records)
    store.close()


def test_every_kind_of_table_takes_the_apps_store_but_global_ones_and_a_bad_one_is_an_error(tmp_path: Path) -> None:
    app = faust.App("st-kinds", broker="memory://", datadir=str(tmp_path), store="rocksdb://")
    tables = [
        app.Table("w", default=int).tumbling(10).table,
        app.Table("h", default=int).hopping(10, 5).table,
        app.Table("s", default=int).sliding(10).table,
        app.Table("x", default=int).session(10).table,
        app.SetTable("set", value_type=str),
        app.GlobalTable("g", default=int, store="rocksdb://"),
        app.Table("p", default=int),
    ]
    assert [t.store for t in tables] == ["rocksdb://"] * len(tables)
    assert all(t.persistence is not None for t in tables)
    # Every worker holds a global table whole: two workers on one machine would share its stores.
    assert app.GlobalTable("g2", default=int).store == "memory://"
    assert app.conf.store == "rocksdb://"
    with pytest.raises(faust.ConfigurationError, match="not a table store"):
        app.Table("y", store="redis://")
    with pytest.raises(faust.ConfigurationError, match="store_memory"):
        faust.App("st-kinds-3", broker="memory://", store_memory="lots")


async def test_a_store_that_followed_another_brokers_changelog_is_rebuilt(
    app_id: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One datadir, two brokers (an app moved by fork(), or a datadir given to two apps): never mix their rows."""
    datadir, a, b = tmp_path / "data", f"local://{tmp_path / 'a'}", f"local://{tmp_path / 'b'}"
    app, words, counts = make_app(app_id, b, tmp_path / "elsewhere", partitions=1)
    async with app:  # broker b's changelog: longer than what the store will have read on a
        for word in ["p", "q", "r", "s"]:
            await words.send(key=word, value=word)
        await settle(app)
    app, words, counts = make_app(app_id, a, datadir, partitions=1)
    async with app:
        for word in ["x", "y"]:
            await words.send(key=word, value=word)
        await settle(app)
    with caplog.at_level(logging.WARNING, logger="streamnb"):
        app, words, counts = make_app(app_id, b, datadir, partitions=1)
        async with app:
            assert dict(counts.items()) == {"p": 1, "q": 1, "r": 1, "s": 1}
    assert any(f"followed the changelog on {a}, this app runs on {b}" in r.getMessage() for r in caplog.records)


KILLED_RESTORE = """
import asyncio, os, signal, sys
import streamnb as faust
from streamnb.tables import persistence

broker, app_id, datadir = sys.argv[1:]
persistence._READ_BATCH = 50
batches = []
mirror = persistence.TableStore.mirror

def mirror_then_die(self, store, *args):
    batches.append(1)
    if len(batches) == 3:  # the first two batches reached the disk (a full memtable), the third is in memory
        os.kill(os.getpid(), signal.SIGKILL)
    mirror(self, store, *args)
    if len(batches) == 2:
        store.db.flush(True)

persistence.TableStore.mirror = mirror_then_die
app = faust.App(app_id, broker=broker, topic_partitions=1, datadir=datadir)
app.Table("counts", default=int, store="rocksdb://")
asyncio.run(app.start())
"""


async def test_a_restore_into_an_empty_store_killed_midway_is_done_again_from_the_start(
    app_id: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A restore into an empty store writes without RocksDB's log; a kill -9 in the middle leaves its mark,
    and the next start wipes the store and restores it again (the store tells nothing it wrote was lost)."""
    import os
    import signal
    import subprocess
    import sys

    broker, datadir = f"local://{tmp_path / 'broker'}", tmp_path / "data"
    app, words, counts = make_app(app_id, broker, tmp_path / "first", partitions=1)
    async with app:
        for i in range(300):
            await words.send(key=f"w{i}", value=f"w{i}")
        await settle(app)
        expected = dict(counts.items())
        tp = TP(counts.changelog.name, 0)
        records = (await app.transport.end_offsets([tp]))[tp]
    assert len(expected) == 300 and records >= 300
    child = subprocess.run(
        [sys.executable, "-c", KILLED_RESTORE, broker, app_id, str(datadir)],
        capture_output=True, text=True, timeout=120, env=os.environ.copy(),
    )
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    with caplog.at_level(logging.INFO, logger="streamnb"):
        again, _words, counts = make_app(app_id, broker, datadir, partitions=1)
        async with again:
            await wait_until(lambda: counts.recovered_partitions == {0}, 30.0)
            assert dict(counts.items()) == expected
    assert any("was being restored from the changelog when the process stopped" in r.getMessage()
               for r in caplog.records)
    assert restored(caplog) == [records]  # all of it again, not the tail after the two batches on disk
