"""Helpers for testing your own agents.

Example::

    import streamnb
    from streamnb.testing import settle, test_app

    async def test_counts():
        app = test_app()
        views = app.topic("views")
        counts = app.Table("counts", default=int)

        @app.agent(views)
        async def count(stream):
            async for page in stream:
                counts[page] += 1

        async with app:
            for page in ["/", "/", "/about"]:
                await views.send(value=page)
            await settle(app)
            assert counts["/"] == 2

One agent alone, as in Faust's testing guide (``agent.test_context()``, see
:mod:`streamnb.app.testcontext`): the app runs on a private ``memory://``
broker, whatever broker it names, with only that agent started; ``put``
returns once the agent processed the value, ``results`` holds what it
yielded by order (0, 1, 2, ...), its sinks are called as usual::

    from example import order, orders_for_account, Order

    async def test_process_order():
        async with order.test_context() as agent:
            event = await agent.put(Order(account_id="1", amount=1), key="1")
            assert orders_for_account["1"] == 1
            assert agent.results[0] == event.value

Use ``test_app`` and ``settle`` for a whole pipeline (every agent, timer and
crontab running), ``test_context`` for one agent's logic.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from .app.base import App
from .app.testcontext import AgentTest
from .errors import StreamnbError
from .transport.base import TP

__all__ = ["AgentTest", "lag", "settle", "test_app", "wait_until"]


def test_app(id: str | None = None, **options: Any) -> App:
    """An App on a fresh, private ``memory://`` broker.

    >>> app = test_app("demo")
    >>> app.broker.startswith("memory://")
    True
    """
    options.setdefault("broker", f"memory://test-{uuid.uuid4().hex[:12]}")
    return App(id or f"test-{uuid.uuid4().hex[:8]}", **options)


test_app.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0, interval: float = 0.01, what: str = ""
) -> None:
    """Wait until ``predicate()`` is true; raise ``TimeoutError`` after ``timeout`` s.

    >>> await wait_until(lambda: counts["/"] == 2)  # doctest: +SKIP
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout} s{': ' + what if what else ''}")
        await asyncio.sleep(interval)


_READ_GAP = 1000
"""Gaps up to this many offsets are read to count their messages (see :func:`lag`)."""


async def lag(app: App) -> dict[str, int]:
    """Messages each agent has not yet committed, summed over its partitions.

    A short gap between the committed and the end offset is read and only
    its messages count: on Kafka, transaction markers (and aborted records)
    take offsets too, and a consumer commits past them only when it next
    processes something of that partition.

    >>> await lag(app)  # doctest: +SKIP
    {'count': 0}
    """
    transport = app.transport
    if transport is None:
        raise StreamnbError(f"app {app.id!r} is not connected; `await app.start()` first")
    out: dict[str, int] = {}
    for agent in app.agents.values():
        total = 0
        topics = agent.read_topics()
        for group in agent.consumer_groups():
            for name in topics:
                count = await transport.partition_count(name)
                tps = [TP(name, p) for p in range(count or 0)]
                ends = await transport.end_offsets(tps)
                committed = await transport.committed(group, tps)
                begins = await transport.beginning_offsets(tps)
                for tp in tps:
                    start = committed.get(tp, begins[tp])
                    gap = ends[tp] - start
                    if 0 < gap <= _READ_GAP and transport.distributed:
                        gap = len(await transport.read(tp, start, ends[tp]))
                    total += gap
        out[agent.name] = total
    return out


async def settle(app: App, timeout: float = 30.0) -> None:
    """Wait until every agent has processed and committed everything sent so far
    (and applied the commits: ``on_window_close`` of the windows they closed has run).

    Agents that keep crashing make it time out, with their last error.

    >>> await settle(app)  # doctest: +SKIP
    """

    async def quiet() -> bool:
        if any(a.uncommitted for a in app.agents.values()):
            return False
        return all(v == 0 for v in (await lag(app)).values())

    try:
        await wait_until(quiet, timeout, 0.02)
        await asyncio.sleep(0)
        await wait_until(quiet, timeout, 0.02)
    except TimeoutError as exc:
        errors = {a.name: a.last_error for a in app.agents.values() if a.last_error is not None}
        raise TimeoutError(f"agents did not settle within {timeout} s; lag={await lag(app)}; errors={errors}") from exc
