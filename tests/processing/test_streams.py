"""Stream-level Faust names: ``stream.current_event`` (an attribute, as in Faust) and ``faust.current_event()``."""

from __future__ import annotations

from typing import Any

import streamnb as faust
from streamnb.testing import wait_until


async def test_current_event_inside_an_agent(app_id: str) -> None:
    app = faust.App(app_id, broker=f"memory://{app_id}", topic_partitions=2)
    topic = app.topic("t", key_type=str, value_type=int)
    seen: list[Any] = []

    async def helper() -> Any:  # code an agent calls: no stream at hand
        return faust.current_event()

    @app.agent(topic)
    async def agent(stream):  # type: ignore[no-untyped-def]
        async for value in stream:
            event = await helper()
            seen.append((event.key, event.value, event.partition, stream.current_event.offset, value))

    assert faust.current_event() is None
    async with app:
        await topic.send(key="k", value=5, partition=1)
        await topic.send(key="k", value=6, partition=1)
        await wait_until(lambda: len(seen) == 2, 10)
    assert seen == [("k", 5, 1, 0, 5), ("k", 6, 1, 1, 6)]
