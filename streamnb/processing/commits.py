"""A source's commits: processed offsets, table changes and sends, committed together.

A mixin of :class:`~streamnb.processing.source.Source` (the source module
stays about fetching and handing out batches). What the agent finished is
marked done (:meth:`Commits._account`) and committed between batches
(:meth:`Commits.commit`): the offsets (held back before what operators
such as ``take`` buffer), the transaction's table changes and sends, and
group_by's repartition purges, in one broker commit that runs in the
background while the agent goes on (:meth:`Commits.wait_committed` waits
for it and applies its outcome).

A failed commit undoes the table changes it carried (they never became
durable) and crashes the agent, which restarts from the committed offsets.
On Kafka exactly-once (one transaction per input partition) some
partitions' transactions may have committed: the table partitions the
uncommitted writes touched are dropped instead and read again from their
changelogs (:meth:`Commits._forget_uncommitted`).

Example (a source between batches)::

    await source.commit(wait=False)   # runs while the agent goes on with the next batch
    await source.wait_committed()     # its outcome applied; raises if it failed
"""

from __future__ import annotations

import asyncio
import logging
import operator
import time
from collections.abc import Sequence
from typing import Any

from ..runtime import Runtime
from ..transaction import Transaction
from ..transport.base import TP, Consumer, Message
from .deadletters import DeadLetters
from .forwarding import Purger
from .runs import PartitionRuns
from .supervision import SourceConfig, Supervisor

__all__ = ["Commits"]

logger = logging.getLogger("streamnb")

_tp_of = operator.itemgetter(0, 1)
_offset_of = operator.itemgetter(2)


class Commits:
    """The commit bookkeeping of a :class:`~streamnb.processing.source.Source` (a mixin)."""

    app: Runtime
    stream: SourceConfig
    agent: Supervisor | None
    owner: str
    consumer: Consumer | None
    txn: Transaction
    dead_letters: DeadLetters
    purgers: list[Purger]
    runs: PartitionRuns
    per_partition: bool
    aborted: bool

    def _init_commits(self) -> None:
        """Nothing processed, nothing committing."""
        self.pending: dict[tuple[str, int], int] = {}  # last processed offset per partition
        self.processed = 0  # messages processed since the last commit (its debug line)
        self.last_commit = time.monotonic()
        self.commit_failed = False
        """True once a commit failed (the agent restarts; the failure is not the event's fault)."""
        self._inflight: asyncio.Future[None] | None = None
        self._inflight_dirty: dict[Any, dict[Any, list[Any]]] = {}
        self._inflight_letters: list[tuple[Message, str]] = []
        self._sent_offsets: dict[TP, int] = {}  # the offsets of the last commit started, per partition
        self._inflight_partitions: set[int] = set()
        self._inflight_note: tuple[int, int, float] = (0, 0, 0.0)  # events, records, start: the debug line

    def _account(self, msgs: Sequence[Message]) -> None:
        """Mark every message of a fully processed batch as done."""
        if msgs:
            self.pending.update(zip(map(_tp_of, msgs), map(_offset_of, msgs)))
            self.processed += len(msgs)
            if self.agent is not None:
                self.agent.events_processed += len(msgs)

    def _commit_due(self) -> bool:
        """Commit between batches: enough pending records (changelog rows too on Kafka exactly-once), or time."""
        pending = len(self.txn) if self.per_partition else len(self.txn.records)
        return pending >= self.app.commit_records or time.monotonic() - self.last_commit >= self.app.commit_interval

    async def commit(self, wait: bool = True) -> None:
        """Commit processed offsets, table changes and sends together.

        With ``wait=False`` the commit runs while the agent goes on with the
        next batch (sqlite and the network work without the GIL); the next
        commit, and every stop, waits for it first.
        """
        await self.wait_committed()
        txn = self.txn
        if not self.pending and not len(txn):
            self.last_commit = time.monotonic()
            return
        if self.aborted or self.consumer is None:
            return
        offsets = {TP(t, p): o + 1 for (t, p), o in self.pending.items()}
        held_back: dict[tuple[str, int], int] = {}  # processed, but an operator (take) still holds them
        for hold in self.stream.holds:
            for tp, first_held in hold().items():
                if tp in offsets and offsets[tp] > first_held:
                    offsets[tp] = first_held
                    held_back[(tp.topic, tp.partition)] = self.pending[(tp.topic, tp.partition)]
        if held_back and not len(txn) and all(self._sent_offsets.get(tp) == o for tp, o in offsets.items()):
            self.last_commit = time.monotonic()  # nothing new to commit: only what is held back
            return
        for participant in list(txn.dirty):
            participant.before_commit(txn)
        dirty = txn.dirty
        started = time.monotonic()
        if self.per_partition:
            per_partition = txn.collect_per_partition(self.app.now())
            orphans = txn.orphans()
            committing = self.consumer.commit(offsets, orphans, per_partition=per_partition)
            self._inflight_partitions = {tp.partition for tp in offsets} | {tp.partition for tp in per_partition}
            written = len(orphans) + sum(map(len, per_partition.values()))
        else:
            records = txn.collect(self.app.now())
            written = len(records)
            committing = self.consumer.commit(offsets, records)
        self._inflight_note, self.processed = (self.processed, written, started), 0
        for purger in self.purgers:
            purger.stage(offsets)
        txn.clear()
        self.pending.clear()
        self.pending.update(held_back)  # committed once the operator lets go of them
        self._sent_offsets.update(offsets)
        self.last_commit = time.monotonic()
        self._inflight = asyncio.ensure_future(committing)
        self._inflight_dirty = dirty
        self._inflight_letters = self.dead_letters.take()
        if wait:
            await self.wait_committed()

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
        self.runs.queued.clear()
        self.aborted = True
        for participant in participants:
            participant.drop_partitions(partitions)
