"""Time travel: a table as it was at any moment, and every change of one key, read from its changelog.

A table that keeps its history (an app made with ``history=True``, the
default under a virtual clock: see :mod:`streamnb.tables.state.history`) writes
every change to its changelog with the event time of the change. Reading
the changelog back:

* ``await table.at(time=t)`` (or ``at(offset=...)``) rebuilds a read-only
  :class:`Snapshot` of the table as it was when processing reached ``t``:
  per changelog partition, every change up to the first one later than
  ``t``; windows are closed and expired as they were then;
* ``await table.history(key)`` is a DataFrame of every change of ``key``:
  its time, partition, changelog offset, old and new value.

This works on every broker while the changelog holds every record. Kafka
compacts changelogs and retention deletes old records; a gap in the offsets
shows that, and asking for a moment before it raises
:class:`~streamnb.errors.HistoryUnavailableError` saying so.

Example::

    snap = await counts.at(time=app.clock.start_time + 60)
    snap["/home"], snap.as_dataframe()
    await counts.history("/home")
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import ConfigurationError, HistoryUnavailableError, TableWriteError
from ..runtime import Runtime
from ..timeunits import as_datetimes, check_times
from ..topics import Topic
from ..transaction import MISSING, Transaction
from ..transport.base import TP, Message
from .recovery import hashable
from .state.base import Dirty, PlainState, TableState
from .state.event_time import STREAM_TIME_KEY
from .state.fixed import WindowedState
from .state.history import PlainHistoryState, StoredWindowedHistoryState, WindowedHistoryState
from .streamtime import StreamTimeTopic, value_of
from .windowed import WindowedTable
from .windows import WindowRange

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Snapshot", "TimeTravel", "TimeTravelHost", "changelog_log"]

READ_CHUNK = 50_000


class TimeTravelHost(Protocol):
    """What time travel needs from a table (:class:`~streamnb.tables.table.Table` provides it)."""

    name: str
    app: Runtime
    changelog: Topic[Any, Any]
    stream_times: StreamTimeTopic | None
    state: TableState
    window: WindowedTable | None
    default: Callable[[], Any] | None
    version: int
    history_kept: bool

    def use_state(self, state: TableState) -> None:
        """Keep rows in ``state`` from now on."""
        ...

    def reset_recovery(self) -> None:
        """Forget which partitions were recovered."""
        ...


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(sep=" ", timespec="milliseconds")


class _Log:
    """One changelog partition read from its start: records, and the first offset compaction removed."""

    def __init__(self, partition: int, messages: list[Message], gap: int | None, end: int) -> None:
        self.partition = partition
        self.messages = messages
        self.end = end
        """Where the log ends."""
        self.gap = gap
        """The first offset missing from the log (``None``: every record since offset 0 is there)."""


async def changelog_log(table: TimeTravelHost, partitions: list[int] | None = None) -> list[_Log]:
    """Every record of the table's changelog partitions, and where records are missing."""
    transport = await table.app.connect()
    count = await table.changelog.maybe_declare()
    wanted = range(count) if partitions is None else partitions
    out = []
    for p in wanted:
        tp = TP(table.changelog.name, p)
        start = (await transport.beginning_offsets([tp]))[tp]
        end = (await transport.end_offsets([tp]))[tp]
        gap: int | None = 0 if start > 0 else None
        expected = start
        messages: list[Message] = []
        while expected < end:
            chunk = await transport.read(tp, expected, end, READ_CHUNK)
            if not chunk:
                if gap is None:
                    gap = expected
                break
            for msg in chunk:
                if msg.offset != expected and gap is None:
                    gap = expected
                expected = msg.offset + 1
            messages += chunk
        out.append(_Log(p, messages, gap, end))
    return out


