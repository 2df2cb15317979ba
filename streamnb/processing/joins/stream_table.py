"""Stream–table joins: each event with the table's row for its key (Kafka Streams' ``KStream#join(KTable)``).

``stream.join(table, how="inner" | "left")`` yields ``(value, row)`` per
event: the row is looked up by the event's key (after ``group_by``, the new
key), or, for a global table, by ``on=`` (a Record field or a function of
the value, Kafka Streams' ``KeyValueMapper``). ``how="left"`` yields
``row=None`` when the key is absent; ``"inner"`` skips the event. An event
with a ``None`` value is dropped and counted (``stats.dropped``). Table
updates emit nothing.

A table with ``source=`` (:mod:`streamnb.tables.sourced`) is read together
with the stream in timestamp order: before an event of partition ``p`` at
time ``t``, the table's source partition ``p`` is applied up to ``t``
(updates at ``t`` itself first), so the result does not depend on timing.
Any other table is looked up as it is.

Example::

    async for order, customer in orders.join(customers, how="left"):
        ...

>>> from streamnb import App
>>> app = App("demo", broker="memory://")
>>> customers = app.Table("customers", source=app.topic("customers"))
>>> joined = app.stream("orders").join(customers, how="left")
>>> joined.stage, joined.join_stats.dropped
('join(customers, left)', 0)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ...errors import ConfigurationError, PartitionMismatchError
from ...events import Event
from ...timeunits import ms
from ...topics import Topic
from ...transaction import MISSING
from .asof import AsOfJoin, check_grace, held_events

__all__ = ["JoinStats", "JoinableTable", "check_copartitioned", "is_table", "lookup_key", "stream_table_join"]


@runtime_checkable
class JoinableTable(Protocol):
    """What a stream–table join needs of a table (streamnb.tables' tables have it; processing imports no table).

    A table that follows a topic also has ``reader`` (with ``async read(transport, partition, until)``)
    and ``driven`` (set True when a join moves it); a global one has ``is_global = True``.
    """

    name: str
    window: Any
    data: Mapping[Any, Any]
    changelog: Topic[Any, Any]


def is_table(obj: Any) -> bool:
    """True for a table (what ``stream.join`` joins as a table rather than as a stream)."""
    return isinstance(obj, JoinableTable)


@dataclass
class JoinStats:
    """What a join did so far (shown by the dashboard)."""

    joined: int = 0
    """Results yielded."""
    unmatched: int = 0
    """Events of an inner join with no row (skipped)."""
    dropped: int = 0
    """Events with a ``None`` value (dropped, as Kafka Streams drops null-valued stream records)."""
    late: int = 0
    """Records that came after their join window closed (stream–stream joins)."""
    buffered_left: int = 0
    """Records of the left stream kept for matching (stream–stream joins)."""
    buffered_right: int = 0
    """Records of the right stream kept for matching (stream–stream joins)."""
    table: str | None = None
    """The joined table's name (stream–table joins; None for stream–stream joins)."""
    table_read: int = 0
    """Records of the table's ``source=`` topic the join read into it (a partitioned table the join moves)."""


def lookup_key(on: Any) -> Callable[[Any], Any] | None:
    """``on=`` as a function of the value: a Record field (``Order.customer``), a callable, or None."""
    if on is None:
        return None
    field = getattr(on, "field", None)
    if field is not None and hasattr(on, "getattr"):
        def by_field(value: Any) -> Any:
            return value[field] if isinstance(value, dict) else getattr(value, field)
        return by_field
    if callable(on):
        return on  # type: ignore[no-any-return]
    raise ConfigurationError(f"join(on={on!r}): give a Record field (Order.customer) or a function of the value")


def check_copartitioned(stream_topic: Any, other: Any, what: str) -> None:
    """Raise PartitionMismatchError when a partitioned join reads topics with different partition counts."""
    mine, theirs = stream_topic.partition_count, other.partition_count
    if mine != theirs:
        raise PartitionMismatchError(
            f"{what}: topic {stream_topic.name!r} has {mine} partitions but {other.name!r} has {theirs}; "
            "a partitioned join needs co-partitioned topics (a key on the same partition number on both): "
            f"re-key the stream into {theirs} partitions with group_by(..., partitions={theirs}) or "
            f"through(a topic of {theirs} partitions), or join a GlobalTable instead"
        )


def _check_options(stream: Any, table: JoinableTable, how: str, on: Any) -> None:
    if how not in ("inner", "left"):
        raise ConfigurationError(f"join(table, how={how!r}): a stream–table join is 'inner' or 'left'")
    if table.window is not None:
        raise ConfigurationError(f"join({table.name!r}): a windowed table cannot be joined; join a plain table")
    is_global = getattr(table, "is_global", False)
    if on is not None and not is_global:
        raise ConfigurationError(
            f"join({table.name!r}, on=...): on= picks the lookup key of a GlobalTable; a partitioned table is "
            "looked up by the event's key (re-key the stream with group_by first)"
        )
    channel = stream.root.channel
    if not is_global and channel is not None:
        check_copartitioned(channel, table.changelog, f"stream.join({table.name!r})")


Op = Callable[[AsyncIterator[Event[Any, Any]]], AsyncIterator[Event[Any, Any]]]


def stream_table_join(
    stream: Any, table: JoinableTable, how: str, on: Any, grace: int | None = None
) -> tuple[Op, JoinStats]:
    """The operation turning ``stream``'s events into ``(value, row)`` events, and its counters.

    A versioned table (``history=True``/``versioned=``) is looked up as of each
    event's timestamp; ``grace`` (ms) then holds events back (:mod:`.asof`).
    """
    _check_options(stream, table, how, on)
    check_grace(table, grace)
    key_of = lookup_key(on)
    sourced = getattr(table, "reader", None) is not None and not getattr(table, "is_global", False)
    if sourced:
        table.driven = True  # type: ignore[attr-defined]
    stats = JoinStats(table=table.name)
    held = None
    if grace is not None and stream.root.channel is not None:
        owner = stream.agent.name if stream.agent is not None else "stream"
        held = AsOfJoin(stream.app, stream.root.channel, table.name, grace, owner)
    plan = _Plan(stream.app, stream.root, _lookup(table, key_of), table.reader if sourced else None,  # type: ignore[attr-defined]
                 held, stats, how)

    def op(events: AsyncIterator[Event[Any, Any]]) -> AsyncIterator[Event[Any, Any]]:
        return _run(plan, events)

    return op, stats


@dataclass
class _Plan:
    """What a stream–table join's run needs."""

    app: Any
    root: Any
    lookup: Callable[[Event[Any, Any]], Any]
    reader: Any  # a table with source=: its SourceReader, read in step with the stream (None: not sourced)
    held: AsOfJoin | None  # a grace: events wait until the table is as of their time
    stats: JoinStats
    how: str


async def _run(plan: _Plan, events: AsyncIterator[Event[Any, Any]]) -> AsyncIterator[Event[Any, Any]]:
    """The join's events: without grace one event in and at most one out, as it comes (no list, no call)."""
    reader, lookup, stats, held, inner = plan.reader, plan.lookup, plan.stats, plan.held, plan.how == "inner"
    transport = await plan.app.connect() if reader is not None or held is not None else None
    revoked = _forget_revoked(plan.app, held)
    try:
        async for event in events:
            if event is None:  # an idle tick
                yield event
                continue
            msg = event.message
            # Every record moves the table, a dropped one too (it was read).
            if reader is not None and reader.due(msg.partition, msg.timestamp):
                stats.table_read += await reader.read(transport, msg.partition, msg.timestamp)
            if event.value is None:
                stats.dropped += 1
                continue
            if held is not None:
                for out in await _held(plan, held, transport, event):
                    if out.message is not msg:  # a held event: current_event gives its key and timestamp
                        plan.root.joined_event = (msg, out)
                    yield out
                continue
            row = lookup(event)
            if row is MISSING:
                if inner:
                    stats.unmatched += 1
                    continue
                row = None
            stats.joined += 1
            yield Event(event.key, (event.value, row), msg)
    finally:
        if revoked is not None:
            plan.app.on_partitions_revoked.disconnect(revoked)


async def _held(plan: _Plan, held: AsOfJoin, transport: Any, event: Event[Any, Any]) -> list[Event[Any, Any]]:
    """With grace: the results of the events ``event`` releases from the buffer (itself at once when too late)."""
    stats = plan.stats
    out = _joined(await held_events(held, transport, event), plan.lookup, plan.how, stats)
    stats.late = sum(held.late.values())
    stats.buffered_left = sum(len(b) for b in held.buffers.values())
    return out


def _lookup(table: JoinableTable, key_of: Callable[[Any], Any] | None) -> Callable[[Event[Any, Any]], Any]:
    """The row of an event (MISSING: none): the latest one, or as of the event's timestamp (versioned table)."""
    if getattr(table, "versions", None) is not None:
        def as_of(event: Event[Any, Any]) -> Any:
            key = event.key if key_of is None else key_of(event.value)
            msg = event.message
            row = table.as_of(key, ms(msg.timestamp), msg.partition)  # type: ignore[attr-defined]
            return MISSING if row is None else row

        return as_of
    if key_of is None:  # (the usual case: by the event's key)
        return lambda event: table.data.get(event.key, MISSING)
    return lambda event: table.data.get(key_of(event.value), MISSING)


def _joined(
    events: list[Event[Any, Any]], lookup: Callable[[Event[Any, Any]], Any], how: str, stats: JoinStats
) -> list[Event[Any, Any]]:
    """``(value, row)`` events of ``events`` (an inner join skips those with no row)."""
    out = []
    for one in events:
        row = lookup(one)
        if row is MISSING:
            if how == "inner":
                stats.unmatched += 1
                continue
            row = None
        stats.joined += 1
        out.append(Event(one.key, (one.value, row), one.message))
    return out


def _forget_revoked(app: Any, held: AsOfJoin | None) -> Callable[..., None] | None:
    """Partitions moved away (committed first): forget their held events (read from the changelog if they return)."""
    signal = getattr(app, "on_partitions_revoked", None)
    if held is None or signal is None:
        return None

    def revoked(sender: Any, revoked: Any = (), **kwargs: Any) -> None:
        held.drop_partitions({tp.partition for tp in revoked if tp.topic == held.channel.name})

    signal.connect(revoked)
    return revoked
