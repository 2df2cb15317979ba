"""Set tables: every value is a set, changed with Faust's ``add``/``discard`` operations.

Example::

    people = app.SetTable("people", value_type=str)

    @app.agent(joining)
    async def join(stream):
        async for location, name in stream.items():
            people[location].add(name)

    people["paris"]            # {'alice', 'bob'} (a live view; 'alice' in people["paris"])

Each commit writes one changelog record per set that changed, keyed by the
table key, holding the whole set and the operations since the last commit:
``{"members": [...], "added": [...], "removed": [...]}``. The whole set
makes the record self-sufficient, so log compaction (which keeps the last
record per key) never loses a member; ``added``/``removed`` show what the
agent did. A set that becomes empty is dropped from the table.

The state (:class:`SetState`) implements :class:`~streamnb.tables.state.base.TableState`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Set
from typing import Any, TypeVar

from ..errors import ConfigurationError, ValidationError
from ..transaction import MISSING, Transaction, current_transaction
from .global_table import GlobalTable
from .recovery import hashable
from .state.base import Change, Closed, Dirty
from .state.stored_sets import StoredSetState, listed, set_record
from .table import Table
from .windowed import WindowedTable

__all__ = ["SetGlobalTable", "SetState", "SetTable", "SetValue"]

K = TypeVar("K")
V = TypeVar("V")


class SetState:
    """``key -> set`` rows; ``dirty.rows`` maps a changed key to ``[partition, set before, event time]``.

    >>> state = SetState()
    >>> dirty: Dirty[list[Any]] = Dirty()
    >>> state.change(dirty, "paris", lambda s: s.add("alice"), partition=0, timestamp=5.0)
    >>> [tuple(change) for change in state.changes(dirty)]
    [('paris', 0, {'members': ['alice'], 'added': ['alice'], 'removed': []}, 5.0)]
    """

    def __init__(self, decode_member: Callable[[Any], Any] | None = None) -> None:
        self.data: dict[Any, set[Any]] = {}
        """The sets (read by the table)."""
        self.partition_of: dict[Any, int] = {}
        """The changelog partition of every key written or recovered."""
        self.decode_member = decode_member or hashable

    @property
    def rows(self) -> dict[Any, set[Any]]:
        """The sets by key."""
        return self.data

    def change(
        self, dirty: Dirty[list[Any]], key: Any, operation: Callable[[set[Any]], Any],
        partition: int, timestamp: float | None = None,
    ) -> None:
        """Apply ``operation`` to the set of ``key`` (made empty if missing) and remember how to undo it."""
        current = self.data.get(key)
        rows = dirty.rows
        entry = rows.get(key)
        if entry is None:
            rows[key] = [partition, MISSING if current is None else frozenset(current), timestamp]
        else:
            entry[0] = partition
            entry[2] = timestamp
        if current is None:
            current = self.data[key] = set()
        operation(current)

    def changes(self, dirty: Dirty[list[Any]]) -> Iterator[Change]:
        """One ``(key, partition, {"members", "added", "removed"}, event time)`` per set that changed."""
        data = self.data
        for key, (partition, old, timestamp) in dirty.rows.items():
            before = frozenset() if old is MISSING else old
            now = data.get(key, set())
            if not now:
                data.pop(key, None)
                self.partition_of.pop(key, None)
            else:
                self.partition_of[key] = partition
            record = set_record(before, now)
            if record is not None:
                yield Change(key, partition, record, timestamp)

    def restore(self, dirty: Dirty[list[Any]]) -> None:
        """Put back the sets from before the transaction."""
        for key, (_partition, old, _ts) in dirty.rows.items():
            if old is MISSING:
                self.data.pop(key, None)
            else:
                self.data[key] = set(old)

    def before_commit(self, txn: Transaction | None, dirty: Dirty[Any]) -> list[Closed]:
        """Nothing closes in a set table."""
        return []

    def after_commit(self) -> None:
        """Nothing to do."""

    def members(self, value: Any) -> set[Any]:
        """The members of a changelog value (MISSING or None: none), decoded."""
        members = value.get("members") if isinstance(value, dict) else None
        decode = self.decode_member
        return {decode(m) for m in members} if members else set()

    def load(self, key: Any, value: Any, partition: int) -> None:
        """Apply one changelog record (the whole set)."""
        members = self.members(value)
        if members:
            self.data[key] = members
            self.partition_of[key] = partition
        else:
            self.data.pop(key, None)
            self.partition_of.pop(key, None)

    def loaded(self) -> None:
        """No index to rebuild."""

    def drop_partitions(self, partitions: set[int]) -> bool:
        """Forget the sets of ``partitions``."""
        drop = [k for k, p in self.partition_of.items() if p in partitions]
        for key in drop:
            self.data.pop(key, None)
            del self.partition_of[key]
        return bool(drop)

    def __len__(self) -> int:
        return len(self.data)


class SetValue(Set[Any]):
    """The set of one key: ``table[key]`` of a :class:`SetTable`.

    A read-only set for reads (``in``, ``len``, iteration, ``==``, ``|``,
    ``&``, ...), seeing the set as it is now; ``add``, ``discard``, ``remove``, ``update``, ``difference_update``,
    ``intersection_update``, ``symmetric_difference_update``, ``clear`` and
    ``|=``, ``-=``, ``&=``, ``^=`` change it inside an agent.
    """

    __slots__ = ("key", "table")

    def __init__(self, table: SetTable[Any, Any], key: Any) -> None:
        self.table = table
        self.key = key

    def _members(self) -> set[Any]:
        return self.table.state.rows.get(self.key, set())  # type: ignore[no-any-return]

    def _change(self, operation: Callable[[set[Any]], Any]) -> None:
        table = self.table
        txn = current_transaction()
        if txn is None:
            raise table.outside_agent()
        dirty = table.dirty(txn)
        msg = txn.message
        assert msg is not None  # table.dirty raised otherwise
        table.set_state.change(dirty, self.key, operation, msg.partition, msg.timestamp)

    # -- Faust's operations --------------------------------------------------------------------

    def add(self, element: Any) -> None:
        """Add ``element``."""
        self._change(lambda s: s.add(element))

    def discard(self, element: Any) -> None:
        """Remove ``element`` if present."""
        self._change(lambda s: s.discard(element))

    def remove(self, element: Any) -> None:
        """Remove ``element``; ``KeyError`` when it is absent."""
        if element not in self._members():
            raise KeyError(element)
        self.discard(element)

    def update(self, *others: Iterable[Any]) -> None:
        """Add every element of ``others``."""
        self._change(lambda s: s.update(*others))

    def difference_update(self, *others: Iterable[Any]) -> None:
        """Remove every element of ``others``."""
        self._change(lambda s: s.difference_update(*others))

    def intersection_update(self, *others: Iterable[Any]) -> None:
        """Keep only elements also in every one of ``others``."""
        self._change(lambda s: s.intersection_update(*others))

    def symmetric_difference_update(self, other: Iterable[Any]) -> None:
        """Keep elements in exactly one of the set and ``other``."""
        self._change(lambda s: s.symmetric_difference_update(other))

    def clear(self) -> None:
        """Remove every element."""
        self._change(lambda s: s.clear())

    def __ior__(self, other: Set[Any]) -> SetValue:  # type: ignore[misc]
        self.update(other)
        return self

    def __isub__(self, other: Iterable[Any]) -> SetValue:
        self.difference_update(other)
        return self

    def __iand__(self, other: Iterable[Any]) -> SetValue:
        self.intersection_update(other)
        return self

    def __ixor__(self, other: Set[Any]) -> SetValue:  # type: ignore[misc]
        self.symmetric_difference_update(other)
        return self

    # -- reads -----------------------------------------------------------------------------------

    def __contains__(self, element: object) -> bool:
        return element in self._members()

    def __iter__(self) -> Iterator[Any]:
        return iter(set(self._members()))

    def __len__(self) -> int:
        return len(self._members())

    @classmethod
    def _from_iterable(cls, it: Iterable[Any]) -> set[Any]:
        return set(it)  # `a | b` and friends give plain sets

    def __repr__(self) -> str:
        return f"SetValue({listed(self._members())!r})"


class SetTable(Table[K, V]):
    """A table whose values are sets. Create with :meth:`App.SetTable`.

    ``value_type`` is the type of the members (``str``, a Record class, ...).

    >>> from streamnb import App
    >>> people = App("demo", broker="memory://").SetTable("people", value_type=str)
    >>> people["paris"], "alice" in people["paris"]
    (SetValue([]), False)
    """

    def __init__(self, app: Any, name: str, *, value_type: Any = None, **options: Any) -> None:
        if options.get("default") is not None:
            raise ConfigurationError(f"SetTable {name!r}: a missing key is an empty set; drop default=")
        super().__init__(app, name, value_type=None, **options)
        self.value_type = value_type
        self.decode_member = _member_decoder(value_type, name)
        """How a member read from the changelog (JSON) becomes a member of ``value_type``."""
        self.set_state: SetState | StoredSetState = SetState(self.decode_member)
        if self.persistence is not None and not isinstance(self, GlobalTable):  # (held whole, in memory)
            self.set_state = self.persistence.sets(self.set_state.members)
        self.use_state(self.set_state)

    def take_over(self, old: Table[Any, Any]) -> None:
        """Keep the sets of ``old`` (a set table of the same name this one redefines)."""
        if isinstance(old.state, type(self.set_state)):
            super().take_over(old)
            self.set_state = old.state
        else:
            if old.persistence is not None and old.persistence is not self.persistence:
                old.persistence.close()
            self.version = old.version + 1

    def __getitem__(self, key: K) -> Any:
        return SetValue(self, key)

    def get(self, key: K, default: Any = None) -> Any:
        """The set of ``key`` (a copy), or ``default`` when it has no members."""
        members = self.set_state.rows.get(key)
        return set(members) if members else default

    def __setitem__(self, key: K, value: V) -> None:
        if isinstance(value, SetValue) and value.table is self and value.key == key:
            return  # `table[k] |= {...}`: already applied
        raise ConfigurationError(
            f"SetTable {self.name!r}: change a set with table[key].add(x) / .discard(x) / .update(...) / .clear()"
        )

    def __delitem__(self, key: K) -> None:
        raise ConfigurationError(f"SetTable {self.name!r}: empty a set with table[key].clear()")

    def _windowed(self, window: Any, merge: Callable[[Any, Any], Any] | None = None) -> WindowedTable:
        raise ConfigurationError(f"SetTable {self.name!r} cannot be windowed; use app.Table(..., default=set)")

    def __repr__(self) -> str:
        if isinstance(self.set_state, StoredSetState):
            return f"<{type(self).__name__} {self.name!r} rows~{self.set_state.estimate()} store={self.store}>"
        return f"<{type(self).__name__} {self.name!r} rows={len(self.data)}>"


class SetGlobalTable(SetTable[K, V], GlobalTable[K, V]):
    """A set table every worker holds in full (see :class:`~streamnb.tables.global_table.GlobalTable`).

    >>> from streamnb import App
    >>> App("demo", broker="memory://").SetGlobalTable("tags", value_type=str).is_global
    True
    """


def _member_decoder(value_type: Any, name: str) -> Callable[[Any], Any]:
    if value_type is None:
        return hashable
    from_data = getattr(value_type, "from_data", None)
    if from_data is not None:
        return lambda member: from_data(member) if isinstance(member, dict) else member

    def convert(member: Any) -> Any:
        if isinstance(member, value_type):
            return member
        try:
            return value_type(hashable(member))
        except (TypeError, ValueError) as exc:
            raise ValidationError(f"SetTable {name!r}: cannot make {value_type.__name__} from {member!r}") from exc

    return convert
