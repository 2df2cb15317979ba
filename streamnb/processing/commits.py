"""Commits: a source's records collected in steps, then under way until its outcome is applied.

:class:`Committing` is the commit side of :class:`~streamnb.processing.source.Source`
(a mixin): ``commit()``, ``wait_committed()``, applying or undoing a
commit once it landed.

:meth:`Collected.of` takes a transaction's records (and, for a large commit,
pauses automatic garbage collection: see :mod:`streamnb._gc`), encoding the
changelog a slice at a time so the event loop runs in between;
:meth:`Collected.start` hands them to the consumer's commit and returns the
:class:`Inflight` commit, which the source applies (or undoes) once it
landed, and whose records :meth:`Inflight.release` then frees a step at a
time.

Example (what :class:`~streamnb.processing.source.Source` does)::

    batch = await Collected.of(txn, per_partition=False, now=app.now())
    inflight = batch.start(consumer.commit(offsets, batch.records), txn.dirty, letters, (events, started))
    ...                      # later, once inflight.future is done and applied:
    inflight.release(app.spawn)
"""

from __future__ import annotations

import asyncio
import logging
import operator
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import _gc
from ..runtime import Runtime
from ..transaction import Transaction
from ..transport.base import EXACTLY_ONCE, TP, Consumer, Message, ProducerRecord
from .deadletters import DeadLetters
from .forwarding import Purger
from .handover import Handover
from .runs import PartitionRuns
from .supervision import SourceConfig, Supervisor

__all__ = ["RELEASE_STEP", "Collected", "Committing", "Inflight", "release_in_steps"]

logger = logging.getLogger("streamnb")

RELEASE_STEP = 20_000
"""Records of a large commit freed at a time (freeing a million objects at once holds the loop ~0.1 s)."""

_tp_of = operator.itemgetter(0, 1)
_topic_of = operator.itemgetter(0)
_offset_of = operator.itemgetter(2)

Spawn = Callable[[Coroutine[Any, Any, Any], str], Any]


@dataclass(eq=False)
class Inflight:
    """A commit under way: what applying (or undoing) it takes once it landed."""

    future: asyncio.Future[None]
    """The consumer's commit."""
    dirty: dict[Any, Any]
    """The tables' bookkeeping of the committed writes (participant -> its ``dirty``)."""
    letters: list[tuple[Message, str]]
    """Dead letters it holds (counted once it landed)."""
    note: tuple[int, int, float]
    """Events, records, start (``time.monotonic()``): the debug line."""
    gc_pause: _gc.Pause | None = None
    """A large commit's pause of automatic collection (ended by :meth:`release`)."""
    bulk: list[list[Any]] = field(default_factory=list)
    """A large commit's record lists (emptied by :meth:`release`)."""
    sent: dict[str, int] = field(default_factory=dict)
    """Records it writes, by topic (counted once it landed; empty without metrics)."""
    landed: float = 0.0
    """``time.monotonic()`` when the consumer's commit finished (0.0 before)."""

    def mark_landed(self, _future: object = None) -> None:
        """The consumer's commit finished (a done callback of :attr:`future`)."""
        self.landed = time.monotonic()

    @property
    def failed(self) -> bool:
        """True when the commit was cancelled or raised."""
        return self.future.cancelled() or self.future.exception() is not None

    def release(self, spawn: Spawn) -> None:
        """Its outcome is applied: free a large commit's records a step at a time, then end its pause."""
        pause, self.gc_pause = self.gc_pause, None
        if self.bulk and spawn(release_in_steps(self.bulk, self.dirty, pause), "free a large commit") is not None:
            return
        if pause is not None:
            pause.end()


def _handovers(dirty: dict[Any, Any]) -> Callable[[], None] | None:
    """What hands the replies of ``dirty`` to asks in this process once the commit stored them (agent RPC)."""
    found = [(participant, envelopes) for participant, envelopes in dirty.items() if isinstance(participant, Handover)]
    if not found:
        return None

    def stored() -> None:
        for participant, envelopes in found:
            participant.records_stored(envelopes)

    return stored


async def release_in_steps(lists: list[list[Any]], dirty: dict[Any, Any], gc_pause: _gc.Pause | None) -> None:
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


