"""A table written under another key than the stream's (no ``group_by``) keeps one row per key on ``rocksdb://``.

Faust's own windowing examples count one key from a topic sent round-robin:
each event writes the key from its own partition. In memory that is one dict
entry; on ``rocksdb://`` each write goes to the store of the event's partition,
so the copy the key's old partition held is deleted once the commit lands
(``StoredState`` for plain rows and sets, ``WindowCache`` for windows). Checked against
the same app on ``memory://``, before and after a restart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamnb as faust
from streamnb.testing import settle

TABLE_STORES = ["rocksdb://"]  # (the apps name their stores)
EVENTS = 40


def make(broker: str, store: str, datadir: Path) -> tuple[faust.App, Any, Any, tuple[Any, Any, Any]]:
    app = faust.App("moves", broker=broker, topic_partitions=4, store=store, datadir=str(datadir))
    ticks = app.topic("ticks", key_type=str, value_type=int)
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


def rows(table: Any) -> dict[Any, Any]:
    """The table's rows, each listed once (a key listed twice fails)."""
    listed = list(table.items())
    assert len(listed) == len(dict(listed)), listed
    return dict(listed)


async def run(broker: str, store: str, datadir: Path) -> tuple[dict[Any, Any], ...]:
    app, ticks, counts, (windows, hopping, seen) = make(broker, store, datadir)
    async with app:
        for i in range(EVENTS):  # round-robin over the partitions (keys k0..k7), event times 0..39 s
            await ticks.send(key=f"k{i % 8}", value=i, timestamp=1_000.0 + i)
            if i % 5 == 4:
                await settle(app)  # several commits, the key moving between partitions' stores
        await settle(app)
    return rows(counts), rows(windows), rows(hopping), rows(seen)


async def test_a_key_written_from_several_partitions_keeps_one_row(tmp_path: Path) -> None:
    stored = await run(f"local://{tmp_path / 'a'}", "rocksdb://", tmp_path / "a-data")
    in_memory = await run(f"local://{tmp_path / 'b'}", "memory://", tmp_path / "b-data")
    assert stored[0] == in_memory[0] == {"counter": EVENTS}
    assert stored[1] == in_memory[1] and sum(stored[1].values()) == EVENTS  # each window once
    assert stored[2] == in_memory[2] and sum(stored[2].values()) == 2 * EVENTS
    assert stored[3] == in_memory[3] == {"all": set(range(EVENTS))}
    # A restart reads the stores (and the changelog's tail): still one row per key and window.
    app, _ticks, counts, (windows, hopping, seen) = make(
        f"local://{tmp_path / 'a'}", "rocksdb://", tmp_path / "a-data")
    async with app:
        await settle(app)
        assert rows(counts) == {"counter": EVENTS} and len(counts) == 1
        assert rows(windows) == stored[1] and rows(hopping) == stored[2]
        assert counts["counter"] == EVENTS and rows(seen) == {"all": set(range(EVENTS))}
