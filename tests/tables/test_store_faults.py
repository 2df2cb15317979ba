"""Faults and bad input on a table's store: a value its codec cannot encode, a full disk, a corrupt store."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest

import streamnb as faust
from streamnb.tables.stores.rocksdb import RocksDBStore
from streamnb.testing import settle

TABLE_STORES = ["rocksdb://"]  # (the value check runs on both stores: its test names them)


def make_app(
    app_id: str, broker: str, datadir: Path, store: str = "rocksdb://"
) -> tuple[faust.App, Any, Any, Any]:
    app = faust.App(app_id, broker=broker, topic_partitions=2, datadir=str(datadir), store=store)
    words = app.topic(f"{app_id}-words", key_type=str, value_type=str)
    counts = app.Table("counts", default=int)
    windows = app.Table("windows", default=list).tumbling(10, expires=1000)

    @app.agent(words)
    async def count(stream: Any) -> None:
        async for word in stream:
            if word == "bad":
                counts[word] = object()  # no codec encodes it
            elif word == "bad-window":
                windows[word] = object()
            else:
                counts[word] += 1
                windows[word] = [word]

    return app, words, counts, windows


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
async def test_a_value_the_codec_cannot_encode_is_refused_at_the_write_naming_table_and_key(
    app_id: str, broker: str, tmp_path: Path, store: str
) -> None:
    app, words, counts, windows = make_app(app_id, broker, tmp_path / "data", store)
    app.agents["count"].max_retries = 1  # (each retry is an agent restart: on Kafka, a rejoin and a restore)
    async with app:
        for word in ["a", "bad", "b", "bad-window", "a"]:
            await words.send(key=word, value=word, timestamp=1_000.0)
        await settle(app, timeout=120)
        assert dict(counts.items()) == {"a": 2, "b": 1}  # nothing of the refused writes
        assert {k for (k, _w) in windows.table.data} == {"a", "b"}
        assert app.agents["count"].dead_lettered == 2
        errors = "".join(tb for _when, tb in app.agents["count"].errors)
        assert "table 'counts': the value written for key 'bad' cannot be stored" in errors
        assert "table 'windows': the value written for key 'bad-window' cannot be stored" in errors


def no_space(*args: Any, **kwargs: Any) -> None:
    raise Exception("IO error: No space left on device: While appending to file: 000012.log")  # (what RocksDB raises)


async def test_a_full_disk_is_a_clear_error_and_the_next_commit_catches_up(
    app_id: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker, datadir = f"local://{tmp_path / 'broker'}", tmp_path / "data"
    app, words, counts, windows = make_app(app_id, broker, datadir)
    async with app:
        await words.send(key="a", value="a", timestamp=1_000.0)
        await settle(app)
        resumes = {p: s.resume for p, s in counts.persistence.stores.items()}
        with monkeypatch.context() as full, caplog.at_level(logging.ERROR, logger="streamnb"):
            full.setattr(RocksDBStore, "apply", no_space)
            for word in ["b", "a"]:  # two commits: in the changelog, not in the stores
                await words.send(key=word, value=word, timestamp=1_000.0)
                await settle(app)
            assert dict(counts.items()) == {"a": 2, "b": 1}  # served from memory meanwhile
            assert {p: s.resume for p, s in counts.persistence.stores.items()} == resumes  # the stores did not move
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert any(
            "table 'counts': its store" in e and "could not be written (IO error: No space left on device" in e
            and "free disk space under datadir=" in e for e in errors
        )
        await words.send(key="c", value="c", timestamp=1_000.0)  # space again: this commit writes all three
        await settle(app)
        assert not counts.persistence.state.pending
    with caplog.at_level(logging.INFO, logger="streamnb"):
        caplog.clear()
        again, _words, counts, windows = make_app(app_id, broker, datadir)
        async with again:
            await settle(again)
            assert dict(counts.items()) == {"a": 2, "b": 1, "c": 1}
            assert {k for (k, _w) in windows.table.data} == {"a", "b", "c"}
    assert any(re.search(r"table 'counts' restored .*: 0 records", r.getMessage()) for r in caplog.records)


async def test_a_corrupt_windowed_store_is_wiped_and_rebuilt(
    app_id: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broker, datadir = f"local://{tmp_path / 'broker'}", tmp_path / "data"
    app, words, counts, windows = make_app(app_id, broker, datadir)
    async with app:
        for word in ["a", "b", "a"]:
            await words.send(key=word, value=word, timestamp=1_000.0)
        await settle(app)
        expected = dict(windows.table.data.items())
    for current in (datadir / app_id / "windows").glob("*/CURRENT"):
        current.write_bytes(b"MANIFEST-999999\n")  # points at nothing: RocksDB cannot open it
    with caplog.at_level(logging.WARNING, logger="streamnb"):
        again, _words, counts, windows = make_app(app_id, broker, datadir)
        async with again:
            assert dict(windows.table.data.items()) == expected
    assert any("cannot be opened" in r.getMessage() and "wiping" in r.getMessage() for r in caplog.records)
