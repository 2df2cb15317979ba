"""docs/changelog-format.md, checked on the embedded brokers; changelogs of earlier versions still restore.

The reader here gets the raw bytes of each changelog (and stream-time topic)
through the transport, as any client of the broker would, and rebuilds each
kind of table with that page's rules alone; the result must be the app's tables.
(``tests/tables/test_kafka_changelog_format.py`` does the same with plain aiokafka.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import broker_url

import streamnb as faust
from streamnb.testing import settle
from streamnb.transport.base import TP, Message, ProducerRecord, TopicSpec
from streamnb.transport.schemes import open_transport


class Click(faust.Record):
    user: str
    page: str = ""
    op: str = "add"


# (user, page, op, event time in s), in this order: out of order within grace, a session merge, a
# deletion from the plain table, a set emptied, and at 131 windows, a session and a sliding bucket expiring.
CLICKS = [
    ("ann", "/a", "add", 100.0), ("bob", "/a", "add", 101.0), ("cy", "/c", "add", 102.0),
    ("ann", "/b", "add", 103.0), ("bob", "/a", "discard", 104.0), ("ann", "/a", "add", 112.0),
    ("cy", "", "delete", 113.0), ("ann", "/c", "add", 108.0), ("ann", "/a", "add", 131.0),
    ("bob", "/b", "add", 150.0),
]
GRACE, GAP, SIZE = 5.0, 5.0, 10.0


async def read(app: faust.App, name: str) -> list[Message]:
    """Every record of topic ``name``, partition by partition, in offset order (raw bytes)."""
    transport = app.require_transport()
    out: list[Message] = []
    for p in range(await transport.partition_count(name) or 0):
        tp = TP(name, p)
        out += await transport.read(tp, 0, (await transport.end_offsets([tp]))[tp], 100_000)
    return out


def newest(records: list[Message]) -> dict[Any, tuple[Any, int]]:
    """Format page: the newest record of a (JSON) key wins, a tombstone deletes it; key -> (JSON value, partition)."""
    def hashable(obj: Any) -> Any:
        return tuple(hashable(x) for x in obj) if isinstance(obj, list) else obj

    rows: dict[Any, tuple[Any, int]] = {}
    for r in records:
        assert not r.headers, r
        key = hashable(json.loads(r.key or b""))
        if r.value is None:
            rows.pop(key, None)
        else:
            rows[key] = (json.loads(r.value), r.partition)
    return rows


def windows_of(rows: dict[Any, tuple[Any, int]]) -> dict[Any, Any]:
    """``[key, [start, end]]`` keys (every key of a windowed changelog must be one)."""
    out = {}
    for (key, (start, end)), (value, _p) in rows.items():
        out[(key, (start, end))] = value
    return out


def sliding_windows(rows: dict[Any, tuple[Any, int]], size: float) -> dict[Any, Any]:
    """The format page: windows from the bucket times ``[key, t]``; a frozen ``[key, [start, end]]`` value wins."""
    size_ms = round(size * 1000)
    buckets: dict[Any, dict[int, Any]] = {}
    frozen = {}
    for (key, where), (value, _p) in rows.items():
        if isinstance(where, tuple):
            frozen[(key, where)] = value
        else:
            buckets.setdefault(key, {})[round(where * 1000)] = value
    out = {}
    for key, by_time in buckets.items():
        times = sorted(by_time)
        wins = [(t - size_ms, t) for t in times]
        wins += [(t + 1, t + 1 + size_ms) for t, nxt in zip(times, times[1:]) if nxt <= t + size_ms]
        for s, e in wins:
            out[(key, (s / 1000, e / 1000))] = sum(v for t, v in by_time.items() if s <= t <= e)
    out.update(frozen)
    return out


def stream_times(records: list[Message]) -> dict[int, float]:
    """The format page: the newest record of partition p of ``<app id>-<table>-streamtime`` is p's stream time."""
    return {key: value for key, (value, _p) in newest(records).items()}


def closed_flags(view: Any) -> dict[Any, bool]:
    df = view.as_dataframe(times="epoch")
    return {(k, (s, e)): c for k, s, e, c in zip(df["key"], df["window_start"], df["window_end"], df["closed"])}


