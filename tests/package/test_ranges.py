"""Partition sets as the worker's log lines show them (streamnb/ranges.py)."""

from __future__ import annotations

import random

import pytest

from streamnb.ranges import ranges, topic_ranges
from streamnb.transport.base import TP


@pytest.mark.parametrize(
    ("numbers", "text"),
    [
        ([], ""),
        ([0], "0"),
        ([0, 1], "0-1"),
        ([3, 0, 1, 2, 5], "0-3,5"),
        ([0, 2, 4], "0,2,4"),
        ([9, 8, 7, 1, 1, 0], "0-1,7-9"),
        (range(64), "0-63"),
    ],
)
def test_runs_fold_into_ranges(numbers: list[int], text: str) -> None:
    assert ranges(numbers) == text


def test_ranges_read_back_to_the_same_set() -> None:
    rng = random.Random(22)
    for _ in range(200):
        numbers = {rng.randrange(40) for _ in range(rng.randrange(30))}
        back: set[int] = set()
        for part in filter(None, ranges(numbers).split(",")):
            first, _, last = part.partition("-")
            back.update(range(int(first), int(last or first) + 1))
        assert back == numbers


def test_topic_ranges_sorts_topics_and_takes_tps() -> None:
    tps = {TP("orders", 5), TP("orders", 0), TP("orders", 1), TP("orders", 2), TP("orders", 3), TP("a-dlq", 0)}
    assert topic_ranges(tps) == "a-dlq[0] orders[0-3,5]"
    assert topic_ranges(set()) == "none"
