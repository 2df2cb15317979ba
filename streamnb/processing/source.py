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

Where the parts live: fetching and handing out batches here; the runs of a
fetch and the partitions revoked since in :mod:`streamnb.processing.runs`;
offsets and commits in :mod:`streamnb.processing.commits` (a mixin of
:class:`Source`).
"""

from __future__ import annotations

import asyncio
import logging
import operator
import time
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

from .. import naming
from ..errors import BrokerError, SchemaRegistryUnavailableError
from ..topics import Topic
from ..transaction import Transaction
from ..transport.base import EXACTLY_ONCE, TP, Consumer, Message, RebalanceListener
from .commits import Committing
from .deadletters import DeadLetters
from .eventtimes import reject_times
from .feed import Feed, positions_of
from .forwarding import Forwarder, Purger
from .runs import PartitionRuns, drop_rest_of_revoked
from .supervision import Hop, SourceConfig, Supervisor

__all__ = ["Hop", "Source", "SourceConfig", "Supervisor"]  # the protocols live in streamnb.processing.supervision

logger = logging.getLogger("streamnb")

_tp_of = operator.itemgetter(0, 1)
_offset_of = operator.itemgetter(2)
T = TypeVar("T")


class Source(Committing):
    """The consumer, transaction and commit policy behind one iterated stream (commits: :class:`Committing`)."""

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
        self._init_commits()
        owner = stream.agent.name if stream.agent is not None else naming.stream_owner(stream.channel.name)
        self.owner = owner
        self.group = naming.consumer_group(app.id, owner)
        self.consumer: Consumer | None = None
        self.last_batch: Sequence[Message] = ()
        self.stopping = False
        self.aborted = False
        self.closed = False
        self.waiting = False
        self.busy = False
        """The last poll found messages (the next one that finds none ticks at once, for operators that tick)."""
        self.poison: dict[tuple[str, int, int], BaseException] = (
            stream.agent.poison if stream.agent is not None else {}
        )
        targets = [hop.topic for hop in self.hops[1:]] + [self.channel] if self.hops else []
        self.purgers = [Purger(app, topic, self.owner) for topic in targets if topic.internal]
        """group_by: delete the repartition records this agent committed (it alone reads them)."""
        self.per_partition = False
        """True on a transactional consumer (Kafka exactly-once): a commit is a transaction per partition."""
        self.runs = PartitionRuns()
        """Exactly-once: the rest of the last fetch, a run per partition; on any broker: partitions revoked since."""
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
        listener = RebalanceListener(self._on_assigned, self._on_revoked, self.app.standby_hooks(self))
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
        self.runs.queued.clear()
        self.txn.abort()
        self.dead_letters.discard()

    async def _on_assigned(self, tps: set[TP]) -> None:
        self.app.monitor.rebalanced(self.owner)
        await self.app.partitions_assigned(self, tps)

    async def _on_revoked(self, tps: set[TP]) -> None:
        """Partitions move to another worker (Kafka): commit what was processed,
        and drop the rest of the batch in hand for those partitions, so that
        only their new owner writes their table partitions from now on.

        Exactly-once: first wait until the agent finished the batch in hand
        (one partition's messages), so no event is half in the commit."""
        self.runs.revoke(tps)
        try:
            if not self.aborted and not self.closed:
                if self.per_partition:
                    try:
                        await self.runs.wait_between_runs(self.revoke_wait)
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
                        drop_rest_of_revoked(batch, index, tps)
                await self.commit()
                # The agent may have started a commit of its own meanwhile (commit(wait=False)
                # took the pending offsets): it must land before the partitions go.
                await self.wait_committed()
        finally:
            await self.app.partitions_revoked(self, tps, final=self.closed)

    # -- batches ------------------------------------------------------------------------------

    async def next_batch(self) -> list[Message] | None:
        """The next batch of messages, ``[]`` on an idle tick, ``None`` when stopping.

        Each turn: stop if asked to; sit out a pause; exactly-once, hand out
        the next queued run of the last fetch; else fetch (from the virtual
        clock's feed, or polling the consumer), hold the batch through a
        pause that began meanwhile, fetch the schemas it needs, drop what
        a rebalance revoked, and hand it out.
        """
        consumer = self.consumer
        assert consumer is not None
        self._finish_batch_in_hand()
        while True:
            if self._stop_requested():
                await self.commit()
                return None
            if await self._sit_out_pause():
                continue
            run = self.runs.next_run(consumer)
            if run is not None:
                if self._commit_due():
                    await self.commit(wait=False)
                return self._hand_out(run)
            self.runs.revoked.clear()
            feed = self.feed
            msgs = await (self._from_feed(feed) if feed is not None else self._poll(consumer))
            if msgs is None:  # the clock's round ended, or an idle poll: ask again
                continue
            if not msgs:  # an idle poll under take(within=)
                return []
            if not await self._hold_while_paused():
                return None
            reject_times(msgs, self.app.max_event_time_skew, None if feed is None else feed.too_far, self.poison)
            if not await self._prefetch(msgs):
                return None
            msgs = self.runs.drop_revoked(consumer, msgs)
            if msgs:
                return self._hand_over(msgs)

    def _finish_batch_in_hand(self) -> None:
        """The agent asks for the next batch: every message of the one in hand is done."""
        self._account(self.last_batch, time.perf_counter() - self.handed_at)
        self.last_batch = ()
        self.runs.between.set()

    def _stop_requested(self) -> bool:
        """True once this source or its agent was asked to stop (this source is then stopping)."""
        agent = self.agent
        if self.stopping or (agent is not None and agent.stopping):
            self.stopping = True
        return self.stopping

    async def _sit_out_pause(self) -> bool:
        """While the agent is paused: commit what it processed and wait until resumed; True if it waited."""
        agent = self.agent
        if agent is None or not agent.paused:
            return False
        await self.commit()
        await agent.wait_resumed()
        return True

    async def _hold_while_paused(self) -> bool:
        """Paused while the batch was fetched: hold it until resumed; False if the source stopped meanwhile."""
        agent = self.agent
        if agent is None or not agent.paused:
            return True
        await agent.wait_resumed()
        return not self.stopping

    async def _idle(self, waited: Awaitable[T]) -> T:
        """Await ``waited`` with everything processed committed: a stop may cancel the wait (:attr:`waiting`)."""
        self.waiting = True
        try:
            return await waited
        finally:
            self.waiting = False

    async def _from_feed(self, feed: Feed) -> list[Message] | None:
        """Under a virtual clock: the next messages it released; None once its round is over (after the next began).

        A commit starts when enough records are pending, never by wall-clock
        time: commits, and what closes at them, stay deterministic.
        """
        msgs = await feed.next_batch(self.app.stream_batch_size, self.app.stream_batch_max_bytes)
        if not msgs:  # this round is over: what it wrote goes to the log before the next
            await self.commit()
            await self._idle(feed.round_done())
            return None
        if len(self.txn.records) >= self.app.commit_records:
            await self.commit(wait=False)
        else:
            await asyncio.sleep(0)
        return msgs

    async def _poll(self, consumer: Consumer) -> list[Message] | None:
        """The consumer's next messages; ``[]`` for an idle tick (``take(within=)``), None when none came.

        What was already fetched goes at once (committing when due); else
        what was processed is committed before waiting for more. A stream
        whose operators tick gets one tick at once when it has just read all
        there was (a stream–stream join then takes the other topic's rest
        without waiting a tick interval), then one per interval.
        """
        max_records, max_bytes = self.app.stream_batch_size, self.app.stream_batch_max_bytes
        if msgs := await consumer.getmany(0, max_records, max_bytes):
            self.busy = True
            if self._commit_due():
                await self.commit(wait=False)
            else:
                await asyncio.sleep(0)  # let the kernel answer between batches
            return msgs
        await self.commit()
        if self.busy and self.stream.tick_interval is not None:
            self.busy = False
            return []
        wait = self.stream.tick_interval or self.app.poll_interval
        msgs = await self._idle(consumer.getmany(wait, max_records, max_bytes))
        self.busy = bool(msgs)
        if msgs or self.stream.tick_interval is not None:
            return msgs
        return None

    def _hand_over(self, msgs: list[Message]) -> list[Message]:
        """Give the agent a fetched batch (exactly-once: its first partition's run, queueing the rest)."""
        if self.agent is not None:
            self.agent.events_received += len(msgs)
        if self.per_partition:
            return self._hand_out(self.runs.split(msgs))
        self.last_batch = msgs
        self.handed_at = time.perf_counter()
        return msgs

    def _hand_out(self, run: list[Message]) -> list[Message]:
        """Exactly-once: give the agent one partition's messages; what it sends joins that partition's transaction."""
        first = run[0]
        self.txn.switch(TP(first[0], first[1]))
        self.runs.between.clear()
        self.last_batch = run
        self.handed_at = time.perf_counter()
        return run

    async def _prefetch(self, msgs: list[Message]) -> bool:
        """Fetch the schemas decoding ``msgs`` needs, waiting out a registry outage; False if stopped meanwhile.

        A batch is never decoded (nor dead-lettered) while the schema registry
        is unreachable: what was processed is committed, then the fetch is
        retried with backoff (0.05 s doubling to 5 s) until it answers. A
        stop meanwhile leaves the source stopping, what was processed
        committed, and the batch to be read again later.
        """
        delay, since = 0.05, 0.0
        agent = self.agent
        while True:
            try:
                for topic in self._prefetching:
                    await topic.prefetch(msgs)
            except SchemaRegistryUnavailableError as exc:
                if self.stopping or (agent is not None and agent.stopping):
                    self.stopping = True
                    await self.commit()
                    return False
                if not since:
                    since = time.monotonic()
                    logger.warning("%s waits for the schema registry: %s", self.owner, exc)
                    await self.commit()
                await self._idle(asyncio.sleep(delay))  # everything processed is committed
                delay = min(delay * 2, 5.0)
                continue
            if since:
                logger.info("%s: the schema registry answers again after %.1f s", self.owner, time.monotonic() - since)
            return True

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
