"""Stream–stream joins in an agent: ``stream.join(other_topic, within=..., grace=..., how=...)``.

The agent's stream is the left side; ``other_topic`` (co-partitioned) the
right. Per partition ``p`` (a task) the join reads the right topic's
partition ``p`` itself, together with the stream in timestamp order: before
a left record at ``t`` it takes the right records with a timestamp ``<= t``
(in offset order, up to the first later one), so results never depend on
timing. The rule is :mod:`streamnb.processing.joins.windowed`'s.

Each result is yielded as ``(left, right)`` (``None`` for the missing side of
a left/outer result); ``stream.current_event()`` then carries the key and the
result's timestamp (``max(left.ts, right.ts)``, or the unmatched record's).

Late records (their window end + grace before stream time) are counted
(``join_stats.late``), passed to ``on_late(event)`` and sent to
``late_topic=`` (True: ``<app id>-<agent>-join-<topic>-late``) like late
window events. The records kept for matching, each task's stream time and
how far the right partition was read live in the changelog
``<app id>-<agent>-join-<topic>-changelog`` (one snapshot per partition and
commit), committed with the agent's offsets: they survive restarts and
rebalances, and with exactly-once go in the partition's transaction.

>>> from streamnb import App
>>> app = App("demo", broker="memory://")
>>> payments = app.topic("payments")
>>> app.stream("orders").join(payments, within=600, grace=60, how="left").stage
'join(payments, left, before=600.0 s, after=600.0 s, grace=60.0 s)'
"""

from __future__ import annotations

import inspect
import json
import logging
import math
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from ...errors import ConfigurationError
from ...events import Event, divert
from ...timeunits import seconds
from ...topics import Topic
from ...transaction import Transaction, current_transaction
from ...transport.base import TP, Message, ProducerRecord, Transport
from .pairs import Pairs, as_events, result_events
from .snapshots import latest_snapshot, snapshot_rows
from .stream_table import JoinStats, Op, check_copartitioned
from .windowed import LEFT, RIGHT, JoinWindow, Result, WindowJoin

__all__ = ["JoinDirty", "StreamStreamJoin", "stream_stream_join"]


def hashable(obj: Any) -> Any:
    """A decoded key usable as a dict key (JSON arrays as tuples)."""
    if isinstance(obj, list):
        return tuple(hashable(x) for x in obj)
    return obj

logger = logging.getLogger("streamnb")
_new = object.__new__

_dumps = json.JSONEncoder(separators=(",", ":")).encode
_OPTIONS = {"within", "before", "after", "grace", "on_late", "late_topic"}


class JoinDirty(dict[int, tuple[Any, ...]]):
    """A transaction's bookkeeping: partition -> the join's state there before the transaction."""


