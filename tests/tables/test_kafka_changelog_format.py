"""Changelogs any Kafka client can read: tables rebuilt with plain aiokafka from docs/changelog-format.md.

The "Changelog format" page (docs/changelog-format.md) says what each record of a changelog is. The
reader here follows it and nothing else: a group-less ``AIOKafkaConsumer``
reads each changelog (and the stream-time topic of the windowed tables) from
the beginning to the end offsets, decodes JSON by hand, and rebuilds the
tables; they must equal the app's own tables, windows' ``closed`` flags included.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import kafka_bootstrap
from kafkahelpers import Producer, create_topic, read_topic

import streamnb as faust
from streamnb.testing import settle

pytestmark = pytest.mark.kafka


class Order(faust.Record):
    user: str
    amount: int


# (user, amount, event time in s), sent in this order. An amount of 0 deletes the user from the plain
# table (a tombstone); at 1045 stream time passes the end + expires of the first windows (tombstones).
ORDERS = [
    ("alice", 3, 1001.0), ("bob", 10, 1003.5), ("alice", 4, 1005.0), ("carol", 1, 1006.0),
    ("alice", 5, 1012.0), ("carol", 0, 1013.0), ("bob", 2, 1024.0), ("alice", 1, 1045.0), ("bob", 1, 1047.5),
]
GRACE = 5.0


def rebuild_plain(records: list[Any]) -> dict[Any, Any]:
    """The format page: key and value are JSON; the newest record of a key wins; no value deletes it."""
    table: dict[Any, Any] = {}
    for r in records:
        assert not r.headers, f"the format page: changelog records have no headers, got {r.headers}"
        key = json.loads(r.key)
        if r.value is None:
            table.pop(key, None)
        else:
            table[key] = json.loads(r.value)
    return table


def rebuild_windows(records: list[Any]) -> tuple[dict[Any, Any], dict[Any, int]]:
    """Format page: a windowed key is ``[key, [start, end]]``; returns the windows and each one's partition."""
    table: dict[Any, Any] = {}
    partition_of: dict[Any, int] = {}
    for r in records:
        assert not r.headers, f"the format page: changelog records have no headers, got {r.headers}"
        key, (start, end) = json.loads(r.key)  # every record is a row: a stray record fails here
        window = (key, (float(start), float(end)))
        if r.value is None:
            table.pop(window, None)
        else:
            table[window] = json.loads(r.value)
            partition_of[window] = r.partition
    return table, partition_of


def stream_times(records: list[Any]) -> dict[int, float]:
    """The format page: partition p of ``<app id>-<table>-streamtime`` holds p's stream time; the newest record wins."""
    out: dict[int, float] = {}
    for r in records:
        partition = json.loads(r.key)
        assert partition == r.partition
        if r.value is None:
            out.pop(partition, None)
        else:
            out[partition] = float(json.loads(r.value))
    return out


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
async def test_a_plain_reader_rebuilds_plain_and_windowed_tables(app_id: str, guarantee: str) -> None:
    bootstrap = kafka_bootstrap()
    source = f"{app_id}-orders"
    await create_topic(bootstrap, source, 2)
    app = faust.App(
        app_id, broker=f"kafka://{bootstrap}", topic_partitions=2, commit_interval=0.05,
        processing_guarantee=guarantee,
    )
    orders = app.topic(source, value_type=Order)
    totals = app.Table("totals", default=int)
    tumbling = app.Table("tumbling", default=int).tumbling(10, grace=GRACE, expires=20)
    hopping = app.Table("hopping", default=int).hopping(20, 10, grace=GRACE, expires=20)

    @app.agent(orders)
    async def total(stream):  # type: ignore[no-untyped-def]
        async for order in stream:
            if order.amount:
                totals[order.user] += order.amount
            else:
                del totals[order.user]
            tumbling[order.user] += order.amount
            hopping[order.user] += order.amount

    isolation = "read_committed" if guarantee == "exactly_once" else "read_uncommitted"

    async def read(name: str) -> list[Any]:
        return await read_topic(bootstrap, f"{app_id}-{name}", isolation_level=isolation)

    async with Producer(bootstrap) as producer:
        for user, amount, ts in ORDERS:
            await producer.send(source, [(user, {"user": user, "amount": amount})], timestamp_ms=int(ts * 1000))
        async with app:
            await settle(app, timeout=60)
            total.raise_if_crashed()

            plain = rebuild_plain(await read("totals-changelog"))
            assert plain == dict(totals.data) == {"alice": 13, "bob": 13}  # carol deleted
            for view in (tumbling, hopping):
                records = await read(f"{view.name}-changelog")
                windows, partition_of = rebuild_windows(records)
                assert windows == dict(view.items())
                assert any(r.value is None for r in records), "no window expired: tombstones go untested"
                times = stream_times(await read(f"{view.name}-streamtime"))
                assert times == {p: view.stream_time(partition=p) for p in set(partition_of.values())}
                closed = {w: times[partition_of[w]] >= w[1][1] + GRACE for w in windows}
                df = view.as_dataframe(times="epoch")
                ours = {(k, (s, e)): c for k, s, e, c in zip(df["key"], df["window_start"], df["window_end"],
                                                                  df["closed"])}
                assert closed == ours and any(closed.values()) and not all(closed.values())
