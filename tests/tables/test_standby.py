"""Standby replicas (streamnb/tables/standby.py): a store follows a changelog unserved, then takes over on the tail.

The store side runs on any broker (here the durable embedded ones, Kafka
too); the whole takeover on Kafka is in test_kafka_standby.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import streamnb as faust
from streamnb.tables.persistence import TableStore
from streamnb.tables.standby import DatadirPeers, StandbyReplicas, follow_stream_time
from streamnb.tables.state.stored_windows import StoredWindowedState
from streamnb.tables.stores.rocksdb import RocksDBStore
from streamnb.testing import settle, wait_until
from streamnb.transport.base import TP

TABLE_STORES = ["rocksdb://"]  # (these tests name their store)
PARTITIONS = 2


def make_app(app_id: str, broker: str, datadir: Path) -> tuple[faust.App, Any, Any]:
    app = faust.App(app_id, broker=broker, topic_partitions=PARTITIONS, datadir=str(datadir))
    words = app.topic(f"{app_id}-words", value_type=str)
    counts = app.Table("counts", default=int, store="rocksdb://")

    @app.agent(words)
    async def count(stream: Any) -> None:
        async for word in stream:
            counts[word] += 1

    return app, words, counts


def other_worker(app: faust.App, datadir: Path, counts: Any, name: str = "counts") -> TableStore:
    """The table's store side as a worker with its own datadir has it (another machine)."""
    runtime = SimpleNamespace(datadir=datadir, id=app.id, store_memory=8 << 20,
                              processing_guarantee=app.processing_guarantee)
    return TableStore(runtime, name, counts.changelog)  # type: ignore[arg-type]


async def ends(app: faust.App, counts: Any) -> dict[int, int]:
    transport = app.require_transport()
    found = await transport.end_offsets([TP(counts.changelog.name, p) for p in range(PARTITIONS)])
    return {tp.partition: offset for tp, offset in found.items()}


async def follow_to_end(store: TableStore, app: faust.App) -> int:
    read = 0
    for partition in range(PARTITIONS):
        while step := await store.follow(app.require_transport(), partition):
            read += step
    return read


def rows(store: RocksDBStore) -> dict[str, int]:
    return {json.loads(k): json.loads(v) for k, v in store.rows()}


async def test_a_standby_store_follows_the_changelog_unserved_and_its_takeover_reads_only_the_tail(
    durable_broker: str, app_id: str, tmp_path: Path
) -> None:
    app, words, counts = make_app(app_id, durable_broker, tmp_path / "owner")
    async with app:
        await wait_until(lambda: counts.recovered_partitions == {0, 1}, 30)
        for i in range(400):
            await words.send(key=f"w{i % 40}", value=f"w{i % 40}")
        await settle(app)
        standby = other_worker(app, tmp_path / "standby", counts)
        first = await follow_to_end(standby, app)
        before = await ends(app, counts)
        assert standby.standby_positions() == before  # read to the changelog's end ...
        assert not standby.stores and not standby.state.stores  # ... and serves nothing
        assert first > 0 and await follow_to_end(standby, app) == 0
        assert standby.offsets() == before
        for _ in range(10):
            await words.send(key="w7", value="w7")
        await settle(app)
        after = await ends(app, counts)
        transport = app.require_transport()
        tail = sum([len(await transport.read(TP(counts.changelog.name, p), before[p], after[p], 100))
                    for p in range(PARTITIONS)])  # (records: exactly-once adds markers to the offsets)
        assert 0 < tail <= 10
        # The partition moves here: the restore takes the standby's store and reads only the tail.
        read = sum([await standby.recover(app.require_transport(), p) for p in range(PARTITIONS)])
        assert read == tail
        assert not standby.standbys and set(standby.stores) == {0, 1}
        served = {k: v for store in standby.stores.values() for k, v in rows(store).items()}
        assert served == dict(counts.items()) and served["w7"] == 20
        standby.close()