class StreamStreamJoin:
    """The join of one agent's stream with a topic: per-partition rule, right-side reader, changelog.

    A :class:`~streamnb.transaction.CommitParticipant`.
    """

    def __init__(
        self, app: Any, left: Topic[Any, Any], right: Topic[Any, Any], how: str, window: JoinWindow, owner: str,
        on_late: Callable[..., Any] | None = None, late_topic: Topic[Any, Any] | str | bool | None = None,
    ) -> None:
        WindowJoin(window, how)  # checks how=
        self.app = app
        self.left = left
        self.right = right
        self.how = how
        self.window = window
        self.name = f"{owner}-join-{right.name}"
        self.changelog: Topic[Any, Any] = app.internal_topic(
            f"{app.id}-{self.name}-changelog", partitions=left.partitions, key_serializer="json",
            value_serializer="json", compacting=True,
        )
        self.on_late = on_late
        self.late_topic: Topic[Any, Any] | None = None
        if late_topic is True:
            self.late_topic = app.internal_topic(f"{app.id}-{self.name}-late", key_serializer="raw",
                                                 value_serializer="raw")
        elif late_topic not in (None, False):
            self.late_topic = app.resolve_topic(late_topic)
        self.joins: dict[int, WindowJoin] = {}
        """Per partition (task): the rule's state."""
        self.positions: dict[int, int] = {}
        """Per partition: the next offset of the right topic to read."""
        self.held: dict[int, deque[Message]] = {}
        """Per partition: right records read but later than the left stream so far."""
        self.stats = JoinStats()
        self._results: list[Result] = []  # (reused by process)

    # -- processing -------------------------------------------------------------------------

    async def task(self, transport: Transport, partition: int) -> WindowJoin:
        """The state of ``partition``, read from the changelog when this worker has not got it."""
        join = self.joins.get(partition)
        if join is not None:
            return join
        await self.changelog.declare()
        if self.late_topic is not None:
            await self.late_topic.declare()
        join = WindowJoin(self.window, self.how)
        last = await latest_snapshot(transport, TP(self.changelog.name, partition))
        if last is not None:
            snapshot = self.changelog.value_codec.loads(last)
            join.load([self._row(r) for r in snapshot["rows"]], snapshot["time"])
            join.late = snapshot["late"]
            self.positions[partition] = snapshot["position"]
        self.joins[partition] = join
        self.held[partition] = deque()
        return join

    def _row(self, row: list[Any]) -> tuple[int, Any, int, Any, bool]:
        side, raw_key, ts, raw_value, matched = row
        topic = self.left if side == LEFT else self.right
        key_bytes = None if raw_key is None else raw_key.encode("latin-1")
        value_bytes = raw_value.encode("latin-1")
        key = hashable(topic.decode_key(key_bytes)) if key_bytes is not None else None
        return side, key, ts, (key_bytes, value_bytes, topic.decode_value(value_bytes)), matched

    async def right_until(self, transport: Transport, partition: int, until: float) -> list[Message]:
        """The right records of ``partition`` the merge takes before a left record at ``until``."""
        held = self.held[partition]
        out: list[Message] = []
        take, give = held.popleft, out.append
        while True:
            if not held:
                held.extend(await self._fetch(transport, partition))
                if not held:
                    break
            while held and held[0].timestamp <= until:
                give(take())
            if held:
                break
        return out

    async def right_pending(self, transport: Transport, partition: int) -> bool:
        """True when the right partition has records the join has not taken."""
        if self.held.get(partition):
            return True
        tp = TP(self.right.name, partition)
        position = self.positions.get(partition)
        end = (await transport.end_offsets([tp]))[tp]
        if position is None:
            return end > (await transport.beginning_offsets([tp]))[tp]
        return end > position

    async def _fetch(self, transport: Transport, partition: int) -> list[Message]:
        tp = TP(self.right.name, partition)
        start = self.positions.get(partition)
        if start is None:
            start = self.positions[partition] = (await transport.beginning_offsets([tp]))[tp]
        end = (await transport.end_offsets([tp]))[tp]
        if start >= end:
            return []
        msgs = await transport.read(tp, start, end, 10_000)
        if msgs:
            self.positions[partition] = msgs[-1].offset + 1
        return msgs

    def touch(self, txn: Transaction, partition: int, join: WindowJoin) -> None:
        """Note ``partition``'s state before ``txn`` changes it (to restore it if the commit fails)."""
        dirty: JoinDirty | None = txn.dirty.get(self)
        if dirty is None:
            dirty = txn.dirty[self] = JoinDirty()
        if partition not in dirty:
            dirty[partition] = (join.saved(), join.stream_time, join.late, self._position(partition))

    def _position(self, partition: int) -> int | None:
        held = self.held.get(partition)
        return held[0].offset if held else self.positions.get(partition)

    def process(self, join: WindowJoin, side: int, msg: Message, key: Any, value: Any, out: list[Any]) -> None:
        """One record through the rule (values kept with their bytes, for the changelog): its results to ``out``.

        The pairs it made go as one :class:`~.pairs.Pairs` (each pair an
        event of ``msg``, the message that caused it, with the pair's
        timestamp and the left record's key bytes, built when asked), what
        closed unmatched as events. Late records are routed (:meth:`_late`).
        """
        ts = round(msg[3] * 1000)  # timeunits.ms(msg.timestamp), inline
        others = join.match(side, key, ts, (msg[4], msg[5], value))  # (key and value bytes, value)
        if others is None:
            self._late(msg, key, value)
            return
        if others:
            pairs = _new(Pairs)  # Pairs(side, key, ts, value, msg, others), without the cost of calling __init__
            pairs.side, pairs.key, pairs.ts, pairs.value, pairs.cause, pairs.others, pairs.other, pairs.made = (
                side, key, ts, value, msg, others, others[0], None)
            out.append(pairs)
            self.stats.joined += len(others)
        if self.how == "inner":  # (nothing to yield when a record closes: it leaves the state as it is met)
            return
        results = self._results
        join.expire(results)
        if results:
            result_events(results, msg, out)
            self.stats.joined += len(results)
            results.clear()

    def _late(self, msg: Message, key: Any, value: Any) -> None:
        txn = current_transaction()
        if self.late_topic is not None and txn is not None:
            headers = (("streamnb-join", self.name.encode()),)
            txn.records.append(divert(msg, self.late_topic.name, self.late_topic.partition_count, headers))
        if self.on_late is not None:
            try:
                out = self.on_late(Event(key, value, msg))
                if out is not None and inspect.isawaitable(out):
                    self.app.spawn(out, f"on_late({self.name})")
            except Exception:
                logger.exception("on_late of join %r failed", self.name)

    def count_buffered(self) -> None:
        """Refresh the buffered and late counts of :attr:`stats` (late: kept in the changelog, over restarts)."""
        self.stats.late = sum(j.late for j in self.joins.values())
        self.stats.buffered_left = sum(j.buffered(LEFT) for j in self.joins.values())
        self.stats.buffered_right = sum(j.buffered(RIGHT) for j in self.joins.values())

    # -- the commit protocol ----------------------------------------------------------------

    def before_commit(self, txn: Transaction) -> None:
        """Refresh the counters (nothing closes at commit time: records close as records come)."""
        self.count_buffered()

    def changelog_records(self, dirty: JoinDirty, timestamp: float) -> list[ProducerRecord]:
        """One snapshot per partition the transaction touched: kept records, stream time, late count, position."""
        out = []
        for partition in dirty:
            join = self.joins.get(partition)
            if join is None:
                continue
            tail = _dumps({"time": join.stream_time, "late": join.late, "position": self._position(partition)})
            value = f'{{"rows":[{",".join(snapshot_rows(join))}],{tail[1:]}'.encode()
            out.append(ProducerRecord(self.changelog.name, partition, b"%d" % partition, value, timestamp))
        return out

    def restore(self, dirty: JoinDirty) -> None:
        """Put back each touched partition's state as it was before the transaction."""
        for partition, (rows, stream_time, late, position) in dirty.items():
            join = self.joins.get(partition)
            if join is None:
                continue
            join.restore(rows, stream_time)
            join.late = late
            self.held[partition] = deque()
            if position is None:
                self.positions.pop(partition, None)
            else:
                self.positions[partition] = position

    def drop_partitions(self, partitions: set[int]) -> None:
        """Forget these partitions (read from the changelog again when next used)."""
        for partition in partitions:
            self.joins.pop(partition, None)
            self.positions.pop(partition, None)
            self.held.pop(partition, None)

    def after_commit(self, dirty: JoinDirty) -> None:
        """Nothing to do."""

    __hash__ = object.__hash__
    __eq__ = object.__eq__


