"""What only ``local://`` promises: durability, compaction, retention, one owner process.

The crash tests run real child processes (``python -c``) and kill them with
SIGKILL, then check the folder from this process.
"""

from __future__ import annotations

import asyncio
import inspect
import multiprocessing
import multiprocessing.queues
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import localhelpers
import pytest

import streamnb
import streamnb.transport.local.store as local_store
from streamnb.errors import AppNotRunningError, BrokerError, BrokerLockedError, ConfigurationError
from streamnb.testing import wait_until
from streamnb.transport.base import TP, Message, ProducerRecord, RebalanceListener, TopicSpec
from streamnb.transport.local import LocalTransport

store = localhelpers.store  # the fixture: a started local:// transport

ROOT = str(Path(streamnb.__file__).resolve().parents[1])  # where the children import streamnb from


async def _nothing(_: set[TP]) -> None:
    return None


LISTENER = RebalanceListener(_nothing, _nothing)


def kv(messages: list[Message]) -> list[tuple[int, bytes | None, bytes | None]]:
    return [(m.offset, m.key, m.value) for m in messages]


async def read_all(transport: LocalTransport, tp: TP) -> list[Message]:
    return await transport.read(tp, 0, 1 << 62, max_records=1 << 30)


# -- URLs ------------------------------------------------------------------------------------------


def test_url_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert LocalTransport("local://data").folder == str(tmp_path / "data")
    assert LocalTransport("local://data/sub").folder == str(tmp_path / "data" / "sub")
    assert LocalTransport("local://").folder == str(tmp_path / ".streamnb")
    assert LocalTransport().folder == str(tmp_path / ".streamnb")
    assert LocalTransport(f"local://{tmp_path}/abs").folder == str(tmp_path / "abs")
    assert LocalTransport("local://data").full_sync is False
    assert LocalTransport("local://data?sync=full").full_sync is True
    assert LocalTransport("local://data?sync=normal").full_sync is False
    for bad in ("memory://x", "local://data?sync=maybe", "local://data?fast=1"):
        with pytest.raises(ConfigurationError):
            LocalTransport(bad)
    assert LocalTransport.guarantees == {"at_least_once", "exactly_once"} and LocalTransport.scheme == "local"
    assert LocalTransport.exactly_once is True


@pytest.mark.asyncio
async def test_start_creates_the_folder_and_records_the_owner(tmp_path: Path) -> None:
    folder = tmp_path / "a" / "b"
    transport = LocalTransport(f"local://{folder}?sync=full")
    await transport.start()
    try:
        assert (folder / "streamnb.sqlite3").exists()
        assert (folder / "LOCK").read_text().splitlines() == [str(os.getpid()), "messages " + "0" * 20]
        store = transport.store
        assert await store.call(lambda: store._conn().execute("PRAGMA synchronous").fetchone()[0]) == 2  # FULL
        assert await store.call(lambda: store._conn().execute("PRAGMA journal_mode").fetchone()[0]) == "wal"
    finally:
        await transport.stop()
    assert (folder / "LOCK").read_text() == ""


@pytest.mark.asyncio
async def test_a_stopped_transport_says_to_start(tmp_path: Path) -> None:
    transport = LocalTransport(f"local://{tmp_path}")
    with pytest.raises(AppNotRunningError, match="start"):
        await transport.send([ProducerRecord("t", 0, None, b"x", 0.0)])
    await transport.start()
    await transport.stop()
    await transport.stop()  # twice is fine
    with pytest.raises(AppNotRunningError):
        await transport.partition_count("t")


