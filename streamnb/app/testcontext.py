"""Testing one agent alone: Faust's ``agent.test_context()``.

Example (a pytest test; the agent and table are the app module's own)::

    async def test_order():
        async with order.test_context() as agent:
            event = await agent.put(Order(account_id="1", amount=1), key="1")
            assert agent.results[0] == event.value      # what the agent yielded, in order
            assert orders_for_account["1"] == 1         # what it wrote

Inside the block the app runs on a private ``memory://`` broker, whatever
broker it names, with only this agent started: the app's other agents,
timers, crontabs, tasks and services do not run (as in Faust, where the agent under
test runs alone). Tables start empty and are emptied again on leaving (so
the app's real tables never hold test rows: assert inside the block).
:meth:`AgentTest.put` sends a value to the agent's topic and waits until
the agent has processed and committed it, then returns the
:class:`~streamnb.events.Event` the agent saw. Every value the agent yields
goes to its sinks as usual (topics on the private broker, callables called)
and into :attr:`AgentTest.results`, keyed by the order it was yielded in
(0, 1, 2, ...), as Faust's ``agent.results``. An agent that raises makes
``put`` raise the same exception (Faust's crashing supervisor), after
``on_error(agent, exc)`` if one was given.

The app must not be running: test a running app's whole pipeline with
:func:`streamnb.testing.settle` instead.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from ..errors import ConfigurationError
from ..events import Event
from ..processing.agents import Agent
from ..processing.replies import reply_to_name, request_headers
from ..processing.tasks import Task, Timer
from ..tables.table import Table
from ..transport.base import TP, Transport

__all__ = ["AgentTest", "AgentTestContext", "AgentTestHost"]


class AgentTestHost(Protocol):
    """What a test context needs from the App."""

    id: str
    broker: str
    state: str
    agents: dict[str, Agent]
    timers: dict[str, Timer]
    tasks: dict[str, Task]
    tables: dict[str, Table[Any, Any]]

    async def start(self) -> None:
        """Start the app."""
        ...

    async def stop(self) -> None:
        """Stop the app."""
        ...

    def move_to(self, broker: str) -> None:
        """Use ``broker`` from the next start on."""
        ...

    def require_transport(self) -> Transport:
        """The open broker connection."""
        ...


class AgentTest:
    """What ``async with agent.test_context() as agent`` gives: put values in, see what the agent yields.

    Other attributes are the agent's (``name``, ``events_processed``, ``last_error``, ...).
    """

    def __init__(self, context: AgentTestContext) -> None:
        self.agent = context.agent
        """The agent under test."""
        self.results: dict[int, Any] = {}
        """Values the agent yielded, by the order they came in (0, 1, 2, ...), as Faust's ``agent.results``."""
        self._context = context

    def _collect(self, value: Any) -> None:
        """The sink the context adds to the agent."""
        self.results[len(self.results)] = value

    async def put(
        self,
        value: Any = None,
        key: Any = None,
        partition: int | None = None,
        timestamp: float | None = None,
        headers: Any = None,
        key_serializer: Any = None,
        value_serializer: Any = None,
        *,
        reply_to: Any = None,
        correlation_id: Any = None,
        wait: bool = True,
    ) -> Event[Any, Any]:
        """Send ``value`` (and ``key``) to the agent's topic; wait until the agent processed it; return its event.

        With ``wait=False`` it returns once the message is written (the
        event then is what was written). Raises what the agent raised if it
        crashed meanwhile, and ``TimeoutError`` when it did not finish
        within the context's ``timeout``.

        >>> event = await agent.put(Order(account_id="1", amount=1), key="1")  # doctest: +SKIP
        >>> event.key, event.offset  # doctest: +SKIP
        ('1', 0)
        """
        if key_serializer is not None or value_serializer is not None:
            raise ConfigurationError("agent.put(): the agent's topic decides the serializers; give key_type= etc.")
        if reply_to is not None:  # the agent answers on reply_to, as to an ask (streamnb.processing.rpc)
            headers = request_headers(headers, reply_to_name(reply_to), correlation_id or str(uuid.uuid4()))
        elif correlation_id is not None:
            raise ConfigurationError("agent.put(correlation_id=...) needs reply_to=, the topic the answer goes to")
        agent, context = self.agent, self._context
        topic = agent.channel
        transport = context.host.require_transport()
        count = await topic.declare()
        tps = [TP(topic.name, p) for p in range(count)]
        before = await transport.end_offsets(tps)
        crashes = agent.crashes
        await topic.send(key=key, value=value, partition=partition, timestamp=timestamp, headers=headers)
        after = await transport.end_offsets(tps)
        tp = next(tp for tp in tps if after[tp] > before[tp])
        offset = before[tp]
        if wait:
            await context.processed(tp, offset, crashes)
        (message,) = await transport.read(tp, offset, offset + 1)
        return topic.decode(message)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.agent, name)

    def __repr__(self) -> str:
        return f"<AgentTest of {self.agent!r} results={len(self.results)}>"


