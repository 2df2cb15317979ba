"""Agents: supervised async functions that iterate a stream.

Example::

    @app.agent(orders, sink=[totals_topic])
    async def process(stream):
        async for order in stream:
            yield order.qty * order.price      # sent to every sink

An agent runs as tasks on the running loop (a notebook kernel's). If it
raises, the error is logged with its traceback and kept on the agent
(``agent.last_error``, ``agent.crashes``), the uncommitted work is undone and
the agent restarts with backoff from its last commit. An event that keeps
crashing the agent is retried ``max_retries`` times, then sent to the
dead-letter topic ``<app id>-<agent>-dlq`` with the error, so one bad event
cannot stop the stream.

With ``isolated_partitions=True`` the agent runs one instance per
partition of its topic: each is a member of the agent's consumer group
with its own stream (``stream.active_partitions`` is the partition it
serves), transaction, crashes and restarts, so an event that keeps
crashing holds up its own partition only. On the embedded brokers each
instance owns one partition for good; on Kafka the members share the
partitions through the group protocol (range assignment: at most one each
once every member joined), so while members join or rejoin (at start, and
when a crashed instance restarts) an instance may briefly serve two.

A :class:`~streamnb.errors.CorruptStoreError` (the ``local://`` folder's
data is damaged) is no event's fault and does not go away by retrying: the
agent stops with it (``agent.last_error``), nothing is dead-lettered, and the
error's message says how to check and salvage the folder.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import traceback
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, cast, runtime_checkable

from .. import naming
from ..errors import AgentError, ConfigurationError, CorruptStoreError, EventTimeError, PartitionMismatchError
from ..runtime import Runtime
from ..topics import Topic
from ..transport.base import TP, Message
from .replies import ReplyHost, answer, answer_failure
from .rpc import AgentRPC
from .source import Source
from .streams import Stream

__all__ = ["Agent", "AgentFun", "AgentTestMaker"]

logger = logging.getLogger("streamnb")

AgentFun = Callable[[Stream[Any]], Any]


@runtime_checkable
class AgentTestMaker(Protocol):
    """What :meth:`Agent.test_context` asks the app for (the App provides it)."""

    def agent_test_context(self, agent: Agent, **options: Any) -> AbstractAsyncContextManager[Any]:
        """A context that runs ``agent`` alone on a private in-memory broker."""
        ...


class Agent(AgentRPC):
    """An async function over a stream, run and supervised by the app.

    Create agents with :meth:`App.agent`. Defining an agent again under the
    same name replaces it: the running one is stopped (after committing
    what it processed) and the new one starts from the committed offsets.
    """

    max_retries: int = 3
    """How often one event may crash the agent before it is dead-lettered."""

    def __init__(
        self,
        app: Runtime,
        fun: AgentFun,
        channel: Topic[Any, Any],
        *,
        name: str,
        concurrency: int = 1,
        sink: list[Any] | None = None,
        isolated_partitions: bool = False,
    ) -> None:
        if not (inspect.iscoroutinefunction(fun) or inspect.isasyncgenfunction(fun)):
            raise ConfigurationError(
                f"agent {name!r} must be an `async def` function taking a stream, "
                "e.g. `async def count(stream): async for value in stream: ...`"
            )
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigurationError(f"agent {name!r}: concurrency must be an int >= 1, got {concurrency!r}")
        if isolated_partitions and concurrency != 1:
            raise ConfigurationError(
                f"agent {name!r}: isolated_partitions=True runs one instance per partition; drop concurrency="
            )
        self.isolated_partitions = isolated_partitions
        """One instance (own stream, own failures and restarts) per partition of its topic."""
        self.app = app
        self.fun = fun
        self.channel = channel
        self.name = name
        self.concurrency = concurrency
        self.sinks: list[Any] = list(sink or [])
        self.state = "defined"
        """``defined``, ``starting``, ``running``, ``paused``, ``crashed`` (restarting), ``stopped``."""
        self.events_received = 0
        self.events_processed = 0
        """Events the agent finished (dead-lettered ones included)."""
        self.dead_lettered = 0
        """Events sent to the dead-letter topic."""
        self.crashes = 0
        self.last_error: BaseException | None = None
        self.last_traceback: str | None = None
        self.errors: deque[tuple[float, str]] = deque(maxlen=20)
        self.joins: dict[str, Any] = {}
        """The counters of each join the agent's stream makes (stage label -> ``JoinStats``; the dashboard's lines)."""
        """``(time, traceback)`` of recent crashes and dead letters."""
        self.started_at: float | None = None
        self.parked = 0
        """Sources of this agent waiting in :meth:`wait_resumed`: paused, they take no events."""
        self.poison: dict[tuple[str, int, int], BaseException] = {}
        """``(topic, partition, offset)`` of events that crashed the agent ``max_retries`` times:
        the next time they come they are dead-lettered instead of processed."""
        self._tasks: list[asyncio.Task[None]] = []
        self._sources: set[Source] = set()
        self._read: dict[str, None] = {}  # topics the agent's sources have read (kept between restarts)
        self._retries: dict[tuple[str, int, int], int] = {}
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._stopping = False

    # -- topics (send, cast, ask, map, join: streamnb.processing.rpc) ------------------------

    @property
    def topic(self) -> Topic[Any, Any]:
        """The topic the agent reads."""
        return self.channel

    def read_topics(self) -> list[str]:
        """Names of the topics the agent's consumers read (its topic, and a ``group_by`` source).

        >>> from streamnb import App
        >>> app = App("demo", broker="memory://")
        >>> @app.agent("orders")
        ... async def process(stream):
        ...     async for order in stream:
        ...         pass
        >>> process.read_topics()
        ['orders']
        """
        return list(dict.fromkeys([self.channel.name, *self._read]))

    def consumer_groups(self) -> list[str]:
        """The consumer groups the agent's consumers belong to (one per agent)."""
        groups = [source.group for source in list(self._sources)]
        return list(dict.fromkeys(groups)) or [naming.consumer_group(self.app.id, self.name)]

    def assignment(self) -> set[TP]:
        """The partitions the agent's consumers on this worker are assigned now (read topics only)."""
        return {tp for source in list(self._sources) if source.consumer is not None
                for tp in source.consumer.assignment()}

    @property
    def uncommitted(self) -> int:
        """Table writes and sends the agent made since its last commit, plus one per commit still landing.

        A commit has landed once its outcome is applied: on success the
        windows it closed have had their ``on_window_close`` calls.
        """
        return sum(len(source.txn) + source.committing for source in list(self._sources))

    def add_sink(self, sink: Any) -> None:
        """Send every value the agent yields to ``sink`` too (a topic, an agent or a callable), as Faust's.

        >>> from streamnb import App
        >>> app = App("demo", broker="memory://")
        >>> @app.agent()
        ... async def double(stream):
        ...     async for n in stream:
        ...         yield 2 * n
        >>> double.add_sink(print)
        >>> double.sinks
        [<built-in function print>]
        """
        if sink not in self.sinks:
            self.sinks.append(sink)

    def test_context(self, channel: Any = None, supervisor_strategy: Any = None, on_error: Any = None,
                     **options: Any) -> AbstractAsyncContextManager[Any]:
        """Run this agent alone on a private ``memory://`` broker, as Faust's ``agent.test_context()``.

        ``await agent.put(value, key=...)`` returns the event once processed;
        ``agent.results`` maps 0, 1, 2, ... to the values yielded. See
        :mod:`streamnb.app.testcontext` (``on_error=``, ``timeout=``).

        >>> async with process.test_context() as agent:  # doctest: +SKIP
        ...     event = await agent.put(Order(account_id="1", amount=1), key="1")
        ...     assert agent.results[0] == event.value
        """
        host = self.app
        if not isinstance(host, AgentTestMaker):
            raise ConfigurationError(f"agent {self.name!r}: its runtime {host!r} cannot make a test context")
        return host.agent_test_context(
            self, channel=channel, supervisor_strategy=supervisor_strategy, on_error=on_error, **options
        )

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the agent's tasks on the running loop (``concurrency`` of them)."""
        if any(not task.done() for task in self._tasks):
            return
        self._tasks = []
        partitions = await self.channel.declare()
        if self.isolated_partitions:  # a member per partition: each is assigned at most one (static or range)
            self.concurrency = partitions
        self._stopping = False
        self.state = "starting"
        self.started_at = time.time()
        for member in range(self.concurrency):
            task = asyncio.get_running_loop().create_task(
                self._supervise(member), name=f"streamnb-agent-{self.name}-{member}"
            )
            self._tasks.append(task)
        self.state = "running"

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop after the event in progress, committing what was processed.

        An agent that does not reach its next event within ``timeout`` s is
        cancelled and its uncommitted work undone.
        """
        if not self._tasks:
            self.state = "stopped" if self.state != "defined" else self.state
            return
        self._stopping = True
        self._resumed.set()
        for source in list(self._sources):
            source.stopping = True
            if source.waiting:  # idle: everything processed is committed; stop at once
                for task in self._tasks:
                    task.cancel()
        tasks, self._tasks = self._tasks, []
        done, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        for source in list(self._sources):
            if not source.closed:
                source.abort()
                await source.close(commit=False)
        self.state = "stopped"

    def pause(self) -> None:
        """Stop taking new events (after committing) until :meth:`resume`."""
        self._resumed.clear()
        if self.state == "running":
            self.state = "paused"

    def resume(self) -> None:
        """Continue after :meth:`pause`."""
        self._resumed.set()
        if self.state == "paused":
            self.state = "running"

    @property
    def paused(self) -> bool:
        """True between :meth:`pause` and :meth:`resume`."""
        return not self._resumed.is_set()

    async def wait_resumed(self) -> None:
        """Return once the agent is not paused (counted in :attr:`parked` meanwhile)."""
        self.parked += 1
        try:
            await self._resumed.wait()
        finally:
            self.parked -= 1

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` was called, until the agent is started again."""
        return self._stopping

    def attach(self, source: Source) -> None:
        """Called by a :class:`~streamnb.processing.source.Source` of this agent when it starts."""
        self._sources.add(source)
        self._read.update(dict.fromkeys([*(hop.topic.name for hop in source.hops), source.channel.name]))

    def detach(self, source: Source) -> None:
        """Called by a :class:`~streamnb.processing.source.Source` of this agent when it closes."""
        self._sources.discard(source)

    def raise_if_crashed(self) -> None:
        """Raise :class:`AgentError` from the last crash, if any (handy in tests)."""
        if self.last_error is not None:
            raise AgentError(
                f"agent {self.name!r} crashed {self.crashes} time(s); last: {self.last_error!r}"
            ) from self.last_error

    @property
    def running(self) -> bool:
        """True while the agent has live tasks."""
        return any(not t.done() for t in self._tasks)

    def rate(self) -> float:
        """Average events per second since the agent started."""
        if not self.started_at:
            return 0.0
        return self.events_processed / max(time.time() - self.started_at, 1e-9)

    # -- supervision -------------------------------------------------------------------------

    async def _supervise(self, member: int) -> None:
        backoff = 0.05
        last_crash: tuple[str, int, int] | None = None
        while not self._stopping:
            stream: Stream[Any] = Stream(self.app, self.channel, agent=self, member=member, members=self.concurrency)
            try:
                await self._run_once(stream)
                return
            except asyncio.CancelledError:
                for source in self._sources_of(member):
                    if not source.waiting and not source.closed:
                        source.abort()  # cancelled mid-event: undo its partial work
                raise
            except (ConfigurationError, PartitionMismatchError) as exc:
                # Misconfiguration does not go away by retrying: stop, keep the error.
                self._crashed(member, exc, retry=False)
                logger.error(
                    "agent %r stopped: %s -- fix the definition and run its cell (or restart) again", self.name, exc
                )
                return
            except CorruptStoreError as exc:
                # Damaged data: never an event's fault (no try counted, nothing dead-lettered), and retrying
                # reads the same bytes: stop, keep the error.
                self._crashed(member, exc, retry=False, blame=False)
                logger.error("agent %r stopped: %s", self.name, exc)
                return
            except Exception as exc:
                crash = self._crashed(member, exc)
                if crash != last_crash:  # a new event: the backoff starts again
                    backoff, last_crash = 0.05, crash
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                if self.state == "crashed":
                    self.state = "running"
            finally:
                # Every stage this run read (the agent's topic, or the topic a
                # group_by/through re-keyed into): an aborted one commits nothing.
                for source in self._sources_of(member):
                    if not source.closed:
                        await source.close(commit=not source.aborted)

    def _sources_of(self, member: int) -> list[Source]:
        """The open sources of one of the agent's tasks (one per stream it iterates)."""
        return [source for source in list(self._sources) if source.stream.member == member]

    async def _run_once(self, stream: Stream[Any]) -> None:
        result = self.fun(stream)
        if inspect.isasyncgen(result):
            agen: AsyncIterator[Any] = result
            async for value in agen:
                await self._deliver(value)
        else:
            await result

    async def _deliver(self, value: Any) -> None:
        await answer(cast(ReplyHost, self.app), value)  # the event was an ask: reply (streamnb.processing.rpc)
        for sink in self.sinks:
            if isinstance(sink, (Agent, Topic)):
                await sink.send(value=value)
            else:
                out = sink(value)
                if inspect.isawaitable(out):
                    await out

    def _crashed(
        self, member: int, exc: Exception, retry: bool = True, blame: bool = True
    ) -> tuple[str, int, int] | None:
        """Keep and log the error; undo everything the run did since its last commit, at every stage.

        The event in hand (at whichever stage it was read: the agent's topic
        or a ``group_by`` topic) counts a try; after :attr:`max_retries` it is
        dead-lettered when it comes again (not with ``blame=False``). Returns that event's position, if any.
        """
        self.crashes += 1
        self.app.monitor.crashed(self.name)
        self.last_error = exc
        self.last_traceback = "".join(traceback.format_exception(exc))
        self.errors.append((time.time(), self.last_traceback))
        self.state = "crashed"
        where = ""
        crash = None
        for source in self._sources_of(member):
            msg: Message | None = source.txn.message
            if blame and msg is not None and not source.commit_failed and not source.aborted:
                # (a failed commit is not that event's fault)
                crash = key = (msg.topic, msg.partition, msg.offset)
                self._retries[key] = tries = self._retries.get(key, 0) + 1
                where = (
                    f" at stage {source.stage} on {msg.topic}[{msg.partition}]@{msg.offset}"
                    f" (try {tries} of {self.max_retries})"
                )
                if (tries >= self.max_retries or isinstance(exc, EventTimeError)) and retry:
                    self.poison[key] = exc  # (a time that is no event time does not get better by retrying)
            if not retry and msg is not None:  # never processed: an asker must not wait for it
                answer_failure(cast(ReplyHost, self.app), msg, f"{type(exc).__name__}: {exc}")
            source.abort()
        if retry and isinstance(exc, EventTimeError):
            logger.warning("agent %r: %s%s; the event is dead-lettered", self.name, exc, where)
        elif retry:
            logger.error(
                "agent %r crashed%s; restarting from its last commit\n%s", self.name, where, self.last_traceback
            )
        return crash

    def record_dead_letter(self, msg: Message, reason: str) -> None:
        """Count and log a message that went to the dead-letter topic (called by the source once committed)."""
        self.dead_lettered += 1
        answer_failure(cast(ReplyHost, self.app), msg, reason)  # an ask of it gets the error
        self.poison.pop((msg.topic, msg.partition, msg.offset), None)
        self._retries.pop((msg.topic, msg.partition, msg.offset), None)
        self.errors.append((time.time(), f"dead-lettered {msg.topic}[{msg.partition}]@{msg.offset}: {reason}"))
        logger.warning("agent %r dead-lettered %s[%d]@%d: %s", self.name, msg.topic, msg.partition, msg.offset, reason)

    def __repr__(self) -> str:
        return f"<Agent {self.name!r} {self.state} topic={self.channel.name!r} processed={self.events_processed}>"
