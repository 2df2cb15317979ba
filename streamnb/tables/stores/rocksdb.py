"""A table partition's rows on disk in RocksDB (through ``rocksdict``), with the changelog offset they reflect.

One RocksDB per table partition, in ``<datadir>/<app id>/<table>/<partition>``
(so two workers on one machine each open the partitions they own). Its keys:

- ``b"d" + changelog key``: a row; the value is the changelog value, byte
  for byte as the changelog holds it, so a restore copies records without
  decoding them;
- ``b"r"``: where reading the changelog partition resumes (8 bytes,
  big-endian): every changelog record before it is reflected in the rows;
- ``b"v"``: the on-disk format version;
- ``b"o"``: the broker whose changelog the rows follow (its URL);
- ``b"t"``: a windowed table's stream time: where reading its stream-time
  topic partition resumes (8 bytes, big-endian), then the newest stream
  time in JSON (nothing: none);
- ``b"k"``: the layout of the rows: nothing for ``b"d"`` rows, ``b"windows"``
  for a tumbling or hopping table's windows, kept by key and by time
  (:mod:`~streamnb.tables.stores.windowkeys`: ``b"w"`` and ``b"x"`` keys);
- ``b"b"``: present while a restore into an empty store runs (:meth:`RocksDBStore.bulk`).

Records are applied in one :class:`rocksdict.WriteBatch` together with the
new resume offsets, so a crash leaves the store at a commit boundary. The
resume offset never runs ahead of what the rows hold: it may lag (Kafka
transaction markers take offsets a table does not count), and reading a
few records again is harmless, since each one carries a whole value.

Memory is bounded by ``memory_bytes`` (block cache plus write buffers),
not by the number of rows.

A restore into an empty store (a new machine, a wiped store) writes without
RocksDB's write-ahead log (:meth:`RocksDBStore.bulk`): the changelog is the
source of truth, so a crash in the middle may lose those writes, and the
next :meth:`~RocksDBStore.open` finds the ``b"b"`` mark, wipes the store and
rebuilds it from the changelog. The end of the restore flushes the rows to
disk, then removes the mark with a synced write.

Example::

    store = RocksDBStore(Path("shop-data/shop/totals/0"), memory_bytes=64 << 20)
    store.open()
    store.apply([(b'"ann"', b"3")], resume=1)
    store.get(b'"ann"')          # b"3"
    store.resume                 # 1
"""

from __future__ import annotations

import collections
import itertools
import logging
import os
import shutil
import socket
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from ...errors import ConfigurationError, StoreLockedError

__all__ = ["FORMAT_VERSION", "Checkpoint", "RocksDBStore", "read_checkpoint"]

logger = logging.getLogger("streamnb")

FORMAT_VERSION = b"1"
"""Bumped when the layout above changes: a store of another version is wiped and rebuilt."""

_ROW = b"d"
_RESUME = b"r"
_VERSION = b"v"
_ORIGIN = b"o"
_STREAM_TIME = b"t"
_LAYOUT = b"k"
_BULK = b"b"
_OWNER = "OWNER"