class AgentTestContext:
    """``async with agent.test_context() as agent:`` (see the module docstring).

    ``on_error(agent, exc)``: called (and awaited if it returns an
    awaitable) when the agent raises, before ``put`` raises the same;
    ``timeout``: seconds ``put`` waits for the agent.
    """

    def __init__(
        self,
        host: AgentTestHost,
        agent: Agent,
        *,
        channel: Any = None,
        supervisor_strategy: Any = None,
        on_error: Callable[[Any, BaseException], Any] | None = None,
        timeout: float = 10.0,
    ) -> None:
        if channel is not None:
            raise ConfigurationError(
                f"{agent.name}.test_context(channel=...) is not supported: the agent reads its own topic, "
                "on a private memory:// broker"
            )
        if supervisor_strategy is not None:
            raise ConfigurationError(
                f"{agent.name}.test_context(supervisor_strategy=...) is not supported: a crash makes put() raise"
            )
        self.host = host
        self.agent = agent
        self.on_error = on_error
        self.timeout = timeout
        self.test: AgentTest | None = None
        self._broker: str | None = None

    async def __aenter__(self) -> AgentTest:
        host, agent = self.host, self.agent
        if host.state in ("starting", "running", "stopping"):
            raise ConfigurationError(
                f"{agent.name}.test_context() runs the agent alone on a private broker, but app {host.id!r} is "
                f"{host.state}: `await app.stop()` first, or test the running app with streamnb.testing.settle()"
            )
        if host.agents.get(agent.name) is not agent:
            raise ConfigurationError(
                f"agent {agent.name!r} is not the one app {host.id!r} defines under that name (it was redefined): "
                f"test app.agents[{agent.name!r}]"
            )
        broker = host.broker
        try:
            host.move_to(f"memory://test-{host.id}-{uuid.uuid4().hex[:12]}")
        except ConfigurationError as exc:
            raise ConfigurationError(
                f"{agent.name}.test_context() runs the agent on a private memory:// broker, but app {host.id!r} "
                f"cannot move there: {exc}"
            ) from None
        self._broker = broker
        self._clear_tables()
        try:
            await self._start_alone()
        except BaseException:
            await self._leave()
            raise
        self.test = AgentTest(self)
        agent.sinks.append(self.test._collect)  # noqa: SLF001 - the context and its AgentTest are one
        return self.test

    async def __aexit__(self, *exc: object) -> None:
        if self.test is not None:
            collect = self.test._collect  # noqa: SLF001
            if collect in self.agent.sinks:
                self.agent.sinks.remove(collect)
        await self._leave()

    async def _start_alone(self) -> None:
        """Start the app with only the agent under test: the others, timers and tasks are out of sight meanwhile."""
        host, agent = self.host, self.agent
        registries: list[dict[str, Any]] = [host.agents, host.timers, host.tasks]
        saved = [dict(registry) for registry in registries]
        for registry in registries:
            registry.clear()
        host.agents[agent.name] = agent
        services = getattr(host, "services", [])  # (an App's services do not run either)
        kept = list(services)
        services.clear()
        try:
            await host.start()
        finally:
            services[:0] = kept
            for registry, items in zip(registries, saved):
                newer = {name: item for name, item in registry.items() if items.get(name) is not item}
                registry.clear()
                registry.update(items)
                registry.update(newer)  # (anything defined while starting)

    async def _leave(self) -> None:
        host = self.host
        try:
            await host.stop()
        finally:
            self._clear_tables()
            if self._broker is not None:
                host.move_to(self._broker)
                self._broker = None

    def _clear_tables(self) -> None:
        for table in list(self.host.tables.values()):
            table.clear_state()

    async def processed(self, tp: TP, offset: int, crashes: int) -> None:
        """Wait until the agent committed ``offset`` of ``tp`` and everything it led to (a ``group_by``'s stage)."""
        agent = self.agent
        deadline = time.monotonic() + self.timeout
        while True:
            if agent.crashes > crashes and agent.last_error is not None:
                error = agent.last_error
                if self.on_error is not None:
                    out = self.on_error(agent, error)
                    if inspect.isawaitable(out):
                        await out
                raise error
            if await self._caught_up(tp, offset):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"agent {agent.name!r} did not process {tp.topic}[{tp.partition}]@{offset} within "
                    f"{self.timeout} s (state {agent.state}, processed {agent.events_processed})"
                )
            await asyncio.sleep(0.005)

    async def _caught_up(self, tp: TP, offset: int) -> bool:
        agent = self.agent
        if agent.uncommitted:
            return False
        transport = self.host.require_transport()
        groups = agent.consumer_groups()
        done = [(await transport.committed(group, [tp])).get(tp, 0) > offset for group in groups]
        if not any(done):
            return False
        for group in groups:
            for name in agent.read_topics():
                count = await transport.partition_count(name) or 0
                tps = [TP(name, p) for p in range(count)]
                ends = await transport.end_offsets(tps)
                committed = await transport.committed(group, tps)
                begins = await transport.beginning_offsets(tps)
                if any(committed.get(t, begins[t]) < ends[t] for t in tps):
                    return False
        return True
