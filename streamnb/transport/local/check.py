"""``streamnb check`` and ``streamnb salvage``: what in a ``local://`` folder is damaged, and a copy of the rest.

:func:`check` reads a stopped folder without changing it: sqlite's own check
of the file (``PRAGMA quick_check``), sqlite's schema against streamnb's,
every catalogue row's checksum, every batch's checksum, that each
partition's batches tile its log, and -- when the last owner did not stop
cleanly -- whether committed messages are missing (a deleted ``-wal``
file). :func:`salvage` copies every partition that reads back whole, with
the catalogue rows and committed offsets that hold, into a new folder, and
lists what it could not copy: a damaged partition is there empty, its
offsets going on from where the old one ended.

Example::

    report = check("/data/shop")
    print("\\n".join(report.lines()))    # what streamnb check prints
    if not report.ok:
        copied = salvage("/data/shop", "/data/shop-salvaged")
        print("\\n".join(copied.lines()))
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from ...errors import BrokerError
from .catalogue import (
    INSERT_PARTITION,
    SCHEMA_SQL,
    SCHEMA_VERSION,
    UPSERT_OFFSET,
    Catalogue,
    Topic,
    load_catalogue,
    offset_row,
    partition_row,
    schema_problems,
    topic_row,
)
from .integrity import Damage, batch_end, quick_check, verify_batch
from .lockfile import Lock, lost_commits, take
from .log import INSERT_BATCH, batch_row
from .store import DB_NAME

__all__ = ["PartitionReport", "Report", "SalvageReport", "check", "salvage"]


@dataclass
class PartitionReport:
    """One partition as :func:`check` read it."""

    topic: str
    partition: int
    start: int
    end: int
    batches: int = 0
    messages: int = 0
    unchecked: int = 0
    """Batches written before checksums (store schema 2): parsed, not checked."""
    damaged: list[Damage] = field(default_factory=list)


@dataclass
class Report:
    """What :func:`check` found: ``ok`` when nothing is damaged; :meth:`lines` says it in words."""

    folder: str
    problems: list[str] = field(default_factory=list)
    """Damage of the whole folder: sqlite's check, the schema, catalogue rows, lost commits, stray batches."""
    partitions: list[PartitionReport] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when nothing is damaged."""
        return not self.problems and not any(p.damaged for p in self.partitions)

    def lines(self) -> list[str]:
        """The report as ``streamnb check`` prints it: the damage first, then a summary line."""
        out = [f"{self.folder}: {note}" for note in self.notes]
        out += [f"DAMAGED: {problem}" for problem in self.problems]
        for part in self.partitions:
            out += [f"DAMAGED: {d.describe()}" for d in part.damaged]
        batches = sum(p.batches for p in self.partitions)
        messages = sum(p.messages for p in self.partitions)
        unchecked = sum(p.unchecked for p in self.partitions)
        topics = len({p.topic for p in self.partitions})
        what = (f"{topics} topics, {len(self.partitions)} partitions, {messages} messages in {batches} batches"
                + (f" ({unchecked} written before checksums: parsed, not checked)" if unchecked else ""))
        if self.ok:
            out.append(f"ok: {self.folder}: {what}, checked in {self.seconds:.2f} s")
        else:
            out.append(
                f"damaged: {self.folder}: {what}; copy what is intact into a new folder with "
                f"`streamnb salvage local://{self.folder} --to local://{self.folder}-salvaged`"
            )
        return out


@dataclass
class SalvageReport:
    """What :func:`salvage` copied, and what it could not (``lost``)."""

    folder: str
    to: str
    partitions: int = 0
    messages: int = 0
    offsets: int = 0
    lost: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when everything was copied."""
        return not self.lost

    def lines(self) -> list[str]:
        """The report as ``streamnb salvage`` prints it."""
        out = [f"NOT COPIED: {what}" for what in self.lost]
        out.append(f"copied {self.partitions} partitions ({self.messages} messages) and {self.offsets} committed "
                   f"offsets from {self.folder} to {self.to}"
                   + (f"; {len(self.lost)} parts could not be copied (above)" if self.lost else "; nothing was lost"))
        return out