def stream_stream_join(stream: Any, other: Any, how: str, options: dict[str, Any]) -> tuple[Op, JoinStats, str]:
    """The operation, counters and stage label of ``stream.join(other, within=..., how=...)``."""
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        raise ConfigurationError(
            f"join({getattr(other, 'name', other)!r}): {', '.join(unknown)} do(es) not apply to a stream–stream "
            f"join (it takes {', '.join(sorted(_OPTIONS))} and how=)"
        )
    if not isinstance(other, (Topic, str)):
        raise ConfigurationError(
            f"stream.join({other!r}): join a Table (stream–table) or a topic with within= (stream–stream)"
        )
    window = JoinWindow.of(options.get("within"), options.get("before"), options.get("after"), options.get("grace"))
    app = stream.app
    right = app.resolve_topic(other)
    left = stream.root.channel
    if left is None:
        raise ConfigurationError("stream.join(topic, ...) needs a stream read from a topic")
    check_copartitioned(left, right, f"stream.join({right.name!r})")
    owner = stream.agent.name if stream.agent is not None else "stream"
    join = StreamStreamJoin(app, left, right, how, window, owner, options.get("on_late"), options.get("late_topic"))
    label = (f"join({right.name}, {how}, before={seconds(window.before)} s, after={seconds(window.after)} s, "
             f"grace={seconds(window.grace)} s)")
    return _operation(join, stream.root), join.stats, label


