"""Windowed tables: counts and sums grouped by key *and* time window.

Example::

    views = app.Table("views", default=int).hopping(60, 10, expires=3600)

    @app.agent(page_views)
    async def count(stream):
        async for view in stream.group_by(PageView.page):
            views[view.page] += 1             # every window holding the event's time

    views["/home"].current()                  # window of the current event
    views["/home"].now()                      # window holding the wall clock
    views["/home"].delta(30)                  # 30 s before the current event
    views["/home"][(120.0, 180.0)]            # one window by (start, end)
    views.as_dataframe()                      # key, window_start, window_end, value

Time comes from the event's timestamp (``relative_to_stream``, the default),
a Record field (``relative_to_field(PageView.ts)``) or the wall clock
(``relative_to_now``). Windows expire in *event time*, per partition: once
the newest timestamp seen on the window's partition is at or past
``end + expires``, the window is removed (a tombstone goes to the
changelog) and ``on_window_close((key, (start, end)), value)`` is called.
Events for an already expired window are not counted into it; they are
counted in ``late_events``.
"""

from __future__ import annotations

import heapq
import inspect
import logging
import operator
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import ConfigurationError
from ..transaction import MISSING, Transaction, current_transaction
from ..transaction import _current as _current_txn
from ..transport.base import Message, ProducerRecord
from .store import WindowStore
from .table import Table
from .windows import Window, WindowRange

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["WindowSet", "WindowedTable"]

logger = logging.getLogger("streamnb")

class _Current(Protocol):
    """What relative-time functions read: a transaction, or an event adapted by :class:`_EventTxn`."""

    message: Message | None
    value: Any


RelativeTo = Callable[[_Current | None], float]
_get_txn = _current_txn.get


_NEVER = float("-inf")


class _WindowState:
    """Event time and expiry index per partition, shared by every wrapper of one table.

    Event time advances per partition (as stream time does in Kafka
    Streams): partitions read at different speeds from a backlog do not
    make each other's events late.
    """

    def __init__(self) -> None:
        self.newest: dict[int, float] = {}
        self.ends: dict[int, dict[float, list[Any]]] = {}
        self.heaps: dict[int, list[float]] = {}
        self.late_events = 0

    def newest_overall(self) -> float:
        """The newest event time seen on any partition."""
        return max(self.newest.values(), default=_NEVER)


