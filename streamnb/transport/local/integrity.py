"""Checksums in a ``local://`` folder, the checks made on every read, and errors that say what went wrong.

What is read is what was written, or a :class:`~streamnb.errors.CorruptStoreError`:

* every batch row carries a CRC-32C (Castagnoli: the checksum of Kafka's
  record batches) over its header -- topic id, partition, base offset, end
  offset, message count, newest timestamp -- and its bytes
  (:func:`batch_crc`); every catalogue row (topics, partitions, committed
  offsets) one over its values (:func:`row_crc`);
* a partition's batches tile its log: each batch's ``end_offset`` is the
  next one's ``base_offset``, the first begins at the log's start and the
  last ends at its end, so a batch that sqlite no longer finds (a damaged
  page or index) is a gap, never silently skipped (:func:`checked_batches`);
* batches written before checksums (store schema 2) have neither column:
  they are read unchecked, except that their bytes must parse
  (:func:`well_formed`).

A problem found is a :class:`Damage` (where, and what); the store turns it
into a :class:`~streamnb.errors.CorruptStoreError` naming the folder and
saying what to do (:func:`corrupt`). :func:`explain` does the same for the
errors sqlite and the operating system raise: a full disk, a malformed file,
a folder that cannot be written.

Example::

    >>> crc = batch_crc(1, 0, 0, 2, 2, 1.5, b"blob")
    >>> crc == batch_crc(1, 0, 0, 2, 2, 1.5, b"blob"), crc == batch_crc(1, 0, 0, 2, 2, 1.5, b"blub")
    (True, False)
"""

from __future__ import annotations

import errno
import sqlite3
import struct
import sys
from array import array
from collections.abc import Iterator
from typing import Protocol

import google_crc32c

from ...errors import BrokerError, CorruptStoreError
from .batch import GAPS, HEADERS

__all__ = [
    "Damage",
    "Topic",
    "batch_crc",
    "batch_end",
    "checked_batches",
    "checked_rows",
    "corrupt",
    "explain",
    "quick_check",
    "row_crc",
    "verify_batch",
    "well_formed",
]

_BATCH_HEAD = struct.Struct("<qqqqqd")  # topic id, partition, base offset, end offset, count, newest timestamp
_BLOB_HEAD = struct.Struct("<IB")  # as in batch.py: count, flags
_NO_END = -1
SELECT_RANGE = (
    'SELECT base_offset, end_offset, count, max_timestamp, records, crc FROM batches WHERE topic_id = ?1 AND '
    '"partition" = ?2 AND base_offset >= coalesce((SELECT max(base_offset) FROM batches WHERE topic_id = ?1 AND '
    '"partition" = ?2 AND base_offset <= ?3), 0) AND base_offset < ?4 ORDER BY base_offset'
)
"""The batch holding offset ?3 (the last one beginning at or before it) and every later one before ?4."""

_CORRUPT_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB
_CORRUPT_SIGNS = ("malformed", "not a database", "Could not decode to UTF-8")  # (text streamnb wrote is UTF-8)
_FULL_CODE = 13  # SQLITE_FULL
_IOERR_CODE = 10
_ACCESS_CODES = {3, 8, 14, 23}  # SQLITE_PERM, SQLITE_READONLY, SQLITE_CANTOPEN, SQLITE_AUTH


class Topic(Protocol):
    """What the checks need of a topic (:class:`~streamnb.transport.local.catalogue.Topic` has it)."""

    id: int
    name: str
    compacted: bool
    starts: list[int]
    ends: list[int]


class Damage(Exception):
    """A damaged part of a folder: ``where`` (a topic's partition, or a catalogue row) and ``what`` is wrong.

    ``first``/``last`` are the offsets concerned, when known.
    """

    def __init__(
        self, what: str, *, topic: str | None = None, partition: int | None = None,
        first: int | None = None, last: int | None = None, where: str | None = None,
    ) -> None:
        self.what = what
        self.topic = topic
        self.partition = partition
        self.first = first
        self.last = last
        self.where = where
        super().__init__(self.describe())

    def describe(self) -> str:
        """Where and what, in words: ``topic 'clicks' partition 3, offsets 0-99: <what>``."""
        if self.where is not None:
            return f"{self.where}: {self.what}"
        place = f"topic {self.topic!r} partition {self.partition}" if self.topic is not None else "the store"
        if self.first is not None:
            last = self.last if self.last is not None else self.first
            place += f", offset {self.first}" if last == self.first else f", offsets {self.first}-{last}"
        return f"{place}: {self.what}"


def batch_crc(tid: int, partition: int, base: int, end: int | None, count: int, max_ts: float, blob: bytes) -> int:
    """The CRC-32C of a batch row: its header fields, then its bytes."""
    head = _BATCH_HEAD.pack(tid, partition, base, _NO_END if end is None else end, count, max_ts)
    return int(google_crc32c.extend(google_crc32c.value(head), blob))


def row_crc(*values: object) -> int:
    """The CRC-32C of a catalogue row's values (ints, floats, text, ``None``).

    Example::

        >>> row_crc("group", "clicks", 0, 42) == row_crc("group", "clicks", 0, 43)
        False
    """
    return int(google_crc32c.value(repr(values).encode()))