def _operation(join: StreamStreamJoin, root: Any) -> Op:
    """The join as a stream operation: ``op(events)`` yields result events, ``op.values(events)`` the pairs alone.

    ``op.values`` is what ``async for left, right in joined`` iterates: no
    event per pair (:class:`~.pairs.Pairs`), ``stream.current_event`` still
    the pair's. Both take idle ticks (``op.wants_ticks``).
    """
    def op(events: AsyncIterator[Event[Any, Any]]) -> AsyncIterator[Event[Any, Any]]:
        return _run(join, root, events, False)

    def values(events: AsyncIterator[Event[Any, Any]]) -> AsyncIterator[Any]:
        return _run(join, root, events, True)

    op.values = values  # type: ignore[attr-defined]
    op.wants_ticks = True  # type: ignore[attr-defined]
    return op


async def _run(join: StreamStreamJoin, root: Any, events: AsyncIterator[Event[Any, Any]],
               values: bool) -> AsyncIterator[Any]:
    """The join's results for the left stream's ``events``: events, or (``values``) their values."""
    transport = await join.app.connect()
    read_to: dict[int, int] = {}  # left partition -> next offset
    forget = _forget_revoked(join, read_to)
    try:
        async for event in events:
            if event is None:  # the left stream is idle: partitions read to their end take the right's rest
                async for out in _on_idle(join, transport, read_to):
                    root.joined_event = (out.message, out)
                    yield out.value if values else out
                continue
            msg = event.message
            read_to[msg.partition] = msg.offset + 1
            # The message in hand stays what the source handed out (a rebalance finds it by
            # identity); stream.current_event gives the result's key and timestamp.
            results = _step_now(join, event)
            for item in await _step(join, transport, msg.partition, event) if results is None else results:
                if type(item) is not Pairs:
                    root.joined_event = (msg, item)
                    yield item.value if values else item
                elif values:
                    root.joined_event = (msg, item)  # item.current(): the pair in hand's event
                    value = item.value
                    if item.side == LEFT:
                        for other in item.others:
                            item.other = other
                            yield value, other.value[2]
                    else:
                        for other in item.others:
                            item.other = other
                            yield other.value[2], value
                else:
                    for out in item.events():
                        root.joined_event = (msg, out)
                        yield out
    finally:
        forget()


async def _on_idle(join: StreamStreamJoin, transport: Transport, read_to: dict[int, int]
                   ) -> AsyncIterator[Event[Any, Any]]:
    """The results of the right records read after the left ones, partition by partition, in its transaction."""
    txn = current_transaction()
    for partition in await _caught_up(join, transport, read_to):
        for out in as_events(await _step(join, transport, partition, None)):
            if txn is not None:  # a table written now goes to the result's partition
                txn.message, txn.value = out.message, out.value
            yield out


