"""An executable statement of the rules in ``oracle.kstreams``' docstring.

``simulate(case)`` computes, in plain Python, what the docstring says Kafka Streams
3.9 emits for an OracleCase: finals (with the emitting event index and output
timestamp), every window update, and the late count per event. tests/oracle/
test_model.py checks it against the real oracle on random cases, which is how the
docstring's rules are known to be complete, boundaries included. It is a reference
for streamnb's implementer, not part of streamnb.

    >>> from oracle.kstreams import OracleCase
    >>> from oracle.model import simulate
    >>> simulate(OracleCase.tumbling(10, 0, [("a", 1, 5), ("a", 10, 1)])).finals[0][:4]
    ('a', 0, 10, 5)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from oracle.kstreams import Emission, OracleCase

__all__ = ["Simulation", "simulate"]

NO_TIME = -1  # Kafka's "no timestamp yet"


@dataclass
class Simulation:
    """What the rules predict: same shapes as OracleResult's fields."""

    finals: list[Emission] = field(default_factory=list)
    updates: list[Emission] = field(default_factory=list)
    late_events: dict[int, int] = field(default_factory=dict)

    @property
    def late(self) -> int:
        return sum(self.late_events.values())


class _Suppress:
    """suppress(untilWindowCloses): buffer by window end, emit once S >= end + delay."""

    def __init__(self, delay: int, out: Simulation) -> None:
        self.delay = delay
        self.out = out
        self.stream_time = NO_TIME
        # (key, start, end) -> (value or None, record timestamp)
        self.buffer: dict[tuple[str, int, int], tuple[int | None, int]] = {}

    def forward(self, key: str, start: int, end: int, value: int | None, timestamp: int, at: int) -> None:
        self.out.updates.append(Emission(key, start, end, value, at, timestamp))
        self.stream_time = max(self.stream_time, timestamp)
        self.buffer[(key, start, end)] = (value, timestamp)
        expiry = self.stream_time - self.delay
        ready = sorted(
            (k for k in self.buffer if k[2] <= expiry),
            key=lambda k: (k[2], k[0].encode(), k[1]),
        )
        for k in ready:
            value_, timestamp_ = self.buffer.pop(k)
            if value_ is not None:  # tombstones are dropped
                self.out.finals.append(Emission(k[0], k[1], k[2], value_, at, timestamp_))


def _late(out: Simulation, at: int) -> None:
    out.late_events[at] = out.late_events.get(at, 0) + 1