async def test_a_windowed_tables_standby_keeps_its_stream_time_and_the_takeover_reads_none_of_its_topic(
    durable_broker: str, app_id: str, tmp_path: Path
) -> None:
    app = faust.App(app_id, broker=durable_broker, topic_partitions=PARTITIONS, datadir=str(tmp_path / "owner"))
    events = app.topic(f"{app_id}-events", key_type=str, value_type=int)
    views = app.Table("views", default=int, store="rocksdb://").tumbling(10, expires=30)

    @app.agent(events)
    async def count(stream: Any) -> None:
        async for event in stream.events():
            views[event.key] += 1

    async with app:
        await wait_until(lambda: views.table.recovered_partitions == {0, 1}, 30)
        for i in range(60):
            await events.send(key=f"k{i % 6}", value=1, timestamp=1000.0 + i)
            if i % 20 == 19:
                await settle(app)  # (a few commits: a few stream-time records per partition)
        owner = views.state
        assert isinstance(owner, StoredWindowedState) and set(owner.stream_time) == {0, 1}
        standby = other_worker(app, tmp_path / "standby", views.table, "views")
        standby.hold(StoredWindowedState(owner.window, standby.stores, *standby.codecs()))
        transport = app.require_transport()
        topic = views.table.stream_times.topic.name
        for partition in range(PARTITIONS):
            while await standby.follow(transport, partition) + await follow_stream_time(standby, transport, partition):
                pass
        found = await transport.end_offsets([TP(topic, p) for p in range(PARTITIONS)])
        assert all(found.values())
        for partition in range(PARTITIONS):  # the stream time kept with the offset reached, as a commit keeps it
            kept = standby.standbys[partition].stream_time()
            assert kept == (found[TP(topic, partition)], json.dumps(owner.stream_time[partition]).encode())
        assert await follow_stream_time(standby, transport, 0) == 0  # (caught up)
        read = sum([await standby.recover(transport, p, views.table.stream_times) for p in range(PARTITIONS)])
        assert read == 0  # neither the changelog nor the stream-time topic: the standby had both
        assert standby.rows.stream_time == owner.stream_time  # type: ignore[union-attr]
        standby.close()


async def test_a_standby_leaves_a_store_another_owner_holds_alone(
    durable_broker: str, app_id: str, tmp_path: Path
) -> None:
    app, words, counts = make_app(app_id, durable_broker, tmp_path / "owner")
    async with app:
        await words.send(key="a", value="a")
        await settle(app)
        standby = other_worker(app, tmp_path / "shared", counts)
        holder = RocksDBStore(standby.folder / "0", 8 << 20, table="counts")
        holder.open()  # (the owner of partition 0 on the same disk)
        try:
            assert await standby.follow(app.require_transport(), 0) == 0
            assert 0 not in standby.standbys
        finally:
            holder.close()
        await follow_to_end(standby, app)
        assert set(standby.standbys) == {0, 1}
        standby.release_standbys({1})
        assert set(standby.standbys) == {1}
        standby.close()
        assert not standby.standbys