class TimeTravel:
    """What a table adds for time travel: ``at()``, ``history()`` and the history-keeping state.

    A mixin of :class:`~streamnb.tables.table.Table`.
    """

    history_kept: bool = False
    """True when every change goes to the changelog (``App(history=True)``, or a virtual clock)."""

    def keep_history(self: TimeTravelHost) -> None:
        """Write every change to the (uncompacted) changelog from now on, so ``at()`` can answer."""
        state = self.state
        if self.history_kept or type(state) is not PlainState:  # (set tables keep no history yet)
            return
        self.history_kept = True
        self.changelog.compacting = False
        kept = PlainHistoryState()
        kept.data.update(state.data)
        kept.partition_of.update(state.partition_of)
        self.use_state(kept)

    def with_history(self: TimeTravelHost, state: Any) -> Any:
        """``state`` (a new windowed state), as one that logs every change when history is kept.

        Tumbling and hopping windows keep their history; sliding and session
        windows not yet (``at()`` says so).
        """
        if not self.history_kept or type(state) is not WindowedState:
            return state
        kept = WindowedHistoryState(state.window)
        if state.partition_of:  # redefined with rows: keep them
            kept.stream_time.update(state.stream_time)
            for (key, start), partition in state.partition_of.items():
                kept.load((key, (start, state.store.end(start))), state.store.by_key[key][start], partition)
            kept.loaded()
        return kept

    def clear_state(self: TimeTravelHost) -> None:
        """Forget every row (a replay starting over); views of the table stay valid."""
        state = self.state
        partitions = set(range(self.changelog.partition_count))
        partitions.update(getattr(state, "partition_of", {}).values())
        partitions.update(getattr(state, "stream_time", {}))
        state.drop_partitions(partitions)
        rows = state.rows
        if isinstance(rows, dict):
            rows.clear()
        for counts in ("late", "late_windows"):
            found = getattr(state, counts, None)
            if isinstance(found, dict):
                found.clear()
        self.reset_recovery()
        self.version += 1

    async def at(
        self: TimeTravelHost, time: Any = None, *, offset: int | Mapping[int, int] | None = None
    ) -> Snapshot:
        """The table as it was at ``time`` (epoch seconds or a datetime), or before changelog ``offset``.

        ``offset`` is a changelog offset: an int for a one-partition table,
        else ``{partition: offset}`` (partitions left out are taken whole).
        Raises :class:`HistoryUnavailableError` when the changelog lacks part
        of that past.

        >>> snap = await counts.at(time=app.clock.start_time + 60)  # doctest: +SKIP
        >>> snap.as_dataframe()  # doctest: +SKIP
        """
        _require_history(self)
        if (time is None) == (offset is None):
            raise ConfigurationError("at() takes a time or an offset=, exactly one of them")
        logs = await changelog_log(self)
        limit = _time_limit(time) if time is not None else None
        offsets = _offset_limits(self, offset, len(logs)) if offset is not None else {}
        rebuild = _Rebuild(self)
        cuts: dict[int, int] = {}
        for log in logs:
            p = log.partition
            stop = offsets.get(p)
            cut = rebuild.apply(log, limit, stop)
            end = cut if cut is not None else log.end
            if stop is not None:
                end = min(stop, log.end)
            # A compacted log still holds the newest value of every key: its end is exact, the past is not.
            if log.gap is not None and log.gap < end < log.end:
                raise _compacted(self.name, p, log.gap, "its state at that moment")
            cuts[p] = end
            if rebuild.windowed and self.stream_times is not None and (limit is not None or stop is None):
                transport = await self.app.connect()
                rebuild.stream_times(p, await self.stream_times.messages(transport, p), limit)
        return Snapshot(self.name, rebuild.finish(), self.default, time=limit, offsets=cuts)

    async def history(
        self: TimeTravelHost, key: Any, *, complete: bool = True, times: str = "datetime"
    ) -> pd.DataFrame:
        """Every change of ``key``: ``time, partition, offset, old_value, new_value`` (windowed: per window).

        ``time`` is the event time of the change (UTC); a windowed table's
        rows also have ``window_start`` and ``window_end``. They are pandas
        timestamps in UTC, or epoch seconds with ``times="epoch"``. A deletion has
        ``new_value`` None. With ``complete=False`` a changelog that
        compaction shortened gives the changes it still holds instead of
        raising :class:`HistoryUnavailableError`.

        >>> await counts.history("/home")  # doctest: +SKIP
        """
        import pandas as pd

        check_times(times)
        _require_history(self)
        windowed = self.window is not None
        loads_key = self.changelog.key_codec.loads
        decode_value = self.changelog.decode_value
        found: list[tuple[float, int, int, Any, Any]] = []
        for log in await changelog_log(self):
            seen: set[Any] = set()
            for msg in log.messages:
                if msg.key is None:
                    continue
                ck = hashable(loads_key(msg.key))
                if windowed:
                    if not (isinstance(ck, tuple) and len(ck) == 2 and ck[0] == key):
                        continue
                elif ck != key:
                    continue
                if complete and log.gap is not None and log.gap < msg.offset and ck not in seen:
                    raise _compacted(self.name, log.partition, log.gap, f"the changes of {key!r} before it")
                seen.add(ck)
                found.append((msg.timestamp, log.partition, msg.offset, ck, msg.value))
        found.sort(key=lambda f: f[:3])  # a key written from several partitions: in time order
        rows: list[tuple[Any, ...]] = []
        last: dict[Any, Any] = {}
        for ts, partition, offset, ck, raw in found:
            new = None if raw is None else decode_value(raw)
            old = last.get(ck)
            last[ck] = new
            window = tuple(ck[1]) if windowed else ()
            rows.append((ts, *window, partition, offset, old, new))
        columns = ["time", *(["window_start", "window_end"] if windowed else []), "partition", "offset"]
        names = [*columns, "old_value", "new_value"]
        df = pd.DataFrame({  # values as objects: None stays None (no NaN in a column of ints)
            name: pd.Series([r[i] for r in rows], dtype=object if name.endswith("_value") else None)
            for i, name in enumerate(names)
        })
        if times == "epoch":
            return df.astype({name: "float64" for name in columns if name not in ("partition", "offset")})
        return as_datetimes(df, [name for name in columns if name not in ("partition", "offset")])


