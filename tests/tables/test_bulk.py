"""The cold restore's fast path (``streamnb.tables.stores.bulk``): the same store writes, the same windows after."""

from __future__ import annotations

import logging
import random
import re
from pathlib import Path
from typing import Any

import pytest

import streamnb as faust
from streamnb.tables import persistence
from streamnb.tables.recovery import hashable
from streamnb.tables.stores import bulk
from streamnb.tables.stores.windowkeys import BY_KEY, SessionKeys, WindowKeys
from streamnb.testing import settle, wait_until

TABLE_STORES = ["rocksdb://"]  # (the tests name their stores)


def changelog_keys() -> tuple[Any, WindowKeys]:
    """The key codec of a windowed table's changelog, and the table's own record-by-record store writes."""
    app = faust.App("bulk-keys", broker="memory://bulk-keys")
    table = app.Table("views", default=int).hopping(10, 5).table
    codec = table.changelog.key_codec
    return codec, WindowKeys(codec.dumps, lambda data: hashable(codec.loads(data)))


PLAIN = ["ann", "k7", "", "a b", "a,[b", "x]]", "1.5", "~!@#$%^&*()"]
"""Keys the fast path takes: JSON strings with nothing escaped (a comma-bracket or brackets inside too)."""
OTHER = [7, -3, 2.5, ("a", 1), "say \"hi\"", "back\\slash", "ünïcode", "new\nline", "tab\tkey", None, True]
"""Keys it leaves to the record-by-record path: not a string, or a string JSON escapes."""


def window_records(keys: list[Any], rng: random.Random, codec: Any) -> tuple[list[bytes | None], list[bytes | None]]:
    kbs: list[bytes | None] = []
    values: list[bytes | None] = []
    for key in keys:
        start = rng.choice([0.0, 5.0, 1000.0, -15.0, 1_700_000_000.5, 1e-9])
        kbs.append(codec.dumps((key, (start, start + 10.0))))
        values.append(None if rng.random() < 0.2 else str(rng.randrange(1000)).encode())
    return kbs, values


def assert_same_writes(columns: Any, expected: list[tuple[bytes, bytes | None]]) -> None:
    """The two runs of a batch's columns are the record-by-record writes, by key and by time."""
    (by_key, key_values), (by_time, time_values) = columns
    assert list(zip(by_key, key_values)) == [op for op in expected if op[0][:1] == BY_KEY]
    if isinstance(time_values, bytes):
        time_values = [time_values] * len(by_time)
    assert list(zip(by_time, time_values)) == [op for op in expected if op[0][:1] != BY_KEY]


def test_window_columns_are_what_the_table_writes_record_by_record() -> None:
    codec, keys_of = changelog_keys()
    rng = random.Random(7)
    fast = slow = 0
    for _round in range(300):
        mixed = rng.random() < 0.4
        pool = PLAIN + OTHER if mixed else PLAIN
        keys = [rng.choice(pool) for _ in range(rng.randrange(1, 40))]
        kbs, values = window_records(keys, rng, codec)
        expected = list(keys_of.ops(zip(kbs, values)))
        columns = bulk.window_columns(kbs, values)
        if any(k not in PLAIN for k in keys):
            assert columns is None, keys  # (another kind of key in the batch: record by record)
            slow += 1
            continue
        assert columns is not None, keys
        fast += 1
        assert_same_writes(columns, expected)
    assert fast > 100 and slow > 50


def test_session_columns_are_what_a_session_table_writes_record_by_record() -> None:
    app = faust.App("bulk-sessions", broker="memory://bulk-sessions")
    codec = app.Table("visits", default=int).session(10).table.changelog.key_codec
    keys_of = SessionKeys(codec.dumps, lambda data: hashable(codec.loads(data)))
    rng = random.Random(11)
    fast = slow = 0
    for _round in range(300):
        pool = PLAIN + OTHER if rng.random() < 0.4 else PLAIN
        keys = [rng.choice(pool) for _ in range(rng.randrange(1, 40))]
        kbs: list[bytes | None] = []
        values: list[bytes | None] = []
        for key in keys:
            start = rng.choice([0.0, 5.0, 1000.0, -15.0, 1_700_000_000.5, 1e-9])
            kbs.append(codec.dumps((key, (start, start + rng.choice([0.0, 0.25, 7.5, 3600.0])))))
            values.append(None if rng.random() < 0.2 else str(rng.randrange(1000)).encode())
        expected = list(keys_of.ops(zip(kbs, values)))
        columns = bulk.session_columns(kbs, values)
        if any(k not in PLAIN for k in keys):
            assert columns is None, keys
            slow += 1
            continue
        assert columns is not None, keys
        fast += 1
        assert_same_writes(columns, expected)
    assert fast > 100 and slow > 50
    assert bulk.session_columns([b'["a",[60.0,75.5]]', b'"__stream_time__"'], [b"1", b"2"]) is None


def test_keys_that_are_not_windows_leave_the_batch_to_the_slow_path() -> None:
    window = b'["a",[60.0,120.0]]'
    for other in [b'"__stream_time__"', b'x["a",[60.0,120.0]]', b'["a",[60.0,120.0]]x', b'["a",[oops,120.0]]',
                  b'["a",[60.0,120.0,1]]', b'["a\nb",[60.0,120.0]]', b"", None]:
        assert bulk.window_columns([window, other], [b"1", b"2"]) is None, other
    assert bulk.window_columns([], []) is None
    assert bulk.window_columns([window], [b"1"]) is not None


