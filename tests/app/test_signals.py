"""App signals: receivers run when partitions are assigned; a failing receiver does not stop the app."""

from __future__ import annotations

from typing import Any

import streamnb as faust
from streamnb.app.signals import Signal
from streamnb.testing import wait_until


async def test_rebalance_signals_reach_receivers(app_id: str, broker: str) -> None:
    app = faust.App(app_id, broker=broker, topic_partitions=2)
    topic = app.topic(f"{app_id}-t")
    calls: list[tuple[str, Any]] = []

    @app.agent(topic)
    async def agent(stream):  # type: ignore[no-untyped-def]
        async for _ in stream:
            pass

    @app.on_partitions_assigned.connect
    async def assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
        calls.append(("assigned", {tp.partition for tp in assigned}))

    @app.on_rebalance_complete.connect
    def complete(sender: Any, **kwargs: Any) -> None:
        calls.append(("complete", sender is app and kwargs["signal"] is app.on_rebalance_complete))

    @app.on_rebalance_complete.connect()
    def broken(sender: Any, **kwargs: Any) -> None:
        raise RuntimeError("a receiver that fails")

    async with app:
        await wait_until(lambda: ("complete", True) in calls, 30)
        assert not app.rebalancing
    assert ("assigned", {0, 1}) in calls


async def test_send_and_disconnect() -> None:
    signal = Signal("on_thing")
    got: list[Any] = []

    def receiver(sender: Any, **kwargs: Any) -> None:
        got.append((sender, kwargs))

    signal.connect(receiver)
    signal.connect(receiver)  # once only
    await signal.send("me", n=1)
    signal.disconnect(receiver)
    await signal.send("me", n=2)
    assert got == [("me", {"signal": signal, "n": 1})]
