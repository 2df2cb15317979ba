"""Window kinds: the pure rules that place a timestamp in windows and say when they close.

A window is the half-open interval ``[start, end)`` in epoch seconds, with
``end = start + size``. Window starts are multiples of ``step`` (``step ==
size`` for tumbling windows), so an event at time ``t`` falls into every
window with ``start <= t < start + size``: one tumbling window, or
``size / step`` hopping windows.

Time rules (Kafka Streams' rules; see the README's "Event time"): a window
accepts events while ``end + grace > stream time`` and is *closed* once
stream time reaches ``end + grace``; it is kept for reads until stream time
reaches ``end + expires``, then deleted. ``grace`` defaults to ``expires``,
so that closing and deleting coincide, as in Faust; ``expires`` defaults to
the larger of the size and the grace.

Example::

    >>> TumblingWindow(10).ranges(23.5)
    [WindowRange(start=20.0, end=30.0)]
    >>> HoppingWindow(10, 5).ranges(23.5)
    [WindowRange(start=15.0, end=25.0), WindowRange(start=20.0, end=30.0)]
"""

from __future__ import annotations

import math
from typing import NamedTuple

from ..errors import WindowError

__all__ = ["HoppingWindow", "TumblingWindow", "Window", "WindowRange", "window_ranges"]


class WindowRange(NamedTuple):
    """One window: ``start <= t < end`` in epoch seconds."""

    start: float
    """Inclusive start."""
    end: float
    """Exclusive end."""


def _start(k: int, step: float) -> float:
    # Rounded so that 3 * 0.1 is 0.3 and window keys compare equal across runs.
    return float(round(k * step, 9))


def window_ranges(timestamp: float, size: float, step: float) -> list[WindowRange]:
    """Every window of ``size`` starting on a multiple of ``step`` that holds ``timestamp``.

    Oldest window first.

    >>> window_ranges(7, 4, 2)
    [WindowRange(start=4.0, end=8.0), WindowRange(start=6.0, end=10.0)]
    """
    k = math.floor(timestamp / step)
    # Float division can be off by one near boundaries: fix k against _start.
    while _start(k + 1, step) <= timestamp:
        k += 1
    while _start(k, step) > timestamp:
        k -= 1
    out: list[WindowRange] = []
    while True:
        start = _start(k, step)
        end = float(round(start + size, 9))
        if end <= timestamp:
            break
        out.append(WindowRange(start, end))
        k -= 1
    out.reverse()
    return out