class _Source:
    """A stopped folder, locked (not written) and open for reading."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        path = os.path.join(folder, DB_NAME)
        if not os.path.isfile(path):
            raise BrokerError(f"{folder} holds no local:// store (no {DB_NAME} in it)")
        self.lock: Lock = take(folder, write=False)
        self.wal_existed = os.path.exists(path + "-wal")
        self._by_cell: dict[tuple[object, object], list[tuple[object, int]]] | None = None
        self._scan_error: sqlite3.DatabaseError | None = None
        try:
            self.conn = sqlite3.connect(path, isolation_level=None)
            self.conn.execute("PRAGMA query_only = ON")
            self.version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.Error as exc:
            self.lock.release(clean=False)
            raise BrokerError(f"sqlite cannot read {path} at all ({exc}): nothing in it can be checked or "
                              "copied") from exc
        self.lost_everything = bool(self.version == 0 and self.lock.previous and self.lock.previous.messages)
        if self.version not in (2, SCHEMA_VERSION) and not self.lost_everything:
            self.close()
            raise BrokerError(f"{path} has store schema {self.version}; this streamnb checks schema 2 and "
                              f"{SCHEMA_VERSION}: open the folder once with the app (it converts it), then check it")

    def close(self) -> None:
        self.conn.close()
        self.lock.release(clean=False)  # (not written: left as the last owner left it)

    def catalogue(self) -> Catalogue:
        return load_catalogue(self.conn, checksums=self.version == SCHEMA_VERSION)

    def batches(self, topic: Topic, p: int) -> Iterator[tuple[int, int | None, int, float, bytes, int | None]]:
        """A partition's batch rows in offset order: (base, end, count, newest timestamp, bytes, checksum).

        Found through the table's index; when sqlite cannot read the index,
        through the table itself (one scan of it, for every partition).
        """
        columns = "end_offset, count, max_timestamp, records, crc" if self.version == SCHEMA_VERSION else (
            "NULL, count, max_timestamp, records, NULL")
        for rowid in self._rowids(topic.id, p):
            row = self.conn.execute(f"SELECT base_offset, {columns} FROM batches WHERE rowid = ?", (rowid,)).fetchone()
            if row is not None:
                yield row

    def _rowids(self, tid: int, p: int) -> list[int]:
        if self._by_cell is None:
            try:
                return [rowid for (rowid,) in self.conn.execute(
                    'SELECT rowid FROM batches WHERE topic_id = ? AND "partition" = ? ORDER BY base_offset', (tid, p))]
            except sqlite3.DatabaseError:
                self._by_cell = {}
                try:
                    for rowid, row_tid, row_p, base in self.conn.execute(
                        'SELECT rowid, topic_id, "partition", base_offset FROM batches NOT INDEXED'
                    ):
                        self._by_cell.setdefault((row_tid, row_p), []).append((base, rowid))
                except sqlite3.DatabaseError as exc:  # the table itself is damaged too: every partition is
                    self._scan_error = exc
        if self._scan_error is not None:
            raise self._scan_error
        pairs = self._by_cell.get((tid, p), [])
        return [rowid for _, rowid in sorted(pairs, key=lambda pair: pair[0] if type(pair[0]) is int else -1)]


def _scan(source: _Source, topic: Topic, p: int, report: PartitionReport) -> None:
    """Read a partition's batches in order and record in ``report`` what is damaged."""
    name, expected = topic.name, report.start
    at: int | None = expected
    try:
        for base, end, count, max_ts, blob, crc in source.batches(topic, p):
            try:
                ends = verify_batch(topic, p, base, end, count, max_ts, blob, crc)
            except Damage as damage:
                report.damaged.append(damage)
                at = end if type(end) is int else None
                continue
            if at is not None and base != at:
                lo, hi = (at, base - 1) if base > at else (base, at - 1)
                what = "no stored batch holds these offsets" if base > at else "two stored batches hold these offsets"
                report.damaged.append(Damage(what, topic=name, partition=p, first=lo, last=hi))
            report.batches += 1
            report.messages += count
            report.unchecked += crc is None
            at = ends
    except sqlite3.Error as exc:
        report.damaged.append(Damage(f"sqlite cannot read it: {exc}", topic=name, partition=p, first=at,
                                     last=report.end - 1))
        return
    if at is not None and at < report.end:
        report.damaged.append(Damage("no stored batch holds these offsets", topic=name, partition=p, first=at,
                                     last=report.end - 1))


