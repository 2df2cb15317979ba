"""The rule of a stream–stream join within a time window, for one task (a pair of co-partitioned partitions).

Pure and synchronous: :class:`WindowJoin` takes the records of both sides in
the order the task reads them and returns what the join yields. Times are
whole milliseconds (as Kafka Streams compares them).

The contract (Kafka Streams' ``JoinWindows.ofTimeDifferenceAndGrace`` on
well-behaved input):

- **Window.** A left record at ``t`` joins right records in ``[t - before,
  t + after]``; a right record at ``t`` joins left records in ``[t - after,
  t + before]`` (edges included; ``within=d`` is ``before = after = d``). Its
  *window end* is ``t + after`` (left) or ``t + before`` (right).
- **Stream time** is the largest timestamp seen on either side (the record
  being processed included).
- **Late.** A record whose window end + grace is before stream time is not
  joined nor kept; it is counted (``late``) and returned as such.
- **Pairs.** A record that is not late joins every kept record of the other
  side with the same key that lies in its window (whose own window is open:
  end + grace not before stream time); each pair at once, many-to-many, with
  the timestamp ``max(left.ts, right.ts)``.
- **Expiry.** After every record, each kept record whose window end + grace
  is before stream time is dropped; if it never matched, a left join yields
  ``(left, None)`` for it and an outer join ``(left, None)`` or
  ``(None, right)``: oldest first, the right side before the left at equal
  timestamps, each with its own timestamp. Never earlier, never twice.

>>> join = WindowJoin(JoinWindow.of(within=0.010), "left")  # 10 ms; times below in ms
>>> join.process(LEFT, "k", 0, "a")
[]
>>> join.process(RIGHT, "k", 5, "x")
[Result(key='k', timestamp=5, left='a', right='x')]
>>> join.process(LEFT, "k", 100, "b")   # a@0 closed long ago, but it matched: nothing more
[]
>>> join.process(RIGHT, "j", 200, "y")  # b@100 closes unmatched
[Result(key='k', timestamp=100, left='b', right=None)]
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NamedTuple

from ...errors import ConfigurationError
from ...timeunits import ms

__all__ = ["HOWS", "LEFT", "RIGHT", "JoinWindow", "Kept", "Result", "WindowJoin"]

LEFT = 0
RIGHT = 1
HOWS = ("inner", "left", "outer")


def _millis(name: str, value: float | timedelta | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"join({name}={value!r}): give seconds (a number) or a timedelta")
    if value < 0:
        raise ConfigurationError(f"join({name}={value!r}): must be >= 0 seconds")
    return ms(value)


@dataclass(frozen=True)
class JoinWindow:
    """How far apart two records may be to join, and how long late records are still taken (ms)."""

    before: int
    after: int
    grace: int

    @classmethod
    def of(
        cls,
        within: float | timedelta | None = None,
        before: float | timedelta | None = None,
        after: float | timedelta | None = None,
        grace: float | timedelta | None = None,
    ) -> JoinWindow:
        """From seconds or timedeltas: ``within=`` or ``before=``/``after=`` (one of them needed), ``grace=``.

        >>> JoinWindow.of(within=1.5, grace=timedelta(seconds=2))
        JoinWindow(before=1500, after=1500, grace=2000)
        >>> JoinWindow.of(before=0, after=60)
        JoinWindow(before=0, after=60000, grace=0)
        """
        w, b, a, g = (_millis(n, v) for n, v in (("within", within), ("before", before), ("after", after),
                                                  ("grace", grace)))
        if w is not None and (b is not None or a is not None):
            raise ConfigurationError("join(): give within= or before=/after=, not both")
        if w is None and b is None and a is None:
            raise ConfigurationError(
                "a stream–stream join needs a time window: within=seconds (or before=/after=), e.g. "
                "stream.join(payments, within=600)"
            )
        if w is not None:
            b = a = w
        return cls(b or 0, a or 0, g or 0)

    def end(self, side: int, ts: int) -> int:
        """The window end of a record of ``side`` at ``ts``."""
        return ts + (self.after if side == LEFT else self.before)


class Result(NamedTuple):
    """What the join yields: ``left``/``right`` (None for the missing side of a left/outer result)."""

    key: Any
    timestamp: int
    left: Any
    right: Any


class Kept:
    """A record kept for matching: its time, value, and whether it joined anything."""

    __slots__ = ("matched", "seq", "side", "ts", "value")

    def __init__(self, side: int, ts: int, value: Any, seq: int) -> None:
        self.side = side
        self.ts = ts
        self.value = value
        self.seq = seq
        self.matched = False

    def __repr__(self) -> str:
        return f"Kept({'LR'[self.side]}@{self.ts}={self.value!r}{' matched' if self.matched else ''})"


class WindowJoin:
    """The join's state and rule for one task (see the module docstring)."""

    def __init__(self, window: JoinWindow, how: str) -> None:
        if how not in HOWS:
            raise ConfigurationError(f"join(how={how!r}): a stream–stream join is 'inner', 'left' or 'outer'")
        self.window = window
        self.how = how
        self.stream_time = -1
        self.late = 0
        """Records not joined because their window had closed (plus grace)."""
        self.kept: tuple[dict[Any, list[Kept]], dict[Any, list[Kept]]] = ({}, {})
        """Per side: key -> records kept, in arrival order."""
        self.sizes = [0, 0]
        """Records kept per side."""
        self._closing: list[tuple[int, int, Any]] = []  # (end + grace, seq, key) heap
        self._by_seq: dict[int, Kept] = {}
        self._seq = 0

    def buffered(self, side: int) -> int:
        """Records of ``side`` kept now."""
        return self.sizes[side]

    def is_late(self, side: int, ts: int) -> bool:
        """True when a record of ``side`` at ``ts`` would come after its window closed."""
        return self.window.end(side, ts) + self.window.grace < max(self.stream_time, ts)

    def process(self, side: int, key: Any, ts: int, value: Any) -> list[Result]:
        """One record of ``side`` (LEFT/RIGHT): the pairs it makes, then what closed unmatched."""
        if ts > self.stream_time:
            self.stream_time = ts
        now, w = self.stream_time, self.window
        out: list[Result] = []
        if w.end(side, ts) + w.grace < now:
            self.late += 1
            return out
        if side == LEFT:
            low, high, reach = ts - w.before, ts + w.after, w.before  # (reach: the other side's window end - ts)
        else:
            low, high, reach = ts - w.after, ts + w.before, w.after
        record = Kept(side, ts, value, self._seq)
        self._seq += 1
        oldest = now - w.grace - reach  # kept records older than this have closed
        if oldest > low:
            low = oldest
        new = tuple.__new__
        others = self.kept[1 - side].get(key)
        if others:
            append = out.append
            if side == LEFT:
                for other in others:
                    t = other.ts
                    if low <= t <= high:
                        other.matched = True
                        append(new(Result, (key, ts if ts > t else t, value, other.value)))
            else:
                for other in others:
                    t = other.ts
                    if low <= t <= high:
                        other.matched = True
                        append(new(Result, (key, ts if ts > t else t, other.value, value)))
            if out:
                record.matched = True
        self.kept[side].setdefault(key, []).append(record)
        self.sizes[side] += 1
        self._by_seq[record.seq] = record
        heapq.heappush(self._closing, (w.end(side, ts) + w.grace, record.seq, key))
        self._expire(now, out)
        return out

    def _expire(self, now: int, out: list[Result]) -> None:
        closing = self._closing
        if not closing or closing[0][0] >= now:
            return
        gone: list[tuple[Kept, Any]] = []
        while closing and closing[0][0] < now:
            _, seq, key = heapq.heappop(closing)
            record = self._by_seq.pop(seq)
            rows = self.kept[record.side][key]
            rows.remove(record)
            self.sizes[record.side] -= 1
            if not rows:
                del self.kept[record.side][key]
            gone.append((record, key))
        how = self.how
        if how == "inner":
            return
        gone.sort(key=lambda g: (g[0].ts, -g[0].side, g[0].seq))
        for record, key in gone:
            if record.matched:
                continue
            if record.side == LEFT:
                out.append(Result(key, record.ts, record.value, None))
            elif how == "outer":
                out.append(Result(key, record.ts, None, record.value))

    # -- state as rows (what a changelog holds) ---------------------------------------------

    def rows(self) -> list[tuple[int, Any, int, Any, bool]]:
        """Every kept record as ``(side, key, ts, value, matched)``, in arrival order."""
        return [(r.side, key, r.ts, r.value, r.matched) for r, key in sorted(
            ((r, k) for side in self.kept for k, rs in side.items() for r in rs), key=lambda rk: rk[0].seq)]

    def load(self, rows: list[tuple[int, Any, int, Any, bool]], stream_time: int) -> None:
        """Start again from ``rows`` (as :meth:`rows` gave them) and a stream time."""
        self.kept = ({}, {})
        self.sizes = [0, 0]
        self._closing.clear()
        self._by_seq.clear()
        self.stream_time = stream_time
        for side, key, ts, value, matched in rows:
            record = Kept(side, ts, value, self._seq)
            record.matched = matched
            self._seq += 1
            self.kept[side].setdefault(key, []).append(record)
            self.sizes[side] += 1
            self._by_seq[record.seq] = record
            heapq.heappush(self._closing, (self.window.end(side, ts) + self.window.grace, record.seq, key))