class Window:
    """Base of tumbling and hopping windows.

    ``grace`` (seconds after the end) says how long a window still accepts
    late events; ``expires`` (seconds after the end, at least ``grace``) how
    long it is kept for reads. Both count in event time: stream time, the
    newest timestamp seen on the window's partition.
    """

    size: float
    step: float
    expires: float
    grace: float
    kind = "window"

    def __init__(self, size: float, step: float, expires: float | None = None, grace: float | None = None) -> None:
        size = _seconds(size, "size")
        step = _seconds(step, "step")
        if size <= 0 or step <= 0:
            raise WindowError(
                f"window size and step must be > 0 (got size={size}, step={step}); pass seconds, e.g. tumbling(60)"
            )
        if step > size:
            raise WindowError(
                f"a hopping window's step ({step}) must not exceed its size ({size}): "
                "events between windows would be lost; use hopping(size, step) with step <= size, "
                "or tumbling(size)"
            )
        self.size = size
        self.step = step
        self.expires, self.grace = _expires_and_grace(size, expires, grace)
        self._cache_key: float | None = None
        self._cache_val: list[WindowRange] = []
        # Windows only change at multiples of gcd-ish boundaries; cache the last bucket.
        self._bucket_lo = math.inf
        self._bucket_hi = -math.inf
        self._cache: dict[float, tuple[float, float, list[WindowRange]]] = {}

    def ranges(self, timestamp: float) -> list[WindowRange]:
        """The windows holding ``timestamp``, oldest first."""
        if self._bucket_lo <= timestamp < self._bucket_hi:
            return self._cache_val
        k = timestamp // self.step
        hit = self._cache.get(k)
        if hit is not None and hit[0] <= timestamp < hit[1]:
            self._bucket_lo, self._bucket_hi, self._cache_val = hit
            return hit[2]
        out = window_ranges(timestamp, self.size, self.step)
        # Every t from the newest window's start up to the next step start (or
        # the oldest window's end, if sooner) falls into the same windows.
        lo = out[-1].start
        hi = min(_start(round(lo / self.step) + 1, self.step), out[0].end)
        cache = self._cache
        if len(cache) > 4096:
            cache.clear()
        cache[k] = (lo, hi, out)
        self._cache_val, self._bucket_lo, self._bucket_hi = out, lo, hi
        return out

    def current(self, timestamp: float) -> WindowRange:
        """The newest window holding ``timestamp``."""
        return self.ranges(timestamp)[-1]

    def earliest(self, timestamp: float) -> WindowRange:
        """The oldest window holding ``timestamp``."""
        return self.ranges(timestamp)[0]

    def closes_at(self, end: float) -> float:
        """Stream time at which a window ending at ``end`` closes (``end + grace``).

        >>> TumblingWindow(10, grace=5).closes_at(20.0)
        25.0
        """
        return end + self.grace

    def expires_at(self, end: float) -> float:
        """Stream time at which a window ending at ``end`` is deleted (``end + expires``)."""
        return end + self.expires

    def stale(self, end: float, newest: float) -> bool:
        """True when a window ending at ``end`` has expired given the newest event time."""
        return newest >= end + self.expires

    def __repr__(self) -> str:
        grace = f", grace={self.grace}" if self.grace != self.expires else ""
        return f"{type(self).__name__}(size={self.size}, step={self.step}, expires={self.expires}{grace})"


class TumblingWindow(Window):
    """Fixed, non-overlapping windows of ``size`` seconds.

    >>> TumblingWindow(60).current(125)
    WindowRange(start=120.0, end=180.0)
    """

    kind = "tumbling"

    def __init__(self, size: float, expires: float | None = None, grace: float | None = None) -> None:
        super().__init__(size, size, expires, grace)

    def __repr__(self) -> str:
        grace = f", grace={self.grace}" if self.grace != self.expires else ""
        return f"TumblingWindow(size={self.size}, expires={self.expires}{grace})"


class HoppingWindow(Window):
    """Windows of ``size`` seconds starting every ``step`` seconds (they overlap).

    >>> len(HoppingWindow(60, 10).ranges(125))
    6
    """

    kind = "hopping"

    def __init__(self, size: float, step: float, expires: float | None = None, grace: float | None = None) -> None:
        super().__init__(size, step, expires, grace)


def _expires_and_grace(size: float, expires: float | None, grace: float | None) -> tuple[float, float]:
    """``(expires, grace)`` with the defaults filled in; ``expires < grace`` is an error."""
    g = None if grace is None else _seconds(grace, "grace")
    e = None if expires is None else _seconds(expires, "expires")
    if g is not None and g < 0:
        raise WindowError(f"grace must be >= 0 seconds, got {g}")
    if e is not None and e < 0:
        raise WindowError(f"expires must be >= 0 seconds, got {e}")
    if e is None:
        e = size if g is None else max(size, g)
    if g is None:
        g = e
    if e < g:
        raise WindowError(
            f"expires ({e:g} s) is shorter than grace ({g:g} s): a window would be deleted while it still "
            "accepts events; use expires >= grace (expires says how long a closed window stays readable)"
        )
    return e, g


def _seconds(value: object, what: str) -> float:
    if hasattr(value, "total_seconds"):
        return float(value.total_seconds())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise WindowError(f"window {what} must be seconds (a number or timedelta), got {value!r}")
