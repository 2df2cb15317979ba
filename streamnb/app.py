"""The App: one stream-processing application and everything it owns.

Example::

    import streamnb as faust

    app = faust.App("page-views", broker="memory://")
    page_views = app.topic("page_views", value_type=PageView)
    counts = app.Table("counts", default=int)

    @app.agent(page_views)
    async def count(views):
        async for view in views.group_by(PageView.page):
            counts[view.page] += 1

    await app.start()      # in a notebook: runs on the kernel's loop
    app.run()              # in a script: blocks until Ctrl-C

Defining a topic, agent or table again under the same name replaces it,
before or after start; a notebook cell can be run as often as you like.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ClassVar, TypeVar

from . import _gc, display, naming
from .agents import Agent, AgentFun
from .clock import VirtualClock, WallClock, check_speed
from .errors import AppNotRunningError, ConfigurationError
from .replay import KAFKA_REPLAY, move, prepare
from .replay import fork as fork_into
from .streams import Stream
from .tables.ownership import PartitionOwnership
from .tables.table import Table
from .tasks import Task, Timer
from .topics import Topic
from .transaction import current_transaction
from .transport import check_broker, open_transport
from .transport.base import TP, Transport

_Table = Table  # inside App, `Table` names the App.Table method

__all__ = ["App"]

logger = logging.getLogger("streamnb")

F = TypeVar("F", bound=Callable[..., Any])

GUARANTEES = ("at_least_once", "exactly_once")
CLOCKS = ("wall", "virtual")
_UNSET: Any = object()


class App:
    """A stream-processing application: topics, agents, tables, timers and tasks.

    Args:
        id: names the consumer groups, changelog topics and internal topics.
        broker: ``memory://`` (volatile, in-process), ``local://PATH``
            (durable embedded broker in a folder; the default is
            ``local://.streamnb``) or ``kafka://HOST:PORT``.
        topic_partitions: partitions of topics streamnb creates.
        key_serializer / value_serializer: default codecs (``raw``, ``json``
            or a registered name).
        tune_gc: while the app runs, raise the garbage collector's
            first-generation threshold (see :mod:`streamnb._gc`); about a
            quarter less CPU per event at high rates. ``False`` leaves it alone.
        processing_guarantee: ``at_least_once`` (default) or ``exactly_once``.
            The embedded brokers always commit atomically (exactly once);
            on Kafka only ``at_least_once`` is available.
        clock: ``"wall"`` (default) or ``"virtual"``: replay what a
            ``local://`` or ``memory://`` folder holds under a clock event
            time drives, from the start every time (:mod:`streamnb.clock`,
            :mod:`streamnb.replay`); ``app.clock`` controls it.
        speed: with ``clock="virtual"``: ``None`` (default) as fast as
            possible, ``0`` paused, else recorded seconds per second.
        history: every table keeps every change in its changelog, so
            ``table.at()`` and ``table.history()`` can answer; default: on
            under a virtual clock, off otherwise.
        security_protocol, sasl_mechanism, sasl_plain_username,
        sasl_plain_password, ssl_context: passed to aiokafka.
        **kafka_options: on ``kafka://``, ``request_timeout`` (seconds) and
            ``AIOKafkaConsumer`` arguments for the agents' consumers, e.g.
            ``session_timeout_ms=6000, heartbeat_interval_ms=500`` so the
            group notices a dead worker sooner.

    >>> app = App("demo", broker="memory://")
    >>> app.state
    'init'
    """

    _instances: ClassVar[dict[tuple[str, str], weakref.ref[App]]] = {}

    def __init__(
        self,
        id: str,
        *,
        broker: str = "local://.streamnb",
        topic_partitions: int = 8,
        key_serializer: str = "raw",
        value_serializer: str = "json",
        processing_guarantee: str = "at_least_once",
        commit_interval: float = 1.0,
        stream_batch_size: int = 2000,
        tune_gc: bool = True,
        security_protocol: str | None = None,
        sasl_mechanism: str | None = None,
        sasl_plain_username: str | None = None,
        sasl_plain_password: str | None = None,
        ssl_context: Any = None,
        clock: str = "wall",
        speed: Any = _UNSET,
        history: bool | None = None,
        **kafka_options: Any,
    ) -> None:
        if not id or not isinstance(id, str):
            raise ConfigurationError(f"App needs a non-empty string id, got {id!r}")
        if processing_guarantee not in GUARANTEES:
            raise ConfigurationError(
                f"processing_guarantee must be one of {GUARANTEES}, got {processing_guarantee!r}"
            )
        if not isinstance(topic_partitions, int) or topic_partitions < 1:
            raise ConfigurationError(f"topic_partitions must be a positive int, got {topic_partitions!r}")
        self.id = id
        self.broker = broker
        self.topic_partitions = topic_partitions
        self.key_serializer = key_serializer
        self.value_serializer = value_serializer
        self.processing_guarantee = processing_guarantee
        self.commit_interval = commit_interval
        self.commit_records = 100_000
        self.stream_batch_size = stream_batch_size
        self.poll_interval = 1.0
        self.tune_gc = tune_gc
        self._kafka_options = {
            k: v
            for k, v in dict(
                security_protocol=security_protocol,
                sasl_mechanism=sasl_mechanism,
                sasl_plain_username=sasl_plain_username,
                sasl_plain_password=sasl_plain_password,
                ssl_context=ssl_context,
                **kafka_options,
            ).items()
            if v is not None
        }
        # Fail early on a bad broker URL or an option that does not apply to it, without connecting.
        transport_cls = check_broker(broker, self._kafka_options)
        if processing_guarantee not in transport_cls.guarantees:
            raise ConfigurationError(
                f"processing_guarantee={processing_guarantee!r} is not available on {transport_cls.scheme}:// "
                f"brokers, they give {' and '.join(sorted(transport_cls.guarantees))}: use that "
                "('at_least_once' is the default), or local:// for exactly_once"
            )
        if clock not in CLOCKS:
            raise ConfigurationError(f"clock must be one of {CLOCKS}, got {clock!r}")
        if clock == "wall" and speed is not _UNSET:
            raise ConfigurationError("speed= applies to a virtual clock only: add clock='virtual' (a replay)")
        if clock == "virtual" and transport_cls.distributed:
            raise ConfigurationError(KAFKA_REPLAY)
        self.clock: WallClock | VirtualClock = (
            VirtualClock(None if speed is _UNSET else check_speed(speed)) if clock == "virtual" else WallClock()
        )
        """The app's clock; under ``clock="virtual"``, ``pause()``, ``resume()``, ``step()``, ``seek()``."""
        if history is not None and not isinstance(history, bool):
            raise ConfigurationError(f"history must be True or False, got {history!r}")
        self.history = self.clock.virtual if history is None else history
        """True when tables keep every change (``table.at()``, ``table.history()``)."""
        self.state = "init"
        """``init``, ``starting``, ``running``, ``stopping`` or ``stopped``."""
        self.topics: dict[str, Topic[Any, Any]] = {}
        self.agents: dict[str, Agent] = {}
        self.tables: dict[str, Table[Any, Any]] = {}
        self.timers: dict[str, Timer] = {}
        self.tasks: dict[str, Task] = {}
        self.transport: Transport | None = None
        self._connecting: asyncio.Future[Transport] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._lifecycle = asyncio.Lock()
        self._partitions = PartitionOwnership(
            lambda: list(self.tables.values()), lambda: self.transport, lambda: self.state == "running"
        )
        self._held: dict[object, set[TP]] = {}  # topic partitions held, per consumer (leader election)
        self._predecessor: asyncio.Task[Any] | None = None
        # Re-running the cell that makes the App replaces it: the old app stops (committing) first.
        previous = App.current(id, broker)
        if previous is not None and previous.state in ("starting", "running"):
            self._predecessor = previous.spawn(previous.stop(), f"stop the previous app {id!r}")
        App._instances[(id, broker)] = weakref.ref(self)

    @classmethod
    def instances(cls) -> list[App]:
        """Every App of this process still in use (the newest per id and broker).

        >>> app = App("demo-instances", broker="memory://")
        >>> app in App.instances()
        True
        """
        return [app for ref in list(cls._instances.values()) if (app := ref()) is not None]

    @classmethod
    def current(cls, id: str, broker: str) -> App | None:
        """The newest App made with this id and broker, if it is still in use."""
        ref = cls._instances.get((id, broker))
        return ref() if ref is not None else None

    @property
    def is_current(self) -> bool:
        """False once a newer App with the same id and broker was made (a re-run notebook cell).

        >>> App("demo-current", broker="memory://").is_current
        True
        """
        newest = App.current(self.id, self.broker)
        return newest is None or newest is self

    # -- definitions --------------------------------------------------------------------------

    def topic(
        self,
        name: str,
        *,
        key_type: Any = None,
        value_type: Any = None,
        partitions: int | None = None,
        key_serializer: str | None = None,
        value_serializer: str | None = None,
        compacting: bool = False,
        retention: float | None = None,
    ) -> Topic[Any, Any]:
        """Define (or redefine) a topic.

        >>> app = App("demo", broker="memory://")
        >>> app.topic("page_views", partitions=4).partitions
        4
        """
        topic: Topic[Any, Any] = Topic(
            self, name, key_type=key_type, value_type=value_type, partitions=partitions,
            key_serializer=key_serializer, value_serializer=value_serializer,
            compacting=compacting, retention=retention,
        )
        self.topics[name] = topic
        return topic

    def internal_topic(self, name: str, **options: Any) -> Topic[Any, Any]:
        """Define (or redefine) a topic streamnb itself needs: a changelog, repartition or dead-letter topic.

        >>> App("demo", broker="memory://").internal_topic("demo-x-changelog", compacting=True).internal
        True
        """
        old = self.topics.get(name)
        topic: Topic[Any, Any] = Topic(self, name, internal=True, **options)
        if old is not None:
            topic.adopt(old)
        self.topics[name] = topic
        return topic

    def resolve_topic(self, channel: Topic[Any, Any] | Agent | str) -> Topic[Any, Any]:
        """The topic for ``channel``: a topic, a topic name (defined on first use), or an agent (its topic).

        >>> app = App("demo", broker="memory://")
        >>> app.resolve_topic("orders") is app.topics["orders"]
        True
        """
        if isinstance(channel, Topic):
            return channel
        if isinstance(channel, str):
            return self.topics.get(channel) or self.topic(channel)
        if isinstance(channel, Agent):
            return channel.channel
        raise ConfigurationError(f"expected a topic (app.topic(...)) or a topic name, got {channel!r}")

    def dead_letter_topic(self, owner: str) -> Topic[Any, Any]:
        """The dead-letter topic of agent ``owner``: ``<app id>-<owner>-dlq`` (raw bytes and reason headers).

        >>> App("demo", broker="memory://").dead_letter_topic("count").name
        'demo-count-dlq'
        """
        name = naming.dead_letter_topic(self.id, owner)
        return self.topics.get(name) or self.internal_topic(name, key_serializer="raw", value_serializer="raw")

    def stream(self, channel: Topic[Any, Any] | str) -> Stream[Any]:
        """A stream over ``channel`` outside any agent (Faust's ``app.stream``); iterate it in a task.

        >>> app = App("demo", broker="memory://")
        >>> app.stream("orders").channel.name
        'orders'
        """
        return Stream(self, self.resolve_topic(channel))

    def agent(
        self,
        channel: Topic[Any, Any] | str | None = None,
        *,
        name: str | None = None,
        concurrency: int = 1,
        sink: list[Any] | None = None,
    ) -> Callable[[AgentFun], Agent]:
        """Decorate an ``async def f(stream)`` to run it as an agent.

        With no channel the agent gets its own topic ``<app id>-<name>``.
        Values the function yields are sent to every sink (topics, agents or
        callables). Defining an agent with a name already in use replaces
        the old one (a running one is stopped and the new one started).

        >>> app = App("demo", broker="memory://")
        >>> @app.agent()
        ... async def greet(stream):
        ...     async for name in stream:
        ...         print("hello", name)
        >>> greet.channel.name
        'demo-greet'
        """

        def decorator(fun: AgentFun) -> Agent:
            agent_name = name or fun.__name__
            topic = (
                self.topic(naming.agent_topic(self.id, agent_name)) if channel is None else self.resolve_topic(channel)
            )
            agent = Agent(self, fun, topic, name=agent_name, concurrency=concurrency, sink=sink)
            agent.__doc__ = fun.__doc__
            old = self.agents.get(agent_name)
            self.agents[agent_name] = agent
            if old is not None or self.state == "running":
                self.spawn(self._replace_agent(old, agent), f"start agent {agent_name}")
            return agent

        return decorator

    async def _replace_agent(self, old: Agent | None, new: Agent) -> None:
        async with self._lifecycle:
            if old is not None:
                await old.stop()
            if self.state == "running" and self.agents.get(new.name) is new:
                await new.start()

    def Table(  # noqa: N802 - Faust's name
        self,
        name: str,
        *,
        default: Callable[[], Any] | None = None,
        partitions: int | None = None,
        key_type: Any = None,
        value_type: Any = None,
        key_serializer: str | None = None,
        value_serializer: str | None = None,
        on_window_close: Callable[..., Any] | None = None,
        on_late: Callable[..., Any] | None = None,
        late_topic: Topic[Any, Any] | str | bool | None = None,
        emit_final: Topic[Any, Any] | str | None = None,
        help: str = "",
    ) -> Table[Any, Any]:
        """Define (or redefine, keeping its contents) a table.

        Windowed tables (``.tumbling()``, ``.hopping()``) also take
        ``on_window_close(key, value)`` (once per window, when it closes),
        ``on_late(event, windows)``, ``late_topic=`` (a topic, or True for
        ``<app id>-<table>-late``) and ``emit_final=`` (a topic that gets one
        ``{key, window_start, window_end, value}`` record per closed window).

        >>> app = App("demo", broker="memory://")
        >>> counts = app.Table("counts", default=int)
        >>> counts["anything"]
        0
        """
        table: Table[Any, Any] = Table(
            self, name, default=default, partitions=partitions, key_type=key_type, value_type=value_type,
            key_serializer=key_serializer, value_serializer=value_serializer,
            on_window_close=on_window_close, on_late=on_late, late_topic=late_topic, emit_final=emit_final,
            help=help,
        )
        if self.history:
            table.keep_history()
        old = self.tables.get(name)
        if old is not None:
            table.take_over(old)
        self.tables[name] = table
        if self.state == "running" and old is None:
            self.spawn(self._recover_new_table(table), f"recover table {name}")
        return table

    async def _recover_new_table(self, table: _Table[Any, Any]) -> None:
        transport = await self.connect()
        if not transport.distributed:
            await table.recover()
        else:
            await table.recover(self._partitions.owned())

    def timer(self, interval: float, *, name: str | None = None, on_leader: bool = False) -> Callable[[F], F]:
        """Run ``async def f()`` (or ``f(app)``) every ``interval`` seconds while the app runs.

        >>> app = App("demo", broker="memory://")
        >>> @app.timer(5.0)
        ... async def heartbeat():
        ...     print("alive")
        """

        def decorator(fun: F) -> F:
            timer = Timer(self, fun, interval, name=name or fun.__name__, on_leader=on_leader)
            self._register_background(self.timers, timer)
            return fun

        return decorator

    def task(self, fun: F | None = None, *, name: str | None = None) -> Any:
        """Run ``async def f()`` (or ``f(app)``) once when the app starts.

        >>> app = App("demo", broker="memory://")
        >>> @app.task
        ... async def hello():
        ...     print("started")
        """

        def decorator(f: F) -> F:
            task = Task(self, f, name=name or f.__name__)
            self._register_background(self.tasks, task)
            return f

        return decorator(fun) if fun is not None else decorator

    def _register_background(self, registry: dict[str, Any], item: Timer | Task) -> None:
        old = registry.get(item.name)
        registry[item.name] = item
        if old is not None or self.state == "running":

            async def swap() -> None:
                if old is not None:
                    await old.stop()
                if self.state == "running" and registry.get(item.name) is item:
                    item.start()

            self.spawn(swap(), f"start {item.name}")

    # -- lifecycle ----------------------------------------------------------------------------

    async def connect(self) -> Transport:
        """Open the broker connection (once), without starting agents; return it.

        >>> transport = await app.connect()  # doctest: +SKIP
        """
        if self.transport is not None:
            return self.transport
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
        try:
            return await asyncio.shield(self._connecting)
        except BaseException:
            if self._connecting.done():
                self._connecting = None
            raise

    async def _open(self) -> Transport:
        transport = open_transport(self.broker, client_id=self.id, **self._kafka_options)
        await transport.start()
        self.transport = transport
        return transport

    def require_transport(self) -> Transport:
        """The open broker connection; :class:`AppNotRunningError` before ``await app.start()``.

        >>> App("demo", broker="memory://").require_transport()
        Traceback (most recent call last):
        ...
        streamnb.errors.AppNotRunningError: app 'demo' is not connected; `await app.start()` first
        """
        if self.transport is None:
            raise AppNotRunningError(f"app {self.id!r} is not connected; `await app.start()` first")
        return self.transport

    # -- partition ownership (called by the agents' consumers) --------------------------------

    async def partitions_assigned(self, owner: object, tps: set[TP]) -> None:
        """A consumer of this app got ``tps``: recover their table partitions (Kafka)."""
        self._held.setdefault(owner, set()).update(tps)
        await self._partitions.assigned(owner, tps)

    async def partitions_revoked(self, owner: object, tps: set[TP], *, final: bool = False) -> None:
        """A consumer of this app loses ``tps`` (``final``: it closes)."""
        held = self._held.get(owner)
        if held is not None:
            held.difference_update(tps)
            if not held:
                del self._held[owner]
        await self._partitions.revoked(owner, tps, final=final)

    def is_leader(self) -> bool:
        """True on the worker that runs ``on_leader`` timers.

        On the embedded brokers every app is the leader; on Kafka it is the
        worker holding partition 0 of the first agent's topic.
        """
        transport = self.transport
        if transport is None or not transport.distributed:
            return True
        first = next(iter(self.agents.values()), None)
        if first is None:
            return False
        wanted = TP(first.channel.name, 0)
        return any(wanted in tps for tps in self._held.values())

    async def start(self) -> None:
        """Connect, create topics, recover tables and start agents, timers and tasks.

        Runs on the current loop (a Jupyter kernel's) and returns once
        everything is running; agents keep running as tasks. Calling it
        again while running does nothing.

        >>> await app.start()  # doctest: +SKIP
        """
        if self._predecessor is not None:
            await asyncio.wait([self._predecessor])
            self._predecessor = None
        async with self._lifecycle:
            if self.state in ("running", "starting"):
                return
            self.state = "starting"
            try:
                transport = await self.connect()
                self._check_leader_timers(transport)
                if self.clock.virtual:
                    await prepare(self)  # a replay starts from scratch (or from its fork)
                for topic in list(self.topics.values()):
                    if not topic.internal or naming.is_changelog(topic.name):
                        await topic.declare()
                for table in list(self.tables.values()):
                    table.check_partitions()
                if not transport.distributed:
                    for table in list(self.tables.values()):
                        await table.recover()
                for agent in list(self.agents.values()):
                    await agent.start()
                for item in [*self.timers.values(), *self.tasks.values()]:
                    item.start()
                if isinstance(self.clock, VirtualClock):
                    self.clock.start()
                if self.tune_gc:
                    _gc.acquire()
            except BaseException:
                self.state = "init"
                raise
            self.state = "running"
        logger.info("app %r running on %s", self.id, self.broker)

    async def stop(self) -> None:
        """Stop agents (committing what they processed), timers and tasks; close the broker.

        >>> await app.stop()  # doctest: +SKIP
        """
        async with self._lifecycle:
            if self.state in ("stopped", "init") and self.transport is None:
                self.state = "stopped"
                return
            if self.state == "running" and self.tune_gc:
                _gc.release()
            self.state = "stopping"
            if isinstance(self.clock, VirtualClock):
                await self.clock.stop()
            for item in [*self.timers.values(), *self.tasks.values()]:
                await item.stop()
            await asyncio.gather(*(agent.stop() for agent in self.agents.values()))
            others = [t for t in self._background if t is not asyncio.current_task()]
            for task in others:
                task.cancel()
            if others:
                await asyncio.wait(others, timeout=5)
            if self.transport is not None:
                await self.transport.stop()
            self.transport = None
            self._connecting = None
            self._partitions.clear()
            self._held.clear()
            for table in self.tables.values():
                table.reset_recovery()
            self.state = "stopped"

    def now(self) -> float:
        """The time on the app's clock (epoch seconds).

        The wall clock's, or under a virtual clock the replay's: inside an
        agent, the timestamp of the event being processed; elsewhere, the
        clock's time.

        >>> App("demo-now", broker="memory://", clock="virtual").now()
        -inf
        """
        clock = self.clock
        if not clock.virtual:
            return clock.now()
        txn = current_transaction()
        if txn is not None and txn.message is not None:
            return max(txn.message.timestamp, clock.floor)  # type: ignore[union-attr]
        return clock.now()

    async def fork(self, at: Any, broker: str) -> App:
        """Go on from time ``at`` in a new folder: tables as they were then, agents from there.

        Writes ``broker`` (a new ``local://`` or ``memory://`` folder) with
        the inputs, each table's state at ``at`` and each agent's position,
        then moves this app there and starts it (a virtual clock pauses at
        ``at``: redefine an agent, then ``app.clock.resume()``). The old
        folder is left as it was. Needs the tables' history (``history=True``,
        the default under a virtual clock).

        >>> await app.fork(at=app.clock.start_time + 300, broker="local://fork")  # doctest: +SKIP
        """
        url = await fork_into(self, at, broker)
        if isinstance(self.clock, VirtualClock):
            self.clock.speed = 0
        await move(self, url)
        return self

    def move_to(self, broker: str) -> None:
        """Use ``broker`` from the next ``start()`` on (what :meth:`fork` does); the app must be stopped."""
        if self.state in ("running", "starting", "stopping"):
            raise ConfigurationError(f"app {self.id!r} is {self.state}: stop it before moving it to {broker!r}")
        check_broker(broker, self._kafka_options)
        App._instances.pop((self.id, self.broker), None)
        self.broker = broker
        App._instances[(self.id, broker)] = weakref.ref(self)

    async def __aenter__(self) -> App:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def run(self) -> None:
        """Start the app and block until Ctrl-C or SIGTERM (for scripts, not notebooks).

        >>> app.run()  # doctest: +SKIP
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise ConfigurationError(
                "app.run() blocks and needs its own event loop, but one is already running "
                "(a notebook?): use `await app.start()` there instead"
            )
        asyncio.run(self._run_until_signal())

    async def _run_until_signal(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # no signals off the main thread
                loop.add_signal_handler(sig, stop.set)
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()

    def _check_leader_timers(self, transport: Transport) -> None:
        if transport.distributed and not self.agents and any(t.on_leader for t in self.timers.values()):
            names = ", ".join(t.name for t in self.timers.values() if t.on_leader)
            raise ConfigurationError(
                f"timer(s) {names} run on_leader=True, but on {self.broker} the leader is the worker holding "
                "partition 0 of the first agent's topic and this app has no agent: define an agent, "
                "or drop on_leader=True to run the timer on every worker"
            )

    async def start_agent(self, name: str) -> None:
        """Start one agent of a running app (what the dashboard's Start button does)."""
        async with self._lifecycle:  # not while the app itself starts or stops
            agent = self.agents.get(name)
            if agent is not None and self.state == "running":
                await agent.start()

    async def stop_agent(self, name: str) -> None:
        """Stop one agent of a running app, committing what it processed."""
        async with self._lifecycle:
            agent = self.agents.get(name)
            if agent is not None and self.state == "running":
                await agent.stop()

    def dashboard(self) -> Any:
        """A live notebook dashboard of agents, offsets and lag, and tables.

        >>> app.dashboard()  # doctest: +SKIP
        """
        return display.show("dashboard", self)

    def player(self) -> Any:
        """A notebook widget driving a replay: play, pause, speed, scrubber, steps (``clock="virtual"``)."""
        return display.show("player", self)

    def spawn(self, coro: Coroutine[Any, Any, Any] | Awaitable[Any], what: str) -> asyncio.Task[Any] | None:
        """Run ``coro`` in the background on the running loop, logging a failure as ``what``.

        Returns the task, or ``None`` (and closes ``coro``) when no loop runs.
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            if inspect.iscoroutine(coro):
                coro.close()
            return None
        task: asyncio.Task[Any] = loop.create_task(coro)  # type: ignore[arg-type]
        self._background.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._background.discard(t)
            if not t.cancelled() and t.exception() is not None:
                logger.error("%s failed", what, exc_info=t.exception())

        task.add_done_callback(done)
        return task

    def __repr__(self) -> str:
        return f"<App {self.id!r} {self.state} broker={self.broker!r}>"
