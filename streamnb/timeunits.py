"""Seconds and milliseconds: streamnb speaks seconds, Kafka and window math whole milliseconds.

Users give times and durations in seconds (floats, as Faust does); Kafka
timestamps, Kafka's ``*_ms`` settings, Vega-Lite's temporal fields and the
comparisons of window boundaries use whole milliseconds. Every conversion
goes through these two functions, so ``0.1 + 0.2`` seconds is 300 ms
everywhere (never 300.00000000000006, never 299).

>>> ms(0.1 + 0.2), ms(12.0), seconds(1500)
(300, 12000, 1.5)
"""

from __future__ import annotations

__all__ = ["ms", "seconds"]


def ms(secs: float) -> int:
    """Whole milliseconds (rounded to the nearest): how window boundaries compare, as in Kafka Streams.

    >>> ms(1.001), ms(-0.5)
    (1001, -500)
    """
    return round(secs * 1000)


def seconds(millis: int) -> float:
    """Seconds of ``millis`` milliseconds.

    >>> seconds(1001), seconds(0)
    (1.001, 0.0)
    """
    return millis / 1000
