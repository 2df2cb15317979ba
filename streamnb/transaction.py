"""The processing transaction: what one agent instance wrote since its last commit.

While an agent processes events, its table writes and its sends are not
written at once: they collect here and go to the broker together with the
consumer offsets in one ``Consumer.commit`` call. On ``local://`` and
``memory://`` that call is atomic, so every input event counts exactly once
even across ``kill -9``. When an agent crashes, :meth:`Transaction.abort`
restores the tables to what they were at the last commit.

Exactly-once on Kafka commits one transaction per input partition, so every
record must be attributed to the input partition whose event caused it.
After :meth:`Transaction.per_partition`, the source calls
:meth:`Transaction.switch` before handing the agent a batch (each batch then
holds the events of one partition): ``records`` becomes that partition's
list, so every append -- sinks, ``topic.send``, forwards, dead letters, late
events -- lands in the right transaction without any extra work per event.
Changelog records are attributed at commit by their partition (a table's
changelog partition is the partition of the events that wrote it), and
records made at commit time for a table partition (final window results)
go to :meth:`Transaction.records_for`. Otherwise (every other backend and
guarantee) there is one list and nothing changes.

Code running inside an agent finds its transaction through
:func:`current_transaction`; a table write outside any agent is an error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sized
from contextvars import ContextVar
from typing import Any, Protocol, TypeVar

from .transport.base import TP, Message, ProducerRecord

__all__ = ["MISSING", "SLICE", "STEP", "CommitParticipant", "Transaction", "current_transaction"]

STEP = 1_000
"""Changelog records a commit encodes at a time (then it checks whether :data:`SLICE` passed)."""
SLICE = 0.005
"""Seconds a commit encodes changelog records before it lets the event loop run (a kernel's widgets, other agents)."""

MISSING: Any = object()
"""Marks a key that was absent from a table before the transaction wrote it."""

_current: ContextVar[Transaction | None] = ContextVar("streamnb_transaction", default=None)


current_transaction: Callable[[], Transaction | None] = _current.get
"""The transaction of the agent running in this task, or ``None`` outside agents.

(The context variable's own ``get``: tables call it for every write.)

>>> current_transaction() is None
True
"""


B = TypeVar("B", bound=Sized, contravariant=True)
"""A participant's bookkeeping type (sized: :class:`Transaction` counts what it holds)."""


class CommitParticipant(Protocol[B]):
    """Something an agent writes to that commits with it: a table, with its bookkeeping ``B``.

    A participant records what it changed in ``txn.dirty[participant]``, a
    ``B`` of its own (a table's: :class:`~streamnb.tables.state.base.Dirty`),
    and the commit calls it back with it in this order: :meth:`before_commit`
    (e.g. windows that close now), then :meth:`changelog_records` (what goes
    to the broker with the offsets), then :meth:`after_commit` once that is
    durable -- or :meth:`restore` when the commit failed or the agent crashed.
    """

    def before_commit(self, txn: Transaction) -> None:
        """Last changes before the transaction's records are collected."""
        ...

    def changelog_records(self, dirty: B, timestamp: float) -> list[ProducerRecord]:
        """The records that make ``dirty`` durable."""
        ...

    def restore(self, dirty: B) -> None:
        """Undo the changes described by ``dirty``."""
        ...

    def drop_partitions(self, partitions: set[int]) -> None:
        """Forget these partitions' rows (they are read again from the changelog before use)."""
        ...

    def after_commit(self, dirty: B) -> None:
        """The changes described by ``dirty`` are durable."""
        ...


class Transaction:
    """Pending writes of one agent instance since its last commit.

    >>> txn = Transaction()
    >>> txn.per_partition("orders")
    >>> txn.switch(TP("orders", 1))
    >>> txn.records.append(ProducerRecord("out", 0, None, b"v", 0.0))
    >>> txn.records_for(2).append(ProducerRecord("final", 0, None, b"w", 0.0))
    >>> {tp.partition: len(records) for tp, records in txn.collect_per_partition(0.0).items()}
    {1: 1, 2: 1}
    """

    __slots__ = ("records", "dirty", "message", "value", "_token", "outputs", "channel", "_current", "_orphans")

    def __init__(self) -> None:
        self.records: list[ProducerRecord] = []
        """Messages sent by the agent (sinks, ``topic.send``), in order (per partition: the current one's)."""
        self.dirty: dict[CommitParticipant[Any], Any] = {}
        """Per participant (a table): its bookkeeping of what it changed (a ``B`` of that participant;
        each participant reads only its own, so the values are not typed here)."""
        self.message: Message | None = None
        """The raw message being processed (its partition is the changelog partition)."""
        self.value: Any = None
        """The decoded value being processed."""
        self._token: Any = None
        self.outputs: dict[TP, list[ProducerRecord]] | None = None
        """After :meth:`per_partition`: the records of each input partition's transaction."""
        self.channel = ""
        """After :meth:`per_partition`: the topic whose events write the tables."""
        self._current: TP | None = None
        self._orphans: list[ProducerRecord] = self.records

    def per_partition(self, channel: str) -> None:
        """Keep records per input partition from now on (Kafka exactly-once: a transaction per partition).

        ``channel`` is the topic whose events the agent processes (so writes tables with).
        """
        self.channel = channel
        self.outputs = {}
        self._current = None
        self.records = self._orphans = []  # records no event caused (a tick before any batch)

    def switch(self, tp: TP) -> None:
        """Records appended from now on are caused by events of ``tp``."""
        outputs = self.outputs
        assert outputs is not None, "per_partition() first"
        found = outputs.get(tp)
        if found is None:
            found = outputs[tp] = []
        self.records = found
        self._current = tp

    def records_for(self, partition: int) -> list[ProducerRecord]:
        """Where records caused by rows of table partition ``partition`` go (window results at commit)."""
        outputs = self.outputs
        if outputs is None:
            return self.records
        tp = TP(self.channel, partition)
        found = outputs.get(tp)
        if found is None:
            found = outputs[tp] = []
        return found

    def activate(self) -> None:
        """Make this the current transaction of the running task."""
        self._token = _current.set(self)

    def deactivate(self) -> None:
        """Undo :meth:`activate`."""
        if self._token is not None:
            try:
                _current.reset(self._token)
            except ValueError:  # reset from another context (task ended)
                _current.set(None)
            self._token = None

    def __len__(self) -> int:
        written = sum(len(d) for d in self.dirty.values())
        if self.outputs is None:
            return len(self.records) + written
        return len(self._orphans) + sum(len(r) for r in self.outputs.values()) + written

    def collect(self, timestamp: float) -> list[ProducerRecord]:
        """Sent records followed by one changelog record per written key."""
        out = self.records
        for participant, dirty in self.dirty.items():
            out.extend(participant.changelog_records(dirty, timestamp))
        return out

    def collect_per_partition(self, timestamp: float) -> dict[TP, list[ProducerRecord]]:
        """After :meth:`per_partition`: each input partition's records, its changelog records last.

        A changelog record goes with the input partition of the same number
        on :attr:`channel` (tables are co-partitioned with it). The records
        no event caused are :meth:`orphans`.
        """
        outputs = self.outputs
        assert outputs is not None, "per_partition() first"
        channel = self.channel
        for participant, dirty in self.dirty.items():
            for record in participant.changelog_records(dirty, timestamp):
                tp = TP(channel, record.partition)
                found = outputs.get(tp)
                if found is None:
                    found = outputs[tp] = []
                found.append(record)
        return {tp: records for tp, records in outputs.items() if records}

    async def collect_in_steps(self, timestamp: float) -> list[ProducerRecord]:
        """:meth:`collect`, encoding changelog records for at most :data:`SLICE` s between yields to the loop.

        A commit of a million keys then never holds the event loop (a
        kernel's widgets, other agents) for more than a step.
        """
        out = self.records
        async for records in self._changelog_steps(timestamp):
            out.extend(records)
        return out

    async def collect_per_partition_in_steps(self, timestamp: float) -> dict[TP, list[ProducerRecord]]:
        """:meth:`collect_per_partition`, in steps as :meth:`collect_in_steps`."""
        outputs = self.outputs
        assert outputs is not None, "per_partition() first"
        channel = self.channel
        async for records in self._changelog_steps(timestamp):
            for record in records:
                tp = TP(channel, record.partition)
                found = outputs.get(tp)
                if found is None:
                    found = outputs[tp] = []
                found.append(record)
        return {tp: records for tp, records in outputs.items() if records}

    async def _changelog_steps(self, timestamp: float) -> AsyncIterator[list[ProducerRecord]]:
        """Every participant's changelog records, :data:`STEP` at a time; a yield to the loop every :data:`SLICE` s."""
        since = time.monotonic()
        for participant, dirty in list(self.dirty.items()):
            steps = getattr(participant, "changelog_steps", None)
            if steps is None:
                chunks: Iterable[list[ProducerRecord]] = [participant.changelog_records(dirty, timestamp)]
            else:
                chunks = steps(dirty, timestamp, STEP)
            for records in chunks:
                yield records
                if time.monotonic() - since >= SLICE:
                    await asyncio.sleep(0)
                    since = time.monotonic()

    def orphans(self) -> list[ProducerRecord]:
        """After :meth:`per_partition`: records sent before any event was handed out (no partition caused them)."""
        return self._orphans

    def clear(self) -> None:
        """Forget everything (after a successful commit)."""
        self.dirty = {}
        outputs = self.outputs
        if outputs is None:
            self.records = self._orphans = []  # (both: the old list must not outlive its commit)
            return
        outputs.clear()
        current = self._current
        self.records = self._orphans = []
        if current is not None:  # the agent may be inside a batch of that partition
            self.records = outputs[current] = []

    def abort(self) -> None:
        """Restore every written table key to its value before the transaction."""
        for participant, dirty in self.dirty.items():
            participant.restore(dirty)
        self.clear()
