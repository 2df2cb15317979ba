"""Kafka Streams 3.9 as an oracle for streamnb's event-time windows.

``run_cases`` sends windowed SUM aggregations through Kafka Streams 3.9.1's
``TopologyTestDriver`` (no broker; scripts/kstreams-oracle, built on first use by
``bash scripts/oracle.sh build`` into .kafka/oracle) and returns what Kafka emitted::

    >>> from oracle.kstreams import OracleCase, run_cases
    >>> [r] = run_cases([OracleCase.tumbling(10_000, 5_000, [("a", 1_000, 1), ("a", 16_000, 1)])])
    >>> r.finals[0][:4], r.late
    (('a', 0, 10000, 1), 0)

Every time in this API and below is an int of milliseconds (event time). A count is
the SUM of 1s. Java and Maven must be installed; without them OracleError says so
(tests fail, they never skip).

Topology, per case
------------------
input (String key, Long value, the given timestamps, one partition, in list order)
-> groupByKey -> windowedBy(W) -> aggregate(0, sum) [+ session merger: sum]
-> (a) toStream = ``updates``; (b) suppress(untilWindowCloses(unbounded())) ->
toStream = ``finals``. Record caches are off (``statestore.cache.max.bytes=0``), so
every window change is forwarded. W is ``TimeWindows.ofSizeAndGrace(size, grace)``
(tumbling), ``.advanceBy(advance)`` (hopping), ``SlidingWindows.ofTimeDifferenceAndGrace
(size, grace)`` or ``SessionWindows.ofInactivityGapAndGrace(gap, grace)``. Stores are
Kafka's default (RocksDB; ``store="in_memory"`` gives the same finals/updates, see
"late" below).

Wire format (scripts/oracle.sh run: JSON lines in, JSON lines out, same order)
---------------------------------------------------------------------------
in:  {"id": .., "kind": "tumbling"|"hopping"|"sliding"|"session", "size_ms": ..,
      "advance_ms": .. (hopping), "gap_ms": .. (session), "grace_ms": ..,
      "store": "rocksdb"|"in_memory" (optional), "events": [[key, ts_ms, value], ...]}
     A parameter that does not apply to the kind is an error.
out: {"id": .., "finals": [E, ...], "updates": [E, ...], "late": n,
      "late_events": [[event_index, n], ...], "stream_time": max_ts_or_-1}
     or {"id": .., "error": "..."}; E = [key, start, end, value|null, at, timestamp]
     where ``at`` is the index of the input event whose processing emitted it.

Rules observed (each checked by an oracle run in tests/oracle/test_oracle.py)
---------------------------------------------------------------------------
The same rules as code: tests/oracle/model.py (``simulate(case)``), which gives
exactly Kafka's finals, updates and late counts on every hand case and on random
cases full of ties (test_model.py; 1,800 more random cases agreed when it was
written, and off-by-one variants of each boundary rule below are caught).

Stream time S: the largest event timestamp processed so far, over all keys, the
current event included (it advances before the event is judged). Records of one key
close windows of every other key. The end of the input closes nothing: windows not
closed by S stay unemitted.

Final results (suppress untilWindowCloses): a window is emitted once S >= E + D,
checked each time an update reaches suppress (i.e. while processing an accepted
event; a dropped event emits nothing), where E is the window's ``end`` as reported
and D = grace for time and sliding windows, D = gap + grace for sessions. Its value
is the latest one. Windows that become final at the same moment come out ordered by
end, then key (UTF-8 bytes); a comparison that ignores the order inside one event can
sort the finals of each ``at``. A window that is updated again after its final was emitted
is emitted again (possible only for sliding windows, below). Tombstones never come
out as finals.

late: the task-level ``dropped-records-total`` metric (stream-task-metrics). Kafka
3.9 has no processor-node late-drop metric; this one counts one per (event, window)
refused as expired (hopping: one per closed window the event falls in; sliding: one
per refused window, below; sessions: one per event). With RocksDB stores (default)
nothing else is counted for valid input. With in-memory stores a session accepted
with end == S - gap - grace is also counted once more by the store (it is forwarded
but not stored): the only difference seen between the two (7 of 100 random session
cases); compare ``late`` with the RocksDB default.

Tumbling and hopping (TimeWindows): windows [start, start+size), end exclusive,
start = k*advance >= 0 (tumbling: advance = size); an event at ts belongs to every
window with start <= ts < start + size, none with a negative start (ts < size makes
fewer windows). An event updates each of its windows with end > S - grace and is
refused (late += 1) for each with end <= S - grace. Final when S >= end + grace.
So at S == end + grace exactly the window is closed: emitted, and an event for it
is late; at S == end + grace - 1 it still accepts. Updates for one event come in
ascending start order.

Sliding (SlidingWindows, size = time difference): windows [start, end] with end =
start + size, both ends inclusive. For events in order, the windows of a key are
(KIP-450): for each event t, its left window [t-size, t]; and its right window
[t+1, t+1+size] if some event lies in (t, t+size]; each holding the sum of the
events within its bounds. Events with t < size (early) put themselves in the single
window [0, size] instead of [t-size, t]; their right windows are made as above.
Processing of an event t (S includes t, close = S - grace):
 * t + size < close: the whole event is late (late += 1), nothing changes.
 * otherwise each window it updates or creates is refused (late += 1) when its
   end < close, else updated. So a window [s, e] accepts while S <= e + grace, but
   its final is emitted at S >= e + grace: at S == e + grace exactly it is both
   emitted and still updatable, and every accepted update then re-emits a final
   (with grace 0 the left window of the newest event is emitted at once and again
   for each further event at the same timestamp).
 * Windows are found in the store: the key's windows with start in
   [max(0, t - 2*size), t+1], but only those with start >= T - (2*size + grace) + 1,
   where T is the largest window start written so far for any key (right windows
   start at t+1) before this event. When an event arrives at exactly t = S - grace
   and T has reached S, an earlier event at t - size is no longer seen: its value is
   missing from the new left window [t-size, t] (observed: a@10, b@24, b@25, a@20
   with size 10 grace 5 gives [10,20] = 1, not 2, and no [11,21]; without b@24 it
   is 2 and [11,21] = 1). The algorithm to match is Kafka's
   KStreamSlidingWindowAggregate.processReverse/processEarly/createWindows (3.9.1),
   restated step by step in tests/oracle/model.py (``_Sliding``).
 * A new right window [t+1, t+1+size] is created from the window found just after
   t (its value copied, not including t) and is never refused.

Session (SessionWindows): a session is [first, last] event time, both inclusive; an
event at t merges with every session of its key with end >= t - gap and start <= t +
gap (a distance exactly equal to gap merges), so one event can join two sessions;
the merged session gets the sum. Only sessions with end >= T - (gap + grace) + 1 are
seen, T = the largest session end written before this event (= S before this event):
a session closed before this event never merges. The merged (or new) session is
accepted iff its end >= S - gap - grace (S including t), else the event is late
(+1). Final when S >= end + gap + grace. Consequences observed: gap 5 grace 0,
a@0 then a@5 merges into [0,5] (the event that reaches 0+5+0 still sees [0,0]);
a@0, b@5, a@5 does not ([0,0] is emitted by b@5 and a@5 starts [5,5]); a@0, a@10,
a@5 gives [5,10] = 2 and leaves the emitted [0,0] alone. In ``updates`` a merge
first sends a tombstone (value None) for each old session, then the new session,
even when the bounds do not change (an event inside a session); only an event at t
joining a lone session [t, t] overwrites it with no tombstone.

Output timestamps: a time/sliding window's is the largest event time it holds
(sliding right windows: of the window they were copied from); a session's is its end.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

from streamnb.errors import StreamnbError

__all__ = [
    "KINDS",
    "Emission",
    "OracleCase",
    "OracleError",
    "OracleResult",
    "build_oracle",
    "run_cases",
    "run_json",
]

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "oracle.sh"

Kind = Literal["tumbling", "hopping", "sliding", "session"]
KINDS: tuple[Kind, ...] = ("tumbling", "hopping", "sliding", "session")

# Which window parameters each kind takes (grace_ms is common to all).
_PARAMETERS: dict[str, tuple[str, ...]] = {
    "tumbling": ("size_ms", "grace_ms"),
    "hopping": ("size_ms", "advance_ms", "grace_ms"),
    "sliding": ("size_ms", "grace_ms"),
    "session": ("gap_ms", "grace_ms"),
}


class OracleError(StreamnbError, RuntimeError):
    """The oracle could not be built or run, or a case is malformed (the message says why)."""


class Emission(NamedTuple):
    """One record that Kafka Streams wrote to an output topic.

    ``start``/``end`` are the window bounds in ms as Kafka reports them (time and sliding
    windows: ``end = start + size``; sessions: first and last event time). ``value`` is
    the SUM, or None for a tombstone (only in ``updates``: a session merged away). ``at``
    is the index of the input event whose processing emitted it; ``timestamp`` is the
    output record's timestamp (the largest event time the window had seen).
    """

    key: str
    start: int
    end: int
    value: int | None
    at: int
    timestamp: int


@dataclass(frozen=True)
class OracleCase:
    """One input to the oracle: a window definition and events ``(key, ts_ms, value)``.

    All times are integer milliseconds >= 0; events are processed in the given order
    (one partition). Build one with the class methods::

        >>> case = OracleCase.tumbling(10_000, 5_000, [("a", 1_000, 1), ("a", 16_000, 1)])
        >>> case.kind, case.size_ms, case.grace_ms
        ('tumbling', 10000, 5000)
    """

    kind: Kind
    events: tuple[tuple[str, int, int], ...]
    grace_ms: int = 0
    size_ms: int | None = None
    advance_ms: int | None = None
    gap_ms: int | None = None
    id: str = ""
    store: Literal["rocksdb", "in_memory"] = "rocksdb"

    @classmethod
    def tumbling(cls, size_ms: int, grace_ms: int, events: Iterable[tuple[str, int, int]], id: str = "") -> OracleCase:
        """``TimeWindows.ofSizeAndGrace(size, grace)``."""
        return cls("tumbling", tuple(events), grace_ms=grace_ms, size_ms=size_ms, id=id)

    @classmethod
    def hopping(
        cls, size_ms: int, advance_ms: int, grace_ms: int, events: Iterable[tuple[str, int, int]], id: str = ""
    ) -> OracleCase:
        """``TimeWindows.ofSizeAndGrace(size, grace).advanceBy(advance)``."""
        return cls("hopping", tuple(events), grace_ms=grace_ms, size_ms=size_ms, advance_ms=advance_ms, id=id)

    @classmethod
    def sliding(cls, size_ms: int, grace_ms: int, events: Iterable[tuple[str, int, int]], id: str = "") -> OracleCase:
        """``SlidingWindows.ofTimeDifferenceAndGrace(size, grace)``."""
        return cls("sliding", tuple(events), grace_ms=grace_ms, size_ms=size_ms, id=id)

    @classmethod
    def session(cls, gap_ms: int, grace_ms: int, events: Iterable[tuple[str, int, int]], id: str = "") -> OracleCase:
        """``SessionWindows.ofInactivityGapAndGrace(gap, grace)``."""
        return cls("session", tuple(events), grace_ms=grace_ms, gap_ms=gap_ms, id=id)

    def check(self) -> None:
        """Raise OracleError when the case cannot be run (before starting Java)."""
        where = f"oracle case {self.id!r}" if self.id else "oracle case"
        if self.kind not in _PARAMETERS:
            raise OracleError(f"{where}: unknown kind {self.kind!r}; use one of {', '.join(KINDS)}")
        wanted = _PARAMETERS[self.kind]
        for name in ("size_ms", "advance_ms", "gap_ms", "grace_ms"):
            value = getattr(self, name)
            if name not in wanted:
                if value is not None:
                    raise OracleError(f"{where}: {name} does not apply to {self.kind} windows (they take {wanted})")
                continue
            if not isinstance(value, int) or isinstance(value, bool):
                raise OracleError(f"{where}: {self.kind} windows need {name} as an int of milliseconds, got {value!r}")
            if value < 0 or (value == 0 and name != "grace_ms"):
                raise OracleError(f"{where}: {name} must be {'>= 0' if name == 'grace_ms' else '> 0'}, got {value}")
        if self.kind == "hopping" and self.advance_ms is not None and self.size_ms is not None:
            if self.advance_ms > self.size_ms:
                raise OracleError(f"{where}: advance_ms {self.advance_ms} must not exceed size_ms {self.size_ms}")
        if self.store not in ("rocksdb", "in_memory"):
            raise OracleError(f"{where}: store must be 'rocksdb' or 'in_memory', got {self.store!r}")
        for index, event in enumerate(self.events):
            ok = (
                len(event) == 3
                and isinstance(event[0], str)
                and all(isinstance(x, int) and not isinstance(x, bool) for x in event[1:])
            )
            if not ok:
                raise OracleError(f"{where}: event {index} must be (key: str, ts_ms: int, value: int), got {event!r}")
            if event[1] < 0:
                raise OracleError(f"{where}: event {index} has a negative timestamp {event[1]}; Kafka rejects those")

    def to_json(self) -> dict[str, Any]:
        """The JSON object the Java side reads (see the module docstring)."""
        out: dict[str, Any] = {"id": self.id, "kind": self.kind}
        for name in _PARAMETERS[self.kind]:
            out[name] = getattr(self, name)
        out["store"] = self.store
        out["events"] = [list(event) for event in self.events]
        return out


@dataclass(frozen=True)
class OracleResult:
    """What Kafka Streams produced for one case.

    ``finals``: the suppressed (final) results, in emission order. ``updates``: every
    window update of the aggregation before suppress (debugging aid). ``late``: the
    task's ``dropped-records-total``; ``late_events``: event index -> how much that event
    added to it. ``stream_time``: the largest event timestamp (-1 with no events).
    """

    case: OracleCase
    finals: list[Emission]
    updates: list[Emission]
    late: int
    late_events: dict[int, int] = field(default_factory=dict)
    stream_time: int = -1

    def final_values(self) -> dict[tuple[str, int, int], int | None]:
        """Final results as ``{(key, start, end): value}`` (the last one wins)."""
        return {(e.key, e.start, e.end): e.value for e in self.finals}


_built = False
_build_lock = threading.Lock()


def _script(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    bash = shutil.which("bash")
    if bash is None:
        raise OracleError("bash is needed to run scripts/oracle.sh")
    return subprocess.run(
        [bash, str(SCRIPT), *args], input=stdin, capture_output=True, text=True, cwd=REPO, check=False
    )


def build_oracle() -> None:
    """Build the Java oracle once per process (``bash scripts/oracle.sh build``).

    Raises OracleError with Maven's or the script's message when Java or Maven is
    missing or the build fails; the tests that need the oracle then fail, never skip.
    """
    global _built
    with _build_lock:
        if _built:
            return
        done = _script("build")
        if done.returncode != 0:
            raise OracleError(f"building the Kafka Streams oracle failed:\n{done.stderr.strip()}")
        _built = True


def _emission(row: list[Any]) -> Emission:
    key, start, end, value, at, timestamp = row
    return Emission(key, start, end, value, at, timestamp)


def run_json(cases: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Send raw wire-format cases (dicts) to the oracle and return its raw answers.

    No checks on the Python side: a malformed case comes back as ``{"id", "error"}``.

    >>> run_json([{"id": 1, "kind": "weekly", "events": []}])[0]["error"]
    'IllegalArgumentException: unknown kind "weekly": use tumbling, hopping, sliding or session'
    """
    if not cases:
        return []
    build_oracle()
    lines = "".join(json.dumps(case) + "\n" for case in cases)
    done = _script("run", stdin=lines)
    if done.returncode != 0:
        raise OracleError(f"the Kafka Streams oracle exited with {done.returncode}:\n{done.stderr.strip()}")
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    if len(rows) != len(cases):
        raise OracleError(
            f"the oracle answered {len(rows)} results for {len(cases)} cases; stderr:\n{done.stderr.strip()}"
        )
    return rows


def run_cases(cases: Sequence[OracleCase]) -> list[OracleResult]:
    """Run every case through Kafka Streams (one JVM for the whole list).

    >>> from oracle.kstreams import OracleCase, run_cases
    >>> [result] = run_cases([OracleCase.tumbling(10, 0, [("a", 1, 5), ("a", 10, 1)])])
    >>> result.finals[0][:4]
    ('a', 0, 10, 5)
    """
    for case in cases:
        case.check()
    rows = run_json([case.to_json() for case in cases])
    results = []
    for case, row in zip(cases, rows):
        if "error" in row:
            raise OracleError(f"oracle case {case.id!r} ({case.kind}) failed in Kafka Streams: {row['error']}")
        results.append(
            OracleResult(
                case=case,
                finals=[_emission(r) for r in row["finals"]],
                updates=[_emission(r) for r in row["updates"]],
                late=row["late"],
                late_events={index: count for index, count in row["late_events"]},
                stream_time=row["stream_time"],
            )
        )
    return results
