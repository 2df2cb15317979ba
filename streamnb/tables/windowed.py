"""Windowed tables: counts and sums grouped by key *and* time window.

Example::

    views = app.Table("views", default=int).hopping(60, 10, expires=3600)

    @app.agent(page_views)
    async def count(stream):
        async for view in stream.group_by(PageView.page):
            views[view.page] += 1             # every open window holding the event's time

    views["/home"].current()                  # window of the current event
    views["/home"].now()                      # window holding the wall clock
    views["/home"].delta(30)                  # 30 s before the current event
    views["/home"][(120.0, 180.0)]            # one window by (start, end)
    views.as_dataframe()                      # key, window_start, window_end, value, closed

The object ``tumbling()``/``hopping()`` return is a *view* of the table (as
Faust's ``WindowWrapper``): the table keeps its rows in a
:class:`~streamnb.tables.state.fixed.WindowedState`, and views made by
``relative_to_*`` share it. Time comes from the event's timestamp
(``relative_to_stream``, the default), a Record field
(``relative_to_field(PageView.ts)``) or the wall clock (``relative_to_now``).
Windows close, and expire, in *event time* per partition (see
:mod:`streamnb.tables.state.fixed`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from .. import display
from ..errors import ConfigurationError, EventTimeError, TableWriteError
from ..events import event_time, time_problem
from ..timeunits import as_datetimes, check_times
from ..transaction import Transaction, current_transaction
from ..transport.base import Message
from .changelog import PLAIN_VALUES
from .state.base import Dirty
from .state.event_time import NEVER, replace
from .windows import WindowRange
from .windowset import WindowSet

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["WindowHost", "WindowKeeper", "WindowSet", "WindowedTable"]  # (WindowSet: see .windowset)


class _Current(Protocol):
    """What relative-time functions read: a transaction, or an event adapted by :class:`_EventTxn`."""

    message: Message | None
    value: Any


RelativeTo = Callable[[_Current], float]


class WindowKeeper(Protocol):
    """What a windowed view reads and writes through: the state of one kind of window.

    :class:`~streamnb.tables.state.fixed.WindowedState` (tumbling, hopping),
    :class:`~streamnb.tables.state.sliding.SlidingState`,
    :class:`~streamnb.tables.state.sessions.SessionState`, and on ``rocksdb://``
    :class:`~streamnb.tables.state.stored_windows.StoredWindowedState`,
    :class:`~streamnb.tables.state.stored_sliding.StoredSlidingState` and
    :class:`~streamnb.tables.state.stored_sessions.StoredSessionState`.
    """

    window: Any
    supports_delta: bool
    late: dict[int, int]
    late_windows: dict[int, int]

    @property
    def rows(self) -> Mapping[Any, Any]:
        """``(key, (start, end)) -> value``."""
        ...

    def update(
        self,
        dirty: Dirty[Any],
        key: Any,
        op: Callable[[Any, Any], Any],
        operand: Any,
        ts: float,
        partition: int,
        default: Callable[[], Any] | None,
    ) -> list[WindowRange] | None:
        """Apply ``op(value, operand)`` to the open windows of ``key`` at ``ts``; the missed windows if late."""
        ...

    def get(self, key: Any, window: tuple[float, float]) -> Any:
        """The value of ``key`` in ``window`` (``(start, end)``), or MISSING."""
        ...

    def window_at(self, key: Any, ts: float) -> tuple[float, float] | None:
        """The window a read at time ``ts`` picks (None: no such window)."""
        ...

    def items(self) -> Iterable[tuple[tuple[Any, tuple[float, float]], Any]]:
        """``((key, (start, end)), value)`` for every window kept."""
        ...

    def is_closed(self, key: Any, window: tuple[float, float]) -> bool:
        """True once the window has closed."""
        ...

    def keys(self) -> set[Any]:
        """Keys with at least one window."""
        ...

    def stream_time_of(self, partition: int | None = None) -> float:
        """Stream time of a partition (or the oldest), NEVER before any event."""
        ...

    def newest(self) -> float:
        """The newest event time seen on any partition."""
        ...

    def __len__(self) -> int:
        """Number of windows kept."""
        ...


class WindowHost(Protocol):
    """What a windowed view needs from its table (:class:`~streamnb.tables.table.Table`)."""

    name: str
    default: Callable[[], Any] | None
    version: int

    def dirty(self, txn: Transaction) -> Dirty[Any]:
        """The table's bookkeeping in ``txn`` (checks co-partitioning on first use)."""
        ...

    def outside_agent(self) -> TableWriteError:
        """The error for a write outside an agent."""
        ...

    def late_event(self, txn: Transaction, windows: list[WindowRange]) -> None:
        """The event ``txn`` is processing missed ``windows`` (all closed)."""
        ...

    def check_value(self, key: Any, value: Any) -> None:
        """Raise when ``value`` cannot be encoded for the changelog (the write is refused)."""
        ...

    def now(self) -> float:
        """The app's clock (``relative_to_now``, ``.now()``): the wall clock, or virtual time in a replay."""
        ...

    @property
    def max_event_time_skew(self) -> float | None:
        """How far an event time (of a field) may be ahead of :meth:`now` (``None``: no limit)."""
        ...


