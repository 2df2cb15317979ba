"""``streamnb check`` and ``streamnb salvage``, run as the operator runs them: real subprocesses."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from localhelpers import build, copy, damage, killed_mid_commits, snapshot

from streamnb.transport.base import TP
from streamnb.transport.local import LocalTransport
from streamnb.transport.local.check import check

ROOT = str(Path(__file__).parents[2])


def streamnb(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.run([sys.executable, "-m", "streamnb", *args], capture_output=True, text=True, env=env,
                          timeout=120)


@pytest.fixture(scope="module")
def shop_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    folder = tmp_path_factory.mktemp("shop") / "broker"
    asyncio.run(build(f"local://{folder}", n=1400, unprocessed=200))
    return folder, asyncio.run(snapshot(folder))


def test_check_of_an_intact_folder_says_ok_and_exits_0(shop_folder: tuple[Path, Any]) -> None:
    folder, _ = shop_folder
    done = streamnb("check", f"local://{folder}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1].startswith(f"ok: {folder}: 6 topics, 24 partitions")


def test_check_lists_the_damage_and_salvage_copies_the_rest(shop_folder: tuple[Path, Any], tmp_path: Path) -> None:
    original, (data, committed) = shop_folder
    folder = tmp_path / "damaged"
    for seed in range(100):  # a 4 KB page that damages some partitions (and not the catalogue)
        what = damage(copy(original, folder), random.Random(seed), "page")
        report = check(str(folder))
        if any(p.damaged for p in report.partitions) and len(report.partitions) == 24:
            break
    else:
        raise AssertionError("no page of the folder damages a partition")
    done = streamnb("check", f"local://{folder}")
    assert done.returncode == 1, (what, done.stdout, done.stderr)
    damaged = [line for line in done.stdout.splitlines() if line.startswith("DAMAGED: topic ")]
    assert damaged and all("partition" in line and "offset" in line for line in damaged)
    assert f"streamnb salvage local://{folder} --to" in done.stdout.splitlines()[-1]

    new = tmp_path / "salvaged"
    done = streamnb("salvage", f"local://{folder}", "--to", f"local://{new}")
    assert done.returncode == 1, done.stderr  # something could not be copied: listed
    lost = {(line.split("'")[1], int(line.split("partition ")[1].split(":")[0]))
            for line in done.stdout.splitlines() if line.startswith("NOT COPIED: topic ")}
    assert lost and lost == {(p.topic, p.partition) for p in report.partitions if p.damaged}
    assert streamnb("check", f"local://{new}").returncode == 0

    copied, offsets = asyncio.run(snapshot(new))
    assert offsets == committed  # every committed offset came along
    for cell, (bounds, messages) in data.items():
        if cell in lost:  # empty, its offsets going on from where the old one ended
            assert copied[cell] == ((bounds[1], bounds[1]), [])
        else:
            assert copied[cell] == (bounds, messages)


def test_salvage_of_an_intact_folder_copies_everything(shop_folder: tuple[Path, Any], tmp_path: Path) -> None:
    original, truth = shop_folder
    done = streamnb("salvage", f"local://{original}", "--to", f"local://{tmp_path / 'copy'}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("nothing was lost")
    assert asyncio.run(snapshot(tmp_path / "copy")) == truth
    again = streamnb("salvage", f"local://{original}", "--to", f"local://{tmp_path / 'copy'}")
    assert again.returncode == 2 and "already holds a local:// store" in again.stderr


def test_check_of_a_folder_in_use_or_missing_exits_2(shop_folder: tuple[Path, Any], tmp_path: Path) -> None:
    original, _ = shop_folder
    folder = copy(original, tmp_path / "used")

    async def while_open() -> subprocess.CompletedProcess[str]:
        transport = LocalTransport(f"local://{folder}")
        await transport.start()
        try:
            return await asyncio.to_thread(streamnb, "check", f"local://{folder}")
        finally:
            await transport.stop()

    done = asyncio.run(while_open())
    assert done.returncode == 2 and "in use by another process" in done.stderr
    missing = streamnb("check", f"local://{tmp_path / 'nothing'}")
    assert missing.returncode == 2 and "holds no local:// store" in missing.stderr
    assert streamnb("check").returncode == 2  # no URL, no app: a usage error


def test_check_reports_commits_lost_with_a_deleted_wal(tmp_path: Path) -> None:
    folder = tmp_path / "broker"
    asyncio.run(killed_mid_commits(folder))
    os.remove(folder / "streamnb.sqlite3-wal")
    done = streamnb("check", f"local://{folder}")
    assert done.returncode == 1
    assert "did not close it" in done.stdout and "-wal is gone" in done.stdout
    new = tmp_path / "salvaged"
    done = streamnb("salvage", f"local://{folder}", "--to", f"local://{new}")
    assert done.returncode == 1 and "NOT COPIED: " in done.stdout and "-wal is gone" in done.stdout

    async def events() -> int:
        transport = LocalTransport(f"local://{new}")
        await transport.start()
        try:
            return sum((await transport.end_offsets([TP("events", p) for p in range(4)])).values())
        finally:
            await transport.stop()

    assert asyncio.run(events()) > 0  # what was left (checkpointed) opens: the salvaged folder starts clean
