"""Kafka Streams 3.9 as an oracle for streamnb's event-time windows.

RULES_PLACEHOLDER
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


def run_cases(cases: Sequence[OracleCase]) -> list[OracleResult]:
    """Run every case through Kafka Streams (one JVM for the whole list).

    >>> from oracle.kstreams import OracleCase, run_cases
    >>> [result] = run_cases([OracleCase.tumbling(10, 0, [("a", 1, 5), ("a", 10, 1)])])
    >>> result.finals[0][:4]
    ('a', 0, 10, 5)
    """
    for case in cases:
        case.check()
    if not cases:
        return []
    build_oracle()
    lines = "".join(json.dumps(case.to_json()) + "\n" for case in cases)
    done = _script("run", stdin=lines)
    if done.returncode != 0:
        raise OracleError(f"the Kafka Streams oracle exited with {done.returncode}:\n{done.stderr.strip()}")
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    if len(rows) != len(cases):
        raise OracleError(
            f"the oracle answered {len(rows)} results for {len(cases)} cases; stderr:\n{done.stderr.strip()}"
        )
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
