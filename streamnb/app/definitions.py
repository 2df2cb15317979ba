"""Defining what an app runs: topics, channels, agents and tables (timers and tasks: :mod:`.scheduling`).

:class:`Definitions` is a base class of :class:`~streamnb.app.App`; every
method here defines (or redefines) one thing under a name, before or after
the app starts::

    orders = app.topic("orders", value_type=Order)
    totals = app.Table("totals", default=float)
    people = app.SetTable("people", value_type=str)

    @app.agent(orders)
    async def total(stream):
        async for order in stream:
            totals[order.user] += order.amount

Defining a name again replaces the old definition: a running agent is
stopped after committing and the new one starts from the committed offsets,
a table keeps its rows. A notebook cell can be run as often as you like.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any, TypeVar, cast

from .. import naming
from ..errors import ConfigurationError
from ..processing.agents import Agent, AgentFun
from ..processing.streams import Stream
from ..processing.tasks import Task, Timer
from ..runtime import Runtime
from ..tables.global_table import GlobalTable
from ..tables.sets import SetGlobalTable, SetTable
from ..tables.sourced import SourcedGlobalTable, SourcedTable
from ..tables.table import Table
from ..topics import Topic
from ..transport.base import Transport
from .conf import Settings
from .flowcontrol import FlowControlled
from .testcontext import AgentTestContext, AgentTestHost

__all__ = ["CHANNEL_OPTIONS", "Definitions", "name_of"]

_Table = Table  # inside Definitions, `Table` names the Definitions.Table method
_SetTable = SetTable
_GlobalTable = GlobalTable
_SetGlobalTable = SetGlobalTable

F = TypeVar("F", bound=Callable[..., Any])
TT = TypeVar("TT", bound=Table[Any, Any])

CHANNEL_OPTIONS = ("key_type", "value_type", "partitions", "key_serializer", "value_serializer",
                   "compacting", "retention")
"""Keyword arguments of ``@app.agent`` that define the agent's own topic, as in Faust."""


def name_of(fun: Callable[..., Any]) -> str:
    """A function's name; for a ``functools.partial``, the wrapped function's.

    >>> import functools
    >>> name_of(functools.partial(print, "x"))
    'print'
    """
    while not hasattr(fun, "__name__") and hasattr(fun, "func"):
        fun = fun.func
    return str(getattr(fun, "__name__", type(fun).__name__))


