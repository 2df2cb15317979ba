"""Window kinds: the pure rules that place a timestamp in windows and say when they close.

A window is the half-open interval ``[start, end)`` in epoch seconds, with
``end = start + size``. Window starts are multiples of ``step`` (``step ==
size`` for tumbling windows), so an event at time ``t`` falls into every
window with ``start <= t < start + size``: one tumbling window, or
``size / step`` hopping windows.

Time rules (Kafka Streams' rules; see docs/event-time.md): a window
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
from ..timeunits import ms

__all__ = [
    "HoppingWindow",
    "SessionWindow",
    "SlidingWindow",
    "TumblingWindow",
    "Window",
    "WindowRange",
    "window_ranges",
]


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
    while k >= 0:  # no window starts before time 0 (as in Kafka Streams)
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
        if not out:
            return out
        # Every t from the newest window's start (or the end of the window
        # before the oldest one, if later) up to the next step start (or the
        # oldest window's end, if sooner) falls into the same windows.
        lo = out[-1].start
        before = round(out[0].start / self.step) - 1
        if before >= 0:
            lo = max(lo, float(round(_start(before, self.step) + self.size, 9)))
        hi = min(_start(round(out[-1].start / self.step) + 1, self.step), out[0].end)
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


class SlidingWindow:
    """Sliding windows of ``size`` seconds: a window per event, ``[t - size, t]``, both ends inclusive.

    As Kafka Streams' ``SlidingWindows.ofTimeDifferenceAndGrace(size, grace)``
    (KIP-450): every event at ``t`` has its *left* window ``[t - size, t]``
    (events earlier than ``size`` after time 0 share ``[0, size]``), and a
    *right* window ``[t + 1ms, t + 1ms + size]`` exists when a later event
    lies within ``size`` after it. A window holds every event in its bounds.
    Times are whole milliseconds. A window closes once stream time passes
    ``end + grace`` (``grace`` defaults to 0; ``expires``, how long after its
    end a window stays readable, to the size).

    >>> w = SlidingWindow(10, grace=2)
    >>> w.left(25_000), w.right(25_000), w.closes_at(35_000)
    ((15000, 25000), (25001, 35001), 37001)
    """

    kind = "sliding"

    def __init__(self, size: float, expires: float | None = None, grace: float | None = None) -> None:
        size = _seconds(size, "size")
        if size <= 0:
            raise WindowError(f"a sliding window's size must be > 0 seconds, got {size}")
        self.size = size
        self.expires, self.grace = _expires_and_grace(size, expires, grace, default_grace=0.0)
        self.size_ms = ms(size)
        self.grace_ms = ms(self.grace)
        self.expires_ms = ms(self.expires)

    def left(self, t: int) -> tuple[int, int]:
        """The left window of an event at ``t`` ms: ``[t - size, t]`` (``[0, size]`` when ``t < size``)."""
        if t < self.size_ms:
            return 0, self.size_ms
        return t - self.size_ms, t

    def right(self, t: int) -> tuple[int, int]:
        """The right window of an event at ``t`` ms (it exists when an event lies in ``(t, t + size]``)."""
        return t + 1, t + 1 + self.size_ms

    def closes_at(self, end: int) -> int:
        """Stream time (ms) at which a window ending at ``end`` ms (inclusive) is closed."""
        return end + self.grace_ms + 1

    def expires_at(self, end: int) -> int:
        """Stream time (ms) at which a window ending at ``end`` ms is deleted."""
        return end + max(self.expires_ms, self.grace_ms) + 1

    def __repr__(self) -> str:
        grace = f", grace={self.grace}" if self.grace != self.expires else ""
        return f"SlidingWindow(size={self.size}, expires={self.expires}{grace})"


class SessionWindow:
    """Session windows: a key's events closer than ``gap`` (inclusive) form one session.

    As Kafka Streams' ``SessionWindows.ofInactivityGapAndGrace(gap, grace)``:
    a session is ``[first, last]`` event time (inclusive, whole
    milliseconds); an event merges every open session of its key that ends
    at least ``t - gap`` and starts at most ``t + gap`` (so one event can
    join two sessions); a session closes once stream time reaches
    ``end + gap + grace`` (``grace`` defaults to 0) and stays readable until
    ``end + gap + expires`` (``expires`` defaults to the gap).

    >>> w = SessionWindow(30, grace=5)
    >>> w.reaches(100_000), w.closes_at(130_000)
    ((70000, 130000), 165000)
    """

    kind = "session"

    def __init__(self, gap: float, expires: float | None = None, grace: float | None = None) -> None:
        gap = _seconds(gap, "gap")
        if gap <= 0:
            raise WindowError(f"a session window's gap must be > 0 seconds, got {gap}")
        self.gap = gap
        self.size = gap  # what generic code reads as the window's extent
        self.expires, self.grace = _expires_and_grace(gap, expires, grace, default_grace=0.0)
        self.gap_ms = ms(gap)
        self.grace_ms = ms(self.grace)
        self.expires_ms = ms(self.expires)

    def reaches(self, t: int) -> tuple[int, int]:
        """The range of session ends and starts an event at ``t`` ms merges with: ``(t - gap, t + gap)``."""
        return t - self.gap_ms, t + self.gap_ms

    def closes_at(self, end: int) -> int:
        """Stream time (ms) at which a session ending at ``end`` ms closes: ``end + gap + grace``."""
        return end + self.gap_ms + self.grace_ms

    def expires_at(self, end: int) -> int:
        """Stream time (ms) at which a session ending at ``end`` ms is deleted."""
        return end + self.gap_ms + max(self.expires_ms, self.grace_ms)

    def __repr__(self) -> str:
        grace = f", grace={self.grace}" if self.grace != self.expires else ""
        return f"SessionWindow(gap={self.gap}, expires={self.expires}{grace})"


def _expires_and_grace(
    size: float, expires: float | None, grace: float | None, default_grace: float | None = None
) -> tuple[float, float]:
    """``(expires, grace)`` with the defaults filled in; ``expires < grace`` is an error.

    ``default_grace`` (None: the expiry) is the grace when none is given.
    """
    g = None if grace is None else _seconds(grace, "grace")
    e = None if expires is None else _seconds(expires, "expires")
    if g is not None and g < 0:
        raise WindowError(f"grace must be >= 0 seconds, got {g}")
    if e is not None and e < 0:
        raise WindowError(f"expires must be >= 0 seconds, got {e}")
    if g is None and default_grace is not None:
        g = default_grace if e is None else min(default_grace, e)
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