class WindowedTable:
    """A :class:`Table` whose values are kept per key and time window.

    Made by ``app.Table(...).tumbling(size)`` or ``.hopping(size, step)``.
    """

    def __init__(self, table: Table, window: Window, relative_to: str | Any = "stream") -> None:
        self.table = table
        self.window = window
        self._relative = relative_to
        self._timestamp: RelativeTo = _relative_fn(relative_to)
        self._by_stream = relative_to == "stream"
        if not isinstance(getattr(table, "_wstate", None), _WindowState):
            table._wstate = _WindowState()  # type: ignore[attr-defined]
        self._state: _WindowState = table._wstate  # type: ignore[attr-defined]
        if not isinstance(table.data, WindowStore) or table.data.size != window.size:
            store = WindowStore(window.size)
            for wk, value in table.data.items():
                store[wk] = value
            table.data = store  # type: ignore[assignment]
        self._store: WindowStore = table.data  # type: ignore[assignment]
        table.window = self
        # The windowed table keeps its pending writes per key: {key: {start: [partition, old]}}.
        table._before_commit = self._expire  # type: ignore[method-assign]
        table._recovered_hook = self._reindex  # type: ignore[method-assign]
        table._changelog_records = self._changelog_records  # type: ignore[method-assign]
        table._restore = self._restore  # type: ignore[method-assign]
        self._reindex()

    # -- configuration -----------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The table's name."""
        return self.table.name

    @property
    def data(self) -> WindowStore:
        """``{(key, (start, end)): value}`` (a mapping)."""
        return self._store

    @property
    def version(self) -> int:
        """Increases on every commit that changed the table."""
        return self.table.version

    @property
    def late_events(self) -> int:
        """Events that arrived for windows that had already expired."""
        return self._state.late_events

    def relative_to_stream(self) -> WindowedTable:
        """Place events by their message timestamp (the default)."""
        return WindowedTable(self.table, self.window, "stream")

    def relative_to_now(self) -> WindowedTable:
        """Place events by the wall clock when they are processed."""
        return WindowedTable(self.table, self.window, "now")

    def relative_to_field(self, field: Any) -> WindowedTable:
        """Place events by a Record field holding epoch seconds or a datetime.

        >>> views = app.Table("v", default=int).tumbling(60).relative_to_field(PageView.ts)  # doctest: +SKIP
        """
        if not hasattr(field, "field"):
            raise ConfigurationError(f"relative_to_field() takes a Record field such as PageView.ts, got {field!r}")
        return WindowedTable(self.table, self.window, field)

    # -- access -----------------------------------------------------------------------------

    def __getitem__(self, key: Any) -> WindowSet:
        return WindowSet(key, self)

    def __setitem__(self, key: Any, value: Any) -> None:
        if isinstance(value, WindowSet):  # result of `table[k] += 1`: already applied
            return
        self._apply(key, _replace, value)

    def __contains__(self, key: object) -> bool:
        return key in self._store.by_key

    def __len__(self) -> int:
        return len(self.table.data)

    def keys(self) -> set[Any]:
        """Keys that have at least one window."""
        return set(self._store.by_key)

    def items(self) -> Iterator[tuple[tuple[Any, WindowRange], Any]]:
        """``((key, (start, end)), value)`` pairs."""
        return iter(self._store.items())

    # -- writes -----------------------------------------------------------------------------

    def _apply(self, key: Any, op: Callable[[Any, Any], Any], operand: Any) -> None:
        txn = _get_txn()
        table = self.table
        if txn is None:
            raise table._outside()
        ts = txn.message[3] if self._by_stream else self._timestamp(txn)  # type: ignore[index]
        state = self._state
        window = self.window
        partition = txn.message[1]  # type: ignore[index]
        newest = state.newest.get(partition, _NEVER)
        if ts > newest:
            state.newest[partition] = newest = ts
        dirty = txn.dirty.get(table)
        if dirty is None:
            dirty = table._dirty(txn)
        store = self._store
        inner = store.by_key.get(key)
        if inner is None:
            inner = store.by_key[key] = {}
        pending = dirty.get(key)
        if pending is None:
            pending = dirty[key] = {}
        horizon = newest - window.expires  # windows ending at or before this have expired
        add = op is operator.add
        for w in window.ranges(ts):
            if w[1] <= horizon:
                state.late_events += 1
                continue
            start = w[0]
            old = inner.get(start, MISSING)
            if start not in pending:
                pending[start] = [partition, old]
            if old is MISSING:
                store._len += 1
                self._index((key, w), w[1], partition)
                default = table.default
                if default is None:
                    if op is _replace:
                        inner[start] = operand
                        continue
                    store._len -= 1
                    raise KeyError(f"{key!r} has no value in window {tuple(w)} and table {table.name!r} has no default")
                old = default()
            inner[start] = old + operand if add else op(old, operand)

    def _changelog_records(self, dirty: dict[Any, dict[float, list[Any]]], timestamp: float) -> list[ProducerRecord]:
        by_key = self._store.by_key
        end = self._store.end

        def changes() -> Iterator[tuple[Any, int, Any]]:
            for key, starts in dirty.items():
                inner = by_key.get(key)
                if inner is not None and not inner:
                    del by_key[key]  # every window of the key was undone or expired
                    inner = None
                for start, (partition, _old) in starts.items():
                    value = MISSING if inner is None else inner.get(start, MISSING)
                    yield (key, (start, end(start))), partition, value

        return self.table._encode_changes(changes(), timestamp)

    def _restore(self, dirty: dict[Any, dict[float, list[Any]]]) -> None:
        store = self._store
        for key, starts in dirty.items():
            for start, (_partition, old) in starts.items():
                if old is MISSING:
                    store.discard(key, start)
                else:
                    store.put(key, start, old)

    def _index(self, wk: Any, end: float, partition: int) -> None:
        state = self._state
        ends = state.ends.get(partition)
        if ends is None:
            ends = state.ends[partition] = {}
            state.heaps[partition] = []
        bucket = ends.get(end)
        if bucket is None:
            ends[end] = [wk]
            heapq.heappush(state.heaps[partition], end)
        else:
            bucket.append(wk)

    def _reindex(self) -> None:
        state = self._state
        state.ends.clear()
        state.heaps.clear()
        partition_of = self.table._partition_of
        for wk in self.table.data:
            try:
                _, (start, end) = wk
            except (TypeError, ValueError):
                continue
            partition = partition_of.get(wk, 0)
            self._index(wk, end, partition)
            if start > state.newest.get(partition, _NEVER):
                state.newest[partition] = start

    def _expire(self, txn: Transaction) -> None:
        state = self._state
        expires = self.window.expires
        table = self.table
        store = self._store
        closing = []
        for partition, heap in state.heaps.items():
            newest = state.newest.get(partition, _NEVER)
            ends = state.ends[partition]
            while heap and heap[0] + expires <= newest:
                end = heapq.heappop(heap)
                for wk in ends.pop(end, ()):
                    key, (start, _end) = wk
                    inner = store.by_key.get(key)
                    value = MISSING if inner is None else inner.get(start, MISSING)
                    if value is MISSING:
                        continue
                    dirty = txn.dirty.setdefault(table, {})
                    pending = dirty.setdefault(key, {})
                    if start not in pending:
                        pending[start] = [partition, value]
                    store.discard(key, start)
                    closing.append((wk, value))
        callback = table.on_window_close
        if callback is not None:
            for wk, value in closing:
                try:
                    out = callback(wk, value)
                    if inspect.isawaitable(out):
                        table.app._spawn(out, f"on_window_close({table.name})")
                except Exception:
                    logger.exception("on_window_close of table %r failed for %r", table.name, wk)

    # -- views ------------------------------------------------------------------------------

    def as_dataframe(self) -> pd.DataFrame:
        """One row per key and window: ``key, window_start, window_end, value``.

        ``window_start``/``window_end`` are epoch seconds.

        >>> views.as_dataframe().head()  # doctest: +SKIP
        """
        import pandas as pd

        rows = [(k, w[0], w[1], v) for (k, w), v in self._store.items()]
        rows.sort(key=lambda r: (str(r[0]), r[1]))
        return pd.DataFrame(rows, columns=["key", "window_start", "window_end", "value"])

    def as_ansitable(self, title: str | None = None) -> str:
        """The windows as a text table."""
        from ._text import text_table

        return text_table(self.as_dataframe(), title or self.table.name, sort=False)

    def live(self, **options: Any) -> Any:
        """A widget showing the windows as a live DataFrame."""
        from ..notebook.views import live_table

        return live_table(self, **options)

    def chart(self, **options: Any) -> Any:
        """A live Altair chart: window start on x, value on y, one series per key."""
        from ..notebook.chart import live_chart

        return live_chart(self, **options)

    def __repr__(self) -> str:
        return f"<WindowedTable {self.table.name!r} {self.window!r} rows={len(self.table.data)}>"


