"""Restore progress: ``table.restore_progress`` while a restore goes on, the status text, the dashboard, the log."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

import streamnb as faust
from streamnb.notebook.dashboard import _tables_html
from streamnb.notebook.magics import status_text
from streamnb.tables import progress as progress_module
from streamnb.tables.progress import RestoreProgress
from streamnb.transport.base import ProducerRecord

RECORDS = 120_000  # three reads of the changelog (50,000 records each)


async def write_changelog(broker: str, app_id: str, datadir: Path) -> None:
    """A changelog of RECORDS keys, written straight to the topic (what a long-running app left)."""
    app = faust.App(app_id, broker=broker, datadir=str(datadir), topic_partitions=1)
    table = app.Table("big", default=int)
    transport = await app.connect()
    await table.changelog.declare()
    name = table.changelog.name
    for at in range(0, RECORDS, 20_000):
        await transport.send(
            [ProducerRecord(name, 0, b'"k%d"' % i, b"%d" % i, 1.0, ()) for i in range(at, at + 20_000)]
        )
    await app.stop()


async def test_restore_progress_is_readable_shown_and_logged(
    app_id: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker, datadir = f"local://{tmp_path / 'broker'}", tmp_path / "data"
    await write_changelog(broker, app_id, datadir)
    monkeypatch.setattr(progress_module, "LOG_EVERY", 0.0)  # a line per read of the changelog
    app = faust.App(app_id, broker=broker, datadir=str(datadir), topic_partitions=1)
    table = app.Table("big", default=int)
    seen: list[dict[int, RestoreProgress]] = []
    shown: list[tuple[str, str]] = []

    async def watch() -> None:
        while True:
            now = table.restore_progress
            if now and (not seen or now != seen[-1]):
                seen.append(now)
                shown.append((status_text(app), _tables_html(app)))
            await asyncio.sleep(0)

    watcher = asyncio.ensure_future(watch())
    try:
        with caplog.at_level(logging.INFO, logger="streamnb"):
            async with app:
                assert len(table) == RECORDS and table["k7"] == 7
                assert table.restore_progress == {}  # over
    finally:
        watcher.cancel()
    assert seen, "the restore was never seen in progress"
    assert all(set(s) == {0} and s[0].done + s[0].remaining == RECORDS for s in seen)
    done = [s[0].done for s in seen]
    assert done == sorted(done) and any(0 < d < RECORDS for d in done)
    text, html = shown[-1]
    assert "restoring table 'big' partition 0: [" in text and f"of {RECORDS:,} records" in text
    assert "<progress value=" in html and f"max='{RECORDS}'" in html
    logged = [r.getMessage() for r in caplog.records if "restoring:" in r.getMessage()]
    assert logged and all(f"of {RECORDS} records" in line for line in logged)


def test_no_restore_shows_nothing(app_id: str) -> None:
    app = faust.App(app_id, broker="memory://")
    table = app.Table("t", default=int)
    assert table.restore_progress == {}
    assert "restoring" not in status_text(app)