class RocksDBStore:
    """The rows of one table partition in a RocksDB folder (see the module docstring for the layout)."""

    def __init__(self, path: Path, memory_bytes: int, *, table: str = "") -> None:
        self.path = path
        self.memory_bytes = memory_bytes
        self.table = table or path.parent.name
        self.db: Any = None
        self.resume: int | None = None
        """Where reading the changelog partition resumes, or None if it was never read into this store."""
        self.read_only = False
        """True once :meth:`reopen_read_only` ran: readable (the app stopped), holding no lock."""
        self._write_options: Any = None
        """RocksDB's write options while :meth:`bulk` runs (no write-ahead log), else None (the defaults)."""

    def __repr__(self) -> str:
        return f"<RocksDBStore {str(self.path)!r}>"

    # -- opening ------------------------------------------------------------------------------

    def open(self) -> None:
        """Open (or create) the folder; a store of another format or a corrupt one is wiped, loudly."""
        if self.db is not None and not self.read_only:
            return
        self.close()
        try:
            import rocksdict
        except ImportError as exc:  # pragma: no cover - a dependency of streamnb
            raise ConfigurationError("store='rocksdb://' needs the rocksdict package: pip install rocksdict") from exc
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            self.db = self._open(rocksdict)
        except Exception as exc:
            text = str(exc)
            if "lock" in text.lower():
                raise StoreLockedError(self._locked_message()) from exc
            logger.warning(
                "table %r: its store %s cannot be opened (%s); wiping it and rebuilding from the changelog",
                self.table, self.path, text.splitlines()[0] if text else type(exc).__name__,
            )
            self.destroy()
            self.path.mkdir(parents=True, exist_ok=True)
            self.db = self._open(rocksdict)
        version = self.db.get(_VERSION)
        if version is not None and version != FORMAT_VERSION:
            logger.warning(
                "table %r: its store %s has format %r, this streamnb writes %r; rebuilding from the changelog",
                self.table, self.path, version.decode(errors="replace"), FORMAT_VERSION.decode(),
            )
            self.destroy()
            self.path.mkdir(parents=True, exist_ok=True)
            self.db = self._open(rocksdict)
            version = None
        if version is not None and self.db.get(_BULK) is not None:
            logger.warning(
                "table %r: its store %s was being restored from the changelog when the process stopped "
                "(killed?); wiping it and restoring again", self.table, self.path,
            )
            self.destroy()
            self.path.mkdir(parents=True, exist_ok=True)
            self.db = self._open(rocksdict)
            version = None
        if version != FORMAT_VERSION:
            self.db.put(_VERSION, FORMAT_VERSION)
        (self.path / _OWNER).write_text(f"pid {os.getpid()} on {socket.gethostname()}\n")
        resume = self.db.get(_RESUME)
        self.resume = None if resume is None else int.from_bytes(resume, "big")

    def _open(self, rocksdict: Any) -> Any:
        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(True)
        # Memory under one limit: write buffers are charged to the block cache (a quarter of it at most).
        cache = rocksdict.Cache(max(self.memory_bytes, 4 << 20))
        buffers = max(self.memory_bytes // 4, 1 << 20)
        options.set_write_buffer_size(max(buffers // 2, 1 << 20))
        options.set_max_write_buffer_number(2)
        options.set_write_buffer_manager(
            rocksdict.WriteBufferManager.new_write_buffer_manager_with_cache(buffers, False, cache)
        )
        table = rocksdict.BlockBasedOptions()
        table.set_block_cache(cache)
        table.set_cache_index_and_filter_blocks(True)
        table.set_bloom_filter(10, False)
        options.set_block_based_table_factory(table)
        options.set_max_open_files(64)
        return rocksdict.Rdict(str(self.path), options)

    def _locked_message(self) -> str:
        owner = ""
        try:
            owner = (self.path / _OWNER).read_text().strip()
        except OSError:
            pass
        return (
            f"table {self.table!r}: its store {self.path} is held by another process"
            f"{' (' + owner + ')' if owner else ''}; stop that process, or give this app another "
            "datadir= (one process owns a store at a time, as with local:// folders)"
        )

    def close(self) -> None:
        """Close the folder (what was applied is durable)."""
        if self.db is not None:
            if self._write_options is not None:
                self.end_bulk()
            self.db.close()
            self.db = None
        self.read_only = False

    def bulk(self) -> None:
        """Write without the write-ahead log until :meth:`end_bulk` (a restore into an empty store).

        Faster (no log to write); a crash before :meth:`end_bulk` may lose
        those writes, so a mark stays in the store meanwhile, and the next
        :meth:`open` wipes a store that carries it. In the same process
        nothing is lost: the writes are in RocksDB's memory until flushed.
        """
        import rocksdict

        if self._write_options is not None:
            return
        mark = rocksdict.WriteOptions()
        mark.sync = True
        self.db.put(_BULK, b"", mark)  # (in the log: it reaches the disk before any write without it)
        options = rocksdict.WriteOptions()
        options.disable_wal = True  # type: ignore[method-assign,assignment]  # (a property; the stubs say method)
        self._write_options = options

    def end_bulk(self) -> None:
        """The bulk writes reach the disk (a flush), then the mark goes, durably: the store is whole."""
        import rocksdict

        if self._write_options is None:
            return
        self._write_options = None
        self.db.flush(True)
        done = rocksdict.WriteOptions()
        done.sync = True
        self.db.delete(_BULK, done)

    def reopen_read_only(self) -> None:
        """The app stopped: close, then open again for reading only (RocksDB takes no lock for that).

        The table's rows stay readable in the notebook after ``app.stop()``,
        while another process (or the next start) may open the folder to write.
        """
        if self.db is None or self.read_only:
            return
        import rocksdict

        self.close()
        try:
            self.db = rocksdict.Rdict(
                str(self.path), rocksdict.Options(raw_mode=True), access_type=rocksdict.AccessType.read_only()
            )
        except Exception as exc:  # noqa: BLE001 - unreadable now: then it reads as empty, as before
            logger.warning("table %r: its store %s cannot be read after the stop: %s", self.table, self.path, exc)
            return
        self.read_only = True

    def destroy(self) -> None:
        """Delete the folder."""
        self._write_options = None  # (nothing to flush)
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)

    # -- rows ---------------------------------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        """The value of the row with changelog key ``key``, or None."""
        return self.db.get(_ROW + key)  # type: ignore[no-any-return]

    def fetch(self, raw: bytes) -> bytes | None:
        """The value of the raw key ``raw`` (a layout of its own, e.g. windows), or None."""
        return self.db.get(raw)  # type: ignore[no-any-return]

    def rows(self) -> Iterator[tuple[bytes, bytes]]:
        """``(key, value)`` of every row, in key order, read as it goes."""
        for key, value in self.db.items(from_key=_ROW):
            if not key.startswith(_ROW):
                return
            yield key[1:], value

    @property
    def origin(self) -> str | None:
        """The URL of the broker whose changelog the rows follow (None: not recorded yet)."""
        found = self.db.get(_ORIGIN)
        return None if found is None else bytes(found).decode(errors="replace")

    @origin.setter
    def origin(self, url: str) -> None:
        self.db.put(_ORIGIN, url.encode())

    def stream_time(self) -> tuple[int, bytes | None] | None:
        """``(resume offset on the stream-time topic, stream time in JSON or None)``, or None if never stored."""
        found = self.db.get(_STREAM_TIME)
        if found is None:
            return None
        data = bytes(found)
        return int.from_bytes(data[:8], "big"), (data[8:] or None)

    @property
    def layout(self) -> str:
        """The layout of the rows (``""``: changelog keys under ``b"d"``; ``"windows"``: windows by key and time)."""
        found = self.db.get(_LAYOUT)
        return "" if found is None else bytes(found).decode(errors="replace")

    @layout.setter
    def layout(self, name: str) -> None:
        if name:
            self.db.put(_LAYOUT, name.encode())
        else:
            self.db.delete(_LAYOUT)

    def scan(self, lower: bytes, upper: bytes, *, backwards: bool = False) -> Iterator[tuple[bytes, bytes]]:
        """``(key, value)`` of the raw keys in ``[lower, upper)``, in key order (reversed with ``backwards``)."""
        import rocksdict

        bounds = rocksdict.ReadOptions()
        bounds.set_iterate_lower_bound(lower)
        bounds.set_iterate_upper_bound(upper)
        start = upper if backwards else lower
        for key, value in self.db.items(backwards=backwards, from_key=start, read_opt=bounds):
            if lower <= key < upper:
                yield key, value

    def estimate_rows(self) -> int:
        """RocksDB's estimate of the number of rows (cheap; exact after a compaction)."""
        estimate = int(self.db.property_int_value("rocksdb.estimate-num-keys") or 0)
        return max(estimate - 4, 0)  # (resume offset, format version, origin and stream time are keys too)

    def apply(
        self, records: Iterable[tuple[bytes, bytes | None]], resume: int | None,
        stream_time: tuple[int, bytes | None] | None = None,
    ) -> None:
        """Apply changelog records ``(key, value or None)`` and the new resume offset in one atomic batch.

        ``stream_time``: the stream time to keep with them, as :meth:`stream_time` gives it.
        """
        self.write(((_ROW + key, value) for key, value in records), resume, stream_time)

    def write(
        self, ops: Iterable[tuple[bytes, bytes | None]], resume: int | None,
        stream_time: tuple[int, bytes | None] | None = None,
    ) -> None:
        """Put (or, value None, delete) raw keys and move the resume offset on, in one batch (as :meth:`apply`)."""
        import rocksdict

        batch = rocksdict.WriteBatch(raw_mode=True)
        put, delete = batch.put, batch.delete
        for key, value in ops:
            if value is None:
                delete(key)
            else:
                put(key, value)
        self._commit(batch, resume, stream_time)

    def write_columns(
        self, runs: Iterable[tuple[list[bytes], list[bytes | None] | bytes]], resume: int | None
    ) -> None:
        """As :meth:`write`, given runs of ``(raw keys, values)`` lists of the same length (a restore's batches).

        ``values`` may be one value for every key of its run (a windowed
        table's index by time): that run is put in key order, which RocksDB
        inserts faster (sorting the other runs, or a plain table's rows, cost
        more than it saved).
        """
        import rocksdict

        batch = rocksdict.WriteBatch(raw_mode=True)
        put, delete = batch.put, batch.delete
        for keys, values in runs:
            if isinstance(values, bytes):
                collections.deque(map(put, sorted(keys), itertools.repeat(values)), maxlen=0)
            elif None in values:
                for key, value in zip(keys, values):
                    if value is None:
                        delete(key)
                    else:
                        put(key, value)
            else:
                collections.deque(map(put, keys, values), maxlen=0)
        self._commit(batch, resume, None)

    def _commit(self, batch: Any, resume: int | None, stream_time: tuple[int, bytes | None] | None) -> None:
        put = batch.put
        if resume is not None:
            put(_RESUME, resume.to_bytes(8, "big"))
        if stream_time is not None:
            put(_STREAM_TIME, stream_time[0].to_bytes(8, "big") + (stream_time[1] or b""))
        if self._write_options is None:
            self.db.write(batch)
        else:
            self.db.write(batch, self._write_options)
        if resume is not None:
            self.resume = resume


class Checkpoint(NamedTuple):
    """What a store on disk says about itself, read without opening it for writing (:func:`read_checkpoint`)."""

    resume: int
    """Where reading its changelog partition resumes."""
    origin: str | None
    """The URL of the broker whose changelog it follows."""
    layout: str
    """The layout of its rows (see :attr:`RocksDBStore.layout`)."""


def read_checkpoint(path: Path) -> Checkpoint | None:
    """The checkpoint of the store in ``path``, opened read-only (no lock taken), or None.

    None when there is no store there, it never read its changelog, it is of
    another format or it cannot be read. Cheap for a closed store (a few
    milliseconds); a store open in another process is read as its
    write-ahead log stands.

    >>> import tempfile
    >>> store = RocksDBStore(Path(tempfile.mkdtemp()) / "0", 4 << 20)
    >>> store.open(); store.apply([(b'"ann"', b"3")], resume=41); store.origin = "kafka://k:9092"
    >>> read_checkpoint(store.path)   # (while it is open, too)
    Checkpoint(resume=41, origin='kafka://k:9092', layout='')
    >>> store.close(); read_checkpoint(store.path / "nothing") is None
    True
    """
    if not (path / "CURRENT").is_file():
        return None
    import rocksdict

    try:
        db = rocksdict.Rdict(str(path), rocksdict.Options(raw_mode=True), access_type=rocksdict.AccessType.read_only())
    except Exception:  # noqa: BLE001 - unreadable: as good as no state (its restore wipes it)
        return None
    try:
        resume, version, origin, layout = (db.get(k) for k in (_RESUME, _VERSION, _ORIGIN, _LAYOUT))
    finally:
        db.close()
    if resume is None or version != FORMAT_VERSION:
        return None
    return Checkpoint(
        int.from_bytes(resume, "big"),
        None if origin is None else bytes(origin).decode(errors="replace"),
        "" if layout is None else bytes(layout).decode(errors="replace"),
    )
