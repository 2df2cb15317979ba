"""Damage in a local:// folder is detected (CorruptStoreError), or harmless; never wrong data, never a dead letter.

The property test writes random bytes at random places of a stopped
folder's files, many times over: each time the folder either raises
CorruptStoreError (when opened, or when the damaged part is read), or reads
back exactly what was written. The other tests are the cases of issue 23:
200 bytes inside stored messages, two bytes inside a stored count, a 4 KB
page, a deleted -wal file after kill -9, a full disk.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from localhelpers import DB, View, build, copy, damage, find, killed_mid_commits, overwrite, shop, snapshot

from streamnb.errors import BrokerError, CorruptStoreError
from streamnb.testing import settle, wait_until
from streamnb.transport.base import TP, ProducerRecord, TopicSpec
from streamnb.transport.local import LocalTransport
from streamnb.transport.local.batch import encode
from streamnb.transport.local.integrity import batch_crc, well_formed


@pytest.fixture(scope="module")
def shop_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int], Any]:
    """A stopped folder of the shop app (2,000 views counted, 300 more waiting), its counts and contents."""
    folder = tmp_path_factory.mktemp("shop") / "broker"
    counts = asyncio.run(build(f"local://{folder}", n=2000, unprocessed=300))
    return folder, counts, asyncio.run(snapshot(folder))


# -- the property ------------------------------------------------------------------------------------


MODES = [("bytes", 120), ("bit", 90), ("page", 60), ("lock", 20)]


@pytest.mark.parametrize(("mode", "seeds"), MODES)
async def test_random_damage_is_detected_or_harmless(
    shop_folder: tuple[Path, dict[str, int], Any], tmp_path: Path, mode: str, seeds: int
) -> None:
    original, _, truth = shop_folder
    outcomes = {"detected": 0, "harmless": 0}
    for seed in range(seeds):
        folder = copy(original, tmp_path / "damaged")
        what = damage(folder, random.Random(seed), mode)
        try:
            found = await snapshot(folder)
        except CorruptStoreError as exc:
            assert str(folder) in str(exc) and "streamnb check" in str(exc) and "streamnb salvage" in str(exc)
            outcomes["detected"] += 1
            continue
        except Exception as exc:  # anything else is a failure: say which seed, and what was done
            raise AssertionError(f"seed {seed} ({mode}: {what}) raised {exc!r}") from exc
        assert found == truth, f"seed {seed} ({mode}: {what}): the folder reads back different data"
        outcomes["harmless"] += 1
    # (a garbled LOCK only makes the next open check the whole file: harmless)
    assert outcomes["detected"] >= (0 if mode == "lock" else seeds // 3), outcomes


async def run_shop(folder: Path, timeout: float = 30.0) -> tuple[Any, Any, BaseException | None]:
    """Start the shop app on ``folder`` until it settles or meets an error; the app, its counts and that error."""
    app, _, counts, _ = shop(f"local://{folder}")
    try:
        await app.start()
    except CorruptStoreError as exc:
        return app, counts, exc
    agent = app.agents["count"]
    try:
        settled = asyncio.ensure_future(settle(app, timeout=timeout))
        failed = asyncio.ensure_future(wait_until(lambda: agent.last_error is not None, timeout=timeout))
        await asyncio.wait({settled, failed}, return_when=asyncio.FIRST_COMPLETED)
        for task in (settled, failed):
            task.cancel()
        return app, counts, agent.last_error
    finally:
        await app.stop()


@pytest.mark.parametrize("seed", range(10))
async def test_a_4k_page_overwritten_stops_with_corrupt_store_error_or_changes_nothing(
    shop_folder: tuple[Path, dict[str, int], Any], tmp_path: Path, seed: int
) -> None:
    """A random 4 KB page of random bytes: the app starts and counts right, or meets CorruptStoreError."""
    original, _, _ = shop_folder
    expected = await _expected_after_restart(original, tmp_path)
    folder = copy(original, tmp_path / "damaged")
    what = damage(folder, random.Random(1000 + seed), "page")
    app, counts, error = await run_shop(folder)
    agent = app.agents["count"]
    assert agent.dead_lettered == 0, what
    if error is None:
        assert dict(counts.items()) == expected, what
    else:
        assert isinstance(error, CorruptStoreError), f"{what}: {error!r}"
        assert "streamnb check" in str(error)


_EXPECTED: dict[str, dict[str, int]] = {}


async def _expected_after_restart(original: Path, tmp_path: Path) -> dict[str, int]:
    """The counts after the app processed the 300 waiting views (computed once, on an undamaged copy)."""
    if str(original) not in _EXPECTED:
        app, counts, error = await run_shop(copy(original, tmp_path / "intact"))
        assert error is None, error
        _EXPECTED[str(original)] = dict(counts.items())
    return _EXPECTED[str(original)]


# -- the cases of the issue ----------------------------------------------------------------------------


async def test_200_bytes_inside_stored_messages_stop_the_agent_and_blame_no_producer(
    shop_folder: tuple[Path, dict[str, int], Any], tmp_path: Path
) -> None:
    original, _, _ = shop_folder
    folder = copy(original, tmp_path / "damaged")
    at = find(folder / DB, b'"user":"user-002150"')  # a view sent while the app was stopped: not yet read
    overwrite(folder / DB, at, bytes(random.Random(3).randrange(256) for _ in range(200)))
    app, counts, error = await run_shop(folder)
    agent = app.agents["count"]
    assert isinstance(error, CorruptStoreError), error
    assert agent.dead_lettered == 0 and agent.events_processed == 0
    assert error.topic == "views" and error.partition is not None and error.offsets is not None
    assert error.offsets[0] <= 2150 // 4 + 500 // 4  # (the damaged batch holds that view's offset)
    message = str(error)
    assert "checksum" in message and "fix the producer" not in message and "streamnb salvage" in message


async def test_two_bytes_inside_a_stored_count_are_not_a_wrong_table(tmp_path: Path) -> None:
    """Issue 23: a count 30 changed to 97 on disk made the table 67 too high."""
    folder = tmp_path / "broker"
    app, views, counts, _ = shop(f"local://{folder}")
    async with app:
        for i in range(30):
            await views.send(key="k", value=_view("/thirty", i), timestamp=1000.0 + i)
            await settle(app)
        assert counts["/thirty"] == 30
    at = find(folder / DB, b'"/thirty"30', last=True)  # the changelog's newest record: key, then its value
    overwrite(folder / DB, at + len(b'"/thirty"'), b"97")
    # A memory:// table reads its whole changelog at the start (a rocksdb:// one only its tail, from its
    # intact store: it never reads the damaged record).
    app, _, counts, _ = shop(f"local://{folder}", store="memory://")
    with pytest.raises(CorruptStoreError, match="shop-counts-changelog") as raised:
        async with app:
            await settle(app)
    assert raised.value.topic == "shop-counts-changelog"
    assert counts.data.get("/thirty") != 97


def _view(page: str, i: int) -> View:
    return View(page=page, user=f"user-{i}")


@pytest.mark.parametrize("also_shm", [False, True])
async def test_a_deleted_wal_after_kill_9_is_reported_not_silently_dropped(tmp_path: Path, also_shm: bool) -> None:
    folder = tmp_path / "broker"
    await killed_mid_commits(folder)
    os.remove(folder / f"{DB}-wal")
    if also_shm:
        os.remove(folder / f"{DB}-shm")
    with pytest.raises(CorruptStoreError, match=r"(\d+) messages committed before .* are missing") as raised:
        await LocalTransport(f"local://{folder}").start()
    assert int(str(raised.value).split(" is damaged: ")[1].split()[0]) >= 1000  # the last 10 commits at least
    assert f"{DB}-wal is gone" in str(raised.value) and "salvage" in str(raised.value)
    with pytest.raises(CorruptStoreError):  # and again: the folder says so until it is salvaged
        await LocalTransport(f"local://{folder}").start()


async def test_after_kill_9_the_folder_is_checked_and_opens_whole(tmp_path: Path, caplog: Any) -> None:
    folder = tmp_path / "broker"
    await killed_mid_commits(folder)
    assert (folder / "LOCK").read_text().split("\n")[1].startswith("messages ")
    caplog.set_level(logging.INFO, "streamnb.transport.local")
    transport = LocalTransport(f"local://{folder}")
    await transport.start()
    try:
        ends = await transport.end_offsets([TP("events", p) for p in range(4)])
        assert sum(ends.values()) == 4000
    finally:
        await transport.stop()
    assert any("was not closed by its last owner" in r.message and "quick_check" in r.message
               for r in caplog.records)
    assert (folder / "LOCK").read_text() == ""


# -- a full disk ----------------------------------------------------------------------------------------


async def test_a_full_disk_says_so_and_where_and_the_store_goes_on_after(tmp_path: Path) -> None:
    folder = tmp_path / "broker"
    transport = LocalTransport(f"local://{folder}")
    await transport.start()
    try:
        store = transport.store
        await transport.create_topic(TopicSpec("t", 1))
        count = await store.call(lambda: store.conn.execute("PRAGMA page_count").fetchone()[0])
        await store.call(lambda: store.conn.execute(f"PRAGMA max_page_count = {count + 8}"))  # the disk: 32 KB more
        sent = 0
        with pytest.raises(BrokerError) as raised:
            for _ in range(100):
                await transport.send([ProducerRecord("t", 0, None, os.urandom(1000), 0.0) for _ in range(10)])
                sent += 10
        message = str(raised.value)
        assert f"the disk that holds the local:// folder {folder} is full" in message
        assert "another folder" not in message and not isinstance(raised.value, CorruptStoreError)
        assert (await transport.end_offsets([TP("t", 0)])) == {TP("t", 0): sent}  # nothing of the failed send
        await store.call(lambda: store.conn.execute("PRAGMA max_page_count = 1073741823"))  # room again
        await transport.send([ProducerRecord("t", 0, None, b"after", 0.0)])
        messages = await transport.read(TP("t", 0), 0, sent + 1)
        assert len(messages) == sent + 1 and messages[-1].value == b"after"
    finally:
        await transport.stop()
    copy_ok = await snapshot(folder)  # and it opens again, whole
    assert len(copy_ok[0][("t", 0)][1]) == sent + 1


async def test_an_agent_whose_commit_meets_a_full_disk_goes_on_once_there_is_room(tmp_path: Path) -> None:
    folder = tmp_path / "broker"
    app, views, counts, _ = shop(f"local://{folder}")
    async with app:
        await views.send(key="a", value=_view("/x", 0))
        await settle(app)
        store = app.transport.store  # type: ignore[union-attr]
        count = await store.call(lambda: store.conn.execute("PRAGMA page_count").fetchone()[0])
        await store.call(lambda: store.conn.execute(f"PRAGMA max_page_count = {count}"))
        transport = app.transport
        assert transport is not None
        await asyncio.sleep(0.2)
        agent = app.agents["count"]
        for i in range(1, 400):  # (the sends are written at once: room for them, not for the agent's commits)
            try:
                await views.send(key="a", value=_view("/x", i))
            except BrokerError:
                break
        sent = sum((await transport.end_offsets([TP("views", p) for p in range(4)])).values())
        await wait_until(lambda: agent.last_error is not None, timeout=30)
        assert "is full" in str(agent.last_error) and agent.dead_lettered == 0
        await store.call(lambda: store.conn.execute("PRAGMA max_page_count = 1073741823"))
        await settle(app, timeout=60)
        assert counts["/x"] == sent


# -- what the errors say ------------------------------------------------------------------------------


async def test_a_malformed_file_says_corrupt_and_how_to_check_and_salvage(tmp_path: Path) -> None:
    folder = tmp_path / "broker"
    transport = LocalTransport(f"local://{folder}")
    await transport.start()
    await transport.create_topic(TopicSpec("t", 2))
    await transport.stop()
    overwrite(folder / DB, 0, b"\x00" * 100)  # sqlite's header
    with pytest.raises(CorruptStoreError) as raised:
        await transport.start()
    message = str(raised.value)
    assert "is damaged" in message and f"streamnb check local://{folder}" in message
    assert "streamnb salvage" in message and "point the app to another folder" not in message


async def test_a_file_that_is_no_database_in_a_new_folder_is_foreign(tmp_path: Path) -> None:
    (tmp_path / "broker").mkdir()
    (tmp_path / "broker" / DB).write_bytes(b"these are my notes, not a database" * 200)
    with pytest.raises(BrokerError, match="is not a streamnb store.*point the app to another folder") as raised:
        await LocalTransport(f"local://{tmp_path / 'broker'}").start()
    assert not isinstance(raised.value, CorruptStoreError)


# -- folders of schema 2 (no checksums) ---------------------------------------------------------------


V2_SCHEMA = """
CREATE TABLE topics (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, partitions INTEGER NOT NULL,
    compacted INTEGER NOT NULL, retention REAL);
