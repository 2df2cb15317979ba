"""Kafka Streams 3.9 joins as an oracle (scripts/kstreams-oracle, ``JoinOracle.java``).

``run_join_cases`` sends joins through ``TopologyTestDriver``: stream–stream
(``KStream#join/leftJoin/outerJoin`` with ``JoinWindows.ofTimeDifferenceAndGrace(after,
grace).before(before)``), stream–table (``builder.table``) and stream–global-table
(``builder.globalTable``, looked up by the stream's key) and stream–versioned-table
(``builder.table`` materialized in ``Stores.persistentVersionedKeyValueStore(retention)``, joined
with ``Joined.withGracePeriod(grace)`` when a grace is given). Records are piped in the given
order (the merged order of the two inputs: the caller decides it, as Kafka Streams' task
would); values are ints; every time is an int of milliseconds.

    >>> from oracle.joins import JoinCase, run_join_cases
    >>> [r] = run_join_cases([JoinCase.stream_stream("inner", 5, 5, 0, [("L", "k", 1, 10), ("R", "k", 6, 20)])])
    >>> [tuple(x) for x in r.results], r.late
    ([('k', 6, 10, 20, 1)], 0)

Wire format: in ``{"id", "kind": "stream-stream"|"stream-table"|"stream-globaltable", "how",
"before_ms", "after_ms", "grace_ms", "records": [[side, key, ts, value|null], ...]}`` (side
``L``/``R``, or ``S``/``T`` for stream and table); out ``{"id", "results": [[key, ts, left,
right, at], ...], "late": n, "late_events": [[index, n], ...]}`` where ``at`` is the index
of the record whose processing emitted the result and ``late`` the task's
``dropped-records-total``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from oracle.kstreams import OracleError, run_json

__all__ = ["JoinCase", "JoinResult", "Joined", "merge_by_time", "run_join_cases"]

Record = tuple[str, str, int, "int | None"]


class Joined(NamedTuple):
    """One result: key, timestamp, left and right value (None: missing), and the emitting record's index."""

    key: str
    timestamp: int
    left: int | None
    right: int | None
    at: int


@dataclass(frozen=True)
class JoinCase:
    """One join run: kind, how, window (stream–stream) and the records in processing order."""

    kind: str
    how: str
    records: tuple[Record, ...]
    before_ms: int = 0
    after_ms: int = 0
    grace_ms: int = 0
    id: str = ""
    retention_ms: int = 0

    @classmethod
    def stream_stream(
        cls, how: str, before_ms: int, after_ms: int, grace_ms: int, records: Iterable[Record], id: str = ""
    ) -> JoinCase:
        """A windowed stream–stream join; records are ``("L"|"R", key, ts, value)``."""
        return cls("stream-stream", how, tuple(records), before_ms, after_ms, grace_ms, id)

    @classmethod
    def stream_table(cls, how: str, records: Iterable[Record], globally: bool = False, id: str = "") -> JoinCase:
        """A stream–table join; records are ``("S"|"T", key, ts, value or None)``."""
        return cls("stream-globaltable" if globally else "stream-table", how, tuple(records), id=id)

    @classmethod
    def versioned(
        cls, how: str, retention_ms: int, grace_ms: int | None, records: Iterable[Record], id: str = ""
    ) -> JoinCase:
        """A stream–table join on a versioned table (``persistentVersionedKeyValueStore(retention)``), with
        ``Joined.withGracePeriod(grace)`` unless ``grace_ms`` is None; records are ``("S"|"T", key, ts, value)``."""
        return cls("stream-versioned-table", how, tuple(records), 0, 0, -1 if grace_ms is None else grace_ms, id,
                   retention_ms)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind, "how": self.how, "before_ms": self.before_ms,
            "after_ms": self.after_ms, "grace_ms": self.grace_ms, "retention_ms": self.retention_ms,
            "records": [list(r) for r in self.records],
        }


@dataclass(frozen=True)
class JoinResult:
    """What Kafka Streams emitted for a case, and its dropped-records count."""

    case: JoinCase
    results: list[Joined]
    late: int
    late_events: dict[int, int]


def run_join_cases(cases: Sequence[JoinCase]) -> list[JoinResult]:
    """Every case through Kafka Streams (one JVM)."""
    rows = run_json([case.to_json() for case in cases])
    out = []
    for case, row in zip(cases, rows):
        if "error" in row:
            raise OracleError(f"join case {case.id!r} failed in Kafka Streams: {row['error']}")
        out.append(JoinResult(case, [Joined(*r) for r in row["results"]], row["late"],
                              {i: n for i, n in row["late_events"]}))
    return out


def merge_by_time(first: Sequence[Record], second: Sequence[Record]) -> list[Record]:
    """Two partitions read as one task reads them: always the head with the smaller timestamp, ``first`` at ties.

    >>> merge_by_time([("T", "k", 1, 1), ("T", "k", 9, 2)], [("S", "k", 5, 0), ("S", "k", 1, 0)])
    [('T', 'k', 1, 1), ('S', 'k', 5, 0), ('S', 'k', 1, 0), ('T', 'k', 9, 2)]
    """
    out, i, j = [], 0, 0
    while i < len(first) or j < len(second):
        if j >= len(second) or (i < len(first) and first[i][2] <= second[j][2]):
            out.append(first[i])
            i += 1
        else:
            out.append(second[j])
            j += 1
    return out
