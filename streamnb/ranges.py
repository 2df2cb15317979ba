"""Sets of partitions as short text, the way the worker's log lines show them.

A worker's log names the partitions it holds, gains and loses at every
rebalance; Kafka's own lines print them as long unsorted sets of
``TopicPartition(topic='orders', partition=3)``. Here they are sorted and
runs are folded into ranges, per topic:

>>> ranges({5, 0, 1, 2, 3})
'0-3,5'
>>> topic_ranges({("orders", 5), ("orders", 0), ("orders", 1), ("payments", 2)})
'orders[0-1,5] payments[2]'
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["ranges", "topic_ranges"]


def ranges(numbers: Iterable[int]) -> str:
    """``numbers`` sorted, runs of consecutive numbers folded into ``first-last``, comma-separated.

    >>> ranges([7, 1, 2, 3, 9, 10])
    '1-3,7,9-10'
    >>> ranges([4]), ranges([4, 4]), ranges([])
    ('4', '4', '')
    """
    parts: list[str] = []
    run: list[int] = []
    for n in sorted(set(numbers)):
        if run and n != run[-1] + 1:
            parts.append(_run_text(run))
            run = []
        run.append(n)
    if run:
        parts.append(_run_text(run))
    return ",".join(parts)


def _run_text(run: list[int]) -> str:
    return str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}"


def topic_ranges(tps: Iterable[tuple[str, int]]) -> str:
    """``(topic, partition)`` pairs as ``topic[ranges]`` per topic, topics sorted; ``none`` when empty.

    Takes :class:`~streamnb.transport.base.TP` (a named tuple) as well as plain pairs.

    >>> topic_ranges([("words", 3), ("words", 2), ("clicks", 0)])
    'clicks[0] words[2-3]'
    >>> topic_ranges([])
    'none'
    """
    by_topic: dict[str, set[int]] = {}
    for topic, partition in tps:
        by_topic.setdefault(topic, set()).add(partition)
    if not by_topic:
        return "none"
    return " ".join(f"{topic}[{ranges(parts)}]" for topic, parts in sorted(by_topic.items()))