class _Rebuild:
    """A table's state rebuilt from its changelog, up to a moment (what ``at()`` does, per partition)."""

    def __init__(self, table: TimeTravelHost) -> None:
        self.state: Any = PlainState() if table.window is None else WindowedState(table.window.window)
        self.windowed = isinstance(self.state, WindowedState)
        self.loads_key = table.changelog.key_codec.loads
        self.decode_value = table.changelog.decode_value
        self.newest: dict[int, float] = {}
        """Per partition: the newest event time of the rows taken (how far stream time went with them)."""

    def apply(self, log: _Log, limit: float | None, stop: int | None) -> int | None:
        """Apply ``log``'s records up to the first later than ``limit`` or at offset ``stop``: its offset, or None."""
        state, windowed, p = self.state, self.windowed, log.partition
        for msg in log.messages:
            if (limit is not None and msg.timestamp > limit) or (stop is not None and msg.offset >= stop):
                return msg.offset
            key = hashable(self.loads_key(msg.key)) if msg.key is not None else None
            if msg.value is None:
                state.load(key, MISSING, p)
            elif windowed and key == STREAM_TIME_KEY:  # written by an older version
                state.load(key, json.loads(msg.value), p)
            else:
                state.load(key, self.decode_value(msg.value), p)
                if windowed and msg.timestamp > self.newest.get(p, float("-inf")):
                    self.newest[p] = msg.timestamp
        return None

    def stream_times(self, partition: int, messages: list[Message], limit: float | None) -> None:
        """Apply the records of the stream-time topic (stamped with their value) up to ``limit``."""
        for msg in messages:
            if limit is None or msg.timestamp <= limit:
                self.state.load_stream_time_record(partition, value_of(msg))

    def finish(self) -> Any:
        """The state, its indexes rebuilt and (windowed) the windows expired by then gone."""
        state = self.state
        if self.windowed:
            for p, t in self.newest.items():  # stream time as far as the changes taken went
                if t > state.stream_time.get(p, float("-inf")):
                    state.stream_time[p] = t
        state.loaded()
        if self.windowed:
            state.before_commit(None, Dirty())  # windows expired by then go, as at the commit after
        return state


def _require_history(table: TimeTravelHost) -> None:
    if not table.history_kept:
        raise HistoryUnavailableError(
            f"table {table.name!r} keeps one changelog record per key and commit, not every change, "
            "so its past cannot be rebuilt: make the app with history=True (replays, "
            "App(..., clock='virtual'), keep history by default)"
        )
    if table.window is not None and not isinstance(table.state, (WindowedHistoryState, StoredWindowedHistoryState)):
        raise HistoryUnavailableError(
            f"table {table.name!r}: {table.window.window.kind} windows do not keep every change yet, so "
            "their past cannot be rebuilt; tumbling and hopping windows (and plain tables) can"
        )


def _compacted(name: str, partition: int, gap: int, what: str) -> HistoryUnavailableError:
    return HistoryUnavailableError(
        f"the changelog of table {name!r} (partition {partition}) no longer holds offset {gap} and some "
        f"after it: compaction or retention removed them, so {what} cannot be rebuilt. Ask for a later "
        "moment, or replay the recording (history is kept from the start of a replay)"
    )


