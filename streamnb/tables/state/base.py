"""How a table keeps its rows: the :class:`TableState` protocol, the commit bookkeeping, the plain state.

A :class:`~streamnb.tables.table.Table` owns one state object. The table
does what every table does (the changelog topic, encoding, recovery, the
commit protocol); the state does what depends on the kind of table: plain
(``key -> value``, :class:`PlainState`) or windowed
(``(key, window) -> value``, :mod:`streamnb.tables.state.fixed`).

Writes record what they changed, and how to undo it, in the table's
:class:`Dirty` of the transaction: per written key an undo entry (the
changelog partition, the value before the transaction, the event time of
the last write), so that a crash can undo them (:meth:`TableState.restore`)
and a commit can write one changelog record per changed key, stamped with
that event time (:meth:`TableState.changes`, one :class:`Change` each).

>>> from streamnb.transaction import MISSING
>>> state = PlainState()
>>> dirty: Dirty[list[Any]] = Dirty()
>>> state.write(dirty, "a", 1, partition=0, timestamp=12.5)
>>> list(state.changes(dirty))
[Change(key='a', partition=0, value=1, timestamp=12.5)]
>>> state.restore(dirty); dict(state.rows)
{}
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

from ...transaction import MISSING, Transaction

__all__ = ["Change", "Closed", "Dirty", "PlainState", "Popped", "TableState", "Undo"]

E = TypeVar("E")


class Change(NamedTuple):
    """One row a commit changed: what its changelog record says."""

    key: Any
    """The changelog key: the table key (windowed tables: ``(key, (start, end))``, sliding buckets ``(key, t)``)."""
    partition: int
    """The changelog partition (that of the events that wrote the row)."""
    value: Any
    """The row's new value, or :data:`~streamnb.transaction.MISSING`: the row is gone (a tombstone)."""
    timestamp: float | None
    """Event time of the last write of the row (``None``: the commit stamps it with its own time)."""


class _Schedule(Protocol):
    """A time index a commit takes items off (:class:`~streamnb.tables.state.event_time.TimeIndex`)."""

    def add(self, partition: int, at: int, item: Any) -> None: ...


Popped = tuple[_Schedule, int, int, Any]
"""An item a commit took off a time index: ``(index, partition, due at in ms, item)``."""


Undo = tuple[int, Any, "float | None"]
"""A plain table's undo entry per written key: partition, value before the transaction, event time of the last write."""

class Dirty(Generic[E]):
    """What one table changed in one transaction, and how to undo it: ``txn.dirty[table]``.

    ``rows`` holds one undo entry ``E`` per written key, of the state's own
    shape (see each state); what is not a row has a field of its own. A
    table write touches it, so it is a plain slotted object.

    >>> dirty: Dirty[list[Any]] = Dirty()
    >>> dirty.rows["a"] = [0, MISSING, 12.5]
    >>> dirty.stream_time = {0: 10.0}
    >>> len(dirty)
    2
    """

    __slots__ = ("log", "popped", "rows", "stream_time")

    def __init__(self) -> None:
        self.rows: dict[Any, E] = {}
        """Per key written: the state's undo entry (plain tables: ``[partition, value before, event time]``)."""
        self.stream_time: dict[int, float] | None = None
        """Windowed states: the stream time, before the transaction, of each partition it advanced."""
        self.popped: list[Popped] | None = None
        """Windowed states: what the commit took off the time indexes (put back if the commit fails)."""
        self.log: list[Change] | None = None
        """States that keep their history: every write of the transaction, in order."""

    def __len__(self) -> int:
        """Keys written, plus one for each of ``stream_time``, ``popped`` and ``log`` that is set."""
        return (
            len(self.rows) + (self.stream_time is not None) + (self.popped is not None) + (self.log is not None)
        )

    def __repr__(self) -> str:
        return f"Dirty(rows={self.rows!r}, stream_time={self.stream_time!r})"


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

    def changes(self, dirty: Dirty[Any]) -> Iterator[Change]:
        """One :class:`Change` for every row ``dirty`` changed (its changelog record)."""
        ...

    def restore(self, dirty: Dirty[Any]) -> None:
        """Undo the writes ``dirty`` records (the transaction was aborted)."""
        ...

    def before_commit(self, txn: Transaction | None, dirty: Dirty[Any]) -> list[Closed]:
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

    ``dirty.rows`` maps each written key to ``(partition, value before, event time of the last write)``:
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
        self, dirty: Dirty[Undo], key: Any, value: Any, partition: int, timestamp: float | None = None
    ) -> None:
        """Set ``key`` (``value`` MISSING deletes it) and remember how to undo it."""
        data = self.data
        rows = dirty.rows
        entry = rows.get(key)
        rows[key] = (partition, data.get(key, MISSING) if entry is None else entry[1], timestamp)
        if value is MISSING:
            data.pop(key, None)
        else:
            data[key] = value

    def changes(self, dirty: Dirty[Undo]) -> Iterator[Change]:
        """One change per written key."""
        data = self.data
        partition_of = self.partition_of
        new = tuple.__new__
        for key, (partition, _old, timestamp) in dirty.rows.items():
            value = data.get(key, MISSING)
            if value is MISSING:
                partition_of.pop(key, None)
            else:
                partition_of[key] = partition
            yield new(Change, (key, partition, value, timestamp))  # (Change(...) without its Python-level __new__)

    def restore(self, dirty: Dirty[Undo]) -> None:
        """Put back the values from before the transaction."""
        data = self.data
        for key, (_partition, old, _ts) in dirty.rows.items():
            if old is MISSING:
                data.pop(key, None)
            else:
                data[key] = old

    def before_commit(self, txn: Transaction | None, dirty: Dirty[Any]) -> list[Closed]:
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