def _forget_revoked(join: StreamStreamJoin, read_to: dict[int, int]) -> Callable[[], None]:
    """Follow revocations (partitions moved away, committed first): forget them, read from the changelog if back.

    Returns what stops following them.
    """
    signal = getattr(join.app, "on_partitions_revoked", None)

    def revoked(sender: Any, revoked: Any = (), **kwargs: Any) -> None:
        gone = {tp.partition for tp in revoked if tp.topic == join.left.name}
        join.drop_partitions(gone)
        for partition in gone:
            read_to.pop(partition, None)

    if signal is None:
        return lambda: None
    signal.connect(revoked)
    return lambda: signal.disconnect(revoked)


async def _caught_up(join: StreamStreamJoin, transport: Transport, read_to: dict[int, int]) -> list[int]:
    """Left partitions with no record left to read (so the merge may take the right side alone)."""
    tps = [TP(join.left.name, p) for p in read_to]
    if not tps:
        return []
    ends = await transport.end_offsets(tps)
    idle = [tp.partition for tp in tps if ends[tp] <= read_to[tp.partition]]
    return [p for p in idle if await join.right_pending(transport, p)]


def _begin(join: StreamStreamJoin, partition: int, state: WindowJoin, idle: bool) -> None:
    """Note ``partition``'s state in the transaction (once); exactly-once and ``idle``: its own transaction."""
    txn = current_transaction()
    if txn is not None:
        if idle and txn.outputs is not None:
            txn.switch(TP(join.left.name, partition))  # exactly-once: this partition's transaction
        dirty = txn.dirty.get(join)
        if dirty is None or partition not in dirty:
            join.touch(txn, partition, state)


def _step_now(join: StreamStreamJoin, event: Event[Any, Any]) -> list[Any] | None:
    """:func:`_step` without waiting when nothing is to be read (None: call it)."""
    msg = event.message
    state, held, until = join.joins.get(msg.partition), join.held.get(msg.partition), msg.timestamp
    if state is None or not held or (held[0].timestamp <= until and held[-1].timestamp <= until):
        return None  # (the merge may take every right record read so far: read on first)
    _begin(join, msg.partition, state, False)
    out: list[Any] = []
    if held[0].timestamp <= until:
        rights = []
        while held[0].timestamp <= until:  # (stops before the end: the last one is later)
            rights.append(held.popleft())
        _through(join, state, rights, out)
    _left(join, state, event, out)
    return out


async def _step(join: StreamStreamJoin, transport: Transport, partition: int,
                event: Event[Any, Any] | None) -> list[Any]:
    """The right records the merge takes before ``event`` (all that are there: None), then ``event``: results.

    Results as :meth:`StreamStreamJoin.process` gives them: events and :class:`~.pairs.Pairs`.
    """
    state = join.joins.get(partition) or await join.task(transport, partition)
    _begin(join, partition, state, event is None)
    until = math.inf if event is None else event.message.timestamp
    out: list[Any] = []
    held = join.held[partition]
    if not held or held[0].timestamp <= until:  # (else the right side waits: nothing to read)
        rights: list[Message] = []
        while held and held[0].timestamp <= until:
            rights.append(held.popleft())
        if not held:  # all read so far taken: read on
            rights += await join.right_until(transport, partition, until)
        _through(join, state, rights, out)
    if event is not None:
        _left(join, state, event, out)
    return out


def _left(join: StreamStreamJoin, state: WindowJoin, event: Event[Any, Any], out: list[Any]) -> None:
    """A left record through the rule: results to ``out``."""
    if event.value is None:
        join.stats.dropped += 1
        return
    key = event.key
    if isinstance(key, list):
        key = hashable(key)
    join.process(state, LEFT, event.message, key, event.value, out)


def _through(join: StreamStreamJoin, state: WindowJoin, rights: list[Message], out: list[Any]) -> None:
    """Right records through the rule: results to ``out``."""
    decode_key, decode_value = join.right.decode_key, join.right.decode_value
    for right in rights:
        if right.value is None:
            join.stats.dropped += 1
            continue
        key = None if right.key is None else decode_key(right.key)
        if isinstance(key, list):
            key = hashable(key)
        join.process(state, RIGHT, right, key, decode_value(right.value), out)
