"""The processing transaction: one list of records, or (Kafka exactly-once) one per input partition."""

from __future__ import annotations

from typing import Any

from streamnb.transaction import Transaction
from streamnb.transport.base import TP, ProducerRecord


def rec(topic: str, partition: int = 0, value: bytes = b"v") -> ProducerRecord:
    return ProducerRecord(topic, partition, None, value, 0.0)


class Changelog:
    """A participant whose changelog records are given."""

    def __init__(self, records: list[ProducerRecord]) -> None:
        self.records = records
        self.dropped: set[int] = set()

    def before_commit(self, txn: Transaction) -> None:
        pass

    def changelog_records(self, dirty: Any, timestamp: float) -> list[ProducerRecord]:
        return list(self.records)

    def restore(self, dirty: Any) -> None:
        pass

    def after_commit(self, dirty: Any) -> None:
        pass

    def drop_partitions(self, partitions: set[int]) -> None:
        self.dropped |= partitions


def test_one_list_by_default() -> None:
    txn = Transaction()
    txn.records.append(rec("out"))
    assert txn.records_for(3) is txn.records
    txn.dirty[Changelog([rec("t-changelog", 1)])] = {"k": [1, None]}  # type: ignore[index]
    assert [r.topic for r in txn.collect(0.0)] == ["out", "t-changelog"]
    assert len(txn) == 3  # the two records (collect appends in place) and one written key
    txn.clear()
    assert len(txn) == 0 and txn.records == []


def test_per_partition_records_go_with_the_partition_that_caused_them() -> None:
    txn = Transaction()
    txn.per_partition("views")
    txn.records.append(rec("tick-output"))  # before any batch: caused by no partition
    txn.switch(TP("views", 1))
    txn.records.append(rec("sink", value=b"from 1"))
    txn.switch(TP("source", 0))  # a group_by's source partition: its forwards
    txn.records.append(rec("views", 3, b"forward"))
    txn.records_for(2).append(rec("final", value=b"window of table partition 2"))
    txn.dirty[Changelog([rec("t-changelog", 1), rec("t-changelog", 2)])] = {}  # type: ignore[index]
    assert len(txn) == 4
    out = txn.collect_per_partition(0.0)
    assert {tp: [r.topic for r in records] for tp, records in out.items()} == {
        TP("views", 1): ["sink", "t-changelog"],
        TP("source", 0): ["views"],
        TP("views", 2): ["final", "t-changelog"],
    }
    assert [r.topic for r in txn.orphans()] == ["tick-output"]


def test_clearing_keeps_the_partition_in_hand() -> None:
    """A commit in the middle of a batch (a rebalance): what follows still goes with that batch's partition."""
    txn = Transaction()
    txn.per_partition("views")
    txn.switch(TP("views", 0))
    txn.records.append(rec("sink"))
    committed = txn.collect_per_partition(0.0)
    txn.clear()
    assert len(txn) == 0 and txn.orphans() == []
    txn.records.append(rec("sink", value=b"after"))
    assert txn.collect_per_partition(0.0) == {TP("views", 0): [rec("sink", value=b"after")]}
    assert committed == {TP("views", 0): [rec("sink")]}  # the committed lists are not touched