class Definitions(FlowControlled):
    """The definitions of an app, by name (a base class of :class:`~streamnb.app.App`).

    The App sets the registries up and provides :meth:`spawn`,
    :meth:`connect` and :meth:`owned_partitions`.
    """

    id: str
    state: str
    topics: dict[str, Topic[Any, Any]]
    agents: dict[str, Agent]
    tables: dict[str, Table[Any, Any]]
    timers: dict[str, Timer]
    tasks: dict[str, Task]
    conf: Settings
    """The settings under Faust's names (the App sets it)."""
    history: bool
    """Tables keep every change (set by the App from ``history=`` and its clock)."""
    _lifecycle: asyncio.Lock

    @property
    def runtime(self) -> Runtime:
        """The app as topics, streams, agents and tables see it (the App implements :class:`Runtime`)."""
        return cast(Runtime, self)

    def spawn(self, coro: Coroutine[Any, Any, Any], what: str) -> asyncio.Task[Any] | None:
        """Run ``coro`` in the background (the App's)."""
        raise NotImplementedError

    async def connect(self) -> Transport:
        """The broker connection (the App's)."""
        raise NotImplementedError

    def owned_partitions(self) -> set[int]:
        """Partition numbers this worker holds (the App's)."""
        raise NotImplementedError

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

        >>> from streamnb import App
        >>> app = App("demo", broker="memory://")
        >>> app.topic("page_views", partitions=4).partitions
        4
        """
        topic: Topic[Any, Any] = Topic(
            self.runtime, name, key_type=key_type, value_type=value_type, partitions=partitions,
            key_serializer=key_serializer, value_serializer=value_serializer,
            compacting=compacting, retention=retention,
        )
        self.topics[name] = topic
        return topic

    def internal_topic(self, name: str, **options: Any) -> Topic[Any, Any]:
        """Define (or redefine) a topic streamnb itself needs: a changelog, repartition or dead-letter topic.

        >>> from streamnb import App
        >>> App("demo", broker="memory://").internal_topic("demo-x-changelog", compacting=True).internal
        True
        """
        old = self.topics.get(name)
        topic: Topic[Any, Any] = Topic(self.runtime, name, internal=True, **options)
        if old is not None:
            topic.adopt(old)
        self.topics[name] = topic
        return topic

    def resolve_topic(self, channel: Topic[Any, Any] | Agent | str) -> Topic[Any, Any]:
        """The topic for ``channel``: a topic, a topic name (defined on first use), or an agent (its topic).

        >>> from streamnb import App
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

        >>> from streamnb import App
        >>> App("demo", broker="memory://").dead_letter_topic("count").name
        'demo-count-dlq'
        """
        name = naming.dead_letter_topic(self.id, owner)
        return self.topics.get(name) or self.internal_topic(name, key_serializer="raw", value_serializer="raw")

    def stream(self, channel: Topic[Any, Any] | str) -> Stream[Any]:
        """A stream over ``channel`` outside any agent (Faust's ``app.stream``); iterate it in a task.

        >>> from streamnb import App
        >>> app = App("demo", broker="memory://")
        >>> app.stream("orders").channel.name
        'orders'
        """
        return Stream(self.runtime, self.resolve_topic(channel))

    def agent(
        self,
        channel: Topic[Any, Any] | str | None = None,
        *,
        name: str | None = None,
        concurrency: int = 1,
        sink: list[Any] | None = None,
        isolated_partitions: bool = False,
        **channel_options: Any,
    ) -> Callable[[AgentFun], Agent]:
        """Decorate an ``async def f(stream)`` to run it as an agent.

        With no channel the agent gets its own topic ``<app id>-<name>``;
        Faust's channel keywords (``key_type``, ``value_type``, ``partitions``,
        ``key_serializer``, ``value_serializer``, ``compacting``,
        ``retention``) define that topic, or the one a channel name names.
        Values the function yields are sent to every sink (topics, agents or
        callables). ``isolated_partitions=True`` runs one instance of the
        agent per partition of its topic, each with its own stream
        (``stream.active_partitions``), failures and restarts (see
        :class:`~streamnb.processing.agents.Agent`). Defining an agent with a name already in use replaces
        the old one (a running one is stopped and the new one started).

        >>> from streamnb import App
        >>> app = App("demo", broker="memory://")
        >>> @app.agent()
        ... async def greet(stream):
        ...     async for name in stream:
        ...         print("hello", name)
        >>> greet.channel.name
        'demo-greet'
        """

        topic_options = self._channel_options(channel, channel_options)

        def decorator(fun: AgentFun) -> Agent:
            agent_name = name or name_of(fun)
            if channel is None:
                topic = self.topic(naming.agent_topic(self.id, agent_name), **topic_options)
            elif isinstance(channel, str) and topic_options:
                topic = self.topic(channel, **topic_options)
            else:
                topic = self.resolve_topic(channel)
            agent = Agent(self.runtime, fun, topic, name=agent_name, concurrency=concurrency, sink=sink,
                          isolated_partitions=isolated_partitions)
            agent.__doc__ = fun.__doc__
            old = self.agents.get(agent_name)
            self.agents[agent_name] = agent
            self.flow_control.joined(agent)
            if old is not None or self.state == "running":
                self.spawn(self._replace_agent(old, agent), f"start agent {agent_name}")
            return agent

        return decorator

    @staticmethod
    def _channel_options(channel: Any, options: dict[str, Any]) -> dict[str, Any]:
        """The topic keywords among ``@app.agent`` options; errors for the Faust ones streamnb lacks."""
        unsupported = {
            "supervisor_strategy": (None, "each agent restarts alone from its last commit"),
            "on_error": (None, "a crashing agent restarts; events that keep failing are dead-lettered"),
            "schema": (None, "give key_type=, value_type= and the serializers instead"),
        }
        topic_options: dict[str, Any] = {}
        for key, value in options.items():
            if key in CHANNEL_OPTIONS:
                topic_options[key] = value
            elif key == "help" or (key == "use_reply_headers" and value is not False):
                continue  # documentation; agent RPC always carries reply_to and correlation id in headers
            elif key == "use_reply_headers":
                raise ConfigurationError(
                    "@app.agent(use_reply_headers=False) is not supported: asks always carry the reply topic and "
                    "correlation id in headers (Faust's use_reply_headers=True); drop the argument"
                )
            elif key in unsupported:
                default, instead = unsupported[key]
                if value != default:
                    raise ConfigurationError(f"@app.agent({key}={value!r}) is not supported: {instead}")
            else:
                raise ConfigurationError(
                    f"@app.agent got an unknown keyword {key!r}; it takes name=, concurrency=, sink= and the "
                    f"keywords of its own topic: {', '.join(CHANNEL_OPTIONS)}"
                )
        if topic_options and channel is not None and not isinstance(channel, str):
            raise ConfigurationError(
                f"@app.agent({', '.join(f'{k}=' for k in topic_options)}) define the agent's own topic; "
                f"{channel!r} is defined already: give them to app.topic(...) instead"
            )
        return topic_options

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
        store: str | None = None,
        source: Topic[Any, Any] | str | None = None,
        history: bool = False,
        versioned: float | timedelta | None = None,
    ) -> Table[Any, Any]:
        """Define (or redefine, keeping its contents) a table.

        ``source=topic``: a read-only table of the topic's latest value per
        key, which ``stream.join(table)`` reads in timestamp order with the
        stream (see :mod:`streamnb.tables.sourced`). With ``history=True`` (every
        version) or ``versioned=retention`` (seconds of history) it keeps each
        key's versions and a join looks it up as of the event's timestamp
        (:mod:`streamnb.tables.versions`).

        Windowed tables (``.tumbling()``, ``.hopping()``) also take
        ``on_window_close(key, value)`` (once per window, when it closes),
        ``on_late(event, windows)``, ``late_topic=`` (a topic, or True for
        ``<app id>-<table>-late``) and ``emit_final=`` (a topic that gets one
        ``{key, window_start, window_end, value}`` record per closed window).
        ``store=`` (``"memory://"`` or ``"rocksdb://"``) overrides ``App(store=...)``
        for this table (see :mod:`streamnb.tables.stores`).

        >>> from streamnb import App
        >>> app = App("demo", broker="memory://")
        >>> counts = app.Table("counts", default=int)
        >>> counts["anything"]
        0
        """
        options: dict[str, Any] = dict(
            default=default, partitions=partitions, key_type=key_type, value_type=value_type,
            key_serializer=key_serializer, value_serializer=value_serializer, on_window_close=on_window_close,
            on_late=on_late, late_topic=late_topic, emit_final=emit_final, help=help, store=store,
        )
        if source is not None:
            return self._install_table(SourcedTable(
                self.runtime, name, source=self.resolve_topic(source), history=history, versioned=versioned, **options
            ))
        _refuse_versions(name, history, versioned)
        return self._install_table(Table(self.runtime, name, **options))

    def _install_table(self, table: TT) -> TT:
        """Register ``table``, keeping the rows of a table it redefines; recover it when running."""
        name = table.name
        if self.history:
            table.keep_history()
        old = self.tables.get(name)
        if old is not None:
            table.take_over(old)
        self.tables[name] = table
        if self.state == "running" and (
            old is None or isinstance(table, GlobalTable) or table.recovered_partitions is not old.recovered_partitions
        ):
            self.spawn(self._recover_new_table(table), f"recover table {name}")
        return table

    async def _recover_new_table(self, table: _Table[Any, Any]) -> None:
        transport = await self.connect()
        for topic in table.topics():
            await topic.declare()
        if not transport.distributed:
            await table.recover()
        elif isinstance(table, GlobalTable):
            await table.recover()
            self.spawn(table.follow(), f"follow global table {table.name}")
        else:
            await table.recover(self.owned_partitions())

    def channel(
        self, *, key_type: Any = None, value_type: Any = None, maxsize: int | None = None,
        schema: Any = None, loop: Any = None,
    ) -> Topic[Any, Any]:
        """A channel agents can read and send to (Faust's ``app.channel()``).

        In Faust a channel is an in-memory queue; here it is a one-partition
        topic ``<app id>-channel-<n>`` (the n-th channel the app defines), so
        it is durable and committed like any topic. ``maxsize`` and ``loop``
        have no meaning here.

        >>> from streamnb import App
        >>> App("demo", broker="memory://").channel(value_type=str).name
        'demo-channel-0'
        """
        if schema is not None:
            raise ConfigurationError("app.channel(schema=...) is not supported: give key_type= and value_type=")
        number = 0
        while naming.channel_topic(self.id, number) in self.topics:
            number += 1
        return self.topic(naming.channel_topic(self.id, number), key_type=key_type, value_type=value_type,
                          partitions=1)

    def SetTable(  # noqa: N802 - Faust's name
        self, name: str, *, value_type: Any = None, start_manager: bool = False, **options: Any
    ) -> _SetTable[Any, Any]:
        """Define (or redefine, keeping its sets) a table whose values are sets of ``value_type``.

        ``table[key].add(x)`` and ``.discard(x)`` inside an agent; see
        :mod:`streamnb.tables.sets`. Takes the options of ``app.Table``
        except ``default`` and the window options.

        >>> from streamnb import App
        >>> App("demo", broker="memory://").SetTable("people", value_type=str)["paris"]
        SetValue([])
        """
        if start_manager:
            raise ConfigurationError(
                f"SetTable {name!r}: start_manager=True (Faust's set-operation agent) is not supported; "
                "change the sets from your own agent with table[key].add(x)"
            )
        return self._install_table(SetTable(self.runtime, name, value_type=value_type, **options))

    def GlobalTable(self, name: str, **options: Any) -> _GlobalTable[Any, Any]:  # noqa: N802
        """Define (or redefine) a table every worker holds in full; see :mod:`streamnb.tables.global_table`.

        >>> from streamnb import App
        >>> App("demo", broker="memory://").GlobalTable("rates", default=float)["EUR"]
        0.0

        ``source=topic``: a read-only table of the topic's latest values, read to
        the end before agents run, then followed (:mod:`streamnb.tables.sourced`).
        """
        source = options.pop("source", None)
        if options.pop("history", False) or options.pop("versioned", None) is not None:
            raise ConfigurationError(
                f"GlobalTable {name!r}: a global table keeps the latest values only (Kafka Streams' global tables "
                "cannot be versioned either): for lookups as of the event's time use "
                "app.Table(name, source=topic, history=True), co-partitioned with the stream"
            )
        if source is not None:
            return self._install_table(SourcedGlobalTable(self.runtime, name, source=self.resolve_topic(source),
                                                          **options))
        return self._install_table(GlobalTable(self.runtime, name, **options))

    def SetGlobalTable(  # noqa: N802 - Faust's name
        self, name: str, *, value_type: Any = None, start_manager: bool = False, **options: Any
    ) -> _SetGlobalTable[Any, Any]:
        """A :meth:`SetTable` every worker holds in full.

        >>> from streamnb import App
        >>> App("demo", broker="memory://").SetGlobalTable("tags", value_type=str).is_global
        True
        """
        if start_manager:
            raise ConfigurationError(f"SetGlobalTable {name!r}: start_manager=True is not supported")
        return self._install_table(SetGlobalTable(self.runtime, name, value_type=value_type, **options))

    def agent_test_context(self, agent: Agent, **options: Any) -> AgentTestContext:
        """What ``agent.test_context(**options)`` returns (see :mod:`streamnb.app.testcontext`)."""
        return AgentTestContext(cast(AgentTestHost, self), agent, **options)


def _refuse_versions(name: str, history: bool, versioned: Any) -> None:
    """history=/versioned= apply to a table that follows a topic."""
    if history or versioned is not None:
        raise ConfigurationError(
            f"table {name!r}: history=/versioned= keep the versions of a table that follows a topic "
            "(app.Table(name, source=topic, history=True)); to keep every change of all tables for "
            "table.at()/table.history(), make the app with App(..., history=True)"
        )