class WindowedTable:
    """A view of a table whose values are kept per key and time window.

    Made by ``app.Table(...).tumbling(size)`` or ``.hopping(size, step)``.

    >>> from streamnb import App
    >>> views = App("demo", broker="memory://").Table("views", default=int).tumbling(60, grace=10)
    >>> views.window
    TumblingWindow(size=60.0, expires=60.0, grace=10.0)
    """

    def __init__(self, table: WindowHost, state: WindowKeeper, relative_to: str | Any = "stream") -> None:
        self.table = table
        self.state = state
        self.window: Any = state.window
        self._relative = relative_to
        self._timestamp: RelativeTo = _relative_fn(relative_to, table)
        self._by_stream = relative_to == "stream"
        self._update = state.update

    def use_state(self, state: WindowKeeper) -> None:
        """Keep the windows in ``state`` from now on (the table's rows moved to another store)."""
        self.state, self._update = state, state.update

    # -- configuration -----------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The table's name."""
        return self.table.name

    @property
    def data(self) -> Mapping[Any, Any]:
        """``{(key, (start, end)): value}`` (a mapping)."""
        return self.state.rows

    @property
    def version(self) -> int:
        """Increases on every commit that changed the table."""
        return self.table.version

    @property
    def late_events(self) -> int:
        """Events that arrived after every window they belong to had closed (all partitions).

        They were written nowhere; see ``on_late`` and ``late_topic`` to route them.
        """
        return sum(self.state.late.values())

    def late_events_by_partition(self) -> dict[int, int]:
        """Late events per partition."""
        return dict(self.state.late)

    @property
    def late_windows(self) -> int:
        """Window updates refused because the window had closed (what Kafka Streams counts as dropped).

        A hopping event can miss some of its windows and still count in the
        others; this counts one per missed window.
        """
        return sum(self.state.late_windows.values())

    def stream_time(self, partition: int | None = None) -> float | None:
        """Stream time: the newest event time written on ``partition``.

        With ``partition=None``, the oldest stream time over the partitions
        that have one (what every partition has reached). ``None`` before
        the first event.
        """
        t = self.state.stream_time_of(partition)
        return None if t == NEVER else t

    def relative_to_stream(self) -> WindowedTable:
        """Place events by their message timestamp (the default)."""
        return WindowedTable(self.table, self.state, "stream")

    def relative_to_now(self) -> WindowedTable:
        """Place events by the app's clock when they are processed (virtual time in a replay)."""
        return WindowedTable(self.table, self.state, "now")

    def relative_to_field(self, field: Any) -> WindowedTable:
        """Place events by a Record field holding epoch seconds or a datetime.

        >>> import streamnb as faust
        >>> class PageView(faust.Record):
        ...     page: str
        ...     ts: float
        >>> app = faust.App("demo", broker="memory://")
        >>> views = app.Table("v", default=int).tumbling(60).relative_to_field(PageView.ts)
        """
        if not hasattr(field, "field"):
            raise ConfigurationError(f"relative_to_field() takes a Record field such as PageView.ts, got {field!r}")
        return WindowedTable(self.table, self.state, field)

    # -- access -----------------------------------------------------------------------------

    def __getitem__(self, key: Any) -> WindowSet:
        return WindowSet(key, self)

    def __setitem__(self, key: Any, value: Any) -> None:
        if isinstance(value, WindowSet):  # result of `table[k] += 1`: already applied
            return
        self.apply(key, replace, value)

    def __contains__(self, key: object) -> bool:
        has_key = getattr(self.state, "has_key", None)  # (windows in a store: a seek, not a scan)
        return bool(has_key(key)) if has_key is not None else key in self.state.keys()

    def __len__(self) -> int:
        return len(self.state)

    def keys(self) -> set[Any]:
        """Keys that have at least one window."""
        return self.state.keys()

    def items(self) -> Iterator[tuple[tuple[Any, tuple[float, float]], Any]]:
        """``((key, (start, end)), value)`` pairs."""
        return iter(self.state.items())

    # -- writes -----------------------------------------------------------------------------

    def apply(self, key: Any, op: Callable[[Any, Any], Any], operand: Any) -> None:
        """``value = op(value, operand)`` in every open window of the current event's time.

        What ``table[key] += n`` (and ``-=``, ``*=``, ...) does; call it from an agent.
        """
        txn = current_transaction()
        table = self.table
        if txn is None:
            raise table.outside_agent()
        if type(operand) not in PLAIN_VALUES:
            table.check_value(key, operand)
        msg = txn.message
        ts = msg[3] if self._by_stream else self._timestamp(txn)  # type: ignore[index]
        dirty = txn.dirty.get(table)  # type: ignore[call-overload]
        if dirty is None:
            dirty = table.dirty(txn)
        missed = self._update(dirty, key, op, operand, ts, msg[1], table.default)  # type: ignore[index]
        if missed is not None:
            table.late_event(txn, missed)

    def event_time(self, event: Any = None, *, stream: bool = False) -> float:
        """The time reads are relative to: of ``event``, of the event being processed, or the newest seen.

        With ``stream=True`` the message timestamp, else the time the table
        is relative to (a field, the wall clock). Outside an agent: the
        newest event time the table has seen (the wall clock before any).
        """
        if event is not None:
            return float(event.message.timestamp if stream else self._timestamp(_EventTxn(event)))
        txn = current_transaction()
        if txn is not None and txn.message is not None:
            if stream:
                return txn.message.timestamp
            return self._timestamp(txn)
        if self._relative == "now":
            return self.table.now()
        newest = self.state.newest()
        return newest if newest != NEVER else self.table.now()

    # -- time travel (see streamnb.tables.timetravel) ------------------------------------------

    def at(self, time: Any = None, *, offset: Any = None) -> Any:
        """The table as it was at ``time`` (awaitable; see ``Table.at``)."""
        return self.table.at(time, offset=offset)  # type: ignore[attr-defined]

    def history(self, key: Any, *, complete: bool = True) -> Any:
        """Every change of ``key``'s windows (awaitable; see ``Table.history``)."""
        return self.table.history(key, complete=complete)  # type: ignore[attr-defined]

    # -- views ------------------------------------------------------------------------------

    def as_dataframe(self, *, times: str = "datetime") -> pd.DataFrame:
        """One row per key and window: ``key, window_start, window_end, value, closed``.

        ``window_start``/``window_end`` are timezone-aware pandas timestamps
        (UTC, to the millisecond); ``times="epoch"`` gives them as epoch
        seconds (floats) instead. ``closed`` is True once stream time reached
        the window's end plus its grace.

        >>> from streamnb import App
        >>> views = App("demo", broker="memory://").Table("views", default=int).tumbling(60)
        >>> list(views.as_dataframe().columns)
        ['key', 'window_start', 'window_end', 'value', 'closed']
        >>> views.as_dataframe()["window_start"].dt.tz, views.as_dataframe(times="epoch")["window_start"].dtype
        (datetime.timezone.utc, dtype('float64'))
        """
        import pandas as pd

        check_times(times)
        state = self.state
        frame_rows = getattr(state, "frame_rows", None)  # (windows in a store: closed known as they are read)
        if frame_rows is not None:
            rows = list(frame_rows())
        else:
            rows = [(k, w[0], w[1], v, state.is_closed(k, w)) for (k, w), v in state.items()]
        rows.sort(key=lambda r: (str(r[0]), r[1]))
        df = pd.DataFrame(rows, columns=["key", "window_start", "window_end", "value", "closed"])
        df = df.astype({"window_start": "float64", "window_end": "float64"})
        return as_datetimes(df, ("window_start", "window_end")) if times == "datetime" else df

    def as_ansitable(
        self, title: str | None = None, sort: bool = False, *, key: str = "key", value: str = "value",
        sortkey: Callable[[Any], Any] | None = None,
    ) -> str:
        """The windows as a text table; ``key``/``value`` name those columns."""
        from ._text import text_table

        return text_table(
            self.as_dataframe(times="epoch"), title or self.table.name, sort=sort, key=key, value=value, sortkey=sortkey
        )

    def live(self, **options: Any) -> Any:
        """A widget showing the windows as a live DataFrame (see :mod:`streamnb.notebook`)."""
        return display.show("live_table", self, **options)

    def chart(self, **options: Any) -> Any:
        """A live Altair chart: window start on x, value on y, one series per key."""
        return display.show("live_chart", self, **options)

    def __repr__(self) -> str:
        estimate = getattr(self.state, "estimate", None)  # (windows in a store: no scan)
        rows = f"rows~{estimate()}" if estimate is not None else f"rows={len(self.state)}"
        return f"<WindowedTable {self.table.name!r} {self.window!r} {rows}>"


def _relative_fn(relative_to: Any, table: WindowHost) -> RelativeTo:
    now = table.now
    if relative_to == "stream":
        return lambda txn: txn.message.timestamp  # type: ignore[union-attr]
    if relative_to == "now":
        return lambda txn: now()
    field = relative_to.field

    def from_field(txn: _Current) -> float:
        value = txn.value
        raw = value[field] if isinstance(value, dict) else getattr(value, field)
        seconds = event_time(raw, f"field {field!r}")
        skew = table.max_event_time_skew
        if skew is not None and (problem := time_problem(seconds, now(), skew)) is not None:
            raise EventTimeError(f"field {field!r}: {problem.replace('its timestamp', 'its time', 1)}")
        return seconds

    return from_field


class _EventTxn:
    """Adapts an Event to what relative-time functions read from a transaction."""

    def __init__(self, event: Any) -> None:
        self.message = event.message
        self.value = event.value