# -- durability ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_everything_survives_close_and_reopen(tmp_path: Path) -> None:
    url = f"local://{tmp_path / 'store'}"
    first = LocalTransport(url)
    await first.start()
    await first.create_topic(TopicSpec("events", 2))
    await first.create_topic(TopicSpec("table-changelog", 2, compacted=True, retention=86400.0))
    now = time.time()
    await first.send(
        [ProducerRecord("events", i % 2, b"k%d" % i, b"v%d" % i, now, (("n", b"%d" % i),)) for i in range(10)]
    )
    consumer = first.consumer("g", ["events"], LISTENER)
    await consumer.start()
    assert len(await consumer.getmany(1.0, 100)) == 10
    changelog = ProducerRecord("table-changelog", 1, b"a", b"1", now)
    await consumer.commit({TP("events", 0): 5, TP("events", 1): 2}, [changelog])
    await consumer.stop()
    await first.stop()

    second = LocalTransport(url)
    await second.start()
    try:
        assert await second.partition_count("events") == 2
        assert await second.create_topic(TopicSpec("events", 8)) == 2
        topic = second.store.topics["table-changelog"]
        assert (topic.partitions, topic.compacted, topic.retention) == (2, True, 86400.0)
        tps = [TP("events", 0), TP("events", 1)]
        assert await second.end_offsets(tps) == {tps[0]: 5, tps[1]: 5}
        assert await second.committed("g", tps) == {tps[0]: 5, tps[1]: 2}
        got = await read_all(second, TP("events", 1))
        assert [(m.key, m.value, m.headers) for m in got] == [
            (b"k%d" % i, b"v%d" % i, (("n", b"%d" % i),)) for i in range(1, 10, 2)
        ]
        assert [m.value for m in await read_all(second, TP("table-changelog", 1))] == [b"1"]
        # New appends continue the offsets.
        await second.send([ProducerRecord("events", 1, None, b"next", now)])
        assert [m.offset for m in await second.read(TP("events", 1), 5, 10)] == [5]
    finally:
        await second.stop()


@pytest.mark.asyncio
async def test_a_failed_commit_writes_nothing(store: LocalTransport) -> None:
    await store.create_topic(TopicSpec("src", 1))
    await store.create_topic(TopicSpec("out", 2))
    consumer = store.consumer("g", ["src"], LISTENER)
    await consumer.start()
    good = ProducerRecord("out", 0, None, b"ok", 0.0)
    bad = ProducerRecord("out", 7, None, b"no such partition", 0.0)
    with pytest.raises(BrokerError, match="2 partitions"):
        await consumer.commit({TP("src", 0): 3}, [good, bad])
    assert await store.committed("g", [TP("src", 0)]) == {}
    assert await store.end_offsets([TP("out", 0)]) == {TP("out", 0): 0}
    assert await read_all(store, TP("out", 0)) == []
    await consumer.commit({TP("src", 0): 3}, [good])  # the store is still usable
    assert await store.committed("g", [TP("src", 0)]) == {TP("src", 0): 3}
    await consumer.stop()


@pytest.mark.asyncio
async def test_send_creates_a_missing_topic_like_memory(store: LocalTransport) -> None:
    await store.send([ProducerRecord("auto", 0, None, b"a", 0.0), ProducerRecord("auto", 2, None, b"b", 0.0)])
    assert await store.partition_count("auto") == 3
    assert [m.value for m in await read_all(store, TP("auto", 2))] == [b"b"]


@pytest.mark.asyncio
async def test_two_apps_of_one_process_share_the_folder(tmp_path: Path) -> None:
    url = f"local://{tmp_path / 'shared'}"
    old, new = LocalTransport(url), LocalTransport(f"local://{tmp_path}/./shared")  # same folder
    await old.start()
    await new.start()  # no BrokerLockedError: like re-running the cell that builds an App
    try:
        assert old.store is new.store
        await old.create_topic(TopicSpec("t", 1))
        consumer = new.consumer("g", ["t"], LISTENER)
        await consumer.start()
        waiting = asyncio.create_task(consumer.getmany(10.0, 10))
        await wait_until(lambda: inspect.getcoroutinestate(waiting.get_coro()) == inspect.CORO_SUSPENDED)
        assert not waiting.done()  # it waits: the send below wakes it
        await old.send([ProducerRecord("t", 0, None, b"from old", 0.0)])
        assert [m.value for m in await asyncio.wait_for(waiting, 5.0)] == [b"from old"]
        assert await old.store.call(lambda: old.store._conn().execute("PRAGMA synchronous").fetchone()[0]) == 1
        full = LocalTransport(url + "?sync=full")  # the strictest setting wins
        await full.start()
        assert await old.store.call(lambda: old.store._conn().execute("PRAGMA synchronous").fetchone()[0]) == 2
        await full.stop()
        await old.stop()  # the other app keeps the store open
        await new.send([ProducerRecord("t", 0, None, b"still open", 0.0)])
        assert [m.value for m in await consumer.getmany(1.0, 10)] == [b"still open"]
        await consumer.stop()
    finally:
        await old.stop()
        await new.stop()
    again = LocalTransport(url)  # closed for good: opens afresh
    await again.start()
    assert (await again.end_offsets([TP("t", 0)]))[TP("t", 0)] == 2
    await again.stop()