def _time_limit(time: Any) -> float:
    if isinstance(time, datetime) or hasattr(time, "timestamp"):
        return float(time.timestamp())
    if isinstance(time, bool) or not isinstance(time, (int, float)):
        raise ConfigurationError(f"at(time=...) takes epoch seconds or a datetime, got {time!r}")
    return float(time)


def _offset_limits(table: TimeTravelHost, offset: int | Mapping[int, int], count: int) -> dict[int, int]:
    if isinstance(offset, Mapping):
        return {int(p): int(o) for p, o in offset.items()}
    if isinstance(offset, bool) or not isinstance(offset, int):
        raise ConfigurationError(f"at(offset=...) takes an int or {{partition: offset}}, got {offset!r}")
    if count != 1:
        raise ConfigurationError(
            f"table {table.name!r} has {count} changelog partitions: give at(offset={{partition: offset}})"
        )
    return {0: offset}


class Snapshot(Mapping[Any, Any]):
    """A read-only table as it was at one moment (what ``table.at()`` returns).

    Reads as the table does: ``snap[key]``, ``len(snap)``, ``snap.as_dataframe()``;
    a windowed snapshot gives windows per key (``snap[key].now()`` is the
    window holding the snapshot's time).

    >>> snap = await counts.at(time=1_700_000_060)  # doctest: +SKIP
    >>> snap["/home"]  # doctest: +SKIP
    """

    def __init__(
        self, name: str, state: Any, default: Callable[[], Any] | None, *, time: float | None, offsets: dict[int, int]
    ) -> None:
        self.name = name
        self.state = state
        self.default = default
        self.time = time
        """The moment asked for (epoch seconds), or ``None`` when asked by offset."""
        self.offsets = offsets
        """Per changelog partition: the first offset not taken."""
        self.version = 0
        self.window: WindowedTable | None = (
            WindowedTable(self, state) if isinstance(state, WindowedState) else None
        )

    # -- reads --------------------------------------------------------------------------------

    def __getitem__(self, key: Any) -> Any:
        if self.window is not None:
            return self.window[key]
        try:
            return self.state.rows[key]
        except KeyError:
            if self.default is not None:
                return self.default()
            raise

    def __iter__(self) -> Iterator[Any]:
        if self.window is not None:
            return iter(self.window.keys())
        return iter(self.state.rows)

    def __len__(self) -> int:
        return len(self.state.rows)

    def as_dataframe(self, *, times: str | None = None) -> pd.DataFrame:
        """The snapshot as the table's ``as_dataframe()`` would have shown it then (``times=`` as there)."""
        import pandas as pd

        if self.window is not None:
            return self.window.as_dataframe(times=times or "datetime")
        if times is not None:
            raise ConfigurationError(f"as_dataframe(times={times!r}) applies to windowed tables; this one is not")
        items = list(self.state.rows.items())
        if items and all(hasattr(v, "asdict") for _, v in items):
            return pd.DataFrame([{"key": k, **v.asdict()} for k, v in items])
        return pd.DataFrame({"key": [k for k, _ in items], "value": [v for _, v in items]})

    # -- what a windowed view needs from its host (a snapshot is read-only) ------------------------

    def dirty(self, txn: Transaction) -> Dirty[Any]:
        """Writes are refused."""
        raise self.outside_agent()

    def outside_agent(self) -> TableWriteError:
        """The error for any write."""
        return TableWriteError(f"a snapshot of table {self.name!r} is read-only; write the table itself")

    def late_event(self, txn: Transaction, windows: list[WindowRange]) -> None:
        """Never called (no writes)."""

    def check_value(self, key: Any, value: Any) -> None:
        """Writes are refused."""
        raise self.outside_agent()

    max_event_time_skew = None
    """(A snapshot is never written.)"""

    def now(self) -> float:
        """The snapshot's moment (what ``snap[key].now()`` reads)."""
        if self.time is not None:
            return self.time
        newest = self.state.newest() if isinstance(self.state, WindowedState) else float("-inf")
        return newest if newest != float("-inf") else 0.0

    def __repr__(self) -> str:
        when = _when(self.time) if self.time is not None else f"offsets {self.offsets}"
        return f"<Snapshot of {self.name!r} at {when} rows={len(self.state.rows)}>"
