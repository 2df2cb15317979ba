"""The source behind an iterated stream: consumer, transaction and commits.

When an agent starts iterating its stream, a :class:`Source` joins the
consumer group, fetches batches, forwards ``group_by``/``through`` input to
the internal topic, dead-letters what cannot be decoded, and commits
processed offsets together with the agent's table changes and sends
(``Consumer.commit``) between batches: when the pending work is large, when
``commit_interval`` passed, or before waiting for new messages.
"""

from __future__ import annotations

import asyncio
import logging
import operator
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .errors import StreamnbError
from .topics import partition_for_key
from .transaction import Transaction
from .transport.base import TP, Consumer, Message, ProducerRecord, RebalanceListener

if TYPE_CHECKING:
    from .streams import Stream
    from .topics import Topic

__all__ = ["Source"]

logger = logging.getLogger("streamnb")

_new_tuple = tuple.__new__
_tp_of = operator.itemgetter(0, 1)
_offset_of = operator.itemgetter(2)
_MISSING: Any = object()


class Source:
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