@pytest.mark.asyncio
async def test_a_store_of_a_newer_streamnb_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    transport = LocalTransport(f"local://{folder}")
    await transport.start()
    await transport.stop()
    with sqlite3.connect(folder / "streamnb.sqlite3") as conn:
        conn.execute(f"PRAGMA user_version = {local_store.SCHEMA_VERSION + 1}")
    with pytest.raises(BrokerError, match="newer streamnb") as raised:
        await transport.start()
    assert str(folder) in str(raised.value)
    # The lock was released: after a downgrade the folder is usable again.
    with sqlite3.connect(folder / "streamnb.sqlite3") as conn:
        conn.execute(f"PRAGMA user_version = {local_store.SCHEMA_VERSION}")
    await transport.start()
    await transport.stop()


@pytest.mark.asyncio
async def test_a_foreign_database_is_refused(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    with sqlite3.connect(tmp_path / "store" / "streamnb.sqlite3") as conn:
        conn.execute("CREATE TABLE mine (x)")
    with pytest.raises(BrokerError, match="not a streamnb store"):
        await LocalTransport(f"local://{tmp_path / 'store'}").start()


V1_SCHEMA = """
CREATE TABLE topics (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, partitions INTEGER NOT NULL,
    compacted INTEGER NOT NULL, retention REAL);
CREATE TABLE partitions (topic_id INTEGER NOT NULL, "partition" INTEGER NOT NULL, log_start INTEGER NOT NULL,
    next_offset INTEGER NOT NULL, clean_upto INTEGER NOT NULL, clean_count INTEGER NOT NULL,
    PRIMARY KEY (topic_id, "partition")) WITHOUT ROWID;
CREATE TABLE messages (topic_id INTEGER NOT NULL, "partition" INTEGER NOT NULL, "offset" INTEGER NOT NULL,
    timestamp REAL NOT NULL, key BLOB, value BLOB, headers BLOB, PRIMARY KEY (topic_id, "partition", "offset"))
    WITHOUT ROWID;
CREATE TABLE offsets ("group" TEXT NOT NULL, topic TEXT NOT NULL, "partition" INTEGER NOT NULL,
    "offset" INTEGER NOT NULL, PRIMARY KEY ("group", topic, "partition")) WITHOUT ROWID;
"""


@pytest.mark.asyncio
async def test_a_store_of_schema_1_is_converted_when_opened(tmp_path: Path) -> None:
    """Schema 1 kept one row per message; opening converts it to batches and keeps everything."""
    folder = tmp_path / "store"
    folder.mkdir()
    with sqlite3.connect(folder / "streamnb.sqlite3") as conn:
        conn.executescript(V1_SCHEMA)
        conn.execute("INSERT INTO topics VALUES (1, 'clicks', 2, 0, NULL), (2, 'cl', 1, 1, NULL)")
        conn.execute("INSERT INTO partitions VALUES (1, 0, 0, 3000, 0, 0), (1, 1, 0, 0, 0, 0), (2, 0, 4, 9, 9, 2)")
        conn.executemany(
            "INSERT INTO messages VALUES (1, 0, ?, ?, ?, ?, ?)",
            [(i, float(i), b"k%d" % i, b"v%d" % i, b'[["h","x"]]' if i == 7 else None) for i in range(3000)],
        )
        # A compacted partition with holes, a None key and a tombstone-free tail.
        conn.executemany(
            "INSERT INTO messages VALUES (2, 0, ?, 0.0, ?, ?, NULL)", [(4, None, b"a"), (8, b"b", b"c")]
        )
        conn.execute("INSERT INTO offsets VALUES ('g', 'clicks', 0, 1234)")
        conn.execute("PRAGMA user_version = 1")
    transport = LocalTransport(f"local://{folder}")
    await transport.start()
    try:
        clicks = await read_all(transport, TP("clicks", 0))
        assert [(m.offset, m.timestamp, m.key, m.value) for m in clicks] == [
            (i, float(i), b"k%d" % i, b"v%d" % i) for i in range(3000)
        ]
        assert clicks[7].headers == (("h", b"x"),) and clicks[8].headers == ()
        assert kv(await read_all(transport, TP("cl", 0))) == [(4, None, b"a"), (8, b"b", b"c")]
        assert await transport.beginning_offsets([TP("cl", 0)]) == {TP("cl", 0): 4}
        assert await transport.committed("g", [TP("clicks", 0)]) == {TP("clicks", 0): 1234}
        await transport.send([ProducerRecord("clicks", 0, b"new", b"new", 0.0)])  # appends after the old log
        assert (await transport.read(TP("clicks", 0), 2999, 3001))[-1].offset == 3000
    finally:
        await transport.stop()
    with sqlite3.connect(folder / "streamnb.sqlite3") as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (local_store.SCHEMA_VERSION,)
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'messages'").fetchall() == []


# -- consumers ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_getmany_shares_max_records_between_partitions(store: LocalTransport) -> None:
    await store.create_topic(TopicSpec("t", 4))
    await store.send([ProducerRecord("t", p, None, b"%d" % i, 0.0) for p in range(4) for i in range(100)])
    consumer = store.consumer("g", ["t"], LISTENER)
    await consumer.start()
    batch = await consumer.getmany(1.0, 20)
    assert sorted(m.partition for m in batch) == [p for p in range(4) for _ in range(5)]
    batch = await consumer.getmany(1.0, 1000)  # what is left, in one go
    assert len(batch) == 380
    await consumer.stop()


# -- compaction --------------------------------------------------------------------------------


async def _changelog(transport: LocalTransport, name: str = "cl") -> TP:
    await transport.create_topic(TopicSpec(name, 1, compacted=True))
    return TP(name, 0)


def _puts(topic: str, *pairs: tuple[bytes | None, bytes | None]) -> list[ProducerRecord]:
    return [ProducerRecord(topic, 0, key, value, 0.0) for key, value in pairs]


@pytest.mark.asyncio
async def test_compaction_keeps_the_newest_value_per_key_and_drops_tombstones(store: LocalTransport) -> None:
    tp = await _changelog(store)
    await store.send(_puts("cl", (b"a", b"1"), (b"b", b"1"), (b"a", b"2"), (b"c", b"1"), (b"b", None), (b"a", b"3")))
    await store.cleanup()
    assert kv(await read_all(store, tp)) == [(3, b"c", b"1"), (5, b"a", b"3")]
    assert await store.beginning_offsets([tp]) == {tp: 3}
    assert await store.end_offsets([tp]) == {tp: 6}
    # A consumer from scratch sees the compacted log.
    consumer = store.consumer("g", ["cl"], LISTENER)
    await consumer.start()
    assert kv(await consumer.getmany(1.0, 100)) == [(3, b"c", b"1"), (5, b"a", b"3")]
    await consumer.stop()
    # Incremental: only keys written since the last compaction lose old values.
    await store.send(_puts("cl", (b"c", b"2"), (b"b", b"2"), (b"d", None)))
    await store.cleanup()
    assert kv(await read_all(store, tp)) == [(5, b"a", b"3"), (6, b"c", b"2"), (7, b"b", b"2")]
    assert await store.beginning_offsets([tp]) == {tp: 5}
    # Deleting every key empties the partition: log start = end.
    await store.send(_puts("cl", (b"a", None), (b"b", None), (b"c", None)))
    await store.cleanup()
    assert await read_all(store, tp) == []
    assert await store.beginning_offsets([tp]) == {tp: 12} == await store.end_offsets([tp])


@pytest.mark.asyncio
async def test_compaction_treats_a_none_key_as_one_key_like_memory(store: LocalTransport) -> None:
    tp = await _changelog(store)
    await store.send(_puts("cl", (None, b"1"), (b"k", b"1"), (None, b"2")))
    await store.cleanup()
    assert kv(await read_all(store, tp)) == [(1, b"k", b"1"), (2, None, b"2")]


@pytest.mark.asyncio
async def test_plain_topics_are_never_compacted(store: LocalTransport) -> None:
    await store.create_topic(TopicSpec("plain", 1))
    await store.send(_puts("plain", (b"a", b"1"), (b"a", b"2"), (b"a", None)))
    await store.cleanup()
    assert len(await read_all(store, TP("plain", 0))) == 3


@pytest.mark.asyncio
async def test_compaction_runs_by_itself_once_half_the_partition_is_new(
    store: LocalTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_store, "COMPACT_MIN_DIRTY", 100)
    tp = await _changelog(store)
    await store.send([ProducerRecord("cl", 0, b"%d" % (i % 10), b"%d" % i, 0.0) for i in range(99)])
    assert len(await read_all(store, tp)) == 99  # below the minimum: left alone
    await store.send(_puts("cl", (b"0", b"last")))
    await store.store.call(lambda: None)  # background compaction runs on the writer thread before this
    got = await read_all(store, tp)
    assert len(got) == 10 and got[-1].value == b"last"
    # 60 new messages over 10 kept ones: more than half is new, but fewer than the minimum.
    await store.send([ProducerRecord("cl", 0, b"%d" % (i % 10), b"x", 0.0) for i in range(60)])
    assert len(await read_all(store, tp)) == 70
    await store.send([ProducerRecord("cl", 0, b"%d" % (i % 10), b"y", 0.0) for i in range(40)])
    await store.store.call(lambda: None)
    assert [m.value for m in await read_all(store, tp)] == [b"y"] * 10


@pytest.mark.asyncio
async def test_compaction_runs_when_the_folder_is_opened(tmp_path: Path) -> None:
    url = f"local://{tmp_path / 'store'}"
    first = LocalTransport(url)
    await first.start()
    tp = await _changelog(first)
    await first.send([ProducerRecord("cl", 0, b"%d" % (i % 3), b"%d" % i, 0.0) for i in range(30)])
    assert len(await read_all(first, tp)) == 30
    await first.stop()
    second = LocalTransport(url)
    await second.start()
    assert kv(await read_all(second, tp)) == [(27, b"0", b"27"), (28, b"1", b"28"), (29, b"2", b"29")]
    await second.stop()


# -- retention ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_retention_drops_old_messages_from_the_head(store: LocalTransport) -> None:
    await store.create_topic(TopicSpec("logs", 1, retention=60.0))
    tp = TP("logs", 0)
    now = time.time()
    await store.send([ProducerRecord("logs", 0, None, b"old%d" % i, now - 3600) for i in range(5)])
    await store.send([ProducerRecord("logs", 0, None, b"new%d" % i, now) for i in range(3)])
    assert len(await read_all(store, tp)) == 8  # retention is periodic, not per write
    await store.cleanup()
    assert [m.value for m in await read_all(store, tp)] == [b"new0", b"new1", b"new2"]
    assert await store.beginning_offsets([tp]) == {tp: 5}
    assert await store.end_offsets([tp]) == {tp: 8}
    consumer = store.consumer("g", ["logs"], LISTENER)
    await consumer.start()
    assert [m.offset for m in await consumer.getmany(1.0, 100)] == [5, 6, 7]
    await consumer.stop()


@pytest.mark.asyncio
async def test_retention_cuts_inside_a_batch_at_the_first_young_message(store: LocalTransport) -> None:
    """One send is one stored batch: retention still drops exactly up to the first young message."""
    await store.create_topic(TopicSpec("logs", 1, retention=60.0))
    tp = TP("logs", 0)
    now = time.time()
    ages = [3600, 3600, 0, 3600, 0]  # an old message after a young one stays, as in Kafka's log
    await store.send([ProducerRecord("logs", 0, None, b"%d" % i, now - age) for i, age in enumerate(ages)])
    await store.cleanup()
    assert [(m.offset, m.value) for m in await read_all(store, tp)] == [(2, b"2"), (3, b"3"), (4, b"4")]
    assert await store.beginning_offsets([tp]) == {tp: 2}
    await store.send([ProducerRecord("logs", 0, None, b"5", now)])
    assert [m.offset for m in await read_all(store, tp)] == [2, 3, 4, 5]


@pytest.mark.asyncio
async def test_retention_runs_periodically_while_writing(
    store: LocalTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_store, "RETENTION_INTERVAL", 0.0)
    await store.create_topic(TopicSpec("logs", 2, retention=60.0))
    now = time.time()
    await store.send([ProducerRecord("logs", p, None, b"old", now - 3600) for p in (0, 1, 1)])
    await store.send([ProducerRecord("logs", 0, None, b"new", now)])
    assert [m.value for m in await read_all(store, TP("logs", 0))] == [b"new"]
    assert await store.beginning_offsets([TP("logs", 0), TP("logs", 1)]) == {TP("logs", 0): 1, TP("logs", 1): 2}


@pytest.mark.asyncio
async def test_retention_applies_when_the_folder_is_opened(tmp_path: Path) -> None:
    url = f"local://{tmp_path / 'store'}"
    first = LocalTransport(url)
    await first.start()
    await first.create_topic(TopicSpec("logs", 1, retention=60.0, compacted=True))
    now = time.time()
    await first.send([ProducerRecord("logs", 0, b"k%d" % i, b"old", now - 3600) for i in range(4)])
    await first.send([ProducerRecord("logs", 0, b"k9", b"new", now)])
    await first.stop()
    second = LocalTransport(url)
    await second.start()
    assert kv(await read_all(second, TP("logs", 0))) == [(4, b"k9", b"new")]
    await second.stop()


# -- several processes ---------------------------------------------------------------------------


def _child(code: str, *args: str) -> subprocess.Popen[str]:
    """``python -c code args...``, importing the same streamnb as this test."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _wait_for_line(child: subprocess.Popen[str], expected: str, timeout: float = 60.0) -> None:
    """Wait until the child prints its next line, ``expected`` (it is killed after ``timeout`` s)."""
    assert child.stdout is not None
    deadline = threading.Timer(timeout, child.kill)
    deadline.start()
    try:
        line = child.stdout.readline()  # reads from the pipe's buffer too (select would not see it)
    finally:
        deadline.cancel()
    if line.strip() == expected:
        return
    child.kill()
    raise AssertionError(f"child did not print {expected!r}: {child.communicate()[1]}")


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for child in started:
        if child.poll() is None:
            child.kill()
        child.communicate()


HOLD = """
    import asyncio, sys
    from streamnb.transport.local import LocalTransport

    async def main():
        transport = LocalTransport(sys.argv[1])
        await transport.start()
        print("READY", flush=True)
        await asyncio.Event().wait()  # holds the folder until killed

    asyncio.run(main())
"""

TRY_OPEN = """
    import asyncio, sys
    from streamnb.transport.local import LocalTransport

    async def main():
        try:
            await LocalTransport(sys.argv[1]).start()
        except Exception as exc:
            print(type(exc).__name__, exc, flush=True)
        else:
            print("OPENED", flush=True)

    asyncio.run(main())
"""


@pytest.mark.asyncio
async def test_a_second_process_gets_broker_locked_error(tmp_path: Path) -> None:
    folder = tmp_path / "owned"
    transport = LocalTransport(f"local://{folder}")
    await transport.start()
    try:
        child = _child(TRY_OPEN, f"local://{folder}")
        out, err = await asyncio.to_thread(child.communicate, timeout=120)
        assert out.startswith("BrokerLockedError"), (out, err)
        assert str(folder) in out and f"pid {os.getpid()}" in out
        assert "local://other" in out  # says what to do
    finally:
        await transport.stop()
    child = _child(TRY_OPEN, f"local://{folder}")
    out, err = await asyncio.to_thread(child.communicate, timeout=120)
    assert out.strip() == "OPENED", err


@pytest.mark.asyncio
async def test_the_folder_opens_again_after_its_owner_is_killed(
    tmp_path: Path, children: list[subprocess.Popen[str]]
) -> None:
    url = f"local://{tmp_path / 'owned'}"
    owner = _child(HOLD, url)
    children.append(owner)
    await asyncio.to_thread(_wait_for_line, owner, "READY")
    with pytest.raises(BrokerLockedError, match=f"pid {owner.pid}"):
        await LocalTransport(url).start()
    owner.send_signal(signal.SIGKILL)
    await asyncio.to_thread(owner.wait, 30)
    transport = LocalTransport(url)
    await transport.start()
    await transport.stop()


def _open_in_forked_child(url: str, answers: multiprocessing.queues.Queue[str]) -> None:
    async def main() -> str:
        try:
            await LocalTransport(url).start()
        except BrokerLockedError as exc:
            return f"locked: {exc}"
        return "opened"

    answers.put(asyncio.run(main()))


@pytest.mark.asyncio
async def test_a_forked_child_does_not_inherit_the_folder(store: LocalTransport) -> None:
    """A fork (multiprocessing's default on Linux) is another process: it must not reuse our store."""
    context = multiprocessing.get_context("fork")
    answers: multiprocessing.queues.Queue[str] = context.Queue()
    child = context.Process(target=_open_in_forked_child, args=(store.url, answers))
    child.start()
    try:
        answer = await asyncio.to_thread(answers.get, True, 60)
    finally:
        child.join(10)
        if child.is_alive():
            child.kill()
    assert answer.startswith("locked") and f"pid {os.getpid()}" in answer
    assert await store.partition_count("anything") is None  # ours still works


COMMIT_LOOP = """
    import asyncio, os, signal, sys, time
    from streamnb.transport.base import TP, ProducerRecord, RebalanceListener, TopicSpec
    from streamnb.transport.local import LocalTransport

    URL, KILL_ON, KILL_AFTER, ANNOUNCE = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    seen = 0

    def trace(sql):
        # Runs on the store's worker thread before each statement (each row of an
        # executemany): kill this process right there, inside the transaction.
        global seen
        if KILL_ON and sql.lstrip().upper().startswith(KILL_ON):
            seen += 1
            if seen > KILL_AFTER:
                os.kill(os.getpid(), signal.SIGKILL)

    async def nothing(_):
        return None

    async def main():
        transport = LocalTransport(URL)
        await transport.start()
        await transport.create_topic(TopicSpec("src", 8))
        await transport.create_topic(TopicSpec("out", 2))
        consumer = transport.consumer("g", ["src"], RebalanceListener(nothing, nothing))
        await consumer.start()
        tps = [TP("src", p) for p in range(8)]
        i = (await transport.committed("g", tps)).get(tps[0], 0)
        store = transport.store
        await store.call(lambda: store.conn.set_trace_callback(trace))
        print("READY", flush=True)
        done = 0
        while True:
            # Commit i writes SIZE(i) records "i:j" to partition i % 2 and offset
            # i + 1 for each of the 8 source partitions.
            size = (i % 5 + 1) * 40
            records = [ProducerRecord("out", i % 2, b"%d" % i, b"%d:%d" % (i, j), time.time()) for j in range(size)]
            await consumer.commit({tp: i + 1 for tp in tps}, records)
            i += 1
            done += 1
            if done == ANNOUNCE:  # then goes on committing until killed from outside
                print("COMMITTED", flush=True)

    asyncio.run(main())
"""


def _size(i: int) -> int:
    return (i % 5 + 1) * 40


KILLS = [
    ("", 0, 5),  # killed from outside while committing in a loop, once it made 5 commits
    ("INSERT INTO BATCHES", 23, 0),  # in the middle of appending a commit's records
    ("INSERT INTO OFFSETS", 7 * 8 + 3, 0),  # after the records, while storing the offsets
    ("COMMIT", 11, 0),  # just before COMMIT
    ("", 0, 20),
]


@pytest.mark.asyncio
async def test_kill_9_in_the_middle_of_commits_leaves_whole_commits(
    tmp_path: Path, children: list[subprocess.Popen[str]]
) -> None:
    """Each commit writes records and offsets that encode the same counter: they must agree."""
    url = f"local://{tmp_path / 'crash'}"
    previous = 0
    for kill_on, kill_after, commits_first in KILLS:
        child = _child(COMMIT_LOOP, url, kill_on, str(kill_after), str(commits_first))
        children.append(child)
        await asyncio.to_thread(_wait_for_line, child, "READY")
        if commits_first:
            await asyncio.to_thread(_wait_for_line, child, "COMMITTED")
            child.send_signal(signal.SIGKILL)
        assert await asyncio.to_thread(child.wait, 60) == -signal.SIGKILL

        transport = LocalTransport(url)
        await transport.start()
        try:
            store = transport.store
            integrity = await store.call(lambda s: s._conn().execute("PRAGMA integrity_check").fetchall(), store)
            assert integrity == [("ok",)]
            tps = [TP("src", p) for p in range(8)]
            committed = await transport.committed("g", tps)
            commits = committed.get(tps[0], 0)
            assert commits > previous, f"no commit before the kill ({kill_on!r})"
            assert committed == {tp: commits for tp in tps}
            previous = commits
            for p in (0, 1):
                tp = TP("out", p)
                expected = [b"%d:%d" % (i, j) for i in range(commits) if i % 2 == p for j in range(_size(i))]
                assert await transport.end_offsets([tp]) == {tp: len(expected)}
                got = await read_all(transport, tp)
                assert [m.value for m in got] == expected
                assert [m.offset for m in got] == list(range(len(expected)))
        finally:
            await transport.stop()
