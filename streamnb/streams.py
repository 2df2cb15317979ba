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

import asyncio
import inspect
import logging
import operator
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError, StreamnbError
from .events import Event
from .topics import partition_for_key
from .transaction import Transaction
from .transport.base import TP, Consumer, Message, ProducerRecord, RebalanceListener

if TYPE_CHECKING:
    from .agents import Agent
    from .app import App
    from .topics import Topic

__all__ = ["Stream"]

_new_tuple = tuple.__new__
_tp_of = operator.itemgetter(0, 1)
_offset_of = operator.itemgetter(2)
_MISSING: Any = object()

logger = logging.getLogger("streamnb")

KeyFn = Callable[[Any], Any]
_TICK: Any = None  # yielded by the event generator on idle when an operator asked for ticks


class _Stopped(Exception):
    """Internal: the stream was asked to stop."""


class Stream:
    """An async iterable of values read from a topic.

    ``async for value in stream`` yields decoded values; ``stream.events()``
    yields :class:`~streamnb.events.Event` objects with key, partition,
    offset, timestamp and headers.

    >>> async for view in stream.filter(lambda v: v.page != "/health"):  # doctest: +SKIP
    ...     print(view)
    """

    def __init__(
        self,
        app: App,
        channel: Topic | None,
        *,
        agent: Agent | None = None,
        member: int = 0,
        members: int = 1,
        forward_from: tuple[Topic, KeyFn | None] | None = None,
        parent: Stream | None = None,
        op: Callable[[AsyncIterator[Event]], AsyncIterator[Event]] | None = None,
    ) -> None:
        self.app = app
        self.channel = channel
        self.agent = agent
        self.member = member
        self.members = members
        self.forward_from = forward_from
        self.parent = parent
        self.op = op
        self.holds: list[Callable[[], dict[TP, int]]] = []
        self.tick_interval: float | None = None
        self._source: _Source | None = None

    # -- iteration ---------------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[Any]:
        if self.parent is None:
            return self._root(events=False, ticks=False)
        return self._values()

    async def _values(self) -> AsyncIterator[Any]:
        async for event in self._events(False):
            yield event.value

    def _events(self, ticks: bool) -> AsyncIterator[Event]:
        if self.parent is None:
            return self._root(events=True, ticks=ticks)
        assert self.op is not None
        return self.op(self.parent._events(ticks))

    def events(self) -> AsyncIterator[Event]:
        """Iterate :class:`Event` objects (key, value, partition, offset, timestamp, headers).

        >>> async for event in stream.events():  # doctest: +SKIP
        ...     print(event.key, event.offset)
        """
        return self._events(False)

    async def items(self) -> AsyncIterator[tuple[Any, Any]]:
        """Iterate ``(key, value)`` pairs.

        >>> async for key, value in stream.items():  # doctest: +SKIP
        ...     table[key] = value
        """
        async for event in self._events(False):
            yield event.key, event.value

    async def enumerate(self, start: int = 0) -> AsyncIterator[tuple[int, Any]]:
        """Iterate ``(n, value)`` pairs, counting from ``start``.

        >>> async for i, value in stream.enumerate():  # doctest: +SKIP
        ...     print(i, value)
        """
        i = start
        async for event in self._events(False):
            yield i, event.value
            i += 1

    @property
    def root(self) -> Stream:
        """The stream that owns the consumer (the start of an operation chain)."""
        stream = self
        while stream.parent is not None:
            stream = stream.parent
        return stream

    @property
    def current_event(self) -> Event | None:
        """The event being processed, or ``None`` before the first one."""
        source = self.root._source
        if source is None or source.txn.message is None:
            return None
        txn = source.txn
        msg = txn.message
        topic = self.app.topics.get(msg.topic)
        key = msg.key
        if topic is not None and key is not None:
            try:
                key = topic.decode_key(key)
            except StreamnbError:
                pass
        return Event(key, txn.value, msg)

    # -- operations --------------------------------------------------------------------------

    def _derive(self, op: Callable[[AsyncIterator[Event]], AsyncIterator[Event]]) -> Stream:
        return Stream(self.app, self.channel, agent=self.agent, parent=self, op=op)

    def filter(self, fun: Callable[[Any], bool | Awaitable[bool]]) -> Stream:
        """Keep only values for which ``fun(value)`` is true (``fun`` may be async).

        >>> big = stream.filter(lambda order: order.qty > 10)  # doctest: +SKIP
        """
        is_async = inspect.iscoroutinefunction(fun)

        async def op(events: AsyncIterator[Event]) -> AsyncIterator[Event]:
            async for event in events:
                if event is _TICK:
                    yield event
                    continue
                keep = (await fun(event.value)) if is_async else fun(event.value)  # type: ignore[misc]
                if keep:
                    yield event

        return self._derive(op)

    def echo(self, *channels: Topic | str) -> Stream:
        """Send every value also to ``channels`` (in the agent's transaction), then yield it.

        >>> async for v in stream.echo(audit_topic):  # doctest: +SKIP
        ...     ...
        """
        topics = [self.app._resolve_topic(c) for c in channels]

        async def op(events: AsyncIterator[Event]) -> AsyncIterator[Event]:
            async for event in events:
                if event is not _TICK:
                    for topic in topics:
                        await topic.send(key=event.key, value=event.value, timestamp=event.timestamp)
                yield event

        return self._derive(op)

    def group_by(self, key: Any, *, name: str | None = None, partitions: int | None = None) -> Stream:
        """Repartition by a new key, so that each key is processed on one partition.

        Every event is forwarded (its value bytes unchanged) to the internal
        topic ``<app id>-<agent>-<topic>-<name>-repartition``, keyed by
        ``key`` (a Record field such as ``PageView.user`` or a function of
        the value); the returned stream reads that topic. Tables written
        from it are co-partitioned with the new key.

        >>> async for view in stream.group_by(PageView.user):  # doctest: +SKIP
        ...     views_per_user[view.user] += 1
        """
        if self.parent is not None or self.forward_from is not None or self.channel is None:
            raise ConfigurationError(
                "group_by() must be the first operation on a topic's stream: "
                "call stream.group_by(...) before filter/take/echo, and at most once"
            )
        keyfn = _key_function(key)
        label = name or _key_label(key)
        owner = self.agent.name if self.agent is not None else "stream"
        topic_name = f"{self.app.id}-{owner}-{self.channel.name}-{label}-repartition"
        target = self.app._internal_topic(
            topic_name,
            partitions=partitions or self.channel.partitions,
            value_type=self.channel.value_type,
            value_serializer=self.channel.value_serializer,
            key_serializer="json",
        )
        return Stream(
            self.app, target, agent=self.agent, member=self.member, members=self.members,
            forward_from=(self.channel, keyfn),
        )

    def through(self, channel: Topic | str) -> Stream:
        """Forward every event to ``channel`` and continue with a stream reading it.

        >>> async for v in stream.through("cleaned"):  # doctest: +SKIP
        ...     ...
        """
        if self.parent is not None or self.forward_from is not None or self.channel is None:
            raise ConfigurationError("through() must be the first operation on a topic's stream")
        target = self.app._resolve_topic(channel)
        return Stream(
            self.app, target, agent=self.agent, member=self.member, members=self.members,
            forward_from=(self.channel, None),
        )

    async def take(self, max_: int, within: float | None = None) -> AsyncIterator[list[Any]]:
        """Yield lists of up to ``max_`` values, or fewer when ``within`` seconds pass.

        Offsets of buffered values are not committed until the list was
        handed over and the next one requested.

        >>> async for batch in stream.take(100, within=1.0):  # doctest: +SKIP
        ...     await bulk_insert(batch)
        """
        if max_ < 1:
            raise ConfigurationError(f"take(max_) needs max_ >= 1, got {max_}")
        root = self.root
        buffer: list[Event] = []

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
            async for event in self._events(True):
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
        source = self._source = _Source(self)
        await source.start()
        txn = source.txn
        txn.activate()
        topic = self.channel
        decode_value = topic.decode_value
        decode_key = topic.decode_key
        forward = source.forward
        forward_name = forward[0].name if forward is not None else None
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
                if forward_name is not None:
                    msgs = source.forward_batch(msgs, forward_name)
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