def batch_end(base: int, end: int | None, count: int, blob: bytes, compacted: bool) -> int | None:
    """Where a batch ends (the next batch's base offset); ``None`` when a batch of schema 2 does not say.

    Schema 2 kept no end: a batch of a never-compacted topic without gaps ends after its last message.
    """
    if end is not None:
        return end
    if compacted or len(blob) < _BLOB_HEAD.size or _BLOB_HEAD.unpack_from(blob)[1] & GAPS:
        return None
    return base + count


def well_formed(blob: bytes, count: int) -> bool:
    """Whether a batch's bytes parse: its count and lengths add up to its size (for batches with no checksum)."""
    if len(blob) < _BLOB_HEAD.size:
        return False
    stored, flags = _BLOB_HEAD.unpack_from(blob)
    if stored != count or count <= 0 or flags & ~(GAPS | HEADERS):
        return False
    lengths_at = _BLOB_HEAD.size + (4 * count if flags & GAPS else 0) + 8 * count  # past deltas and timestamps
    size = lengths_at + 4 * count * (3 if flags & HEADERS else 2)  # key, value [and header] lengths
    if size > len(blob):
        return False
    lengths = array("i")
    lengths.frombytes(blob[lengths_at:size])
    if sys.byteorder == "big":
        lengths.byteswap()
    return size + sum(n for n in lengths if n > 0) == len(blob) and min(lengths) >= -1


def verify_batch(
    topic: Topic, partition: int, base: int, end: int | None, count: int, max_ts: float, blob: bytes, crc: int | None
) -> int | None:
    """Check one batch row; return where it ends (``None``: unknown). Raises :class:`Damage`."""
    if not (type(base) is int and type(count) is int and type(blob) is bytes and type(max_ts) in (float, int)
            and (end is None or type(end) is int) and (crc is None or type(crc) is int)):
        raise Damage("a stored batch's values have the wrong types (its bytes changed on disk)",
                     topic=topic.name, partition=partition, first=base if type(base) is int else None)
    if crc is not None:
        if batch_crc(topic.id, partition, base, end, count, max_ts, blob) != crc:
            last = end - 1 if end is not None and end > base else base + max(count, 1) - 1
            raise Damage("the stored checksum does not match the bytes read (they changed on disk)",
                         topic=topic.name, partition=partition, first=base, last=last)
        return end
    if not well_formed(blob, count):
        raise Damage("the stored batch cannot be parsed (its bytes changed on disk)",
                     topic=topic.name, partition=partition, first=base, last=base + max(count, 1) - 1)
    return batch_end(base, end, count, blob, topic.compacted)


def checked_rows(conn: sqlite3.Connection, topic: Topic, partition: int, start: int, stop: int) -> Iterator[
        tuple[int, int | None, float, bytes]]:
    """(base offset, end offset, newest timestamp, bytes) of the batches holding offsets ``start..stop-1``, checked.

    Raises :class:`Damage` for a batch whose checksum fails, and for offsets
    of the log that no batch holds (checked up to ``stop`` when the caller
    reads that far). The end is ``None`` when a batch of schema 2 does not say.
    """
    first = max(start, topic.starts[partition])
    bound = min(stop, topic.ends[partition])
    expected: int | None = None  # where the next batch must begin
    seen = False
    for base, end, count, max_ts, blob, crc in conn.execute(SELECT_RANGE, (topic.id, partition, start, stop)):
        ends = verify_batch(topic, partition, base, end, count, max_ts, blob, crc)
        if not seen:
            if base > first and not _moved(conn, topic, partition, first, base):
                raise _gap(topic, partition, first, base)
        elif expected is not None and base != expected:
            if base > expected:
                raise _gap(topic, partition, expected, base)
            raise Damage("two stored batches hold these offsets", topic=topic.name, partition=partition,
                         first=base, last=expected - 1)
        expected = ends
        seen = True
        yield base, expected, max_ts, blob
    if not seen:
        if first < bound and not _moved(conn, topic, partition, first, bound):
            raise _gap(topic, partition, first, bound)
    elif expected is not None and expected < bound:
        raise _gap(topic, partition, expected, bound)


def checked_batches(conn: sqlite3.Connection, topic: Topic, partition: int, start: int, stop: int) -> Iterator[
        tuple[int, bytes]]:
    """(base offset, bytes) of the batches holding offsets ``start..stop-1``, each checked (:func:`checked_rows`)."""
    for base, _, _, blob in checked_rows(conn, topic, partition, start, stop):
        yield base, blob


def _moved(conn: sqlite3.Connection, topic: Topic, partition: int, first: int, base: int) -> bool:
    """Whether the log's start moved up to ``base`` since ``first`` was read from the cache, or the topic went.

    (Compaction and retention on the writer's thread commit before the
    cache follows: a read on the reader's thread may see their result first.)
    """
    row = conn.execute('SELECT log_start FROM partitions WHERE topic_id = ? AND "partition" = ?',
                       (topic.id, partition)).fetchone()
    return row is None or (type(row[0]) is int and first < row[0] and base <= row[0])