def _time_windows(case: OracleCase, out: Simulation) -> None:
    assert case.size_ms is not None
    size, grace = case.size_ms, case.grace_ms
    advance = case.advance_ms if case.kind == "hopping" and case.advance_ms is not None else size
    suppress = _Suppress(grace, out)
    store: dict[tuple[str, int], tuple[int, int]] = {}  # (key, start) -> (sum, max ts)
    stream_time = NO_TIME
    for at, (key, ts, value) in enumerate(case.events):
        stream_time = max(stream_time, ts)
        close = stream_time - grace
        first = max(0, (ts - size) // advance + 1) * advance  # smallest start with start + size > ts
        for start in range(first, ts + 1, advance):
            end = start + size
            if end <= close:
                _late(out, at)
                continue
            old = store.get((key, start))
            new = (value, ts) if old is None else (old[0] + value, max(ts, old[1]))
            store[(key, start)] = new
            suppress.forward(key, start, end, new[0], new[1], at)


def _sessions(case: OracleCase, out: Simulation) -> None:
    assert case.gap_ms is not None
    gap, grace = case.gap_ms, case.grace_ms
    retention = gap + grace
    suppress = _Suppress(gap + grace, out)
    store: dict[tuple[str, int, int], int] = {}  # (key, start, end) -> sum
    store_time = NO_TIME  # largest session end written (put or removed)
    stream_time = NO_TIME
    for at, (key, ts, value) in enumerate(case.events):
        stream_time = max(stream_time, ts)
        close = stream_time - gap - grace
        visible_from = store_time - retention + 1
        merged = sorted(k for k in store if k[0] == key and k[2] >= max(ts - gap, visible_from) and k[1] <= ts + gap)
        start = min([ts, *(k[1] for k in merged)])
        end = max([ts, *(k[2] for k in merged)])
        if end < close:
            _late(out, at)
            continue
        total = sum(store[k] for k in merged)
        if (start, end) != (ts, ts):
            for k in merged:
                del store[k]
                store_time = max(store_time, k[2])
                suppress.forward(key, k[1], k[2], None, k[2], at)
        store[(key, start, end)] = total + value
        store_time = max(store_time, end)
        suppress.forward(key, start, end, total + value, end, at)


class _Sliding:
    """Sliding windows: KIP-450 windows, found through a store with retention."""

    def __init__(self, case: OracleCase, out: Simulation) -> None:
        assert case.size_ms is not None
        self.size, self.grace = case.size_ms, case.grace_ms
        self.retention = 2 * self.size + self.grace
        self.out = out
        self.suppress = _Suppress(self.grace, out)
        self.store: dict[tuple[str, int], tuple[int, int]] = {}  # (key, start) -> (sum, max ts)
        self.store_time = NO_TIME  # largest window start written
        self.stream_time = NO_TIME

    def fetch(self, key: str, low: int, high: int) -> list[tuple[int, tuple[int, int]]]:
        low = max(low, self.store_time - self.retention + 1)
        return sorted((s, v) for (k, s), v in self.store.items() if k == key and low <= s <= high)

    def put(self, key: str, start: int, agg: tuple[int, int], at: int) -> None:
        self.store[(key, start)] = agg
        self.store_time = max(self.store_time, start)
        self.suppress.forward(key, start, start + self.size, agg[0], agg[1], at)

    def update(self, key: str, start: int, old: tuple[int, int], ts: int, value: int, close: int, at: int) -> None:
        """Add the event to window ``start`` (old: its current sum and max ts) unless it is closed."""
        if start + self.size < close:
            _late(self.out, at)
            return
        self.put(key, start, (old[0] + value, max(ts, old[1])), at)

    def process(self, at: int, key: str, ts: int, value: int) -> None:
        self.stream_time = max(self.stream_time, ts)
        close = self.stream_time - self.grace
        if ts + self.size < close:
            _late(self.out, at)
        elif ts < self.size:
            self.early(at, key, ts, value, close)
        else:
            self.regular(at, key, ts, value, close)

    def regular(self, at: int, key: str, ts: int, value: int, close: int) -> None:
        size = self.size
        left_agg: tuple[int, int] | None = None
        right_agg: tuple[int, int] | None = None
        left_exists = right_exists = False
        previous: int | None = None  # the latest earlier event's time, when needed
        seen: set[int] = set()
        for start, agg in reversed(self.fetch(key, max(0, ts - 2 * size), ts + 1)):
            seen.add(start)
            end = start + size
            if start == ts + 1:
                right_exists = True
            elif end > ts:
                if right_agg is None:
                    right_agg = agg
                self.update(key, start, agg, ts, value, close, at)
            elif end == ts:
                left_exists = True
                self.update(key, start, agg, ts, value, close, at)
                if agg[1] >= ts:
                    return
                previous = agg[1]
            else:
                left_agg = agg
                previous = agg[1]
                break
        if previous is not None and previous + 1 not in seen and previous + 1 + size >= ts:
            self.update(key, previous + 1, (0, ts), ts, value, close, at)  # the previous event's right window
        if not left_exists:
            base = left_agg[0] if left_agg is not None and previous is not None and ts - size <= previous else 0
            self.update(key, ts - size, (base, ts), ts, value, close, at)
        if not right_exists and right_agg is not None and right_agg[1] > ts:
            self.put(key, ts + 1, right_agg, at)

    def early(self, at: int, key: str, ts: int, value: int, close: int) -> None:
        combined: tuple[int, int] | None = None  # the window [0, size] holding early events
        right_agg: tuple[int, int] | None = None
        right_exists = False
        previous: int | None = None
        seen: set[int] = set()
        for start, agg in self.fetch(key, 0, ts + 1):
            seen.add(start)
            if start == 0:
                combined = agg
                if agg[1] < ts:
                    previous = agg[1]
            elif start <= ts:
                right_agg = agg
                self.update(key, start, agg, ts, value, close, at)
            elif start == ts + 1:
                right_exists = True
        if right_agg is None and combined is not None and combined[1] > ts:
            right_agg = combined
        if not right_exists and right_agg is not None and right_agg[1] > ts:
            self.put(key, ts + 1, right_agg, at)
        if previous is not None and previous + 1 not in seen:
            self.update(key, previous + 1, (0, ts), ts, value, close, at)
        self.update(key, 0, combined if combined is not None else (0, ts), ts, value, close, at)


def simulate(case: OracleCase) -> Simulation:
    """What the documented rules predict for ``case`` (finals, updates, late per event)."""
    case.check()
    out = Simulation()
    if case.kind in ("tumbling", "hopping"):
        _time_windows(case, out)
    elif case.kind == "session":
        _sessions(case, out)
    else:
        sliding = _Sliding(case, out)
        for at, (key, ts, value) in enumerate(case.events):
            sliding.process(at, key, ts, value)
    return out
