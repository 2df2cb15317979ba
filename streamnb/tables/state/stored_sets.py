"""A set table's sets in a persistent store behind a write-back cache (``store="rocksdb://"``).

The changelog of a :class:`~streamnb.tables.sets.SetTable` holds, per set
changed at a commit, the whole set and the operations since the last one
(:func:`set_record`); the store keeps the newest record of each key, byte
for byte, and a set that became empty is deleted from it
(:meth:`StoredSetState.to_store`). What the agents change stays in
``pending`` until the commit landed, as for plain rows
(:class:`~streamnb.tables.state.stored.StoredState`, whose reads, scans and
cache this state shares): a restart loads nothing, a read of a set not
cached decodes its record from the store.

>>> state = StoredSetState(lambda k: k.encode(), bytes.decode, lambda vb: vb)
>>> dirty: Dirty[list[Any]] = Dirty()
>>> state.change(dirty, "paris", lambda s: s.add("alice"), partition=0, timestamp=5.0)
>>> [tuple(change) for change in state.changes(dirty)]
[('paris', 0, {'members': ['alice'], 'added': ['alice'], 'removed': []}, 5.0)]
>>> state.rows["paris"]
{'alice'}
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ...transaction import MISSING
from ..stores.rocksdb import RocksDBStore
from .base import Change, Dirty
from .stored import StoredState

__all__ = ["StoredSetState", "listed", "set_record"]


def listed(members: Iterable[Any]) -> list[Any]:
    """``members`` as a list, sorted when they can be (a changelog record reads the same every time).

    >>> listed({"b", "a"}), len(listed({1, "a"}))
    (['a', 'b'], 2)
    """
    out = list(members)
    try:
        out.sort()
    except TypeError:  # members of mixed types: any order
        pass
    return out


def set_record(before: frozenset[Any] | set[Any], now: set[Any]) -> dict[str, list[Any]] | None:
    """The changelog value of a set that went from ``before`` to ``now`` (None: it did not change).

    >>> set_record(frozenset({1}), {2})
    {'members': [2], 'added': [2], 'removed': [1]}
    """
    added, removed = now - before, before - now
    if not (added or removed):
        return None
    return {"members": listed(now), "added": listed(added), "removed": listed(removed)}


class StoredSetState(StoredState):
    """``key -> set`` rows in the stores; ``dirty.rows`` maps a changed key to ``[partition, set before, event time]``.

    ``decode_value`` turns a stored changelog value into the set of its
    members. Sets are never changed in place once an agent's transaction is
    over: the first change of a key in a transaction copies it, so a set
    read earlier (cached, pending, or kept to undo) stays as it was.
    """

    def __init__(
        self,
        encode_key: Callable[[Any], bytes],
        decode_key: Callable[[bytes], Any],
        decode_value: Callable[[bytes], Any],
        stores: dict[int, RocksDBStore] | None = None,
        members_of: Callable[[bytes], Any] | None = None,
    ) -> None:
        super().__init__(encode_key, decode_key, decode_value, stores)
        self.members_of = members_of
        """Whether a stored value has members (None: every value has): an empty set is deleted from the store."""

    def change(
        self, dirty: Dirty[list[Any]], key: Any, operation: Callable[[set[Any]], Any],
        partition: int, timestamp: float | None = None,
    ) -> None:
        """Apply ``operation`` to the set of ``key`` (made empty if missing) and remember how to undo it."""
        rows = dirty.rows
        entry = rows.get(key)
        if entry is None:
            found = self.lookup(key)
            old = MISSING if found is None else found[1]
            rows[key] = [partition, old, timestamp]
            if found is not None and found[0] != partition:  # (see StoredState.write)
                self.moved[key] = found[0]
            current: set[Any] = set() if old is MISSING else set(old)
            self.pending[key] = (partition, current)
        else:
            self.rewritten(entry, key, partition)
            entry[2] = timestamp
            value = self.pending[key][1]
            current = set() if value is MISSING else value
            self.pending[key] = (partition, current)
        operation(current)

    def changes(self, dirty: Dirty[list[Any]]) -> Iterator[Change]:
        """One ``(key, partition, {"members", "added", "removed"}, event time)`` per set that changed.

        A set left empty reads as missing from now on (and leaves the store at the flush).
        """
        pending = self.pending
        committing = self._committing
        moved = self.moved
        for key, (partition, old, timestamp) in dirty.rows.items():
            now = pending[key][1]
            if not now:
                now = MISSING
                pending[key] = (partition, MISSING)
            committing.append((key, now))  # (unchanged ones too: they are clean once the commit landed)
            record = set_record(frozenset() if old is MISSING else old, set() if now is MISSING else now)
            was = moved.pop(key, partition) if moved else partition
            if record is not None:
                if was != partition:  # (the set's row leaves its old partition's store at the flush)
                    self.leaving(key, was)
                yield Change(key, partition, record, timestamp)

    def to_store(self, pairs: Iterable[tuple[bytes, bytes | None]]) -> Iterable[tuple[bytes, bytes | None]]:
        """Changelog records as the store keeps them: a record of an empty set deletes its row."""
        has_members = self.members_of
        if has_members is None:
            return pairs
        return ((kb, vb if vb is not None and has_members(vb) else None) for kb, vb in pairs)