@dataclass(eq=False)
class Collected:
    """A transaction's records, collected for one commit."""

    records: list[ProducerRecord]
    """Every record; with :attr:`per_partition`, the ones no input partition caused (orphans)."""
    per_partition: dict[TP, list[ProducerRecord]] | None
    """Kafka exactly-once: each input partition's records."""
    gc_pause: _gc.Pause | None
    """Set for a large commit (:data:`streamnb._gc.LARGE` records or more)."""

    @classmethod
    async def of(cls, txn: Transaction, per_partition: bool, now: float) -> Collected:
        """Collect ``txn``'s records in steps (see :meth:`Transaction.collect_in_steps`)."""
        gc_pause = _gc.Pause() if len(txn) >= _gc.LARGE else None
        try:
            if per_partition:
                split = await txn.collect_per_partition_in_steps(now)
                return cls(txn.orphans(), split, gc_pause)
            return cls(await txn.collect_in_steps(now), None, gc_pause)
        except BaseException:
            if gc_pause is not None:
                gc_pause.end()
            raise

    @property
    def written(self) -> int:
        """How many records."""
        return len(self.records) + sum(map(len, (self.per_partition or {}).values()))

    def by_topic(self) -> dict[str, int]:
        """How many records go to each topic (what the metrics count as sent)."""
        counts = Counter(map(_topic_of, self.records))
        for records in (self.per_partition or {}).values():
            counts.update(map(_topic_of, records))
        return dict(counts)

    def drop(self) -> None:
        """Not committed after all (the transaction was undone meanwhile)."""
        if self.gc_pause is not None:
            self.gc_pause.end()

    def start(
        self, committing: Awaitable[None], dirty: dict[Any, Any], letters: list[tuple[Message, str]],
        note: tuple[int, float],
    ) -> Inflight:
        """Run ``committing`` (the consumer's commit of these records); ``note``: (events, start)."""
        future = asyncio.ensure_future(committing)
        bulk: list[list[Any]] = []
        pause = self.gc_pause
        if pause is not None:  # ended once its records are freed, or a second after it landed at the latest
            future.add_done_callback(lambda done: done.get_loop().call_later(1.0, pause.end))
            bulk = [*(self.per_partition or {}).values(), self.records]
        inflight = Inflight(future, dirty, letters, (note[0], self.written, note[1]), pause, bulk)
        future.add_done_callback(inflight.mark_landed)
        return inflight