class WindowSet:
    """The windows of one key: ``table[key]`` of a windowed table.

    ``table[key] += 1`` updates every window holding the current event's
    time; reads pick one window.
    """

    __slots__ = ("key", "wrapper")

    def __init__(self, key: Any, wrapper: WindowedTable) -> None:
        self.key = key
        self.wrapper = wrapper

    def _value_at(self, timestamp: float) -> Any:
        return self[self.wrapper.window.current(timestamp)]

    def __getitem__(self, window: Any) -> Any:
        """Value of one window, given as ``(start, end)`` or as a timestamp inside it."""
        if isinstance(window, (int, float)):
            window = self.wrapper.window.current(float(window))
        start, end = window
        value = self.wrapper._store.get((self.key, (float(start), float(end))), MISSING)
        if value is MISSING:
            default = self.wrapper.table.default
            return None if default is None else default()
        return value

    def now(self) -> Any:
        """Value in the newest window holding the wall clock."""
        return self._value_at(time.time())

    def current(self, event: Any = None) -> Any:
        """Value in the newest window holding the current event's time.

        Outside an agent, the newest event time the table has seen is used.
        """
        return self._value_at(_event_time(event, self.wrapper, stream=True))

    def value(self, event: Any = None) -> Any:
        """Value in the newest window holding the time the table is relative to."""
        return self._value_at(_event_time(event, self.wrapper, stream=False))

    def delta(self, seconds: float, event: Any = None) -> Any:
        """Value in the window holding ``seconds`` before the current time."""
        return self._value_at(_event_time(event, self.wrapper, stream=False) - seconds)

    def _op(self, op: Callable[[Any, Any], Any], other: Any) -> WindowSet:
        self.wrapper._apply(self.key, op, other)
        return self

    def __iadd__(self, other: Any) -> WindowSet:
        self.wrapper._apply(self.key, operator.add, other)
        return self

    def __isub__(self, other: Any) -> WindowSet:
        return self._op(operator.sub, other)

    def __imul__(self, other: Any) -> WindowSet:
        return self._op(operator.mul, other)

    def __itruediv__(self, other: Any) -> WindowSet:
        return self._op(operator.truediv, other)

    def __ior__(self, other: Any) -> WindowSet:
        return self._op(operator.or_, other)

    def __iand__(self, other: Any) -> WindowSet:
        return self._op(operator.and_, other)

    def __repr__(self) -> str:
        return f"<WindowSet {self.wrapper.table.name}[{self.key!r}] current={self.current()!r}>"


def _replace(_old: Any, new: Any) -> Any:
    return new


def _to_seconds(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value)


def _relative_fn(relative_to: Any) -> RelativeTo:
    if relative_to == "stream":
        return lambda txn: txn.message.timestamp  # type: ignore[union-attr]
    if relative_to == "now":
        return lambda txn: time.time()
    field = relative_to.field

    def from_field(txn: _Current | None) -> float:
        assert txn is not None
        value = txn.value
        raw = value[field] if isinstance(value, dict) else getattr(value, field)
        return _to_seconds(raw)

    return from_field


def _event_time(event: Any, wrapper: WindowedTable, *, stream: bool) -> float:
    if event is not None:
        return float(event.message.timestamp if stream else wrapper._timestamp(_EventTxn(event)))
    txn = current_transaction()
    if txn is not None and txn.message is not None:
        if stream:
            return txn.message.timestamp
        return wrapper._timestamp(txn)
    if wrapper._relative == "now":
        return time.time()
    newest = wrapper._state.newest_overall()
    return newest if newest != _NEVER else time.time()


class _EventTxn:
    """Adapts an Event to what relative-time functions read from a transaction."""

    def __init__(self, event: Any) -> None:
        self.message = event.message
        self.value = event.value
