"""How far a table's restore has come: records read and still to read, per partition.

A table partition that is being rebuilt (from its changelog, or from the
tail of it on ``rocksdb://``) has a :class:`RestoreProgress` in
``table.restore_progress`` until it is done; the dashboard and
``%streamnb status`` show it, and the worker logs it every
:data:`LOG_EVERY` seconds while a restore goes on. A standby replica
(Kafka) reads a changelog the same way without ever finishing: where it
stands is a :class:`StandbyProgress` in ``table.standby_progress``.

>>> tracker = RestoreTracker("totals")
>>> tracker.begin(0, 1_000)
>>> tracker.advance(0, 250)
>>> tracker.progress
{0: RestoreProgress(done=250, remaining=750)}
>>> tracker.progress[0].fraction
0.25
>>> tracker.finish(0); tracker.progress
{}
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any, NamedTuple

__all__ = ["LOG_EVERY", "RestoreProgress", "RestoreTracker", "StandbyProgress", "restore_lines", "standby_lines"]

logger = logging.getLogger("streamnb")

LOG_EVERY = 5.0
"""Seconds between two log lines of a restore in progress."""


class RestoreProgress(NamedTuple):
    """Where the restore of one table partition stands."""

    done: int
    """Changelog records read so far."""
    remaining: int
    """Changelog records still to read (offsets up to the end the restore aims for)."""

    @property
    def fraction(self) -> float:
        """``done`` as a fraction of the whole (1.0 when there was nothing to read)."""
        total = self.done + self.remaining
        return 1.0 if total <= 0 else self.done / total


class RestoreTracker:
    """The restores of one table in progress (what ``table.restore_progress`` reads)."""

    def __init__(self, table: str) -> None:
        self.table = table
        self._done: dict[int, int] = {}
        self._total: dict[int, int] = {}
        self._logged: dict[int, float] = {}
        self.records = 0
        """Changelog records read by every restore so far (all partitions, finished ones too)."""

    @property
    def progress(self) -> dict[int, RestoreProgress]:
        """``{partition: RestoreProgress}`` of the partitions being restored now (a copy)."""
        total = self._total
        return {p: RestoreProgress(done, max(total[p] - done, 0)) for p, done in self._done.items()}

    def begin(self, partition: int, records: int) -> None:
        """The restore of ``partition`` starts, with about ``records`` to read."""
        self._done[partition] = 0
        self._total[partition] = max(records, 0)
        self._logged[partition] = time.monotonic()

    def advance(self, partition: int, records: int) -> None:
        """``records`` more were read; a log line when :data:`LOG_EVERY` seconds passed since the last."""
        done = self._done.get(partition)
        if done is None:
            return
        done = self._done[partition] = done + records
        self.records += records
        now = time.monotonic()
        if now - self._logged[partition] >= LOG_EVERY:
            self._logged[partition] = now
            total = self._total[partition]
            logger.info("table %r partition %d restoring: %d of %d records (%.0f%%)",
                        self.table, partition, done, total, 100.0 * done / total if total else 100.0)

    def finish(self, partition: int) -> None:
        """The restore of ``partition`` is over (done or failed)."""
        self._done.pop(partition, None)
        self._total.pop(partition, None)
        self._logged.pop(partition, None)


def restore_lines(tables: Iterable[Any], width: int = 20) -> list[str]:
    """One text line per table partition being restored, with a progress bar (``%streamnb status``).

    >>> class T:
    ...     name, restore_progress = "totals", {3: RestoreProgress(250, 750)}
    >>> restore_lines([T()], width=8)
    ["restoring table 'totals' partition 3: [##......] 250 of 1,000 records (25%)"]
    """
    out = []
    for table in tables:
        progress: dict[int, RestoreProgress] = getattr(table, "restore_progress", None) or {}
        for partition, p in sorted(progress.items()):
            filled = int(p.fraction * width)
            out.append(
                f"restoring table {table.name!r} partition {partition}: [{'#' * filled}{'.' * (width - filled)}] "
                f"{p.done:,} of {p.done + p.remaining:,} records ({p.fraction:.0%})"
            )
    return out


class StandbyProgress(NamedTuple):
    """Where the standby replica of one table partition stands (Kafka, ``table_standby_replicas``)."""

    offset: int
    """The changelog offset its store has read to."""
    behind: int
    """Changelog offsets still to read to the end, as last seen (0: caught up; a takeover reads only these)."""


def standby_lines(tables: Iterable[Any]) -> list[str]:
    """One text line per table with standby replicas here: each partition and how far behind (``%streamnb status``).

    >>> class T:
    ...     name, standby_progress = "totals", {0: StandbyProgress(5_000, 0), 3: StandbyProgress(800, 1_200)}
    >>> standby_lines([T()])
    ["standby replicas of table 'totals': partition 0 caught up (offset 5,000); partition 3 1,200 records behind \
(offset 800)"]
    """
    out = []
    for table in tables:
        standby: dict[int, StandbyProgress] = getattr(table, "standby_progress", None) or {}
        if standby:
            parts = "; ".join(
                f"partition {p} {'caught up' if s.behind <= 0 else f'{s.behind:,} records behind'} "
                f"(offset {s.offset:,})"
                for p, s in sorted(standby.items())
            )
            out.append(f"standby replicas of table {table.name!r}: {parts}")
    return out
