"""Plain rows in a persistent store behind a write-back cache (``store="rocksdb://"``).

What a table writes stays in :attr:`StoredState.pending` (as dict-fast as a
plain table) until the commit that carries it to the changelog has landed;
then the table applies exactly those changelog records to the store in one
batch, with the changelog offset they bring it to
(:meth:`~streamnb.tables.stores.rocksdb.RocksDBStore.apply`). Nothing is in
the store that the changelog does not hold. Reads look in ``pending``,
then in a bounded cache of clean rows, then in the stores of the partitions
served (one RocksDB per table partition, a bloom filter each); scans
(``items()``, ``len()``, DataFrames) read the stores as they go. Memory grows
with the writes of one commit and the cache size, not with the number of keys.

Only the partitions this worker serves (:attr:`StoredState.stores`) are
open: a partition that moved to another worker is closed with its rows on
disk, so when it comes back only the changelog written meanwhile is read.

Example (a table's own use)::

    state = StoredState(encode_key, decode_key, decode_value)
    state.serve(0, store)                 # after its changelog was read to the end
    state.write(dirty, "ann", 3, partition=0, timestamp=12.5)
    list(state.changes(dirty))            # [Change("ann", 0, 3, 12.5)]: the commit's changelog records
    store.apply(records, resume)          # after the commit landed (the table does this)
    state.flushed()
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, MutableMapping
from typing import Any

from ...transaction import MISSING, Transaction
from ..stores.rocksdb import RocksDBStore
from .base import Change, Closed, Dirty

__all__ = ["StoredRows", "StoredState"]

Entry = tuple[int, Any]
"""``(partition, value or MISSING)``."""


class StoredState:
    """``key -> value`` rows kept in a :class:`~streamnb.tables.stores.rocksdb.RocksDBStore`.

    ``dirty.rows`` maps each written key to ``[partition, value before, event time of the last write]``,
    as :class:`~streamnb.tables.state.base.PlainState` does.
    """

    cache_size: int = 100_000
    """Clean rows kept decoded in memory (the most recently read or written)."""

    def __init__(
        self,
        encode_key: Callable[[Any], bytes],
        decode_key: Callable[[bytes], Any],
        decode_value: Callable[[bytes], Any],
        stores: dict[int, RocksDBStore] | None = None,
    ) -> None:
        self.stores: dict[int, RocksDBStore] = {} if stores is None else stores
        """The open store of every partition served (recovered, owned; shared with the table's other states)."""
        self.encode_key = encode_key
        self.decode_key = decode_key
        self.decode_value = decode_value
        self.pending: dict[Any, Entry] = {}
        """Rows written since the store last caught up with the changelog (newest value, MISSING: deleted)."""
        self.cache: dict[Any, Entry] = {}
        """Clean rows, decoded; bounded by :attr:`cache_size`."""
        self._committing: list[tuple[Any, Any]] = []
        self.moved: dict[Any, int] = {}
        """Keys written in the open transaction from another partition than the store holding their row."""
        self._leaving: list[tuple[Any, int]] = []
        self.rows = StoredRows(self)
        """The rows as users read them (a read-only mapping over the store)."""

    # -- reads --------------------------------------------------------------------------------

    def lookup(self, key: Any) -> Entry | None:
        """``(partition, value)`` of ``key``, or None."""
        entry = self.pending.get(key)
        if entry is None:
            entry = self.cache.get(key)
        if entry is not None:
            return None if entry[1] is MISSING else entry
        found = self._stored(key)
        if found is None:
            return None
        entry = (found[0], self.decode_value(found[1]))
        self._remember(key, entry)
        return entry

    def _stored(self, key: Any) -> tuple[int, bytes] | None:
        """``(partition, value bytes)`` of ``key`` in the stores served (a bloom filter rules most out)."""
        kb = self.encode_key(key)
        for partition, store in self.stores.items():
            found = store.get(kb)
            if found is not None:
                return partition, found
        return None

    def _remember(self, key: Any, entry: Entry) -> None:
        cache = self.cache
        if len(cache) >= self.cache_size:
            for old in list(cache)[: self.cache_size // 10 or 1]:  # the oldest tenth
                del cache[old]
        cache[key] = entry

    def items(self) -> Iterator[tuple[Any, Any]]:
        """Every row, read from the store as it goes (what is pending overrides it)."""
        pending = self.pending
        decode_key, decode_value = self.decode_key, self.decode_value
        for store in list(self.stores.values()):
            for kb, vb in store.rows():
                key = decode_key(kb)
                if key not in pending:
                    yield key, decode_value(vb)
        for key, (_partition, value) in list(pending.items()):
            if value is not MISSING:
                yield key, value

    def count(self) -> int:
        """The exact number of rows (a scan of the store)."""
        total = sum(1 for store in list(self.stores.values()) for _ in store.rows())
        for key, (_partition, value) in self.pending.items():
            total += (value is not MISSING) - (self._stored(key) is not None)
        return total

    def estimate(self) -> int:
        """About the number of rows, without a scan (RocksDB's estimate, plus what is pending)."""
        return sum(store.estimate_rows() for store in list(self.stores.values())) + len(self.pending)

    # -- writes (the TableState protocol) -----------------------------------------------------

    def write(
        self, dirty: Dirty[list[Any]], key: Any, value: Any, partition: int, timestamp: float | None = None
    ) -> None:
        """Set ``key`` (``value`` MISSING deletes it) and remember how to undo it."""
        rows = dirty.rows
        entry = rows.get(key)
        if entry is None:
            found = self.lookup(key)
            rows[key] = [partition, MISSING if found is None else found[1], timestamp]
            if found is not None and found[0] != partition:  # (a table written under another key than the stream's)
                self.moved[key] = found[0]
        else:
            self.rewritten(entry, key, partition)
            entry[2] = timestamp
        self.pending[key] = (partition, value)

    def rewritten(self, entry: list[Any], key: Any, partition: int) -> None:
        """``key``, written before in the transaction (``entry``), is written again from ``partition``.

        When the key's first write of the transaction came from the partition
        whose store holds its row and this one comes from another, the row
        moves too: it leaves that store once the commit lands.
        """
        first = entry[0]
        if first != partition:
            if entry[1] is not MISSING and key not in self.moved:  # (stored in ``first``'s store)
                self.moved[key] = first
            entry[0] = partition

    def changes(self, dirty: Dirty[list[Any]]) -> Iterator[Change]:
        """One :class:`~streamnb.tables.state.base.Change` per written key (the commit's records)."""
        pending = self.pending
        committing = self._committing
        moved, leaving = self.moved, self._leaving
        for key, (partition, _old, timestamp) in dirty.rows.items():
            value = pending[key][1]
            committing.append((key, value))
            if moved:
                was = moved.pop(key, partition)
                if was != partition:
                    leaving.append((key, was))
            yield Change(key, partition, value, timestamp)

    def leaving(self, key: Any, partition: int) -> None:
        """``key``'s row leaves ``partition``'s store once the commit lands (it was written from another)."""
        self._leaving.append((key, partition))

    def restore(self, dirty: Dirty[list[Any]]) -> None:
        """Put back the values from before the transaction (and forget a commit that failed)."""
        pending = self.pending
        for key, (partition, old, _ts) in dirty.rows.items():
            pending[key] = (partition, old)
        self._committing.clear()
        self.moved.clear()
        self._leaving.clear()

    def flushed(self) -> None:
        """The records :meth:`changes` gave the last commit are in the store: they are clean now."""
        pending = self.pending
        for key, value in self._committing:
            entry = pending.get(key)
            if entry is not None and entry[1] is value:  # not written again since
                del pending[key]
                if value is MISSING:
                    self.cache.pop(key, None)
                else:
                    self._remember(key, entry)
        self._committing.clear()
        self._leave()

    def _leave(self) -> None:
        """Delete the rows of keys the last commit wrote to another partition from their old partition's store.

        A key written from events of several partitions keeps one row (as in
        memory), in the store of the partition that wrote it last; the old
        partition's changelog still holds its record (a cold restore brings
        both back, as ``memory://`` restores both).
        """
        leaving, stores, encode = self._leaving, self.stores, self.encode_key
        for key, partition in leaving:
            store = stores.get(partition)
            if store is not None and not store.read_only:
                store.apply([(encode(key), None)], None)
        leaving.clear()

    def before_commit(self, txn: Transaction | None, dirty: Dirty[Any]) -> list[Closed]:
        """Nothing closes in a plain table."""
        return []

    def after_commit(self) -> None:
        """The table applies the records to the store, then calls :meth:`flushed`."""

    def to_store(self, pairs: Iterable[tuple[bytes, bytes | None]]) -> Iterable[tuple[bytes, bytes | None]]:
        """Changelog records ``(key, value or None)`` as the store keeps them (plain rows: as they are)."""
        return pairs

    def load(self, key: Any, value: Any, partition: int) -> None:
        """Recovery applies raw changelog records to the store instead (see the table)."""
        raise NotImplementedError("a stored table recovers through its store")

    def loaded(self) -> None:
        """No index to rebuild."""

    def serve(self, partition: int, store: RocksDBStore) -> None:
        """Serve the rows of ``partition`` from ``store`` (its changelog was read to the end)."""
        self.stores[partition] = store

    def drop_partitions(self, partitions: set[int]) -> bool:
        """Stop serving ``partitions``: their stores close, the rows stay on disk for when they come back."""
        dropped = False
        for partition in partitions:
            store = self.stores.pop(partition, None)
            if store is not None:
                store.close()
                dropped = True
        for cached in (self.cache, self.pending):
            for key in [k for k, (p, _v) in cached.items() if p in partitions]:
                del cached[key]
        return dropped

    def close(self) -> None:
        """The app stopped: the stores are opened again for reading only (the rows stay readable, no lock held)."""
        for store in list(self.stores.values()):
            store.reopen_read_only()
        self.cache.clear()
        self.pending.clear()

    def __len__(self) -> int:
        return self.count()


class StoredRows(MutableMapping[Any, Any]):
    """The rows of a :class:`StoredState` as a mapping (written only through the table)."""

    def __init__(self, state: StoredState) -> None:
        self.state = state

    def __getitem__(self, key: Any) -> Any:
        found = self.state.lookup(key)
        if found is None:
            raise KeyError(key)
        return found[1]

    def __contains__(self, key: object) -> bool:
        return self.state.lookup(key) is not None

    def __iter__(self) -> Iterator[Any]:
        return (key for key, _value in self.state.items())

    def items(self) -> Iterator[tuple[Any, Any]]:  # type: ignore[override]
        """``(key, value)`` pairs, read from the store as they go."""
        return self.state.items()

    def __len__(self) -> int:
        return self.state.count()

    def __setitem__(self, key: Any, value: Any) -> None:
        raise TypeError("write a table as table[key] = value inside an agent")

    def __delitem__(self, key: Any) -> None:
        raise TypeError("delete a table's key as del table[key] inside an agent")