class _Source:
    """The consumer, transaction and commit policy behind one iterated stream."""

    def __init__(self, stream: Stream) -> None:
        app = stream.app
        assert stream.channel is not None
        self.stream = stream
        self.app = app
        self.agent = stream.agent
        self.channel = stream.channel
        self.forward = stream.forward_from
        self.txn = Transaction()
        owner = stream.agent.name if stream.agent is not None else f"stream-{stream.channel.name}"
        self.group = f"{app.id}-{owner}"
        self.consumer: Consumer | None = None
        self.pending: dict[tuple[str, int], int] = {}  # last processed offset per partition
        self.last_batch: Sequence[Message] = ()
        self.last_commit = time.monotonic()
        self.stopping = False
        self.aborted = False
        self.closed = False
        self.waiting = False
        self.poison: dict[tuple[str, int, int], BaseException] = (
            stream.agent._poison if stream.agent is not None else {}
        )
        self._forward_keys: dict[Any, bytes | None] = {}
        self._fast_field: str | None = None
        self._fast_loads: Callable[[bytes], Any] = lambda data: None
        if self.forward is not None and self.forward[1] is not None:
            field = getattr(self.forward[1], "field", None)
            src = self.forward[0]
            if field is not None and src.value_serializer == "json" and hasattr(src.value_type, "from_data"):
                self._fast_field = field
                self._fast_loads = src.value_codec.loads
        self._dlq: Topic | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        transport = await self.app._connect()
        topics = [self.channel]
        if self.forward is not None:
            topics.append(self.forward[0])
        for topic in topics:
            await topic.declare()
        self._dlq = self.app._dlq_topic(self.agent.name if self.agent else self.channel.name)
        await self._dlq.declare()
        listener = RebalanceListener(self._on_assigned, self._on_revoked)
        self.consumer = transport.consumer(
            self.group, [t.name for t in topics], listener,
            member=self.stream.member, members=self.stream.members,
        )
        await self.consumer.start()
        if self.agent is not None:
            self.agent._sources.add(self)

    async def close(self, commit: bool) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            if commit:
                msg = self.txn.message
                batch = self.last_batch
                if batch and msg is not None:  # the agent returned mid-batch: done up to msg
                    index = next((i for i, m in enumerate(batch) if m is msg), -1)
                    self._account(batch[: index + 1])
                    self.last_batch = ()
                await self.commit()
            else:
                self.txn.abort()
        finally:
            if self.consumer is not None:
                await self.consumer.stop()
            if self.agent is not None:
                self.agent._sources.discard(self)
            self.txn.deactivate()

    def abort(self) -> None:
        """Undo everything since the last commit (the agent crashed)."""
        self.aborted = True
        self.pending.clear()
        self.txn.abort()

    async def _on_assigned(self, tps: set[TP]) -> None:
        await self.app._partitions_assigned(self, tps)

    async def _on_revoked(self, tps: set[TP]) -> None:
        """Partitions move to another worker (Kafka): commit what was processed,
        and drop the rest of the batch in hand for those partitions, so that
        only their new owner writes their table partitions from now on."""
        if not self.aborted and not self.closed:
            batch = self.last_batch
            msg = self.txn.message
            index = next((i for i, m in enumerate(batch) if m is msg), -1) if batch else -1
            if batch and index >= 0:
                # The agent is processing batch[index]: everything before it is done.
                self._account(batch[:index])
                if isinstance(batch, list):
                    revoked = {(tp.topic, tp.partition) for tp in tps}
                    batch[index + 1 :] = [m for m in batch[index + 1 :] if (m[0], m[1]) not in revoked]
            await self.commit()
        await self.app._partitions_revoked(self, tps)

    # -- batches and commits ------------------------------------------------------------------

    async def next_batch(self) -> list[Message] | None:
        """The next batch of messages, ``[]`` on an idle tick, ``None`` when stopping."""
        consumer = self.consumer
        assert consumer is not None
        self._account(self.last_batch)
        self.last_batch = ()
        app = self.app
        max_records = app.stream_batch_size
        agent = self.agent
        while True:
            if self.stopping or (agent is not None and agent._stopping):
                self.stopping = True
                await self.commit()
                return None
            if agent is not None and agent._paused.is_set() is False:
                await self.commit()
                await agent._paused.wait()
                continue
            msgs = await consumer.getmany(0, max_records)
            if msgs:
                if len(self.txn.records) >= app.commit_records or time.monotonic() - self.last_commit >= app.commit_interval:
                    await self.commit()
                else:
                    await asyncio.sleep(0)  # let the kernel answer between batches
            else:
                await self.commit()
                self.waiting = True
                try:
                    msgs = await consumer.getmany(self.stream.tick_interval or app.poll_interval, max_records)
                finally:
                    self.waiting = False
                if not msgs:
                    if self.stream.tick_interval is not None:
                        return []
                    continue
            if agent is not None:
                if not agent._paused.is_set():  # paused while waiting: hold the batch
                    await agent._paused.wait()
                    if self.stopping:
                        return None
                agent.events_received += len(msgs)
            self.last_batch = msgs
            return msgs

    def _account(self, msgs: Sequence[Message]) -> None:
        """Mark every message of a fully processed batch as done."""
        if msgs:
            self.pending.update(zip(map(_tp_of, msgs), map(_offset_of, msgs)))
            if self.agent is not None:
                self.agent.events_processed += len(msgs)

    def forward_batch(self, msgs: list[Message], forward_name: str) -> list[Message]:
        """Forward the batch's source messages (group_by/through); return the rest to process."""
        rest = []
        forwarded = []
        forward_one = self.forward_one
        for msg in msgs:
            if msg[0] == forward_name:
                forward_one(msg)
                forwarded.append(msg)
            else:
                rest.append(msg)
        if forwarded:
            self.pending.update(zip(map(_tp_of, forwarded), map(_offset_of, forwarded)))
            self.last_batch = rest
        return rest

    def stop_at(self, msg: Message) -> None:
        """Stop mid-batch: messages before ``msg`` are done, the rest is not."""
        batch = self.last_batch
        index = next(i for i, m in enumerate(batch) if m is msg)
        self.last_batch = ()
        self._account(batch[:index])

    async def commit(self) -> None:
        """Commit processed offsets, table changes and sends together."""
        txn = self.txn
        if not self.pending and not len(txn):
            self.last_commit = time.monotonic()
            return
        if self.aborted or self.consumer is None:
            return
        offsets = {TP(t, p): o + 1 for (t, p), o in self.pending.items()}
        for hold in self.stream.holds:
            for tp, first_held in hold().items():
                if tp in offsets and offsets[tp] > first_held:
                    offsets[tp] = first_held
        for table in list(txn.dirty):
            table._before_commit(txn)
        tables = list(txn.dirty)
        records = txn.collect(time.time())
        inflight = asyncio.ensure_future(self.consumer.commit(offsets, records))
        try:
            await asyncio.shield(inflight)
        except asyncio.CancelledError:
            await inflight  # already under way: finish it so nothing is written twice
            txn.clear()
            self.pending.clear()
            raise
        txn.clear()
        self.pending.clear()
        self.last_commit = time.monotonic()
        for table in tables:
            table._after_commit()

    # -- forwarding and dead letters ---------------------------------------------------------

    def forward_one(self, msg: Message) -> None:
        """group_by/through: re-key one source message and queue it for the target topic."""
        assert self.forward is not None
        source, keyfn = self.forward
        target = self.channel
        if keyfn is None:
            raw_key = msg.key
        else:
            try:
                key = _MISSING
                field = self._fast_field
                if field is not None and msg.value is not None:
                    # JSON Records: read the key field without building the Record
                    # (the processing side decodes and validates it).
                    obj = self._fast_loads(msg.value)
                    if type(obj) is dict:
                        key = obj.get(field, _MISSING)
                if key is _MISSING:
                    key = keyfn(source.decode_value(msg.value))
            except StreamnbError as exc:
                self.dead_letter(msg, exc)
                return
            except Exception as exc:  # a user key function failed on this value
                self.dead_letter(msg, exc)
                return
            cache = self._forward_keys
            raw_key = cache.get(key) if isinstance(key, (str, int)) else None
            if raw_key is None:
                raw_key = target.encode_key(key)
                if isinstance(key, (str, int)) and len(cache) < 100_000:
                    cache[key] = raw_key
        partition = partition_for_key(raw_key, target.partition_count, target._rr)
        self.txn.records.append(
            _new_tuple(ProducerRecord, (target.name, partition, raw_key, msg.value, msg.timestamp, msg.headers))
        )

    def dead_letter(self, msg: Message, exc: BaseException) -> None:
        """Send a message that cannot be processed to ``<app id>-<agent>-dlq``, with the reason."""
        dlq = self._dlq
        assert dlq is not None
        reason = f"{type(exc).__name__}: {exc}"
        headers = tuple(msg.headers) + (
            ("streamnb-error", reason.encode("utf-8", "replace")[:4000]),
            ("streamnb-topic", msg.topic.encode()),
            ("streamnb-partition", str(msg.partition).encode()),
            ("streamnb-offset", str(msg.offset).encode()),
        )
        self.txn.records.append(
            ProducerRecord(dlq.name, msg.partition % dlq.partition_count, msg.key, msg.value, msg.timestamp, headers)
        )
        if self.agent is not None:
            self.agent._dead_lettered(msg, reason)
        else:
            logger.warning("dead-lettered %s[%d]@%d: %s", msg.topic, msg.partition, msg.offset, reason)


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
    raise ConfigurationError("group_by() with a lambda needs name=...: stream.group_by(lambda v: v['user'], name='user')")