def _lost(source: _Source, catalogue: Catalogue) -> str | None:
    """What to say when the lock's high-water mark is above what the partitions hold (commits were lost)."""
    previous = source.lock.previous
    have = sum(sum(t.ends) for t in catalogue.topics.values())
    if previous is None or previous.messages is None or have >= previous.messages:
        return None
    return lost_commits(os.path.join(source.folder, DB_NAME), previous, have, source.wal_existed)


def _folder_problems(source: _Source, catalogue: Catalogue, report: Report) -> None:
    previous = source.lock.previous
    if previous is not None:
        who = f"pid {previous.pid}" if previous.pid else "a process"
        report.notes.append(f"its last owner ({who}) did not close it (killed, or the machine stopped)")
    if source.version == SCHEMA_VERSION:
        report.problems += schema_problems(source.conn)
    report.problems += [d.describe() for d in catalogue.damaged]
    lost = _lost(source, catalogue)
    if lost:
        report.problems.append(lost)
    known = {(t.id, p) for t in catalogue.topics.values() for p in range(t.partitions)}
    try:
        stray = [cell for cell in source.conn.execute('SELECT DISTINCT topic_id, "partition" FROM batches')
                 if tuple(cell) not in known]
    except sqlite3.Error as exc:
        report.problems.append(f"sqlite cannot list its batches: {exc}")
        return
    if stray and not catalogue.damaged:
        report.problems.append(f"batches of no known partition (topic id, partition): {sorted(stray)[:10]}")


def check(folder: str) -> Report:
    """Check a stopped ``local://`` folder without changing it; see the module docstring for what is checked.

    Raises :class:`~streamnb.errors.BrokerError` when it cannot check at all
    (no store there, a folder in use, a file sqlite cannot open).

    Example::

        >>> report = check("/data/shop")  # doctest: +SKIP
        >>> report.ok, report.lines()[-1]  # doctest: +SKIP
        (True, 'ok: /data/shop: 5 topics, 20 partitions, 48213 messages in 301 batches, checked in 0.41 s')
    """
    began = time.monotonic()
    source = _Source(folder)
    report = Report(folder)
    try:
        if source.lost_everything:  # (a deleted -wal that held the whole store)
            _folder_problems(source, Catalogue({}, [], set(), []), report)
            return report
        try:
            report.problems += [f"sqlite's check (PRAGMA quick_check) finds: {p}" for p in quick_check(source.conn)]
        except sqlite3.Error as exc:
            report.problems.append(f"sqlite's check (PRAGMA quick_check) fails: {exc}")
        try:
            catalogue = source.catalogue()
        except sqlite3.Error as exc:
            report.problems.append(f"sqlite cannot read its catalogue: {exc}")
            return report
        _folder_problems(source, catalogue, report)
        for name in sorted(catalogue.topics):
            topic = catalogue.topics[name]
            for p in range(topic.partitions):
                part = PartitionReport(name, p, topic.starts[p], topic.ends[p])
                if (name, p) not in catalogue.lost:
                    _scan(source, topic, p, part)
                report.partitions.append(part)
        return report
    finally:
        source.close()
        report.seconds = time.monotonic() - began


def salvage(folder: str, to: str) -> SalvageReport:
    """Copy every intact partition, catalogue row and committed offset of ``folder`` into a new folder ``to``.

    A partition is copied whole or not at all: one that is damaged anywhere
    is created empty in ``to``, its offsets going on from where the old one
    ended, and listed in the report's ``lost``. A partition whose catalogue
    row is damaged is copied when its batches read back whole, its bounds
    rebuilt from them. Raises :class:`~streamnb.errors.BrokerError` when
    ``to`` already holds a store, or ``folder`` cannot be read at all.

    Example::

        >>> salvage("/data/shop", "/data/shop-salvaged").lines()[-1]  # doctest: +SKIP
        'copied 20 partitions (48213 messages) and 12 committed offsets from /data/shop to ...; nothing was lost'
    """
    target = os.path.join(to, DB_NAME)
    if os.path.exists(target):
        raise BrokerError(f"{to} already holds a local:// store: salvage into a new (or empty) folder")
    source = _Source(folder)
    report = SalvageReport(folder, to)
    try:
        if source.lost_everything:
            raise BrokerError(f"{folder} holds nothing to salvage: every commit was in its deleted -wal file")
        try:
            catalogue = source.catalogue()
        except sqlite3.Error as exc:
            raise BrokerError(f"sqlite cannot read the catalogue of {folder} ({exc}): nothing can be copied") from exc
        report.lost += [d.describe() for d in catalogue.damaged] + [x for x in [_lost(source, catalogue)] if x]
        os.makedirs(to, exist_ok=True)
        out = sqlite3.connect(target, isolation_level=None)
        try:
            out.execute("PRAGMA journal_mode = WAL")
            out.execute("BEGIN")
            for statement in SCHEMA_SQL.split(";"):
                if statement.strip():
                    out.execute(statement)
            for topic in catalogue.topics.values():
                _copy_topic(source, out, topic, catalogue.lost, report)
            for group, name, p, offset in catalogue.offsets:
                if name in catalogue.topics:
                    out.execute(UPSERT_OFFSET, offset_row(group, name, p, offset))
                    report.offsets += 1
            out.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            out.execute("COMMIT")
        finally:
            out.close()
        return report
    finally:
        source.close()


