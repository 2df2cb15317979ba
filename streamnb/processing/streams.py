"""Streams: what an agent iterates.

A :class:`Stream` is an async iterable over the values of a topic. The agent
that iterates it owns a consumer; processed offsets, table writes and sends
are committed together at batch boundaries (see :mod:`streamnb.transaction`).

Example::

    @app.agent(page_views)
    async def count(views):
        async for view in views.group_by(PageView.page):
            counts[view.page] += 1

Operations (Faust's names): ``group_by``, ``filter``, ``take``, ``through``,
``echo``, ``enumerate``, ``items``, ``events``.
"""

from __future__ import annotations

import inspect
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from typing import Any, Generic, Protocol, TypeVar

from .. import naming
from ..errors import ConfigurationError, StreamnbError
from ..events import Event
from ..runtime import Runtime
from ..topics import Topic
from ..transport.base import TP
from .source import Source
from .supervision import Hop, Supervisor

__all__ = ["Stream", "current_event"]

T = TypeVar("T")


logger = logging.getLogger("streamnb")

KeyFn = Callable[[Any], Any]
_current_stream: ContextVar[Stream[Any] | None] = ContextVar("streamnb_stream", default=None)


def current_event() -> Event[Any, Any] | None:
    """The event the agent running in this task is processing (Faust's ``faust.current_event()``).

    ``None`` outside agents. Inside an agent it is what ``stream.current_event``
    gives: key, value, partition, offset, timestamp and headers.

    >>> current_event() is None
    True
    """
    stream = _current_stream.get()
    return None if stream is None else stream.current_event
_TICK: Any = None  # yielded by the event generator on idle when an operator asked for ticks


class PendingEvent(Protocol):
    """A result whose event is built only when asked (a stream–stream join's pairs: see :attr:`Stream.joined_event`)."""

    def current(self) -> Event[Any, Any]:
        """The event of the result the agent holds."""
        ...


