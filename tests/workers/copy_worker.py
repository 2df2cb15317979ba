"""A worker for the kill -9 tests of forks and recordings: prints a line per step, so the test can kill it there.

Usage::

    python copy_worker.py fork SOURCE_FOLDER DEST_URL AT
    python copy_worker.py record BOOTSTRAP TOPIC DEST_URL

``fork`` replays SOURCE_FOLDER (the pipeline below, under a virtual clock),
prints ``forking``, then forks at AT into DEST_URL; ``record`` records TOPIC
from Kafka into DEST_URL. Both print ``progress N`` at every step and
``done`` at the end.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import streamnb as faust
from streamnb.playback.recording import record


class Lines:
    """A progress that prints every step (stdout, flushed)."""

    def update(self, done: int) -> None:
        print(f"progress {done}", flush=True)

    def close(self, text: str) -> None:
        print(f"closed {text}", flush=True)


def define(app: faust.App) -> None:
    """Views counted per page, in a plain and a hopping table (through group_by)."""
    views = app.topic("views", partitions=4)
    counts = app.Table("counts", default=int)
    load = app.Table("load", default=int).hopping(10, 5, expires=3600)

    @app.agent(views)
    async def count(stream: Any) -> None:
        async for view in stream.group_by(lambda v: v["page"], name="page"):
            counts[view["page"]] += 1
            load[view["page"]] += 1


async def fork(source: str, dest: str, at: float) -> None:
    app = faust.App("forked", broker=f"local://{source}", clock="virtual", topic_partitions=4)
    define(app)
    await app.start()
    try:
        await app.clock.idle(timeout=120)
        app.agents["count"].raise_if_crashed()
        print("forking", flush=True)
        await app.fork(at=at, broker=dest, progress=Lines())
    finally:
        await app.stop()


async def main() -> None:
    mode = sys.argv[1]
    if mode == "fork":
        await fork(sys.argv[2], sys.argv[3], float(sys.argv[4]))
    else:
        await record(f"kafka://{sys.argv[2]}", sys.argv[3], to=sys.argv[4], progress=Lines())
    print("done", flush=True)


asyncio.run(main())
