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
from operator import attrgetter
from typing import Any, NamedTuple

from ...errors import ConfigurationError
from ...timeunits import ms

__all__ = ["HOWS", "LEFT", "RIGHT", "JoinWindow", "Kept", "Result", "WindowJoin"]

_new = object.__new__
_seq = attrgetter("seq")

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
    """A record kept for matching: its key, time, value, and whether it joined anything.

    ``cache`` is the owner's to fill (the agent's join keeps the record's
    changelog row there, encoded once); the rule clears it when it marks
    the record matched.
    """

    __slots__ = ("cache", "key", "matched", "seq", "side", "ts", "value")

    def __init__(self, side: int, ts: int, value: Any, seq: int, key: Any = None) -> None:
        self.side = side
        self.ts = ts
        self.value = value
        self.seq = seq
        self.key = key
        self.matched = False
        self.cache: Any = None

    def __repr__(self) -> str:
        return f"Kept({'LR'[self.side]}@{self.ts}={self.value!r}{' matched' if self.matched else ''})"


class WindowJoin:
    """The join's state and rule for one task (see the module docstring).

    :meth:`process` is the rule in one call. A caller that builds its own
    results (as the agent's join, an event per pair) calls its two halves,
    :meth:`match` (the pairs, as the other side's kept records) then
    :meth:`expire` (what closed unmatched), and saves a tuple per pair.

    An inner join, which yields nothing when a record closes, drops closed
    records lazily: when the other side next looks at their key, and all of
    them before its state is read (:meth:`buffered`, :meth:`records`,
    :meth:`rows`), so what is seen is the contract's.
    """

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
        self._closing: list[int] = []  # a heap of the instants (end + grace) records close at
        self._due: dict[int, list[Kept]] = {}  # instant -> the records closing then
        self._by_seq: dict[int, Kept] = {}  # every kept record, in arrival order (seqs increase)
        self._seq = 0
        self._grace = window.grace
        self._marks = how != "inner"  # an inner join never reads the matched flags: it does not keep them
        # An inner join yields nothing when a record closes: it keeps no closing heap (nor counts, nor
        # arrival index); closed records leave when the other side next looks at their key, and all of
        # them before anyone looks at the state (:meth:`_sweep`).
        self._lazy = how == "inner"
        self._swept = (-2, 0)  # the stream time and next seq at the last sweep
        # Per side: (before the record, after it): its window is [ts - before, ts + after].
        self._reach = ((window.before, window.after), (window.after, window.before))

    def buffered(self, side: int) -> int:
        """Records of ``side`` kept now."""
        if self._lazy:
            self._sweep()
        return self.sizes[side]

    def _sweep(self) -> None:
        """An inner join's state as the contract says: every closed record dropped, the counts taken.

        (Its closed records otherwise leave only when :meth:`match` meets
        them: an inner join yields nothing for them, so when they leave is
        seen only here.)
        """
        now, grace = self.stream_time, self._grace
        if self._swept == (now, self._seq):  # nothing came since the last sweep
            return
        self._swept = (now, self._seq)
        for side, end in ((LEFT, self.window.after), (RIGHT, self.window.before)):
            by_key = self.kept[side]
            oldest = now - grace - end  # a record of this side older than this has closed
            size = 0
            for key, rows in list(by_key.items()):
                open_rows = [r for r in rows if r.ts >= oldest]
                if open_rows:
                    by_key[key] = open_rows
                    size += len(open_rows)
                else:
                    del by_key[key]
            self.sizes[side] = size

    def is_late(self, side: int, ts: int) -> bool:
        """True when a record of ``side`` at ``ts`` would come after its window closed."""
        return self.window.end(side, ts) + self.window.grace < max(self.stream_time, ts)

    def process(self, side: int, key: Any, ts: int, value: Any) -> list[Result]:
        """One record of ``side`` (LEFT/RIGHT): the pairs it makes, then what closed unmatched."""
        others = self.match(side, key, ts, value)
        if others is None:
            return []
        new = tuple.__new__
        if side == LEFT:
            out = [new(Result, (key, ts if ts > o.ts else o.ts, value, o.value)) for o in others]
        else:
            out = [new(Result, (key, ts if ts > o.ts else o.ts, o.value, value)) for o in others]
        self.expire(out)
        return out

    def match(self, side: int, key: Any, ts: int, value: Any) -> list[Kept] | None:
        """A record of ``side``: None when late (counted), else kept, and the other side's records it joins.

        Each of those (and the record itself, if any) is marked matched (left
        and outer joins: an inner join emits no unmatched record, its flags
        stay False); in arrival order. Call :meth:`expire` after it (the
        rule's next step).
        """
        now = self.stream_time
        if ts > now:
            self.stream_time = now = ts
        grace = self._grace
        before, after = self._reach[side]
        due = ts + after + grace
        if due < now:  # window end + grace before stream time
            self.late += 1
            return None
        low, high = ts - before, ts + after
        oldest = now - grace - before  # the other side's records older than this have closed (end = t + before)
        if oldest > low:
            low = oldest
        seq = self._seq
        self._seq = seq + 1
        record = _new(Kept)  # Kept(side, ts, value, seq, key), without the cost of calling __init__
        record.side, record.ts, record.value, record.seq, record.key, record.matched, record.cache = (
            side, ts, value, seq, key, False, None)
        kept = self.kept
        others = kept[1 - side].get(key)
        if others:
            if self._lazy:  # inner: the other side's closed records at the head leave now (see :meth:`_sweep`)
                while others and others[0].ts < oldest:
                    del others[0]
            found = [o for o in others if low <= o.ts <= high]
            if found and self._marks:
                record.matched = True
                for o in found:
                    o.matched = True
                    o.cache = None  # (changed)
        else:
            found = []
        rows = kept[side].get(key)
        if rows is None:
            kept[side][key] = [record]
        else:
            rows.append(record)
        if self._lazy:
            return found
        self.sizes[side] += 1
        self._by_seq[seq] = record
        closing = self._due.get(due)
        if closing is None:
            self._due[due] = [record]
            heapq.heappush(self._closing, due)
        else:
            closing.append(record)
        return found

    def expire(self, out: list[Result]) -> None:
        """Drop the kept records whose window end + grace is before stream time; append the unmatched (left/outer).

        (An inner join has nothing to append: its closed records are dropped
        as :meth:`match` meets them, and all at once when its state is read.)
        """
        closing = self._closing
        now = self.stream_time
        if not closing or closing[0] >= now:
            return
        gone: list[Kept] = []
        pop, due, by_seq, kept, sizes = heapq.heappop, self._due, self._by_seq, self.kept, self.sizes
        inner = self.how == "inner"
        while closing and closing[0] < now:
            records = due.pop(pop(closing))
            if not inner:
                gone += records
            for record in records:
                del by_seq[record.seq]
                rows = kept[record.side][record.key]
                if rows[0] is record:
                    del rows[0]
                else:
                    rows.remove(record)
                sizes[record.side] -= 1
                if not rows:
                    del kept[record.side][record.key]
        if inner:
            return
        how = self.how
        gone.sort(key=lambda g: (g.ts, -g.side, g.seq))
        for record in gone:
            if record.matched:
                continue
            if record.side == LEFT:
                out.append(Result(record.key, record.ts, record.value, None))
            elif how == "outer":
                out.append(Result(record.key, record.ts, None, record.value))

    # -- state as rows (what a changelog holds) ---------------------------------------------

    def records(self) -> list[Kept]:
        """Every kept record, in arrival order (live objects: read, do not change)."""
        if not self._lazy:
            return list(self._by_seq.values())
        self._sweep()
        out = [r for by_key in self.kept for rows in by_key.values() for r in rows]
        out.sort(key=_seq)
        return out

    def rows(self) -> list[tuple[int, Any, int, Any, bool]]:
        """Every kept record as ``(side, key, ts, value, matched)``, in arrival order."""
        return [(r.side, r.key, r.ts, r.value, r.matched) for r in self.records()]

    def saved(self) -> list[Any]:
        """The state's records as :meth:`restore` takes them back (taken at every commit: cheap).

        An inner join's kept records never change: the records themselves,
        in no order, closed ones maybe among them; else :meth:`rows`.
        """
        if self._lazy:
            return [r for by_key in self.kept for rows in by_key.values() for r in rows]
        return self.rows()

    def restore(self, saved: list[Any], stream_time: int) -> None:
        """Start again from what :meth:`saved` gave and a stream time."""
        if self._lazy:
            saved = [(r.side, r.key, r.ts, r.value, r.matched) for r in sorted(saved, key=_seq)]
        self.load(saved, stream_time)

    def load(self, rows: list[tuple[int, Any, int, Any, bool]], stream_time: int) -> None:
        """Start again from ``rows`` (as :meth:`rows` gave them) and a stream time."""
        self.kept = ({}, {})
        self.sizes = [0, 0]
        self._closing.clear()
        self._due.clear()
        self._by_seq.clear()
        self.stream_time = stream_time
        self._swept = (-2, 0)
        for side, key, ts, value, matched in rows:
            record = Kept(side, ts, value, self._seq, key)
            record.matched = matched
            self._seq += 1
            self.kept[side].setdefault(key, []).append(record)
            self.sizes[side] += 1
            if self._lazy:
                continue
            self._by_seq[record.seq] = record
            due = self.window.end(side, ts) + self.window.grace
            if due in self._due:
                self._due[due].append(record)
            else:
                self._due[due] = [record]
                heapq.heappush(self._closing, due)
