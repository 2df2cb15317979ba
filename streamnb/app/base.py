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
import inspect
import logging
from collections.abc import Awaitable, Coroutine
from typing import Any

from .. import _gc, display
from ..avro import SchemaRegistry, registry_from_options
from ..cli import Command
from ..errors import AppNotRunningError, ConfigurationError, PartitionMismatchError
from ..playback.clock import VirtualClock
from ..playback.playback import UNSET, Playback
from ..playback.replay import prepare
from ..processing.agents import Agent
from ..processing.tasks import Task, Timer
from ..tables.global_table import GlobalTable
from ..tables.stores import store_settings
from ..tables.table import Table
from ..topics import Topic
from ..transport import check_broker, open_transport
from ..transport.base import Transport
from ..transport.schemes import SCHEMES
from ..worker.surface import AppSurface
from ..worker.web import Web
from . import settings
from .conf import Settings
from .definitions import Definitions
from .instances import Instances
from .membership import Membership
from .metering import Metering
from .restorebar import restore_bar
from .scheduling import Scheduling
from .services import AppServices
from .topology import Topology, topology

__all__ = ["App"]

logger = logging.getLogger("streamnb")

def _transport_options() -> frozenset[str]:
    """Every option some broker's transport takes (an unknown App argument is checked against them)."""
    names: set[str] = set()
    for entry in SCHEMES.values():
        try:
            names |= entry.load().options
        except ImportError:  # pragma: no cover - a backend whose library is missing
            continue
    return frozenset(names)


