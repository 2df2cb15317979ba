"""Helpers of the local:// tests: a started transport (the ``store`` fixture), a shop app's folder, what it holds,
and ways to damage it."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio

import streamnb as faust
from streamnb.testing import settle
from streamnb.transport.base import TP, ProducerRecord
from streamnb.transport.local import LocalTransport

DB = "streamnb.sqlite3"


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[LocalTransport]:
    """A started ``local://`` transport on a folder of its own (import it into a test module to use it)."""
    transport = LocalTransport(f"local://{tmp_path / 'store'}")
    await transport.start()
    try:
        yield transport
    finally:
        await transport.stop()
GROUP = "shop-count"


class View(faust.Record):
    page: str
    user: str


def shop(url: str, store: str | None = None) -> tuple[faust.App, Any, Any, Any]:
    """The app: page views re-keyed by page, counted in a plain and a tumbling-window table (on ``store``)."""
    app = faust.App("shop", broker=url, topic_partitions=4, **({} if store is None else {"store": store}))
    views = app.topic("views", value_type=View)
    counts = app.Table("counts", default=int)
    windows = app.Table("windows", default=int).tumbling(10, expires=1e9)

    @app.agent(views)
    async def count(stream: Any) -> Any:
        async for view in stream.group_by(View.page):
            counts[view.page] += 1
            windows[view.page] += 1

    return app, views, counts, windows


def view_record(i: int, rng: random.Random) -> ProducerRecord:
    value = View(page=f"/p{rng.randrange(23)}", user=f"user-{i:06d}").dumps()
    return ProducerRecord("views", i % 4, f"u{i % 37}".encode(), value, 1000.0 + i)


async def build(url: str, n: int = 2000, unprocessed: int = 0) -> dict[str, int]:
    """Run the app over ``n`` views (some sent one by one, most in batches), stop it; returns its counts.

    ``unprocessed`` more views are then appended while the app is stopped (read at its next start).
    """
    app, views, counts, _ = shop(url)
    rng = random.Random(1)
    async with app:
        for i in range(200):  # one commit each: small batches
            await views.send(key=f"u{i % 37}", value=View(page=f"/p{rng.randrange(23)}", user=f"user-{i:06d}"),
                             timestamp=1000.0 + i)
        await settle(app)
        transport = app.transport
        assert transport is not None
        for at in range(200, n, 600):  # large batches
            await transport.send([view_record(i, rng) for i in range(at, min(at + 600, n))])
            await settle(app)
        result = dict(counts.items())
    if unprocessed:
        plain = LocalTransport(url)
        await plain.start()
        await plain.send([view_record(i, rng) for i in range(n, n + unprocessed)])
        await plain.stop()
    return result


async def snapshot(folder: Path | str) -> tuple[dict[tuple[str, int], Any], dict[TP, int]]:
    """Every message of every partition (with the log's bounds) and the app's committed offsets."""
    transport = LocalTransport(f"local://{folder}")
    await transport.start()
    try:
        data: dict[tuple[str, int], Any] = {}
        for name in await transport.list_topics():
            for p in range(await transport.partition_count(name) or 0):
                tp = TP(name, p)
                bounds = (await transport.beginning_offsets([tp]))[tp], (await transport.end_offsets([tp]))[tp]
                messages = await transport.read(tp, 0, 1 << 62, 1 << 30)
                data[name, p] = bounds, [(m.offset, m.key, m.value, m.timestamp, m.headers) for m in messages]
        return data, await transport.committed(GROUP, [TP(name, p) for name, p in data])
    finally:
        await transport.stop()


def copy(src: Path, dst: Path) -> Path:
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    return dst


def overwrite(path: Path, at: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(at)
        f.write(data)


def damage(folder: Path, rng: random.Random, mode: str) -> str:
    """Write random bytes into the folder's files; returns what was done (for assertion messages)."""
    if mode == "lock":
        at = rng.randrange(64)
        data = bytes(rng.randrange(256) for _ in range(rng.randint(1, 24)))
        overwrite(folder / "LOCK", at, data)
        return f"LOCK@{at}: {data!r}"
    path = folder / DB
    size = os.path.getsize(path)
    if mode == "page":
        page = rng.randrange(size // 4096)
        overwrite(path, page * 4096, rng.randbytes(4096))
        return f"page {page + 1}"
    done = []
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(size)
        if mode == "bit":
            with open(path, "rb") as f:
                f.seek(at)
                byte = f.read(1)[0]
            data = bytes([byte ^ (1 << rng.randrange(8))])
        else:
            data = rng.randbytes(rng.choice([1, 1, 2, 4, 16, 200]))
        overwrite(path, at, data)
        done.append(f"{len(data)} bytes @{at}")
    return ", ".join(done)


def find(path: Path, needle: bytes, last: bool = False) -> int:
    """Where ``needle`` is in the file (the last occurrence with ``last``)."""
    data = path.read_bytes()
    at = data.rfind(needle) if last else data.find(needle)
    assert at >= 0, f"{needle!r} is not in {path}"
    return at


def pages(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        count: int = conn.execute("PRAGMA page_count").fetchone()[0]
    return count


COMMIT_LOOP = """
import asyncio, sys, time
from streamnb.transport.base import ProducerRecord, TopicSpec
from streamnb.transport.local import LocalTransport

async def main():
    transport = LocalTransport(sys.argv[1])
    await transport.start()
    await transport.create_topic(TopicSpec("events", 4))
    store = transport.store
    await store.call(lambda: store.conn.execute("PRAGMA wal_autocheckpoint = 20"))  # some go to the database,
    for i in range(40):
        if i == 30:  # and the last 10 commits stay in the WAL only
            await store.call(lambda: store.conn.execute("PRAGMA wal_autocheckpoint = 0"))
        await transport.send([ProducerRecord("events", i % 4, None, b"%d" % i, time.time()) for _ in range(100)])
    print("COMMITTED", flush=True)
    await asyncio.Event().wait()  # until killed

asyncio.run(main())
"""


async def killed_mid_commits(folder: Path) -> None:
    """A child makes 40 commits of 100 messages (the last 10 in its WAL only) and is killed with SIGKILL."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", COMMIT_LOOP, f"local://{folder}", stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )
    assert child.stdout is not None
    line = await asyncio.wait_for(child.stdout.readline(), 60)
    assert line.strip() == b"COMMITTED"
    child.send_signal(signal.SIGKILL)
    assert await child.wait() == -signal.SIGKILL