@pytest.mark.parametrize("kind", ["memory", "local"])
async def test_an_outside_reader_rebuilds_every_kind_of_table(kind: str, tmp_path: Path, app_id: str) -> None:
    app = faust.App(app_id, broker=broker_url(kind, tmp_path), topic_partitions=2, commit_interval=0.05)
    clicks = app.topic(f"{app_id}-clicks", key_type=str, value_type=Click)
    plain = app.Table("plain", default=int)
    sets = app.SetTable("sets", value_type=str)
    glob = app.GlobalTable("glob", default=int)
    tumbling = app.Table("tumbling", default=int).tumbling(SIZE, grace=GRACE, expires=20)
    hopping = app.Table("hopping", default=int).hopping(20, SIZE, grace=GRACE, expires=20)
    sessions = app.Table("sessions", default=int).session(GAP, grace=10, expires=30)
    sliding = app.Table("sliding", default=int).sliding(SIZE, grace=10)

    @app.agent(clicks)
    async def count(stream):  # type: ignore[no-untyped-def]
        async for click in stream:
            if click.op == "delete":
                del plain[click.user]
                continue
            plain[click.user] += 1
            glob[click.user] += 1
            getattr(sets[click.user], click.op)(click.page)
            for view in (tumbling, hopping, sessions, sliding):
                view[click.user] += 1

    async with app:
        for user, page, op, ts in CLICKS:  # a commit each: what one commit makes and undoes is never written
            await clicks.send(key=user, value=Click(user=user, page=page, op=op), timestamp=ts)
            await settle(app)
        count.raise_if_crashed()

        rows = newest(await read(app, f"{app_id}-plain-changelog"))
        assert {k: v for k, (v, _p) in rows.items()} == dict(plain.data) == {"ann": 5, "bob": 3}
        rows = newest(await read(app, f"{app_id}-glob-changelog"))
        assert {k: v for k, (v, _p) in rows.items()} == dict(glob.data)
        rows = newest(await read(app, f"{app_id}-sets-changelog"))
        members = {k: set(v["members"]) for k, (v, _p) in rows.items() if v["members"]}
        assert members == {k: set(v) for k, v in sets.data.items()}
        assert rows["bob"][0]["members"] == ["/b"] and "cy" in members

        closes = [(tumbling, GRACE), (hopping, GRACE), (sessions, GAP + 10), (sliding, 10 + 0.001)]
        for view, close in closes:
            records = await read(app, f"{app_id}-{view.name}-changelog")
            assert any(r.value is None for r in records), f"{view.name}: no tombstone, untested"
            rows = newest(records)
            windows = sliding_windows(rows, SIZE) if view is sliding else windows_of(rows)
            assert windows == dict(view.items()), view.name
            times = stream_times(await read(app, f"{app_id}-{view.name}-streamtime"))
            assert times == {p: view.stream_time(partition=p) for p in range(2) if view.stream_time(partition=p)}
            partition_of = {key: p for (key, _where), (_v, p) in rows.items()}  # a key's rows share one
            closed = {w: round(times[partition_of[w[0]]] * 1000) >= round((w[1][1] + close) * 1000) for w in windows}
            assert closed == closed_flags(view), view.name
            assert any(closed.values()), view.name


async def test_a_changelog_of_an_earlier_version_still_restores(tmp_path: Path, app_id: str) -> None:
    """Stream time under ``"__stream_time__"`` in the changelog is read, then deleted at the next advance."""
    url = f"local://{tmp_path / 'broker'}"
    changelog, stream_time = f"{app_id}-per10-changelog", f"{app_id}-per10-streamtime"
    old = open_transport(url, client_id=app_id)
    await old.start()
    await old.create_topic(TopicSpec(changelog, 1, compacted=True))
    await old.send([  # what the previous version wrote: rows, and stream time among them
        ProducerRecord(changelog, 0, b'["di",[100.0,110.0]]', b"2", 105.0),
        ProducerRecord(changelog, 0, b'"__stream_time__"', b"113.0", 113.0),
    ])
    await old.stop()

    def build() -> tuple[faust.App, Any, Any]:
        app = faust.App(app_id, broker=url, topic_partitions=1, commit_interval=0.05)
        clicks = app.topic(f"{app_id}-clicks", key_type=str, value_type=Click)
        per10 = app.Table("per10", default=int).tumbling(10, grace=2, expires=60)

        @app.agent(clicks)
        async def count(stream):  # type: ignore[no-untyped-def]
            async for click in stream:
                per10[click.user] += 1

        return app, clicks, per10

    app, clicks, per10 = build()
    async with app:
        assert per10.stream_time() == 113.0  # not 100.0, the newest window start
        assert dict(per10.items()) == {("di", (100.0, 110.0)): 2}
        await clicks.send(key="di", value=Click(user="di"), timestamp=101.0)  # [100, 110) closed at 112: late
        await settle(app)
        assert per10.late_events == 1
        assert [r.key for r in await read(app, changelog)][-1] == b'"__stream_time__"'  # not deleted yet
        await clicks.send(key="di", value=Click(user="di"), timestamp=120.0)
        await settle(app)
        last = [r for r in await read(app, changelog) if r.key == b'"__stream_time__"'][-1]
        assert last.value is None  # deleted: compaction removes it
        assert stream_times(await read(app, stream_time)) == {0: 120.0}

    app, clicks, per10 = build()
    async with app:
        assert per10.stream_time() == 120.0
        assert dict(per10.items()) == {("di", (100.0, 110.0)): 2, ("di", (120.0, 130.0)): 1}
