"""A large commit lets the event loop run: a ticker keeps ticking while 200,000 keys are committed.

Timing-free (a shared machine stalls by itself): the test counts the
ticker's wake-ups between the agent's last write and the commit landing,
and checks that collection is back on afterwards. ``benchmarks/loop_stall.py``
measures the stalls themselves.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

import streamnb as faust
from streamnb.testing import settle
from streamnb.transport.base import TP, ProducerRecord, TopicSpec
from streamnb.transport.memory import MemoryTransport

KEYS = 200_000


@pytest.fixture(params=["memory", "local"])
def url(request: pytest.FixtureRequest, tmp_path: Any, app_id: str) -> str:
    return f"memory://{app_id}" if request.param == "memory" else f"local://{tmp_path / 'broker'}"


async def test_the_loop_runs_while_a_large_commit_is_written_and_restored(url: str, app_id: str) -> None:
    ticks: list[int] = [0]
    counting = asyncio.Event()

    async def tick() -> None:
        while True:
            await asyncio.sleep(0)
            if counting.is_set():
                ticks[0] += 1

    app = faust.App(app_id, broker=url, topic_partitions=1)
    go = app.topic("go", partitions=1, value_type=int)
    table = app.Table("wide", default=int, partitions=1)

    @app.agent(go)
    async def write(stream: Any) -> None:
        async for n in stream:
            for i in range(n):
                table[i] = i
                if i % 1_000 == 999:
                    await asyncio.sleep(0)
            counting.set()  # what follows, until the commit landed, is streamnb's

    ticker = asyncio.get_running_loop().create_task(tick())
    try:
        async with app:
            await go.send(value=KEYS)
            await settle(app, timeout=120)
            counted = ticks[0]
            write.raise_if_crashed()
        assert counted >= 10, f"the loop ran {counted} times during the commit"
        assert gc.isenabled()  # the commit's pause of automatic collection ended
        # The restore lets the loop run too.
        again = faust.App(app_id, broker=url, topic_partitions=1)
        restored = again.Table("wide", default=int, partitions=1)
        ticks[0] = 0
        async with again:
            assert len(restored.data) == KEYS
            assert ticks[0] >= 5, f"the loop ran {ticks[0]} times during the restore"
    finally:
        ticker.cancel()


async def test_memory_compaction_keeps_offsets_growing() -> None:
    """A compacted memory:// partition whose kept messages have gaps: new messages get new offsets."""
    transport = MemoryTransport("memory://compaction-offsets")
    await transport.create_topic(TopicSpec("c", 1, compacted=True))
    keys = [b"b" if i == 3 else b"a" for i in range(12_000)]
    await transport.send([ProducerRecord("c", 0, k, b"v", 0.0) for k in keys])  # compacts: keeps 3 and 11999
    tp = TP("c", 0)
    assert (await transport.end_offsets([tp]))[tp] == 12_000
    await transport.send([ProducerRecord("c", 0, b"z", b"v", 0.0)])
    assert [m.offset for m in await transport.read(tp, 0, 20_000, 20_000)] == [3, 11_999, 12_000]