class Stream(Generic[T]):
    """An async iterable of values read from a topic.

    ``async for value in stream`` yields decoded values; ``stream.events()``
    yields :class:`~streamnb.events.Event` objects with key, partition,
    offset, timestamp and headers.

    >>> async for view in stream.filter(lambda v: v.page != "/health"):  # doctest: +SKIP
    ...     print(view)
    """

    def __init__(
        self,
        app: Runtime,
        channel: Topic[Any, Any] | None,
        *,
        agent: Supervisor | None = None,
        member: int = 0,
        members: int = 1,
        hops: tuple[Hop, ...] = (),
        stage: str = "input",
        parent: Stream[Any] | None = None,
        op: Callable[[AsyncIterator[Event[Any, Any]]], AsyncIterator[Event[Any, Any]]] | None = None,
    ) -> None:
        self.app = app
        self.channel = channel
        self.agent = agent
        self.member = member
        self.members = members
        self.hops = hops
        """``group_by``/``through`` re-keyings before :attr:`channel`, first one first (see :class:`Hop`)."""
        self.stage = stage
        """What this stream reads, for logs: ``input``, ``group_by(user)``, ``through(cleaned)``."""
        self.parent = parent
        self.op = op
        self.holds: list[Callable[[], dict[TP, int]]] = []
        self.tick_interval: float | None = None
        self.source: Source | None = None
        """The consumer and commit machinery, once the (root) stream is iterated."""
        self.join_stats: Any = None
        """A joined stream's counters (:class:`~streamnb.processing.joins.JoinStats`), else None."""
        self.values_op: Callable[[AsyncIterator[Event[Any, Any]]], AsyncIterator[Any]] | None = None
        """What ``async for`` iterates instead of :attr:`op`'s events' values, when the operation yields the
        values directly (a stream–stream join: no event per pair); it keeps :attr:`current_event` right."""
        self.joined_event: tuple[Any, Event[Any, Any] | PendingEvent] | None = None
        """(root): ``(message in hand, result)`` while an agent has a join's result: what
        :attr:`current_event` gives for it (its key and timestamp) while that message is in hand."""

    # -- iteration ---------------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[T]:
        if self.parent is None:
            return self._root(events=False, ticks=False)
        if self.values_op is not None:
            return self.values_op(self.parent.iter_events(False))
        return self._values()

    async def _values(self) -> AsyncIterator[T]:
        async for event in self.iter_events(False):
            yield event.value

    def iter_events(self, ticks: bool) -> AsyncIterator[Event[Any, Any]]:
        """Events through this stream's chain of operations; with ``ticks``, idle ticks too.

        What operations build on: an idle tick is ``None`` and comes only
        after an operator asked for them (``take(within=)``).
        """
        if self.parent is None:
            return self._root(events=True, ticks=ticks)
        assert self.op is not None
        return self.op(self.parent.iter_events(ticks))

    def events(self) -> AsyncIterator[Event[Any, Any]]:
        """Iterate :class:`Event` objects (key, value, partition, offset, timestamp, headers).

        >>> async for event in stream.events():  # doctest: +SKIP
        ...     print(event.key, event.offset)
        """
        return self.iter_events(False)

    async def items(self) -> AsyncIterator[tuple[Any, Any]]:
        """Iterate ``(key, value)`` pairs.

        >>> async for key, value in stream.items():  # doctest: +SKIP
        ...     table[key] = value
        """
        async for event in self.iter_events(False):
            yield event.key, event.value

    async def enumerate(self, start: int = 0) -> AsyncIterator[tuple[int, Any]]:
        """Iterate ``(n, value)`` pairs, counting from ``start``.

        >>> async for i, value in stream.enumerate():  # doctest: +SKIP
        ...     print(i, value)
        """
        i = start
        async for event in self.iter_events(False):
            yield i, event.value
            i += 1

    @property
    def root(self) -> Stream[Any]:
        """The stream that owns the consumer (the start of an operation chain)."""
        stream = self
        while stream.parent is not None:
            stream = stream.parent
        return stream

    @property
    def active_partitions(self) -> set[TP]:
        """The partitions of its topic this stream serves now (empty before it is iterated; Faust's name).

        Under ``@app.agent(..., isolated_partitions=True)`` each instance's
        stream serves at most one partition.
        """
        source = self.root.source
        consumer = None if source is None else source.consumer
        if consumer is None or self.channel is None:
            return set()
        name = self.channel.name
        return {tp for tp in consumer.assignment() if tp.topic == name}

    @property
    def current_event(self) -> Event[Any, Any] | None:
        """The event being processed, or ``None`` before the first one."""
        source = self.root.source
        if source is None:
            return None
        txn = source.txn
        msg = txn.message
        joined = self.root.joined_event
        if joined is not None and joined[0] is msg:
            result = joined[1]
            return result if isinstance(result, Event) else result.current()
        if msg is None:
            return None
        topic = self.app.topics.get(msg.topic)
        key = msg.key
        if topic is not None and key is not None:
            try:
                key = topic.decode_key(key)
            except StreamnbError:
                pass
        return Event(key, txn.value, msg)

    # -- operations --------------------------------------------------------------------------

    def _derive(
        self, op: Callable[[AsyncIterator[Event[Any, Any]]], AsyncIterator[Event[Any, Any]]]
    ) -> Stream[Any]:
        return Stream(self.app, self.channel, agent=self.agent, parent=self, op=op)

    def filter(self, fun: Callable[[T], bool | Awaitable[bool]]) -> Stream[T]:
        """Keep only values for which ``fun(value)`` is true (``fun`` may be async).

        >>> from streamnb import App
        >>> stream = App("demo", broker="memory://").stream("orders")
        >>> big = stream.filter(lambda order: order.qty > 10)  # iterate it with `async for`
        """
        is_async = inspect.iscoroutinefunction(fun)

        async def op(events: AsyncIterator[Event[Any, Any]]) -> AsyncIterator[Event[Any, Any]]:
            async for event in events:
                if event is _TICK:
                    yield event
                    continue
                keep = (await fun(event.value)) if is_async else fun(event.value)  # type: ignore[misc]
                if keep:
                    yield event

        return self._derive(op)

    def echo(self, *channels: Topic[Any, Any] | str) -> Stream[T]:
        """Send every value also to ``channels`` (in the agent's transaction), then yield it.

        >>> async for v in stream.echo(audit_topic):  # doctest: +SKIP
        ...     ...
        """
        topics = [self.app.resolve_topic(c) for c in channels]

        async def op(events: AsyncIterator[Event[Any, Any]]) -> AsyncIterator[Event[Any, Any]]:
            async for event in events:
                if event is not _TICK:
                    for topic in topics:
                        await topic.send(key=event.key, value=event.value, timestamp=event.timestamp)
                yield event

        return self._derive(op)

    def group_by(self, key: Any, *, name: str | None = None, partitions: int | None = None) -> Stream[T]:
        """Repartition by a new key, so that each key is processed on one partition.

        Every event is forwarded (its value bytes unchanged) to the internal
        topic ``<app id>-<agent>-<topic>-<name>-repartition``, keyed by
        ``key`` (a Record field such as ``PageView.user`` or a function of
        the value); the returned stream reads that topic. Tables written
        from it are co-partitioned with the new key. Re-keyings chain
        (``stream.group_by(A.user).group_by(A.region)``); an event is still
        all or nothing: what it did at its last stage commits with that
        stage's offset, or not at all.

        >>> from streamnb import App
        >>> stream = App("demo", broker="memory://").stream("views")
        >>> by_user = stream.group_by(lambda v: v["user"], name="user")
        >>> by_user.channel.name, by_user.stage
        ('demo-stream-views-user-repartition', 'group_by(user)')
        """
        channel = self._first_operation("group_by")
        keyfn = _key_function(key)
        label = name or _key_label(key)
        owner = self.agent.name if self.agent is not None else "stream"
        origin = self.hops[0].topic.name if self.hops else channel.name
        topic_name = naming.repartition_topic(self.app.id, owner, origin, label)
        if topic_name == channel.name or any(hop.topic.name == topic_name for hop in self.hops):
            raise ConfigurationError(
                f"group_by({label}) twice in one chain would re-key into the topic it reads: "
                "give the second one another name=..."
            )
        target = self.app.internal_topic(
            topic_name,
            partitions=partitions or channel.partitions,
            value_type=channel.value_type,
            value_serializer=channel.value_serializer,
            key_serializer="json",
            # Kept whatever their timestamps (as Kafka Streams does): replayed
            # history would otherwise fall to the broker's time retention
            # before the agent's next stage read it.
            retention=math.inf,
        )
        return Stream(
            self.app, target, agent=self.agent, member=self.member, members=self.members,
            hops=(*self.hops, Hop(channel, keyfn)), stage=f"group_by({label})",
        )

    def through(self, channel: Topic[Any, Any] | str) -> Stream[T]:
        """Forward every event to ``channel`` and continue with a stream reading it.

        >>> async for v in stream.through("cleaned"):  # doctest: +SKIP
        ...     ...
        """
        source = self._first_operation("through")
        target = self.app.resolve_topic(channel)
        if target.name == source.name or any(hop.topic.name == target.name for hop in self.hops):
            raise ConfigurationError(f"through({target.name!r}) would forward a topic into itself")
        return Stream(
            self.app, target, agent=self.agent, member=self.member, members=self.members,
            hops=(*self.hops, Hop(source, None)), stage=f"through({target.name})",
        )

    def join(self, other: Any, how: str = "inner", **options: Any) -> Stream[Any]:
        """Join with a table (``(value, row)`` pairs) or, with ``within=``, another stream (``(left, right)``).

        See :mod:`streamnb.processing.joins` for the rules.

        >>> from streamnb import App
        >>> app = App("demo", broker="memory://")
        >>> customers = app.Table("customers", source=app.topic("customers"))
        >>> app.stream("orders").join(customers, how="left").stage
        'join(customers, left)'
        """
        from .joins import join_operation

        op, stats, stage = join_operation(self, other, how, options)
        values = getattr(op, "values", None)  # (yields the values alone, cheaper: see values_op)
        if getattr(op, "wants_ticks", False):  # it acts when the stream is idle too
            root, inner, inner_values = self.root, op, values
            root.tick_interval = min(root.tick_interval or self.app.poll_interval, self.app.poll_interval)
            op = lambda _events: inner(self.iter_events(True))  # noqa: E731
            if inner_values is not None:
                values = lambda _events: inner_values(self.iter_events(True))  # noqa: E731
        joined = self._derive(op)
        joined.stage, joined.join_stats, joined.values_op = stage, stats, values
        joins = getattr(self.agent, "joins", None)
        if joins is not None:  # (the dashboard's line per join)
            joins[stage] = stats
        return joined

    def _first_operation(self, what: str) -> Topic[Any, Any]:
        """The topic this stream reads, if ``what`` (group_by/through) may re-key it here."""
        if self.parent is not None or self.channel is None:
            raise ConfigurationError(
                f"{what}() must come before filter/take/echo on a topic's stream: "
                f"call stream.{what}(...) first (re-keyings may follow one another)"
            )
        return self.channel

    async def take(self, max_: int, within: float | None = None) -> AsyncIterator[list[T]]:
        """Yield lists of up to ``max_`` values, or fewer when ``within`` seconds pass.

        Offsets of buffered values are not committed until the list was
        handed over and the next one requested.

        >>> async for batch in stream.take(100, within=1.0):  # doctest: +SKIP
        ...     await bulk_insert(batch)
        """
        if max_ < 1:
            raise ConfigurationError(f"take(max_) needs max_ >= 1, got {max_}")
        root = self.root
        buffer: list[Event[Any, Any]] = []

        def held() -> dict[TP, int]:
            out: dict[TP, int] = {}
            for event in buffer:
                tp = TP(event.message.topic, event.message.partition)
                if tp not in out:
                    out[tp] = event.message.offset
            return out

        root.holds.append(held)
        if within is not None:
            root.tick_interval = within if root.tick_interval is None else min(root.tick_interval, within)
        deadline: float | None = None
        try:
            async for event in self.iter_events(True):
                if event is not _TICK:
                    buffer.append(event)
                    if deadline is None and within is not None:
                        deadline = time.monotonic() + within
                if buffer and (
                    len(buffer) >= max_ or (deadline is not None and time.monotonic() >= deadline)
                ):
                    batch = [e.value for e in buffer]
                    yield batch
                    buffer.clear()
                    deadline = None
            if buffer:
                yield [e.value for e in buffer]
                buffer.clear()
        finally:
            if held in root.holds:
                root.holds.remove(held)

    # -- the root generator ------------------------------------------------------------------

    async def _root(self, events: bool, ticks: bool) -> AsyncIterator[Any]:
        """Read, decode and yield; commit between batches."""
        assert self.channel is not None
        source = self.source = Source(self)
        await source.start()
        txn = source.txn
        txn.activate()
        _current_stream.set(self)
        topic = self.channel
        decode_value = topic.decode_value
        decode_key = topic.decode_key
        poison = source.poison
        try:
            while True:
                msgs = await source.next_batch()
                if msgs is None:
                    return
                if not msgs:
                    if ticks:
                        yield _TICK
                    continue
                msgs = source.forward_batch(msgs)  # group_by/through (without re-keyings: msgs as they are)
                for msg in msgs:
                    if source.stopping:
                        source.stop_at(msg)
                        return
                    if poison and (msg[0], msg[1], msg[2]) in poison:
                        source.dead_letter(msg, poison[(msg[0], msg[1], msg[2])])
                        continue
                    try:
                        value = decode_value(msg[5])
                    except StreamnbError as exc:
                        source.dead_letter(msg, exc)
                        continue
                    txn.message = msg
                    txn.value = value
                    if events:
                        key = msg.key
                        if key is not None:
                            try:
                                key = decode_key(key)
                            except StreamnbError as exc:
                                source.dead_letter(msg, exc)
                                continue
                        yield Event(key, value, msg)
                    else:
                        yield value
        finally:
            await source.close(commit=not source.aborted)


def _key_function(key: Any) -> KeyFn:
    getter = getattr(key, "getattr", None)
    if getter is not None and hasattr(key, "field"):
        field = key.field

        def by_field(value: Any) -> Any:
            return value[field] if isinstance(value, dict) else getattr(value, field)

        by_field.field = field  # type: ignore[attr-defined]
        return by_field
    if callable(key):
        return key  # type: ignore[no-any-return]
    if isinstance(key, str):
        return lambda value: value[key] if isinstance(value, dict) else getattr(value, key)
    raise ConfigurationError(
        f"group_by() takes a Record field (e.g. PageView.user), a field name or a function of the value; got {key!r}"
    )


def _key_label(key: Any) -> str:
    if hasattr(key, "field"):
        return str(key.field)
    if isinstance(key, str):
        return key
    name = getattr(key, "__name__", None)
    if name and name != "<lambda>":
        return str(name)
    raise ConfigurationError(
        "group_by() with a lambda needs name=...: stream.group_by(lambda v: v['user'], name='user')"
    )