async def test_a_restarted_worker_tells_the_offsets_of_the_stores_it_left_on_disk(
    durable_broker: str, app_id: str, tmp_path: Path
) -> None:
    """What the assignment hears of a worker's state covers stores not open yet (read once, read-only)."""
    app, words, counts = make_app(app_id, durable_broker, tmp_path / "data")
    async with app:
        for i in range(200):
            await words.send(key=f"w{i % 30}", value=f"w{i % 30}")
        await settle(app)
        before = await ends(app, counts)
        assert app.standbys.offsets() == before  # (the open stores)
    assert all(before.values())
    again, _words, _counts = make_app(app_id, durable_broker, tmp_path / "data")  # the restarted worker
    await again.connect()
    try:
        disk = again.standbys.disk
        assert again.standbys.offsets() == before and disk.reads == PARTITIONS
        assert again.standbys.offsets() == before and disk.reads == PARTITIONS  # (unchanged files: not read again)
        store = RocksDBStore(tmp_path / "data" / app_id / "counts" / "1", 8 << 20)
        store.open()
        store.apply([(b'"w1"', b"99")], before[1] + 5)
        assert again.standbys.offsets() == {**before, 1: before[1] + 5}  # (held by another process: as it stands)
        store.close()
        assert again.standbys.offsets() == {**before, 1: before[1] + 5} and disk.reads == PARTITIONS + 2
        theirs = make_app(app_id, "memory://", tmp_path / "data")[0]  # another broker: its changelog, not these
        await theirs.connect()
        try:
            assert theirs.standbys.offsets() == {}
        finally:
            await theirs.stop()
    finally:
        await again.stop()


def test_workers_sharing_a_datadir_see_each_other_and_a_dead_ones_file_goes(tmp_path: Path) -> None:
    a, b = DatadirPeers(tmp_path), DatadirPeers(tmp_path)
    a.join()
    assert not a.shared()
    b.join()
    assert a.shared() and b.shared()
    stale = tmp_path / ".workers" / "12345-dead"
    stale.write_bytes(b"")  # (a worker killed before it let go: nobody holds its lock)
    b.leave()
    assert not a.shared() and not stale.exists()
    a.leave()


def test_standby_partitions_are_the_ones_named_and_not_owned(tmp_path: Path) -> None:
    owned = {1}
    replicas = StandbyReplicas(list, lambda: None, lambda: set(owned), replicas=1, folder=tmp_path)
    hooks = replicas.hooks("consumer-1")
    assert hooks.worker == replicas.worker and hooks.replicas == 1 and hooks.offsets() == {}
    hooks.standbys({0, 1, 2})
    replicas.hooks("consumer-2").standbys({3})
    assert replicas.partitions() == {0, 2, 3}
    replicas.forget("consumer-2")
    assert replicas.partitions() == {0, 2}


def test_standby_replicas_need_kafka(tmp_path: Path) -> None:
    with pytest.raises(faust.ConfigurationError, match="table_standby_replicas=1 needs a kafka:// broker"):
        faust.App("s", broker=f"local://{tmp_path}", table_standby_replicas=1)
    with pytest.raises(faust.ConfigurationError, match="int >= 0"):
        faust.App("s", broker="kafka://127.0.0.1:9092", table_standby_replicas=-1)
    assert faust.App("s", broker="memory://", table_standby_replicas=0).table_standby_replicas == 0
    assert faust.App("s", broker="memory://").table_standby_replicas == 0
    assert faust.App("s", broker="kafka://127.0.0.1:9092").table_standby_replicas == 1  # Faust's default
    assert faust.App("s", broker="kafka://127.0.0.1:9092", table_standby_replicas=2).table_standby_replicas == 2


@pytest.mark.kafka
async def test_only_apps_with_rocksdb_tables_use_the_standby_aware_assignment(app_id: str, tmp_path: Path) -> None:
    from conftest import kafka_bootstrap

    app = faust.App(app_id, broker=f"kafka://{kafka_bootstrap()}", datadir=str(tmp_path))
    app.Table("in_memory", default=int, store="memory://")
    await app.connect()
    try:
        assert app.standby_hooks("a consumer") is None  # (its groups keep Kafka's range assignment)
        app.Table("on_disk", default=int, store="rocksdb://")
        hooks = app.standby_hooks("a consumer")
        assert hooks is not None and hooks.replicas == 1
    finally:
        await app.stop()
    local = faust.App(app_id, broker=f"local://{tmp_path / 'broker'}")
    local.Table("on_disk", default=int, store="rocksdb://")
    await local.connect()
    try:
        assert local.standby_hooks("a consumer") is None
    finally:
        await local.stop()