class Committing:
    """The commit side of a source (a mixin of :class:`~streamnb.processing.source.Source`)."""

    app: Runtime
    stream: SourceConfig
    agent: Supervisor | None
    owner: str
    txn: Transaction
    consumer: Consumer | None
    aborted: bool
    per_partition: bool
    purgers: list[Purger]
    dead_letters: DeadLetters
    poison: dict[tuple[str, int, int], BaseException]
    runs: PartitionRuns

    def _init_commits(self) -> None:
        """Nothing processed, nothing committing."""
        self.pending: dict[tuple[str, int], int] = {}  # last processed offset per partition
        self.processed = 0  # messages processed since the last commit (its debug line)
        self.last_commit = time.monotonic()
        self.commit_failed = False
        """True once a commit failed (the agent restarts; the failure is not the event's fault)."""
        self._inflight: Inflight | None = None
        self._commit_lock = asyncio.Lock()
        self._sent_offsets: dict[TP, int] = {}  # the offsets of the last commit started, per partition
        self._inflight_partitions: set[int] = set()  # (exactly-once) what the last commit touched
        self.handed_at = time.perf_counter()
        """When the agent got the batch in hand (its time on the batch is a sample of the metrics)."""
        self._outcomes_seen: dict[str, int] = {}  # the consumer's transaction outcomes already counted

    def _account(self, msgs: Sequence[Message], seconds: float = -1.0) -> None:
        """Mark every message of a fully processed batch as done (``seconds``: the agent's time on it, if known)."""
        if msgs:
            self.pending.update(zip(map(_tp_of, msgs), map(_offset_of, msgs)))
            self.processed += len(msgs)
            if self.agent is not None:
                self.agent.events_processed += len(msgs)
            self.app.monitor.processed(self.owner, len(msgs), seconds)

    def _commit_due(self) -> bool:
        """Commit between batches: enough pending records (changelog rows too on Kafka exactly-once), or time."""
        pending = len(self.txn) if self.per_partition else len(self.txn.records)
        return pending >= self.app.commit_records or time.monotonic() - self.last_commit >= self.app.commit_interval

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
        offsets, held_back = self._offsets(self.pending)
        if held_back and not len(txn) and all(self._sent_offsets.get(tp) == o for tp, o in offsets.items()):
            self.last_commit = time.monotonic()  # nothing new to commit: only what is held back
            return
        self.pending = dict(held_back)  # committed once the operator lets go of them
        processed, self.processed = self.processed, 0
        self._sent_offsets.update(offsets)
        for participant in list(txn.dirty):
            participant.before_commit(txn)
        dirty, started = txn.dirty, time.monotonic()
        try:
            batch = await Collected.of(txn, self.per_partition, self.app.now())  # (the loop runs meanwhile)
        except BaseException:  # (a value that no longer encodes, changed after it was written): nothing was sent
            self.commit_failed = True
            self.aborted = True
            txn.abort()  # the tables lose the writes, as when a commit fails
            self.dead_letters.discard()
            raise
        if self.aborted or self.consumer is None:  # undone meanwhile: a rebalance gave up on this batch
            batch.drop()
            return
        stored = _handovers(dirty)  # asks of this process answered: resolved once their replies are stored
        if batch.per_partition is not None:
            committing = self.consumer.commit(
                offsets, batch.records, per_partition=batch.per_partition, stored=stored
            )
            self._inflight_partitions = {tp.partition for tp in offsets} | {tp.partition for tp in batch.per_partition}
        else:
            committing = self.consumer.commit(offsets, batch.records, stored=stored)
        for purger in self.purgers:
            purger.stage(offsets)
        txn.clear()
        self.last_commit = time.monotonic()
        self._inflight = batch.start(committing, dirty, self.dead_letters.take(), (processed, started))
        if self.app.monitor.enabled:
            self._inflight.sent = batch.by_topic()

    def _offsets(self, pending: dict[tuple[str, int], int]) -> tuple[dict[TP, int], dict[tuple[str, int], int]]:
        """The offsets to commit: after each partition's last processed message, or the first one a ``take()`` holds.

        Also returns the processed offsets held back (committed once the operator lets go of them).
        """
        offsets = {TP(t, p): o + 1 for (t, p), o in pending.items()}
        held_back: dict[tuple[str, int], int] = {}
        for hold in self.stream.holds:
            for tp, first_held in hold().items():
                if tp in offsets and offsets[tp] > first_held:
                    offsets[tp] = first_held
                    held_back[(tp.topic, tp.partition)] = pending[(tp.topic, tp.partition)]
        return offsets, held_back

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
            await asyncio.shield(inflight.future)
        except asyncio.CancelledError:
            if not inflight.future.done():
                try:
                    await inflight.future  # already under way: finish it so nothing is written twice
                finally:
                    self._finish_inflight(inflight)
            raise
        except BaseException:
            self._finish_inflight(inflight)
            raise
        self._finish_inflight(inflight)

    def _finish_inflight(self, inflight: Inflight) -> None:
        if self._inflight is not inflight:
            return
        self._inflight = None
        if inflight.failed:
            self._undo(inflight.dirty)
        else:
            self._landed(inflight)
        self._count_transactions(inflight.failed)
        inflight.release(self.app.spawn)  # (a large commit: freed a step at a time, then collection resumes)

    def _undo(self, dirty: dict[Any, Any]) -> None:
        """A commit failed: its table changes never became durable."""
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

    def _landed(self, inflight: Inflight) -> None:
        """A commit landed: tables, dead letters and purgers learn it."""
        for participant, keys in inflight.dirty.items():
            participant.after_commit(keys)
        self.dead_letters.committed(inflight.letters)
        if self.agent is None:  # (an agent forgets its poison itself, as it counts the dead letters)
            for msg, _reason in inflight.letters:
                self.poison.pop((msg.topic, msg.partition, msg.offset), None)
        for purger in self.purgers:
            purger.committed()
        monitor = self.app.monitor
        if monitor.enabled:
            monitor.committed(self.owner, (inflight.landed or time.monotonic()) - inflight.note[2], inflight.sent)
        if logger.isEnabledFor(logging.DEBUG):
            events, written, started = inflight.note
            logger.debug("%s: committed %d events and %d records in %.3f s",
                         self.owner, events, written, time.monotonic() - started)

    def _count_transactions(self, failed: bool) -> None:
        """Exactly-once: count the commit's transactions by outcome (Kafka: one per input partition)."""
        if self.app.processing_guarantee != EXACTLY_ONCE or self.consumer is None:
            return
        monitor = self.app.monitor
        outcomes = self.consumer.transaction_outcomes()
        if outcomes is None:  # one transaction per commit (local://)
            monitor.transactions(self.owner, "aborted" if failed else "committed", 1)
            return
        for outcome, total in outcomes.items():
            monitor.transactions(self.owner, outcome, total - self._outcomes_seen.get(outcome, 0))
        self._outcomes_seen = dict(outcomes)

    def _forget_uncommitted(self, failed: dict[Any, Any] | None = None) -> None:
        """Exactly-once: drop every table partition uncommitted writes touched (read again before use).

        After a failed commit some partitions' transactions may have
        committed and others not; their changelogs (read ``read_committed``)
        say which. The partitions go from the tables now; the agent restarts
        from the committed offsets and its consumer's assignment recovers them.

        Writes made since (the agent went on with another partition's batch
        while the commit was under way) are undone first: they are in no
        commit yet, so a table may not know their rows' partitions (a plain
        table learns a key's partition when its change is collected), and
        dropping the partitions alone would keep them, to be counted again.
        """
        participants = set(failed or ()) | set(self.txn.dirty)
        partitions = set(self._inflight_partitions) | {p for _t, p in self.pending}
        if self.consumer is not None:
            partitions |= {tp.partition for tp in self.consumer.assignment()}
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s: forgetting uncommitted writes: table partitions %s are read again",
                         self.owner, sorted(partitions))
        self.txn.abort()  # the newest writes first (restore, then forget), then the partitions go
        self.dead_letters.discard()
        self.pending.clear()
        self.runs.queued.clear()
        self.aborted = True
        for participant in participants:
            participant.drop_partitions(partitions)
