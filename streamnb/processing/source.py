"""The source behind an iterated stream: consumer, transaction and commits.

When an agent starts iterating its stream, a :class:`Source` joins the
consumer group, fetches batches, forwards ``group_by``/``through`` input to
the internal topic, dead-letters what cannot be decoded, and commits
processed offsets together with the agent's table changes and sends
(``Consumer.commit``) between batches: when the pending work is large, when
``commit_interval`` passed, or before waiting for new messages.

Exactly-once on Kafka (a :attr:`~streamnb.transport.base.Consumer.transactional`
consumer) commits one transaction per input partition, so the source hands
the agent one partition's messages at a time and switches the transaction's
record list with them (:meth:`~streamnb.transaction.Transaction.switch`);
a rebalance waits until the agent finished the batch in hand, so no event is
half in a commit; and a failed commit drops the table partitions it touched
(the changelog, read again, is the truth) before the agent restarts from the
committed offsets.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import operator
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from .. import _gc, naming
from ..errors import BrokerError, EventTimeError, SchemaRegistryUnavailableError
from ..events import time_problem
from ..topics import Topic
from ..transaction import Transaction
from ..transport.base import EXACTLY_ONCE, TP, Consumer, Message, RebalanceListener
from .deadletters import DeadLetters
from .feed import Feed, positions_of
from .forwarding import Forwarder, Purger
from .supervision import Hop, SourceConfig, Supervisor

__all__ = ["Hop", "Source", "SourceConfig", "Supervisor"]  # the protocols live in streamnb.processing.supervision

logger = logging.getLogger("streamnb")

_tp_of = operator.itemgetter(0, 1)
_offset_of = operator.itemgetter(2)
_timestamp_of = operator.itemgetter(3)


RELEASE_STEP = 20_000
"""Records of a large commit freed at a time (freeing a million objects at once holds the loop ~0.1 s)."""


async def _release_in_steps(lists: list[list[Any]], dirty: dict[Any, Any], gc_pause: _gc.Pause | None) -> None:
    """Free a landed commit's records and table bookkeeping a step at a time, then end its collection pause."""
    try:
        for items in lists:
            while items:
                del items[-RELEASE_STEP:]
                await asyncio.sleep(0)
        for keys in dirty.values():
            if isinstance(keys, dict):
                while keys:
                    for _ in range(min(RELEASE_STEP, len(keys))):
                        keys.popitem()
                    await asyncio.sleep(0)
    finally:
        if gc_pause is not None:
            gc_pause.end()


