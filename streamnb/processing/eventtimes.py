"""Which messages a source dead-letters for their timestamp: no event time, or too far ahead of the clock.

No event time: ``nan``, ``inf``, a negative number (see :mod:`streamnb.events`).
Too far ahead (with ``App(max_event_time_skew=...)``): more than that ahead
of the wall clock; under a virtual clock, a lone jump that far ahead of its
partition's time, which the feed found (:func:`~streamnb.processing.feed.running_max`).
The usual case costs one pass over the batch's timestamps.

Example::

    >>> from streamnb.transport.base import Message
    >>> poison: dict = {}
    >>> reject_times([Message("t", 0, 7, float("nan"), None, b"1", ())], None, None, poison)
    >>> poison[("t", 0, 7)]
    EventTimeError('t[0]@7: its timestamp is nan, not a number of epoch seconds')
"""

from __future__ import annotations

import math
import operator
import time
from collections.abc import Sequence

from ..errors import EventTimeError
from ..events import time_problem
from ..transport.base import Message

__all__ = ["reject_times"]

_timestamp_of = operator.itemgetter(3)


def reject_times(
    msgs: Sequence[Message],
    skew: float | None,
    too_far: dict[tuple[str, int, int], float] | None,
    poison: dict[tuple[str, int, int], BaseException],
) -> None:
    """Put the messages of ``msgs`` whose timestamp is no event time, or too far ahead, in ``poison``.

    ``too_far``: under a virtual clock, the feed's lone jumps (what each was
    ahead of); ``None`` on the wall clock, where ``skew`` counts from ``time.time()``.
    """
    limit = math.inf if skew is None else skew
    clock = time.time() if skew is not None and too_far is None else math.inf
    stamps = list(map(_timestamp_of, msgs))
    total = sum(stamps)  # nan or inf when a timestamp is
    if total - total == 0 and min(stamps) >= 0 and (clock == math.inf or max(stamps) <= clock + limit):
        if not too_far:
            return
    for m in msgs:
        key = (m[0], m[1], m[2])
        problem = time_problem(m[3], clock, limit)
        if problem is None and too_far and key in too_far:
            problem = time_problem(m[3], too_far.pop(key), limit)
        if problem is not None:
            poison[key] = EventTimeError(f"{m[0]}[{m[1]}]@{m[2]}: {problem}")