class App(Instances, Membership, Metering, Definitions, Scheduling, AppSurface, Playback, AppServices):
    """A stream-processing application: topics, agents, tables, timers and tasks.

    Args:
        id: names the consumer groups, changelog topics and internal topics
            (with ``version=N`` > 1, the id is ``<id>-vN``, as in Faust).
        broker: ``memory://`` (volatile, in-process), ``local://PATH``
            (durable embedded broker in a folder) or ``kafka://HOST:PORT``;
            when not given, ``$BROKER_URL`` (Faust's variable), else
            ``local://.streamnb``.
        topic_partitions: partitions of topics streamnb creates.
        key_serializer: default codec of keys (``raw``, ``json`` or a registered name).
        value_serializer: default codec of values, likewise.
        tune_gc: while the app runs, raise the garbage collector's
            first-generation threshold (see :mod:`streamnb._gc`); about a
            quarter less CPU per event at high rates. ``False`` leaves it alone.
        processing_guarantee: ``at_least_once`` (default) or ``exactly_once``.
            The embedded brokers always commit atomically (exactly once);
            on Kafka ``exactly_once`` commits one Kafka transaction per input
            partition (readers of the outputs set ``isolation.level=read_committed``).
        stream_batch_size: most messages an agent reads at once.
        stream_batch_max_bytes: most bytes of keys, values and headers (default
            16 MB) an agent reads at once (a single larger message still comes, alone).
        max_event_time_skew: seconds (or a timedelta) an event's timestamp
            may be ahead of the clock (the replay's time under a virtual
            clock); a later one is dead-lettered instead of moving stream
            time. Default ``None``: no limit.
        commit_interval: seconds between commits while events keep coming
            (an idle agent commits at once); outputs become visible to
            ``read_committed`` readers at commits. Default 1.0, and 0.1 with
            ``exactly_once`` (as Kafka Streams), so that outputs of a
            ``group_by`` pipeline show within a second.
        security_protocol: passed to aiokafka, as are ``sasl_mechanism``,
            ``sasl_plain_username``, ``sasl_plain_password`` and ``ssl_context``.
        schema_registry: the schema registry of ``"avro"`` topics: a URL
            (``http://HOST:PORT``) or a :class:`~streamnb.avro.SchemaRegistry`;
            with a URL, ``schema_registry_auth=("user", "password")``,
            ``schema_registry_cafile=``, ``schema_registry_certfile=``,
            ``schema_registry_keyfile=``, ``schema_registry_ssl_context=`` and
            ``schema_registry_timeout=`` set its basic auth, TLS and timeout.
        clock: ``"wall"`` (default) or ``"virtual"``: replay a ``local://``
            or ``memory://`` folder from the start under a clock event time
            drives (:mod:`streamnb.playback.clock`); ``speed=None`` (as fast as
            possible), ``0`` (paused) or recorded seconds per second.
        history: tables keep every change (``table.at()``,
            ``table.history()``); default: on under a virtual clock.
        metrics: keep the app's metrics (default True; see :mod:`streamnb.app.metering`).
        metrics_port: also serve ``GET /metrics`` on this port (0: any free one), in a notebook too.
        **options: Faust's settings (see :mod:`streamnb.app.settings`: the ones
            streamnb honours act as in Faust, the others are accepted with
            one logged note); on ``kafka://`` also ``request_timeout``
            (seconds) and ``AIOKafkaConsumer`` arguments for the agents'
            consumers, e.g. ``session_timeout_ms=6000,
            heartbeat_interval_ms=500`` so the group notices a dead worker
            sooner. An unknown name raises :class:`ConfigurationError`
            naming the closest valid one.

    >>> app = App("demo", broker="memory://")
    >>> app.state
    'init'
    """


    def __init__(
        self,
        id: str,
        *,
        broker: str | None = None,
        topic_partitions: int = 8,
        key_serializer: str = "raw",
        value_serializer: str = "json",
        processing_guarantee: str = "at_least_once",
        commit_interval: float | None = None,
        stream_batch_size: int = 2000,
        stream_batch_max_bytes: int = settings.DEFAULT_BATCH_MAX_BYTES,
        max_event_time_skew: Any = None,
        tune_gc: bool = True,
        security_protocol: str | None = None,
        sasl_mechanism: str | None = None,
        sasl_plain_username: str | None = None,
        sasl_plain_password: str | None = None,
        ssl_context: Any = None,
        schema_registry: str | SchemaRegistry | None = None,
        clock: str = "wall",
        speed: Any = UNSET,
        history: bool | None = None,
        metrics: bool = True,
        metrics_port: int | None = None,
        **options: Any,
    ) -> None:
        if not id or not isinstance(id, str):
            raise ConfigurationError(f"App needs a non-empty string id, got {id!r}")
        registry = registry_from_options(schema_registry, options)  # takes the schema_registry_* options
        resolved = settings.resolve(id, broker, options, _transport_options)
        self.id = resolved.id
        self.broker = resolved.broker
        self.processing_guarantee = settings.check_guarantee(processing_guarantee)
        self.topic_partitions = settings.check_topic_partitions(topic_partitions)
        self.key_serializer = key_serializer
        self.value_serializer = value_serializer
        self.commit_interval = settings.commit_interval_of(
            resolved.app.get("broker_commit_interval", commit_interval), processing_guarantee
        )
        self.commit_records = int(resolved.app.get("broker_commit_every", 100_000))
        self.stream_batch_size = stream_batch_size
        self.stream_batch_max_bytes = settings.batch_max_bytes(stream_batch_max_bytes)
        self.max_event_time_skew = settings.event_time_skew(max_event_time_skew)
        """Seconds an event time may be ahead of the clock (``None``: no limit)."""
        self.poll_interval = 1.0
        self.tune_gc = tune_gc
        self.schema_registry = registry
        """The :class:`~streamnb.avro.SchemaRegistry` of ``value_serializer="avro"`` topics, or None."""
        self._kafka_options = settings.kafka_client_options(
            resolved.kafka, security_protocol=security_protocol, sasl_mechanism=sasl_mechanism,
            sasl_plain_username=sasl_plain_username, sasl_plain_password=sasl_plain_password, ssl_context=ssl_context,
        )
        transport_cls = self._check_broker()
        self._set_clock(clock, speed, history, transport_cls.distributed)
        self._set_store(resolved.app, transport_cls.distributed)
        self.conf = Settings(self, id, resolved.app, resolved.noted)
        """The settings under Faust's names (``app.conf.topic_partitions``, ...)."""
        settings.note(self.id, resolved.noted)
        self._init_registries()
        self._init_lifecycle()
        self._init_membership()
        self._init_metrics(metrics, metrics_port)
        self._replace_earlier_app()

    def _check_broker(self) -> type[Transport]:
        """Fail early, without connecting: a bad broker URL, an option or a guarantee its transport lacks."""
        transport_cls = check_broker(self.broker, self._kafka_options)
        if self.processing_guarantee not in transport_cls.guarantees:
            raise ConfigurationError(
                f"processing_guarantee={self.processing_guarantee!r} is not available on {transport_cls.scheme}:// "
                f"brokers, they give {' and '.join(sorted(transport_cls.guarantees))}: use that "
                "('at_least_once' is the default), or a local:// or kafka:// broker for exactly_once"
            )
        return transport_cls

    def _init_registries(self) -> None:
        """What the app defines, by name: topics, agents, tables, timers, tasks, commands and web views."""
        self.topics: dict[str, Topic[Any, Any]] = {}
        self.agents: dict[str, Agent] = {}
        self.tables: dict[str, Table[Any, Any]] = {}
        self.timers: dict[str, Timer] = {}
        self.tasks: dict[str, Task] = {}
        self.commands: dict[str, Command] = {}
        """Commands of the app's command line (``@app.command``)."""
        self.web = Web(self)
        """The web views (``@app.page``) and, while they are served, the server's URL."""

    def _init_lifecycle(self) -> None:
        """Not started: no broker connection, no background task."""
        self.state = "init"
        """``init``, ``starting``, ``running``, ``stopping`` or ``stopped``."""
        self.worker_mode = False
        """True when running as a worker (``app.run()``, ``app.main()``, ``streamnb worker``): web views are served."""
        self.transport: Transport | None = None
        self._connecting: asyncio.Future[Transport] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._lifecycle = asyncio.Lock()

    def _set_store(self, app_settings: dict[str, Any], distributed: bool) -> None:
        """Where tables keep their rows: ``store=``, ``datadir=``, ``store_memory=`` (:mod:`streamnb.tables.stores`);
        ``table_standby_replicas`` (:mod:`streamnb.tables.standby`: 1 on Kafka, else 0)."""
        self.store, self.datadir, self.store_memory = store_settings(app_settings, self.broker, self.id)
        self.table_standby_replicas = settings.standby_replicas(app_settings.get("table_standby_replicas"), distributed)

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
        options = settings.fetch_sizes(self.broker, self._kafka_options, self.stream_batch_max_bytes)
        transport = open_transport(self.broker, **{"client_id": self.id, **options})
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

    async def start(self) -> None:
        """Connect, create topics, recover tables and start agents, timers and tasks.

        Runs on the current loop (a Jupyter kernel's) and returns once
        everything is running; agents keep running as tasks. Calling it
        again while running does nothing. What can fail on this worker alone
        (the broker, a ``local://`` folder another process owns, the
        configuration, a web port in use) fails before any agent joins its
        consumer group, so a misconfigured worker never makes the others
        rebalance.

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
                transport = await self._prepare_worker()
                await self._declare_topics()
                self._start_sampling()  # (restore progress shows while tables recover)
                with restore_bar(self):  # (in a notebook, for a restore longer than a second)
                    await self._recover_tables(transport)
                    await self._start_processing()
            except BaseException:
                # Stop what was started (services, agents, web, metrics...) and close the broker,
                # which releases a local:// folder's lock; the start's own error is raised.
                self.state = "stopping"
                try:
                    await self._shut_down()
                except Exception:
                    logger.exception("app %r: cleaning up after its failed start failed too", self.id)
                finally:
                    self.state = "init"
                raise
            self.state = "running"
        logger.info("app %r running on %s", self.id, self.broker)

    async def _prepare_worker(self) -> Transport:
        """Start-up, first what can fail on this worker alone: broker, leader timers, web port, replay."""
        transport = await self.connect()
        self._check_leader_timers(transport)
        if self.web.enabled():
            await self.web.start()
        await self._serve_metrics()
        if isinstance(self.clock, VirtualClock):
            await prepare(self)  # a replay starts from scratch (or from its fork)
        return transport

    async def _declare_topics(self) -> None:
        """Start-up: create the app's topics and its tables' (changelogs, ...); check tables' partition counts."""
        for topic in list(self.topics.values()):
            if not topic.internal:
                await topic.declare()
        for table in list(self.tables.values()):
            for topic in table.topics():
                await topic.declare()
            table.check_partitions()

    async def _recover_tables(self, transport: Transport) -> None:
        """Start-up: rebuild every table on an embedded broker; on Kafka the global ones (the rest on assignment)."""
        if not transport.distributed:
            for table in list(self.tables.values()):
                await table.recover()
            return
        for table in list(self.tables.values()):
            if isinstance(table, GlobalTable):
                await table.recover()  # every partition, before any agent runs
                self.spawn(table.follow(), f"follow global table {table.name}")
        self._start_standbys()

    async def _start_processing(self) -> None:
        """Start-up, last: services, agents (joining their consumer groups), timers and tasks, the virtual clock."""
        await self.start_services()  # (streamnb.app.services: one failing stops those started and raises)
        for agent in list(self.agents.values()):
            await agent.start()
        await self._check_agent_joins()
        for item in [*self.timers.values(), *self.tasks.values()]:
            item.start()
        if isinstance(self.clock, VirtualClock):
            self.clock.start()
        if self.tune_gc:
            _gc.acquire()

    async def _check_agent_joins(self) -> None:
        """Start-up: an agent whose join is over topics of different partition counts fails the start.

        Each agent's first step (its function up to its first ``await``, where
        ``stream.join(...)`` is called) runs now; a PartitionMismatchError it
        raised stops the agents and services started and is raised here.
        """
        await asyncio.sleep(0)  # (the agents' tasks, created before, take their first step first)
        for agent in list(self.agents.values()):
            if isinstance(agent.last_error, PartitionMismatchError) and not agent.running:
                error = agent.last_error
                await asyncio.gather(*(a.stop() for a in self.agents.values()))
                await self.stop_services()
                raise PartitionMismatchError(f"agent {agent.name!r}: {error}") from error

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
            await self._shut_down()
            self.state = "stopped"

    async def _shut_down(self) -> None:
        """Stop everything that runs, whatever a start got to, and close the broker (``stop()``, a failed start)."""
        if isinstance(self.clock, VirtualClock):
            await self.clock.stop()
        await self.web.stop()
        await self._stop_metrics()
        for item in [*self.timers.values(), *self.tasks.values()]:
            await item.stop()
        await asyncio.gather(*(agent.stop() for agent in self.agents.values()))
        await self.stop_services()
        _gc.end_pauses()  # (collection back on now, not after the freeing its commits left behind)
        others = [t for t in self._background if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        if others:
            await asyncio.wait(others, timeout=5)
        if self.transport is not None:
            await self.transport.stop()
        self.transport = None
        self._connecting = None
        self._forget_membership()
        for table in self.tables.values():
            table.reset_recovery()

    async def __aenter__(self) -> App:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
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

        >>> app = App("demo", broker="memory://")
        >>> board = app.dashboard()  # a widget: shown when it is a cell's last expression
        >>> board.stopped  # in a notebook the kernel's loop runs and it updates every second
        'no running event loop (call refresh() to update)'
        """
        return display.show("dashboard", self)

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

    def topology(self) -> Topology:
        """The app's dataflow: topics, agents, tables, changelogs... (prints as text, draws in a notebook)."""
        return topology(self)

    def __repr__(self) -> str:
        return f"<App {self.id!r} {self.state} broker={self.broker!r}>"