class Source:
    """The consumer, transaction and commit policy behind one iterated stream."""

    revoke_wait: float = 30.0
    """Exactly-once on Kafka: seconds a rebalance waits for the agent to finish the batch in hand."""

    def __init__(self, stream: SourceConfig) -> None:
        app = stream.app
        assert stream.channel is not None
        self.stream = stream
        self.app = app
        self.agent = stream.agent
        self.channel = stream.channel
        self.hops: tuple[Hop, ...] = stream.hops
        """``group_by``/``through`` re-keyings this source forwards before the agent's stage."""
        self.txn = Transaction()
        owner = stream.agent.name if stream.agent is not None else naming.stream_owner(stream.channel.name)
        self.owner = owner
        self.group = naming.consumer_group(app.id, owner)
        self.consumer: Consumer | None = None
        self.pending: dict[tuple[str, int], int] = {}  # last processed offset per partition
        self.processed = 0  # messages processed since the last commit (its debug line)
        self.last_batch: Sequence[Message] = ()
        self.last_commit = time.monotonic()
        self.stopping = False
        self.aborted = False
        self.closed = False
        self.waiting = False
        # Partitions revoked since the batch in hand was fetched (Kafka rebalances).
        self._revoked_in_hand: set[tuple[str, int]] = set()
        self.poison: dict[tuple[str, int, int], BaseException] = (
            stream.agent.poison if stream.agent is not None else {}
        )
        self._inflight: asyncio.Future[None] | None = None
        self._commit_lock = asyncio.Lock()
        self._inflight_pause: _gc.Pause | None = None
        self._inflight_bulk: tuple[list[list[Any]], dict[Any, Any]] | None = None
        self._inflight_dirty: dict[Any, dict[Any, list[Any]]] = {}
        self._inflight_letters: list[tuple[Message, str]] = []
        self._inflight_partitions: set[int] = set()
        self._inflight_note: tuple[int, int, float] = (0, 0, 0.0)  # events, records, start: the debug line
        targets = [hop.topic for hop in self.hops[1:]] + [self.channel] if self.hops else []
        self.purgers = [Purger(app, topic, self.owner) for topic in targets if topic.internal]
        """group_by: delete the repartition records this agent committed (it alone reads them)."""
        self.per_partition = False
        """True on a transactional consumer (Kafka exactly-once): a commit is a transaction per partition."""
        self.commit_failed = False
        """True once a commit failed (the agent restarts; the failure is not the event's fault)."""
        self._queued: deque[list[Message]] = deque()  # per partition: the rest of the last fetch
        self._run_done = asyncio.Event()  # set while the agent is not inside a batch
        self._run_done.set()
        self.dead_letters = DeadLetters(
            app, self.agent.name if self.agent else self.channel.name, self.agent, lambda: self.txn.records
        )
        self.dead_letter = self.dead_letters.send
        """``dead_letter(msg, exc)``: send ``msg`` to the dead-letter topic with the reason."""
        self.forwarders: dict[str, Forwarder] = {
            hop.topic.name: Forwarder(hop.topic, hop.keyfn, target, self.dead_letter)
            for hop, target in zip(self.hops, targets)
        }
        """``group_by``/``through``: per topic read, what re-keys its messages into the next one."""
        self.feed: Feed | None = None
        """Under a virtual clock: what hands this source its messages (see :mod:`streamnb.processing.feed`)."""
        self._prefetching: list[Topic[Any, Any]] = []  # topics whose decoding needs schemas fetched first

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        transport = await self.app.connect()
        topics = [self.channel, *(hop.topic for hop in self.hops)]
        for topic in topics:
            await topic.declare()
        self._prefetching = [topic for topic in topics if topic.needs_prefetch]
        await self.dead_letters.declare()
        listener = RebalanceListener(self._on_assigned, self._on_revoked)
        transactional_id = None
        if self.app.processing_guarantee == EXACTLY_ONCE:
            app_id, owner = self.app.id, self.owner

            def transactional_id(tp: TP) -> str:
                return naming.transactional_id(app_id, owner, tp.topic, tp.partition)

        self.consumer = transport.consumer(
            self.group, [t.name for t in topics], listener,
            member=self.stream.member, members=self.stream.members, transactional_id=transactional_id,
        )
        if self.consumer.transactional:
            self.per_partition = True
            self.txn.per_partition(self.channel.name)
        await self.consumer.start()
        gate = self.app.clock.gate
        if gate is not None:
            tps = self.consumer.assignment()
            positions = positions_of(
                tps, await transport.committed(self.group, tps), await transport.beginning_offsets(tps)
            )
            judged = frozenset(topic.name for topic in topics if not topic.internal)
            self.feed = Feed(transport, gate, positions, skew=self.app.max_event_time_skew, judged=judged,
                             max_bytes=self.app.stream_batch_max_bytes)
            await gate.join(self.feed)
        if self.agent is not None:
            self.agent.attach(self)

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
                self.dead_letters.discard()
                try:
                    await self.wait_committed()
                except Exception:
                    logger.exception("a commit failed while %s was stopping", self.group)
        finally:
            if self.feed is not None:
                self.feed.close()
            if self.consumer is not None:
                await self.consumer.stop()
            if self.agent is not None:
                self.agent.detach(self)
            self.txn.deactivate()

    def abort(self) -> None:
        """Undo everything since the last commit (the agent crashed)."""
        self.aborted = True
        self.pending.clear()
        self.processed = 0
        self._queued.clear()
        self.txn.abort()
        self.dead_letters.discard()

    async def _on_assigned(self, tps: set[TP]) -> None:
        await self.app.partitions_assigned(self, tps)

    async def _on_revoked(self, tps: set[TP]) -> None:
        """Partitions move to another worker (Kafka): commit what was processed,
        and drop the rest of the batch in hand for those partitions, so that
        only their new owner writes their table partitions from now on.

        Exactly-once: first wait until the agent finished the batch in hand
        (one partition's messages), so no event is half in the commit."""
        self._revoked_in_hand.update((tp.topic, tp.partition) for tp in tps)
        try:
            if not self.aborted and not self.closed:
                if self.per_partition:
                    try:
                        await self._wait_run_done()
                    except TimeoutError:
                        self._forget_uncommitted()
                        raise BrokerError(
                            f"a rebalance waited {self.revoke_wait:g} s for agent {self.owner!r} to finish its "
                            "batch; its uncommitted work is dropped and it restarts from the committed offsets"
                        ) from None
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
                # The agent may have started a commit of its own meanwhile (commit(wait=False)
                # took the pending offsets): it must land before the partitions go.
                await self.wait_committed()
        finally:
            await self.app.partitions_revoked(self, tps, final=self.closed)

    async def _wait_run_done(self) -> None:
        """Exactly-once: wait until the agent is between batches when this task runs (``revoke_wait`` s at most).

        Checked again after each wake-up: the agent may have finished one
        partition's batch and taken the next (already fetched) one before
        this task ran again.
        """
        deadline = time.monotonic() + self.revoke_wait
        while not self._run_done.is_set():
            await asyncio.wait_for(self._run_done.wait(), max(0.0, deadline - time.monotonic()))

    # -- batches and commits ------------------------------------------------------------------

    async def next_batch(self) -> list[Message] | None:
        """The next batch of messages, ``[]`` on an idle tick, ``None`` when stopping."""
        consumer = self.consumer
        assert consumer is not None
        self._account(self.last_batch)
        self.last_batch = ()
        self._run_done.set()
        feed = self.feed  # under a virtual clock: what the clock released (see streamnb.processing.feed)
        app = self.app
        max_records = app.stream_batch_size
        max_bytes = app.stream_batch_max_bytes
        agent = self.agent
        while True:
            if self.stopping or (agent is not None and agent.stopping):
                self.stopping = True
                await self.commit()
                return None
            if agent is not None and agent.paused:
                await self.commit()
                await agent.wait_resumed()
                continue
            if self._queued:  # exactly-once: the rest of the last fetch, one partition at a time
                run = self._queued.popleft()
                if self._revoked_in_hand:
                    run = self._drop_revoked(consumer, run)
                    if not run:
                        continue
                if self._commit_due():
                    await self.commit(wait=False)
                return self._hand_out(run)
            self._revoked_in_hand.clear()
            if feed is not None:
                msgs = await feed.next_batch(max_records, max_bytes)
                if not msgs:  # this round is over: what it wrote goes to the log before the next
                    await self.commit()
                    self.waiting = True
                    try:
                        await feed.round_done()
                    finally:
                        self.waiting = False
                    continue
                if len(self.txn.records) >= app.commit_records:  # (never by wall-clock time: commits
                    await self.commit(wait=False)  # and what closes at them stay deterministic)
                else:
                    await asyncio.sleep(0)
            elif msgs := await consumer.getmany(0, max_records, max_bytes):
                if self._commit_due():
                    await self.commit(wait=False)
                else:
                    await asyncio.sleep(0)  # let the kernel answer between batches
            else:
                await self.commit()
                self.waiting = True
                try:
                    msgs = await consumer.getmany(
                        self.stream.tick_interval or app.poll_interval, max_records, max_bytes
                    )
                finally:
                    self.waiting = False
                if not msgs:
                    if self.stream.tick_interval is not None:
                        return []
                    continue
            if agent is not None and agent.paused:  # paused while waiting: hold the batch
                await agent.wait_resumed()
                if self.stopping:
                    return None
            self._check_times(msgs)
            if self._prefetching and not await self._prefetch(msgs):
                self.stopping = True  # stopped while the registry was away: the batch is read again later
                await self.commit()
                return None
            if self._revoked_in_hand:
                msgs = self._drop_revoked(consumer, msgs)
                if not msgs:
                    continue
            if agent is not None:
                agent.events_received += len(msgs)
            if self.per_partition:
                runs = [list(run) for _tp, run in itertools.groupby(msgs, _tp_of)]
                self._queued.extend(runs[1:])
                return self._hand_out(runs[0])
            self.last_batch = msgs
            return msgs

    def _check_times(self, msgs: list[Message]) -> None:
        """Dead-letter (through :attr:`poison`) the messages whose timestamp is no event time or too far ahead.

        No event time: ``nan``, ``inf``, negative. Too far ahead: more than
        ``max_event_time_skew`` ahead of the wall clock; under a virtual
        clock, a lone jump that far ahead of its partition's time (what the
        feed found: :func:`~streamnb.processing.feed.running_max`). One pass
        over the timestamps when all are fine (the usual case).
        """
        skew = self.app.max_event_time_skew
        limit = math.inf if skew is None else skew
        feed = self.feed
        clock = time.time() if skew is not None and feed is None else math.inf
        stamps = list(map(_timestamp_of, msgs))
        total = sum(stamps)  # nan or inf when a timestamp is
        if total - total == 0 and min(stamps) >= 0 and (clock == math.inf or max(stamps) <= clock + limit):
            if feed is None or not feed.too_far:
                return
        poison = self.poison
        for m in msgs:
            key = (m[0], m[1], m[2])
            problem = time_problem(m[3], clock, limit)
            if problem is None and feed is not None and key in feed.too_far:
                problem = time_problem(m[3], feed.too_far.pop(key), limit)
            if problem is not None:
                poison[key] = EventTimeError(f"{m[0]}[{m[1]}]@{m[2]}: {problem}")

    def _commit_due(self) -> bool:
        """Commit between batches: enough pending records (changelog rows too on Kafka exactly-once), or time."""
        pending = len(self.txn) if self.per_partition else len(self.txn.records)
        return pending >= self.app.commit_records or time.monotonic() - self.last_commit >= self.app.commit_interval

    def _hand_out(self, run: list[Message]) -> list[Message]:
        """Exactly-once: give the agent one partition's messages; what it sends joins that partition's transaction."""
        first = run[0]
        self.txn.switch(TP(first[0], first[1]))
        self._run_done.clear()
        self.last_batch = run
        return run

    async def _prefetch(self, msgs: list[Message]) -> bool:
        """Fetch the schemas decoding ``msgs`` needs, waiting out a registry outage; False if stopped meanwhile.

        A batch is never decoded (nor dead-lettered) while the schema registry
        is unreachable: what was processed is committed, then the fetch is
        retried with backoff (0.05 s doubling to 5 s) until it answers.
        """
        delay, since = 0.05, 0.0
        agent = self.agent
        while True:
            try:
                for topic in self._prefetching:
                    await topic.prefetch(msgs)
            except SchemaRegistryUnavailableError as exc:
                if self.stopping or (agent is not None and agent.stopping):
                    return False
                if not since:
                    since = time.monotonic()
                    logger.warning("%s waits for the schema registry: %s", self.owner, exc)
                    await self.commit()
                self.waiting = True  # everything processed is committed: a stop may cancel the wait
                try:
                    await asyncio.sleep(delay)
                finally:
                    self.waiting = False
                delay = min(delay * 2, 5.0)
                continue
            if since:
                logger.info("%s: the schema registry answers again after %.1f s", self.owner, time.monotonic() - since)
            return True

    def _drop_revoked(self, consumer: Consumer, msgs: list[Message]) -> list[Message]:
        """Hand out none of a batch's messages of partitions revoked since the fetch.

        A Kafka rebalance ran while the batch was fetched or waited (for a
        commit, or while the kernel ran): the table partitions of those
        messages were dropped, and their new owner starts at the committed
        offset. A partition assigned to this consumer again is rewound to
        the first dropped message, so nothing is skipped.
        """
        revoked = self._revoked_in_hand
        keep: list[Message] = []
        first: dict[TP, int] = {}
        for m in msgs:
            if (m[0], m[1]) in revoked:
                first.setdefault(TP(m[0], m[1]), m[2])
            else:
                keep.append(m)
        owned = consumer.assignment()
        for tp, offset in first.items():
            if tp in owned:
                consumer.seek(tp, offset)
        return keep

    def _account(self, msgs: Sequence[Message]) -> None:
        """Mark every message of a fully processed batch as done."""
        if msgs:
            self.pending.update(zip(map(_tp_of, msgs), map(_offset_of, msgs)))
            self.processed += len(msgs)
            if self.agent is not None:
                self.agent.events_processed += len(msgs)

    def forward_batch(self, msgs: list[Message]) -> list[Message]:
        """Forward the batch's messages of re-keyed topics (group_by/through); return the rest to process.

        Forwarding is part of the transaction: the forwarded records commit
        with the offsets of the messages they came from.
        """
        records = self.txn.records
        poison = self.poison
        for name, forwarder in self.forwarders.items():
            rejected = [m for m in msgs if m[0] == name and (m[0], m[1], m[2]) in poison] if poison else []
            if rejected:  # (timestamps that are no event time: see _check_times)
                msgs = [m for m in msgs if not (m[0] == name and (m[0], m[1], m[2]) in poison)]
                for m in rejected:
                    self.dead_letter(m, poison[(m[0], m[1], m[2])])
            msgs, forwarded = forwarder.forward_batch(msgs, name, records)
            if forwarded:
                self.pending.update(zip(map(_tp_of, forwarded), map(_offset_of, forwarded)))
            for m in rejected:  # (every message of the topic in the batch is done: the newest counts)
                if self.pending.get((m[0], m[1]), -1) < m[2]:
                    self.pending[(m[0], m[1])] = m[2]
            if forwarded or rejected:
                self.processed += len(forwarded) + len(rejected)
                self.last_batch = msgs
        return msgs

    @property
    def stage(self) -> str:
        """What the agent reads from this source, for logs: ``input``, ``group_by(user)``, ..."""
        return self.stream.stage

    def stop_at(self, msg: Message) -> None:
        """Stop mid-batch: messages before ``msg`` are done, the rest is not."""
        batch = self.last_batch
        index = next(i for i, m in enumerate(batch) if m is msg)
        self.last_batch = ()
        self._account(batch[:index])

    async def commit(self, wait: bool = True) -> None:
        """Commit processed offsets, table changes and sends together.

        With ``wait=False`` the commit runs while the agent goes on with the
        next batch (sqlite and the network work without the GIL); the next
        commit, and every stop, waits for it first. The changelog records of
        a large commit are encoded in steps (:meth:`~streamnb.transaction.Transaction.collect_in_steps`)
        that let the event loop run between them; one commit at a time.
        """
        async with self._commit_lock:
            await self._start_commit()
        if wait:
            await self.wait_committed()

    async def _start_commit(self) -> None:
        await self.wait_committed()
        txn = self.txn
        if not self.pending and not len(txn):
            self.last_commit = time.monotonic()
            return
        if self.aborted or self.consumer is None:
            return
        pending, self.pending = self.pending, {}
        processed, self.processed = self.processed, 0
        offsets = {TP(t, p): o + 1 for (t, p), o in pending.items()}
        for hold in self.stream.holds:
            for tp, first_held in hold().items():
                if tp in offsets and offsets[tp] > first_held:
                    offsets[tp] = first_held
        for participant in list(txn.dirty):
            participant.before_commit(txn)
        dirty = txn.dirty
        started = time.monotonic()
        # A large commit pauses automatic collection until it landed: its records are never scanned (see streamnb._gc).
        gc_pause = _gc.Pause() if len(txn) >= _gc.LARGE else None
        try:
            if self.per_partition:
                per_partition = await txn.collect_per_partition_in_steps(self.app.now())
                orphans = txn.orphans()
            else:
                records = await txn.collect_in_steps(self.app.now())
        except BaseException:
            if gc_pause is not None:
                gc_pause.end()
            raise
        if self.aborted or self.consumer is None:  # (undone meanwhile: a rebalance gave up on this batch)
            if gc_pause is not None:
                gc_pause.end()
            return
        if self.per_partition:
            committing = self.consumer.commit(offsets, orphans, per_partition=per_partition)
            self._inflight_partitions = {tp.partition for tp in offsets} | {tp.partition for tp in per_partition}
            written = len(orphans) + sum(map(len, per_partition.values()))
        else:
            written = len(records)
            committing = self.consumer.commit(offsets, records)
        self._inflight_note = (processed, written, started)
        for purger in self.purgers:
            purger.stage(offsets)
        txn.clear()
        self.last_commit = time.monotonic()
        self._inflight = asyncio.ensure_future(committing)
        if gc_pause is not None:  # ended once its records are freed, or a second after it landed at the latest
            self._inflight.add_done_callback(lambda done: done.get_loop().call_later(1.0, gc_pause.end))
            bulk = [*per_partition.values(), orphans] if self.per_partition else [records]
            self._inflight_bulk = (bulk, dirty)
        self._inflight_pause = gc_pause
        self._inflight_dirty = dirty
        self._inflight_letters = self.dead_letters.take()

    @property
    def committing(self) -> bool:
        """True while a commit is under way, or done but its outcome not yet applied (see :meth:`wait_committed`)."""
        return self._inflight is not None

    async def wait_committed(self) -> None:
        """Wait for the commit under way, if any.

        If it failed, its table changes are undone (they never became
        durable) and the error is raised, which crashes the agent.
        """
        inflight = self._inflight
        if inflight is None:
            return
        try:
            await asyncio.shield(inflight)
        except asyncio.CancelledError:
            if not inflight.done():
                try:
                    await inflight  # already under way: finish it so nothing is written twice
                finally:
                    self._finish_inflight(inflight)
            raise
        except BaseException:
            self._finish_inflight(inflight)
            raise
        self._finish_inflight(inflight)

    def _finish_inflight(self, inflight: asyncio.Future[None]) -> None:
        if self._inflight is not inflight:
            return
        self._inflight = None
        dirty, self._inflight_dirty = self._inflight_dirty, {}
        letters, self._inflight_letters = self._inflight_letters, []
        gc_pause, self._inflight_pause = self._inflight_pause, None
        bulk, self._inflight_bulk = self._inflight_bulk, None
        if bulk is not None:  # a large commit: freed a step at a time, then collection resumes
            releasing = self.app.spawn(_release_in_steps(bulk[0], dirty, gc_pause), "free a large commit")
            if releasing is None and gc_pause is not None:
                gc_pause.end()
        elif gc_pause is not None:
            gc_pause.end()
        if inflight.cancelled() or inflight.exception() is not None:
            self.commit_failed = True
            if self.per_partition:
                # Some partitions' transactions may have committed: undoing every
                # write would be wrong for them. Read the tables again instead.
                self._forget_uncommitted(dirty)
            else:
                self.txn.abort()  # newer writes first, then the failed commit's
                self.dead_letters.discard()
                for participant, keys in dirty.items():
                    participant.restore(keys)
            self.aborted = True
            return
        for participant, keys in dirty.items():
            participant.after_commit(keys)
        self.dead_letters.committed(letters)
        if self.agent is None:  # (an agent forgets its poison itself, as it counts the dead letters)
            for msg, _reason in letters:
                self.poison.pop((msg.topic, msg.partition, msg.offset), None)
        for purger in self.purgers:
            purger.committed()
        if logger.isEnabledFor(logging.DEBUG):
            events, written, started = self._inflight_note
            logger.debug("%s: committed %d events and %d records in %.3f s",
                         self.owner, events, written, time.monotonic() - started)

    def _forget_uncommitted(self, failed: dict[Any, Any] | None = None) -> None:
        """Exactly-once: drop every table partition uncommitted writes touched (read again before use).

        After a failed commit some partitions' transactions may have
        committed and others not; their changelogs (read ``read_committed``)
        say which. The partitions go from the tables now; the agent restarts
        from the committed offsets and its consumer's assignment recovers them.
        """
        participants = set(failed or ()) | set(self.txn.dirty)
        partitions = set(self._inflight_partitions) | {p for _t, p in self.pending}
        if self.consumer is not None:
            partitions |= {tp.partition for tp in self.consumer.assignment()}
        self.txn.clear()
        self.dead_letters.discard()
        self.pending.clear()
        self._queued.clear()
        self.aborted = True
        for participant in participants:
            participant.drop_partitions(partitions)
