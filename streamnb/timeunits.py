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

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["TIMES", "as_datetimes", "check_times", "ms", "seconds"]

TIMES = ("datetime", "epoch")
"""How DataFrames give times (``times=``): pandas timestamps in UTC, or epoch seconds (floats)."""


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


def check_times(times: str) -> None:
    """Refuse a ``times=`` that is neither ``"datetime"`` nor ``"epoch"``.

    >>> check_times("seconds")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    streamnb.errors.ConfigurationError: times='seconds': use times="datetime" (pandas timestamps, UTC) or ...
    """
    from .errors import ConfigurationError

    if times not in TIMES:
        raise ConfigurationError(
            f'times={times!r}: use times="datetime" (pandas timestamps, UTC) or times="epoch" (epoch seconds)'
        )


def as_datetimes(df: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    """``df`` with ``columns`` (epoch seconds) as timezone-aware UTC timestamps, to the millisecond.

    >>> import pandas as pd
    >>> as_datetimes(pd.DataFrame({"t": [1.5]}), ["t"])["t"].tolist()
    [Timestamp('1970-01-01 00:00:01.500000+0000', tz='UTC')]
    """
    import pandas as pd

    changed = {
        name: pd.to_datetime((df[name].astype("float64") * 1000).round().astype("int64"), unit="ms", utc=True)
        for name in columns
    }
    return df.assign(**changed)