def _gap(topic: Topic, partition: int, first: int, stop: int) -> Damage:
    return Damage("no stored batch holds these offsets (missing from the file)",
                  topic=topic.name, partition=partition, first=first, last=stop - 1)


def quick_check(conn: sqlite3.Connection, table: str | None = None) -> list[str]:
    """What sqlite's ``PRAGMA quick_check`` finds wrong (of one ``table``, or of the whole file): ``[]`` if nothing."""
    pragma = f"PRAGMA quick_check({table})" if table else "PRAGMA quick_check(20)"
    problems = [" ".join(str(row[0]).split()) for row in conn.execute(pragma)]
    return [] if problems == ["ok"] else problems


# -- what to tell the user -----------------------------------------------------------------------

ADVICE = (
    "`streamnb check local://{folder}` lists every damaged part; "
    "`streamnb salvage local://{folder} --to local://{folder}-salvaged` copies every intact partition "
    "into a new folder (and lists what it could not), to run the app on."
)


def corrupt(folder: str, damage: Damage | str) -> CorruptStoreError:
    """The :class:`~streamnb.errors.CorruptStoreError` for ``damage`` found in ``folder``.

    Example::

        >>> str(corrupt("/d", Damage("bad", topic="t", partition=0, first=5)))[:58]
        "the local:// folder /d is damaged: topic 't' partition 0, "
    """
    if isinstance(damage, str):
        return CorruptStoreError(f"the local:// folder {folder} is damaged: {damage}. {ADVICE.format(folder=folder)}",
                                 folder=folder)
    offsets = None
    if damage.first is not None:
        offsets = (damage.first, damage.last if damage.last is not None else damage.first)
    return CorruptStoreError(
        f"the local:// folder {folder} is damaged: {damage.describe()}. Nothing of it was decoded or counted. "
        + ADVICE.format(folder=folder),
        folder=folder, topic=damage.topic, partition=damage.partition, offsets=offsets,
    )


def disk_full(folder: str, detail: object) -> BrokerError:
    """The error for a full disk (or a full quota): where, and that nothing half-written was kept."""
    return BrokerError(
        f"the disk that holds the local:// folder {folder} is full ({detail}): the write in progress was "
        f"not stored (none of it). Free space on that disk (`df -h {folder}` shows it) or move the folder "
        "to a bigger one; the app goes on from its last commit once there is room."
    )


def explain(exc: BaseException, folder: str, doing: str = "use") -> BaseException:
    """The streamnb error that says what ``exc`` (from sqlite or the OS) means for ``folder``, and what to do.

    ``doing`` completes "cannot ... the local:// store" (``"open"``, ``"use"``).
    Errors that are not sqlite's or the OS's come back unchanged.

    Example::

        >>> err = sqlite3.OperationalError("database or disk is full")
        >>> err.sqlite_errorcode = 13
        >>> str(explain(err, "/data"))[:60]
        'the disk that holds the local:// folder /data is full (datab'
    """
    if isinstance(exc, Damage):
        return corrupt(folder, exc)
    if isinstance(exc, UnicodeDecodeError) and isinstance(exc.object, bytes) and b"malformed" in exc.object:
        return corrupt(folder, f"sqlite reports: {exc.object.decode(errors='replace')}")  # (the schema's text)
    if isinstance(exc, sqlite3.Error):
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF
        text = str(exc)
        if code in _CORRUPT_CODES or any(sign in text for sign in _CORRUPT_SIGNS):
            return corrupt(folder, f"sqlite reports: {text}")
        if code == _FULL_CODE or "disk is full" in text:
            return disk_full(folder, text)
        if code == _IOERR_CODE or "disk I/O error" in text:
            return BrokerError(
                f"the local:// store in {folder} hit an I/O error ({text}): the disk or file system failed "
                "a read or write. Check the disk (the system log, `dmesg`), then run "
                f"`streamnb check local://{folder}` before using the folder again."
            )
        if code in _ACCESS_CODES or "readonly" in text or "unable to open" in text:
            return BrokerError(
                f"cannot {doing} the local:// store in {folder} ({text}): this process must be able to read "
                "and write the folder and every file in it (check its owner and permissions, and that the "
                "disk is not mounted read-only)."
            )
        return BrokerError(f"the local:// store in {folder} failed: {text}")
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return disk_full(folder, exc.strerror or exc)
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return BrokerError(
                f"cannot {doing} the folder {folder} for a local:// store ({exc.strerror or exc}): this process "
                "must be able to create and write files there (check the owner and permissions, and that the "
                "disk is not mounted read-only)."
            )
        if exc.errno in (errno.ENOTDIR, errno.EEXIST):
            return BrokerError(
                f"cannot {doing} {folder} for a local:// store: it is a file, not a folder. Point the app to "
                "a folder, e.g. broker='local://other'."
            )
        return BrokerError(f"cannot {doing} the folder {folder} for a local:// store: {exc}")
    return exc