CREATE TABLE partitions (topic_id INTEGER NOT NULL, "partition" INTEGER NOT NULL, log_start INTEGER NOT NULL,
    next_offset INTEGER NOT NULL, clean_upto INTEGER NOT NULL, clean_count INTEGER NOT NULL,
    PRIMARY KEY (topic_id, "partition")) WITHOUT ROWID;
CREATE TABLE batches (topic_id INTEGER NOT NULL, "partition" INTEGER NOT NULL, base_offset INTEGER NOT NULL,
    count INTEGER NOT NULL, max_timestamp REAL NOT NULL, records BLOB NOT NULL,
    PRIMARY KEY (topic_id, "partition", base_offset));
CREATE TABLE offsets ("group" TEXT NOT NULL, topic TEXT NOT NULL, "partition" INTEGER NOT NULL,
    "offset" INTEGER NOT NULL, PRIMARY KEY ("group", topic, "partition")) WITHOUT ROWID;
"""


async def test_a_folder_of_schema_2_opens_its_batches_unchecked_and_new_ones_checked(tmp_path: Path) -> None:
    folder = tmp_path / "old"
    folder.mkdir()
    with sqlite3.connect(folder / DB) as conn:
        conn.executescript(V2_SCHEMA)
        conn.execute("INSERT INTO topics VALUES (1, 't', 1, 0, NULL)")
        conn.execute("INSERT INTO partitions VALUES (1, 0, 0, 5, 0, 0)")
        for base, n in ((0, 2), (2, 3)):
            blob = encode([(None, b"v%d" % i, float(i), ()) for i in range(base, base + n)])
            conn.execute("INSERT INTO batches VALUES (1, 0, ?, ?, ?, ?)", (base, n, float(base + n - 1), blob))
        conn.execute("INSERT INTO offsets VALUES ('g', 't', 0, 3)")
        conn.execute("PRAGMA user_version = 2")
    transport = LocalTransport(f"local://{folder}")
    await transport.start()
    try:
        assert [m.value for m in await transport.read(TP("t", 0), 0, 10)] == [b"v%d" % i for i in range(5)]
        assert await transport.committed("g", [TP("t", 0)]) == {TP("t", 0): 3}
        await transport.send([ProducerRecord("t", 0, None, b"new", 9.0)])
    finally:
        await transport.stop()
    with sqlite3.connect(folder / DB) as conn:
        rows = conn.execute("SELECT base_offset, end_offset, crc FROM batches ORDER BY 1").fetchall()
        assert rows[:2] == [(0, None, None), (2, None, None)]  # unknown: read unchecked
        base, end, crc = rows[2]
        (blob,) = conn.execute("SELECT records FROM batches WHERE base_offset = 5").fetchone()
        assert (base, end) == (5, 6) and crc == batch_crc(1, 0, 5, 6, 1, 9.0, blob)
        assert well_formed(blob, 1) and not well_formed(blob[:-1], 1)


# -- what is not damage ---------------------------------------------------------------------------------


async def test_a_read_racing_compaction_or_retention_is_not_damage(tmp_path: Path) -> None:
    """The writer's thread compacts and commits before the cache follows: a read may see the new log first."""
    transport = LocalTransport(f"local://{tmp_path / 'broker'}")
    await transport.start()
    try:
        await transport.create_topic(TopicSpec("c", 2, compacted=True))
        for i in range(3):
            await transport.send([ProducerRecord("c", 0, b"k%d" % (j % 2), b"v%d" % i, 0.0) for j in range(4)])
        await transport.send([ProducerRecord("c", 1, b"gone", b"x", 0.0), ProducerRecord("c", 1, b"gone", None, 0.0)])
        await transport.cleanup()
        topic = transport.store.topics["c"]
        assert topic.starts == [10, 2]
        topic.starts[:] = [0, 0]  # as a reader sees the cache just before the compaction's commit reaches it
        assert [m.offset for m in await transport.read(TP("c", 0), 0, 100)] == [10, 11]
        assert await transport.read(TP("c", 1), 0, 100) == []
    finally:
        await transport.stop()
