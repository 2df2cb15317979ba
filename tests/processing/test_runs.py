"""PartitionRuns: one partition's run at a time, nothing of a revoked partition, a rebalance waits between runs."""

from __future__ import annotations

import asyncio

import pytest

from streamnb.processing.runs import PartitionRuns, drop_rest_of_revoked
from streamnb.transport.base import TP, Message


def msg(partition: int, offset: int, topic: str = "t") -> Message:
    return Message(topic, partition, offset, 0.0, None, b"", ())


class FakeConsumer:
    """Only what PartitionRuns asks of a consumer: its assignment, and seek."""

    def __init__(self, owned: set[TP]) -> None:
        self.owned = owned
        self.seeks: list[tuple[TP, int]] = []

    def assignment(self) -> set[TP]:
        return self.owned

    def seek(self, tp: TP, offset: int) -> None:
        self.seeks.append((tp, offset))


def offsets(run: list[Message] | None) -> list[tuple[int, int]] | None:
    return None if run is None else [(m.partition, m.offset) for m in run]


def test_a_fetch_is_cut_into_one_run_per_partition_in_fetch_order() -> None:
    runs = PartitionRuns()
    consumer = FakeConsumer({TP("t", 0), TP("t", 1), TP("t", 2)})
    first = runs.split([msg(1, 7), msg(1, 8), msg(0, 3), msg(2, 1), msg(2, 2)])
    assert offsets(first) == [(1, 7), (1, 8)]
    assert offsets(runs.next_run(consumer)) == [(0, 3)]
    assert offsets(runs.next_run(consumer)) == [(2, 1), (2, 2)]
    assert runs.next_run(consumer) is None and consumer.seeks == []


def test_queued_runs_of_revoked_partitions_are_skipped_and_a_partition_still_owned_is_rewound() -> None:
    runs = PartitionRuns()
    runs.split([msg(0, 1), msg(1, 5), msg(1, 6), msg(2, 9), msg(3, 4)])
    runs.revoke([TP("t", 1), TP("t", 2)])
    consumer = FakeConsumer({TP("t", 0), TP("t", 2), TP("t", 3)})  # partition 2 came back to this consumer
    # Partitions 1 and 2 were revoked since the fetch: their runs are never handed out.
    assert offsets(runs.next_run(consumer)) == [(3, 4)]
    assert consumer.seeks == [(TP("t", 2), 9)]  # partition 1 is another consumer's now
    assert runs.next_run(consumer) is None


def test_every_queued_run_revoked_leaves_nothing_to_hand_out() -> None:
    runs = PartitionRuns()
    runs.split([msg(0, 1), msg(1, 5)])
    runs.revoke([TP("t", 1)])
    assert runs.next_run(FakeConsumer(set())) is None and not runs.queued


def test_a_batch_keeps_every_message_when_nothing_was_revoked() -> None:
    runs = PartitionRuns()
    batch = [msg(0, 1), msg(1, 2)]
    assert runs.drop_revoked(FakeConsumer(set()), batch) is batch


def test_drop_revoked_keeps_other_topics_partitions_of_the_same_number() -> None:
    runs = PartitionRuns()
    runs.revoke([TP("a", 0)])
    consumer = FakeConsumer({TP("a", 0)})
    kept = runs.drop_revoked(consumer, [msg(0, 1, "a"), msg(0, 2, "b"), msg(0, 3, "a")])
    assert [(m.topic, m.offset) for m in kept] == [("b", 2)]
    assert consumer.seeks == [(TP("a", 0), 1)]  # the first dropped message of the partition


def test_the_rest_of_the_batch_in_hand_loses_revoked_partitions_only_after_the_message_in_hand() -> None:
    batch = [msg(1, 0), msg(0, 0), msg(1, 1), msg(0, 1), msg(1, 2)]
    drop_rest_of_revoked(batch, 1, [TP("t", 1)])
    assert offsets(batch) == [(1, 0), (0, 0), (0, 1)]


async def test_a_rebalance_waits_until_the_agent_is_between_runs() -> None:
    runs = PartitionRuns()
    await runs.wait_between_runs(0.0)  # between runs from the start
    runs.between.clear()  # the agent took a run
    waiter = asyncio.ensure_future(runs.wait_between_runs(5.0))
    await asyncio.sleep(0.01)
    assert not waiter.done()
    runs.between.set()
    await asyncio.wait_for(waiter, 1.0)


async def test_a_rebalance_that_waits_too_long_times_out() -> None:
    runs = PartitionRuns()
    runs.between.clear()
    with pytest.raises(TimeoutError):
        await runs.wait_between_runs(0.05)