def _copy_topic(source: _Source, out: sqlite3.Connection, topic: Topic, lost: set[tuple[str, int]],
                report: SalvageReport) -> None:
    """Copy a topic's row and each of its partitions that reads back whole (the others: empty)."""
    retention = None if topic.retention is None else float(topic.retention)
    out.execute("INSERT INTO topics (id, name, partitions, compacted, retention, crc) VALUES (?, ?, ?, ?, ?, ?)",
                (topic.id, topic.name, topic.partitions, int(topic.compacted), retention,
                 topic_row(topic.id, topic.name, topic.partitions, topic.compacted, retention)))
    for p in range(topic.partitions):
        rebuilt = (topic.name, p) in lost
        if rebuilt:  # bounds from the batches themselves (they must then tile from the first to the last)
            _rebuild_bounds(source, topic, p)
        part = PartitionReport(topic.name, p, topic.starts[p], topic.ends[p])
        _scan(source, topic, p, part)  # first read it all: copied only if whole
        if part.damaged:
            note = " (a table's changelog: that table partition starts empty)" if topic.name.endswith(
                "-changelog") else ""
            report.lost.append(f"topic {topic.name!r} partition {p}: {part.damaged[0].what} (offsets "
                               f"{_span(part.damaged)}); the new folder holds it empty from offset {part.end}{note}")
            out.execute(INSERT_PARTITION, partition_row(topic.id, p, part.end, part.end, part.end, 0))
            continue
        held: tuple[int, int | None, int, float, bytes] | None = None  # a batch waits: a schema 2 one ends
        for base, end, count, max_ts, blob, _ in source.batches(topic, p):  # where the next one begins
            if held is not None:
                _copy_batch(out, topic, p, held, base)
            held = base, batch_end(base, end, count, blob, topic.compacted), count, max_ts, blob
        if held is not None:
            _copy_batch(out, topic, p, held, part.end)
        upto, kept = (part.start, 0) if rebuilt else (topic.clean_upto[p], topic.clean_count[p])
        out.execute(INSERT_PARTITION, partition_row(topic.id, p, part.start, part.end, upto, kept))
        report.partitions += 1
        report.messages += part.messages
        if rebuilt:
            report.lost.append(f"topic {topic.name!r} partition {p}: copied after all, its bounds rebuilt from its "
                               f"batches (offsets {part.start}-{part.end - 1})")


def _copy_batch(out: sqlite3.Connection, topic: Topic, p: int, row: tuple[int, int | None, int, float, bytes],
                next_base: int) -> None:
    base, end, count, max_ts, blob = row
    out.execute(INSERT_BATCH, batch_row(topic.id, p, base, next_base if end is None else end, count, max_ts, blob))


def _rebuild_bounds(source: _Source, topic: Topic, p: int) -> None:
    """The bounds of a partition whose catalogue row is lost: from its first batch to where its last one ends."""
    first = last = None
    try:
        for base, end, count, *_ in source.batches(topic, p):
            first = base if first is None else first
            last = end if type(end) is int else base + count
    except sqlite3.Error:
        pass
    topic.starts[p] = first if first is not None and last is not None else 0
    topic.ends[p] = last if first is not None and last is not None else 0


def _span(damaged: list[Damage]) -> str:
    firsts = [d.first for d in damaged if d.first is not None]
    lasts = [d.last if d.last is not None else d.first for d in damaged if d.first is not None]
    return f"{min(firsts)}-{max(x for x in lasts if x is not None)}" if firsts else "unknown"