class Hopping:
    """Events counted per key in hopping windows (10 s every 5 s, grace 5 s, kept 40 s) on one store."""

    def __init__(self, app_id: str, broker: str, datadir: Path, store: str) -> None:
        self.app = app = faust.App(app_id, broker=broker, topic_partitions=2, datadir=str(datadir), store=store)
        self.events = app.topic(f"{app_id}-events", key_type=str, value_type=int)
        self.closed: list[tuple[Any, Any]] = []
        table = app.Table("views", default=int, on_window_close=lambda kw, v: self.closed.append((kw, v)))
        self.views = self.shape(table)

        @app.agent(self.events)
        async def count(stream: Any) -> None:
            async for event in stream.events():
                self.views[event.key] += event.value

    @staticmethod
    def shape(table: Any) -> Any:
        return table.hopping(10, 5, expires=40, grace=5)

    async def send(self, events: list[tuple[str, float]]) -> None:
        for key, at in events:
            await self.events.send(key=key, value=1, timestamp=at)
        await settle(self.app, timeout=120)

    def seen(self) -> tuple[Any, ...]:
        frame = sorted(self.views.as_dataframe(times="epoch").itertuples(index=False, name=None), key=str)
        return frame, sorted(self.closed, key=str), dict(self.views.late_events_by_partition())


async def test_a_cold_restore_of_windows_closes_and_expires_as_in_memory(
    app_id: str, durable_broker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Windows written, then restored into an empty datadir (a new machine): the same windows, finals and
    expiry as memory:// rebuilding from the same changelog; batches of both paths, tombstones among them."""
    monkeypatch.setattr(persistence, "_READ_BATCH", 7)  # many batches: some all plain keys, some not
    taken: list[bool] = []

    def spied(keys: list[bytes | None], values: list[bytes | None]) -> Any:
        found = bulk.window_columns(keys, values)
        taken.append(found is not None)
        return found

    monkeypatch.setattr(persistence, "window_columns", spied)
    keys = [f"k{i}" for i in range(12)]
    first = [(k, 1000.0 + i) for i, k in enumerate(keys)] + [("odd \"key\"", 1003.0)] + [(k, 1009.0) for k in keys]
    later = [(k, 1030.0) for k in keys[:4]] + [("k5", 1012.0), ("odd \"key\"", 1031.0)] + [(k, 1060.0) for k in keys]
    runs: dict[str, tuple[Any, ...]] = {}
    for store in ("memory://", "rocksdb://"):  # (each its own app: its own changelog)
        name = f"{app_id}{store[0]}"
        writer = Hopping(name, durable_broker, tmp_path / f"{store[:3]}-first", store)
        async with writer.app:
            await writer.send(first)
            await writer.send([("k0", 1049.0)])  # the first windows expire: tombstones in the changelog
        run = Hopping(name, durable_broker, tmp_path / store[:3], store)  # an empty datadir (a new machine)
        with caplog.at_level(logging.INFO, logger="streamnb"):
            async with run.app:
                await wait_until(lambda: run.views.table.recovered_partitions == {0, 1}, 60.0)  # noqa: B023
                restored = run.seen()
                await run.send(later)
                runs[store] = (restored, run.seen())
    assert runs["rocksdb://"] == runs["memory://"]
    (frame, _closed, _late), (after, closed, late) = runs["memory://"]
    assert frame and after and closed and late  # (windows, finals and late events happened)
    assert True in taken and False in taken  # both paths ran
    read = [int(m.group(1)) for r in caplog.records
            if (m := re.search(r"table 'views' restored .*: (\d+) records", r.getMessage())) and m.group(1) != "0"]
    assert len(read) == 2 and read[0] == read[1]  # (each restart read its whole changelog)


class Sessions(Hopping):
    """Events counted per key in sessions (a gap of 10 s, grace 5 s, kept 40 s) on one store."""

    @staticmethod
    def shape(table: Any) -> Any:
        return table.session(10, expires=40, grace=5)


async def test_a_cold_restore_of_sessions_closes_and_expires_as_in_memory(
    app_id: str, durable_broker: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Sessions written (merging, closing, expiring), then restored into an empty datadir: the same sessions,
    finals and expiry as memory:// rebuilding from the same changelog; batches of both paths."""
    monkeypatch.setattr(persistence, "_READ_BATCH", 5)
    taken: list[bool] = []

    def spied(keys: list[bytes | None], values: list[bytes | None]) -> Any:
        found = bulk.session_columns(keys, values)
        taken.append(found is not None)
        return found

    monkeypatch.setattr(persistence, "session_columns", spied)
    keys = [f"k{i}" for i in range(10)]
    first = ([(k, 1000.0 + i) for i, k in enumerate(keys)] + [("odd \"key\"", 1003.0)]
             + [(k, 1006.0 + i / 2) for i, k in enumerate(keys)])  # (each merges into its key's session)
    later = [(k, 1030.0) for k in keys[:4]] + [("k5", 1013.0), ("odd \"key\"", 1031.0)] + [(k, 1080.0) for k in keys]
    runs: dict[str, tuple[Any, ...]] = {}
    for store in ("memory://", "rocksdb://"):
        name = f"{app_id}{store[0]}"
        writer = Sessions(name, durable_broker, tmp_path / f"{store[:3]}-first", store)
        async with writer.app:
            await writer.send(first)
            await writer.send([("k0", 1060.0), ("odd \"key\"", 1061.0)])  # some close and expire: tombstones
        run = Sessions(name, durable_broker, tmp_path / store[:3], store)  # an empty datadir
        async with run.app:
            await wait_until(lambda: run.views.table.recovered_partitions == {0, 1}, 60.0)  # noqa: B023
            restored = run.seen()
            await run.send(later)
            runs[store] = (restored, run.seen())
    assert runs["rocksdb://"] == runs["memory://"]
    (frame, _closed, _late), (after, closed, late) = runs["memory://"]
    assert frame and after and closed and late
    assert True in taken and False in taken
