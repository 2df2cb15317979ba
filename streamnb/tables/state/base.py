"""How a table keeps its rows: the :class:`TableState` protocol and the plain state.

A :class:`~streamnb.tables.table.Table` owns one state object. The table
does what every table does (the changelog topic, encoding, recovery, the
commit protocol); the state does what depends on the kind of table: plain
(``key -> value``, :class:`PlainState`) or windowed
(``(key, window) -> value``, :mod:`streamnb.tables.state.fixed`).

Writes record, per key, the changelog partition, the value before the
transaction and the event time of the last write in the transaction's
bookkeeping for the table (``dirty``), so that a crash can undo them
(:meth:`TableState.restore`) and a commit can write one changelog record per
changed key, stamped with that event time (:meth:`TableState.changes`).

>>> from streamnb.transaction import MISSING
>>> state = PlainState()
>>> dirty: dict = {}
>>> state.write(dirty, "a", 1, partition=0, timestamp=12.5)
>>> list(state.changes(dirty))
[('a', 0, 1, 12.5)]
>>> state.restore(dirty); dict(state.rows)
{}
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple, Protocol

from ...transaction import MISSING, Transaction

__all__ = ["Closed", "PlainState", "TableState"]


class Closed(NamedTuple):
    """A window that closed at a commit: its final value, for ``on_window_close`` and ``emit_final``."""

    key: Any
    """The table key."""
    window: tuple[float, float]
    """``(start, end)`` in epoch seconds."""
    value: Any
    """The window's final value."""
    partition: int
    """The changelog partition the window lives in."""


class TableState(Protocol):
    """What a table delegates to its state (plain or windowed)."""

    @property
    def rows(self) -> Mapping[Any, Any]:
        """The table's rows as users read them (``key -> value``, or ``(key, (start, end)) -> value``)."""
        ...

    def changes(self, dirty: Any) -> Iterator[tuple[Any, int, Any, float | None]]:
        """``(changelog key, partition, value or MISSING, event time)`` for every row ``dirty`` changed."""
        ...

    def restore(self, dirty: Any) -> None:
        """Undo the writes ``dirty`` records (the transaction was aborted)."""
        ...

    def before_commit(self, txn: Transaction, dirty: Any) -> list[Closed]:
        """Changes due at a commit (windows that close or expire); returns the windows that closed.

        ``dirty`` is the table's bookkeeping in ``txn`` (created on demand by the caller).
        """
        ...

    def after_commit(self) -> None:
        """The last collected changes are durable."""
        ...

    def load(self, key: Any, value: Any, partition: int) -> None:
        """Apply one changelog record while recovering (``value`` MISSING: a tombstone)."""
        ...

    def loaded(self) -> None:
        """Recovery of some partitions finished: rebuild indexes."""
        ...

    def drop_partitions(self, partitions: set[int]) -> bool:
        """Forget the rows of ``partitions``; True when any row went."""
        ...

    def __len__(self) -> int:
        """Number of rows."""
        ...


class PlainState:
    """``key -> value`` rows: the state of an ordinary table.

    ``dirty`` maps each written key to ``(partition, value before, event time of the last write)``:
    tuples, not lists, so a transaction of a million keys leaves the garbage
    collector nothing to scan (a tuple of numbers and strings is untracked).
    """

    def __init__(self) -> None:
        self.data: dict[Any, Any] = {}
        """The rows (read by the table on every access)."""
        self.partition_of: dict[Any, int] = {}
        """The changelog partition of every key written or recovered."""

    @property
    def rows(self) -> dict[Any, Any]:
        """The rows."""
        return self.data

    def write(
        self, dirty: dict[Any, Any], key: Any, value: Any, partition: int, timestamp: float | None = None
    ) -> None:
        """Set ``key`` (``value`` MISSING deletes it) and remember how to undo it."""
        data = self.data
        entry = dirty.get(key)
        dirty[key] = (partition, data.get(key, MISSING) if entry is None else entry[1], timestamp)
        if value is MISSING:
            data.pop(key, None)
        else:
            data[key] = value

    def changes(self, dirty: dict[Any, Any]) -> Iterator[tuple[Any, int, Any, float | None]]:
        """One ``(key, partition, value or MISSING, event time)`` per written key."""
        data = self.data
        partition_of = self.partition_of
        for key, (partition, _old, timestamp) in dirty.items():
            value = data.get(key, MISSING)
            if value is MISSING:
                partition_of.pop(key, None)
            else:
                partition_of[key] = partition
            yield key, partition, value, timestamp

    def restore(self, dirty: dict[Any, Any]) -> None:
        """Put back the values from before the transaction."""
        data = self.data
        for key, (_partition, old, _ts) in dirty.items():
            if old is MISSING:
                data.pop(key, None)
            else:
                data[key] = old

    def before_commit(self, txn: Transaction, dirty: Any) -> list[Closed]:
        """Nothing closes in a plain table."""
        return []

    def after_commit(self) -> None:
        """Nothing to do."""

    def load(self, key: Any, value: Any, partition: int) -> None:
        """Apply one changelog record."""
        if value is MISSING:
            self.data.pop(key, None)
            self.partition_of.pop(key, None)
        else:
            self.data[key] = value
            self.partition_of[key] = partition

    def loaded(self) -> None:
        """No index to rebuild."""

    def drop_partitions(self, partitions: set[int]) -> bool:
        """Forget the keys of ``partitions``."""
        drop = [k for k, p in self.partition_of.items() if p in partitions]
        for key in drop:
            self.data.pop(key, None)
            del self.partition_of[key]
        return bool(drop)

    def __len__(self) -> int:
        return len(self.data)
