"""A table written under another key than the stream's (no ``group_by``) keeps one row per key on ``rocksdb://``.

Faust's own windowing examples count one key from a topic sent round-robin:
each event writes the key from its own partition. In memory that is one dict
entry; on ``rocksdb://`` each write goes to the store of the event's partition,
so the copy the key's old partition held is deleted once the commit lands
(``StoredState`` for plain rows and sets, ``WindowCache`` for windows and sessions;
a session merged with one held by another partition's store leaves that store). Checked
against the same app on ``memory://``, before and after a restart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import streamnb as faust
from streamnb.tables.state.base import Dirty
from streamnb.tables.state.stored import StoredState
from streamnb.tables.stores.rocksdb import RocksDBStore
from streamnb.testing import settle, wait_until
from streamnb.transaction import MISSING

TABLE_STORES = ["rocksdb://"]  # (the apps name their stores)
EVENTS = 40


def make(name: str, broker: str, store: str, datadir: Path) -> tuple[faust.App, Any, Any, tuple[Any, Any, Any]]:
    app = faust.App(name, broker=broker, topic_partitions=4, store=store, datadir=str(datadir))
    ticks = app.topic(f"{name}-ticks", key_type=str, value_type=int)  # (an app of its own on the broker)
    counts = app.Table("counts", default=int)
    windows = app.Table("windows", default=int).tumbling(10, expires=3600)
    hopping = app.Table("hopping", default=int).hopping(10, 5, expires=3600)
    seen = app.SetTable("seen", value_type=int)

    @app.agent(ticks)
    async def count(stream: Any) -> None:
        async for _tick in stream:
            counts["counter"] += 1  # one table key, written from every partition
            windows["counter"] += 1
            hopping["counter"] += 1
            seen["all"].add(_tick)

    return app, ticks, counts, (windows, hopping, seen)


async def restarted(app: faust.App, *tables: Any) -> None:
    """The restarted app serves every partition of ``tables`` again (on Kafka, once assigned and recovered)."""
    served = [getattr(t, "table", t) for t in tables]  # (a windowed table: its table)
    await wait_until(lambda: all(t.recovered_partitions == {0, 1, 2, 3} for t in served), 60.0, what="recovery")
    await settle(app)


def rows(table: Any) -> dict[Any, Any]:
    """The table's rows, each listed once (a key listed twice fails)."""
    listed = list(table.items())
    assert len(listed) == len(dict(listed)), listed
    return dict(listed)


async def run(name: str, broker: str, store: str, datadir: Path) -> tuple[dict[Any, Any], ...]:
    app, ticks, counts, (windows, hopping, seen) = make(name, broker, store, datadir)
    async with app:
        for i in range(EVENTS):  # round-robin over the partitions (keys k0..k7), event times 0..39 s
            await ticks.send(key=f"k{i % 8}", value=i, timestamp=1_000.0 + i)
            if i % 5 == 4:
                await settle(app)  # several commits, the key moving between partitions' stores
        await settle(app)
    return rows(counts), rows(windows), rows(hopping), rows(seen)


async def test_a_key_written_from_several_partitions_keeps_one_row(
    app_id: str, durable_broker: str, tmp_path: Path
) -> None:
    stored = await run(f"{app_id}r", durable_broker, "rocksdb://", tmp_path / "r-data")
    in_memory = await run(f"{app_id}m", durable_broker, "memory://", tmp_path / "m-data")
    assert stored[0] == in_memory[0] == {"counter": EVENTS}
    assert stored[1] == in_memory[1] and sum(stored[1].values()) == EVENTS  # each window once
    assert stored[2] == in_memory[2] and sum(stored[2].values()) == 2 * EVENTS
    assert stored[3] == in_memory[3] == {"all": set(range(EVENTS))}
    # A restart reads the stores (and the changelog's tail): still one row per key and window.
    app, _ticks, counts, (windows, hopping, seen) = make(
        f"{app_id}r", durable_broker, "rocksdb://", tmp_path / "r-data")
    async with app:
        await restarted(app, counts, windows, hopping, seen)
        assert rows(counts) == {"counter": EVENTS} and len(counts) == 1
        assert rows(windows) == stored[1] and rows(hopping) == stored[2]
        assert counts["counter"] == EVENTS and rows(seen) == {"all": set(range(EVENTS))}


