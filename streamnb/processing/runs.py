"""What a source hands its agent after a fetch: one partition's run at a time, nothing of a revoked partition.

Exactly-once on Kafka (a :attr:`~streamnb.transport.base.Consumer.transactional`
consumer) commits one transaction per input partition, so a fetched batch,
which mixes partitions, is cut into *runs* (one partition's messages each);
the agent takes one run at a time and the rest waits in :attr:`PartitionRuns.queued`.
A rebalance that revokes partitions waits until the agent is between runs
(:meth:`PartitionRuns.wait_between_runs`), so no event is half in a commit.

On any broker, a rebalance may revoke partitions while fetched messages
wait (for a commit, or while the kernel runs): those messages are never
handed out (:meth:`PartitionRuns.drop_revoked`), since the partitions' new
owner starts again at their committed offsets.

Example (two partitions in one fetch)::

    >>> from streamnb.transport.base import Message
    >>> fetched = [Message("orders", p, o, 0.0, None, b"{}", ()) for p, o in [(0, 5), (0, 6), (1, 3)]]
    >>> runs = PartitionRuns()
    >>> [m.offset for m in runs.split(fetched)], [[m.offset for m in run] for run in runs.queued]
    ([5, 6], [[3]])
"""

from __future__ import annotations

import asyncio
import itertools
import operator
import time
from collections import deque
from collections.abc import Iterable

from ..transport.base import TP, Consumer, Message

__all__ = ["PartitionRuns", "drop_rest_of_revoked"]

_tp_of = operator.itemgetter(0, 1)


class PartitionRuns:
    """The runs of the last fetch not yet handed out, and the partitions revoked since it."""

    def __init__(self) -> None:
        self.queued: deque[list[Message]] = deque()
        """Exactly-once: the rest of the last fetch, one run (one partition's messages) each."""
        self.revoked: set[tuple[str, int]] = set()
        """``(topic, partition)`` revoked since the batch in hand was fetched (Kafka rebalances)."""
        self.between = asyncio.Event()
        """Set while the agent is between runs (not inside a batch)."""
        self.between.set()

    def split(self, msgs: list[Message]) -> list[Message]:
        """Exactly-once: the first partition's messages of ``msgs``; queue the others' runs."""
        runs = [list(run) for _tp, run in itertools.groupby(msgs, _tp_of)]
        self.queued.extend(runs[1:])
        return runs[0]

    def next_run(self, consumer: Consumer) -> list[Message] | None:
        """Exactly-once: the next queued run with messages still to hand out, or None once the queue is empty."""
        queued = self.queued
        while queued:
            run = queued.popleft()
            if self.revoked:
                run = self.drop_revoked(consumer, run)
            if run:
                return run
        return None

    def drop_revoked(self, consumer: Consumer, msgs: list[Message]) -> list[Message]:
        """Hand out none of a batch's messages of partitions revoked since the fetch.

        A Kafka rebalance ran while the batch was fetched or waited (for a
        commit, or while the kernel ran): the table partitions of those
        messages were dropped, and their new owner starts at the committed
        offset. A partition assigned to this consumer again is rewound to
        the first dropped message, so nothing is skipped.
        """
        revoked = self.revoked
        if not revoked:
            return msgs
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

    def revoke(self, tps: Iterable[TP]) -> None:
        """A rebalance took ``tps``: none of their fetched messages go to the agent from now on."""
        self.revoked.update((tp.topic, tp.partition) for tp in tps)

    async def wait_between_runs(self, timeout: float) -> None:
        """Wait until the agent is between runs when this task runs (``timeout`` seconds at most).

        Checked again after each wake-up: the agent may have finished one
        partition's run and taken the next (already fetched) one before
        this task ran again. Raises :class:`TimeoutError` after ``timeout``.
        """
        deadline = time.monotonic() + timeout
        while not self.between.is_set():
            await asyncio.wait_for(self.between.wait(), max(0.0, deadline - time.monotonic()))


def drop_rest_of_revoked(batch: list[Message], index: int, tps: Iterable[TP]) -> None:
    """Remove from ``batch`` the messages after ``batch[index]`` (the one in hand) of partitions in ``tps``.

    >>> batch = [Message("t", p, 0, 0.0, None, b"", ()) for p in (0, 1, 0, 1)]
    >>> drop_rest_of_revoked(batch, 0, [TP("t", 1)])
    >>> [m.partition for m in batch]
    [0, 0]
    """
    revoked = {(tp.topic, tp.partition) for tp in tps}
    batch[index + 1 :] = [m for m in batch[index + 1 :] if (m[0], m[1]) not in revoked]