def make_sessions(name: str, broker: str, store: str, datadir: Path) -> tuple[faust.App, Any, Any, Any]:
    app = faust.App(name, broker=broker, topic_partitions=4, store=store, datadir=str(datadir))
    ticks = app.topic(f"{name}-ticks", key_type=str, value_type=int)  # (an app of its own on the broker)
    chained = app.Table("chained", default=int).session(3, expires=3600, grace=600)
    growing = app.Table("growing", default=int).session(10, expires=3600, grace=600)

    @app.agent(ticks)
    async def count(stream: Any) -> None:
        async for _tick in stream:
            chained["counter"] += 1  # one table key, written from every partition
            growing["counter"] += 1

    return app, ticks, chained, growing


def session_time(i: int) -> float:
    """Sessions 6 s apart first (gap 3: one each; gap 10: one growing), then events 3 s after each of them:
    every one merges two sessions of the gap-3 table, often held by the stores of two other partitions."""
    return 1_000.0 + (6 * i if i < 20 else 6 * (i - 20) + 3)


async def send_sessions(app: faust.App, ticks: Any, first: int, last: int) -> None:
    for i in range(first, last):
        await ticks.send(key=f"k{i % 8}", value=i, timestamp=session_time(i))
        if i % 5 == 4:
            await settle(app)  # several commits
    await settle(app)


async def run_sessions(name: str, broker: str, store: str, datadir: Path, upto: int) -> tuple[dict[Any, Any], ...]:
    app, ticks, chained, growing = make_sessions(name, broker, store, datadir)
    async with app:
        await send_sessions(app, ticks, 0, upto)
    return rows(chained), rows(growing)


async def test_a_session_key_written_from_several_partitions_keeps_one_row_per_session(
    app_id: str, durable_broker: str, tmp_path: Path
) -> None:
    half = 30  # (20 separate gap-3 sessions, then 10 events each merging two of them)
    stored = await run_sessions(f"{app_id}r", durable_broker, "rocksdb://", tmp_path / "r-data", half)
    in_memory = await run_sessions(f"{app_id}m", durable_broker, "memory://", tmp_path / "m-data", half)
    assert stored == in_memory
    assert len(stored[0]) == 10 and sum(stored[0].values()) == half  # one session for each merged pair
    assert stored[1] == {("counter", (1_000.0, 1_114.0)): half}  # one growing session
    # A restart reads the stores: the sessions are as they were; events merging those kept in the stores
    # of other partitions (nothing cached) leave one row per session, as on memory://.
    app, ticks, chained, growing = make_sessions(f"{app_id}r", durable_broker, "rocksdb://", tmp_path / "r-data")
    async with app:
        await restarted(app, chained, growing)
        assert (rows(chained), rows(growing)) == stored
        await send_sessions(app, ticks, half, EVENTS)
        after = rows(chained), rows(growing)
    in_memory_after = await run_sessions(f"{app_id}c", durable_broker, "memory://", tmp_path / "c-data", EVENTS)
    one = {("counter", (1_000.0, 1_117.0)): EVENTS}  # (every session merged into one)
    assert after == in_memory_after == (one, one)
    app, _ticks, chained, growing = make_sessions(f"{app_id}r", durable_broker, "rocksdb://", tmp_path / "r-data")
    async with app:
        await restarted(app, chained, growing)
        assert (rows(chained), rows(growing)) == after
        assert len(chained) == len(growing) == 1


def commit(state: StoredState, dirty: Dirty[list[Any]]) -> None:
    """What a table does at a commit: its changelog records to the stores of their partitions, then the flush."""
    for change in list(state.changes(dirty)):
        value = None if change.value is MISSING else json.dumps(change.value).encode()
        state.stores[change.partition].apply([(json.dumps(change.key).encode(), value)], None)
    state.flushed()


def test_a_row_written_from_its_own_partition_then_another_in_one_transaction_moves(tmp_path: Path) -> None:
    """The first write of the transaction comes from the partition whose store holds the row, a later one
    from another: the row moves (the cause of a key listed twice when a commit held events of both)."""
    stores = {p: RocksDBStore(tmp_path / str(p), 8 << 20, table="t") for p in (0, 1)}
    for store in stores.values():
        store.open()
    state = StoredState(lambda k: json.dumps(k).encode(), json.loads, json.loads, stores)
    first: Dirty[list[Any]] = Dirty()
    state.write(first, "k", 1, partition=0)
    commit(state, first)
    second: Dirty[list[Any]] = Dirty()
    state.write(second, "k", 2, partition=0)  # from the row's own partition first ...
    state.write(second, "k", 3, partition=1)  # ... then from another one
    commit(state, second)
    assert [list(store.rows()) for store in stores.values()] == [[], [(b'"k"', b"3")]]
    assert list(state.items()) == [("k", 3)]
    for store in stores.values():
        store.close()
