"""Tables: dicts whose every write goes to a compacted changelog topic.

Example::

    counts = app.Table("page_counts", default=int)

    @app.agent(page_views)
    async def count(views):
        async for view in views.group_by(PageView.page):
            counts[view.page] += 1

Each write is recorded in ``<app id>-<table>-changelog`` on the partition of
the event being processed (so a table is co-partitioned with the stream that
writes it), in the same commit as the agent's offsets. A restarted worker
rebuilds the table from its changelog before its agents take new events.

A table keeps its rows in a state object (:mod:`streamnb.tables.state.base`):
plain, or windowed once ``tumbling()``/``hopping()`` made it so; the table
itself does what every table does (changelog, encoding, recovery, commits).
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any, Generic, TypeVar

from .. import naming
from ..errors import ConfigurationError, PartitionMismatchError, TableWriteError
from ..runtime import Runtime
from ..topics import Topic
from ..transaction import MISSING, Transaction, current_transaction
from ..transport.base import ProducerRecord
from .changelog import PLAIN_VALUES, ChangelogEncoder
from .changes import ChangeFeed
from .kinds import WindowKinds
from .persistence import TableStore
from .progress import RestoreProgress, RestoreTracker, StandbyProgress
from .recovery import Recovering
from .routing import event_of, final_record, late_record
from .state.base import Closed, Dirty, PlainState, TableState
from .state.event_time import EventTimeState
from .state.history import PlainHistoryState
from .state.stored import StoredState
from .state.window_cache import WindowCache
from .state.windowing import windowed_state
from .storedkinds import stored_windows
from .stores import MEMORY, ROCKSDB, check_store
from .streamtime import StreamTimeTopic
from .timetravel import TimeTravel
from .views import TableViews
from .windowed import WindowedTable
from .windows import WindowRange

__all__ = ["Table"]

logger = logging.getLogger("streamnb")

K = TypeVar("K")
V = TypeVar("V")


class Table(Recovering, TimeTravel, TableViews, WindowKinds, MutableMapping[K, V], Generic[K, V]):
    """A dict backed by a changelog topic. Create with :meth:`App.Table`.

    >>> from streamnb import App
    >>> counts = App("demo", broker="memory://").Table("counts", default=int)
    >>> counts["home"], counts.changelog.name
    (0, 'demo-counts-changelog')
    """

    def __init__(
        self,
        app: Runtime,
        name: str,
        *,
        default: Callable[[], Any] | None = None,
        partitions: int | None = None,
        key_type: Any = None,
        value_type: Any = None,
        key_serializer: str | None = None,
        value_serializer: str | None = None,
        on_window_close: Callable[..., Any] | None = None,
        on_late: Callable[..., Any] | None = None,
        late_topic: Topic[Any, Any] | str | bool | None = None,
        emit_final: Topic[Any, Any] | str | None = None,
        help: str = "",
        store: str | None = None,
    ) -> None:
        self.app = app
        self.name = name
        self.default = default
        self.partitions = partitions
        self.key_type = key_type
        self.value_type = value_type
        self.on_window_close = on_window_close
        """``f((key, (start, end)), value)``, called once per window when it closes (after the commit)."""
        self.on_late = on_late
        """``f(event, windows)``, called for an event that arrived after all its windows closed."""
        self.help = help
        self.state: TableState = PlainState()
        """The table's contents (read freely; write through ``table[k] = v`` inside agents)."""
        self.version = 0
        """Increases on every commit that changed the table (live views watch it)."""
        self.window: WindowedTable | None = None
        """The windowed view once the table was made windowed with ``tumbling``/``hopping``."""
        self._recovered: set[int] = set()
        self._checked_topics: set[str] = set()
        self._recovering: dict[int, asyncio.Future[None]] = {}
        self._closing: dict[int, list[Closed]] = {}
        self.changelog: Topic[Any, Any] = app.internal_topic(
            naming.changelog_topic(app.id, name),
            partitions=partitions,
            key_type=None,
            value_type=value_type,
            key_serializer=key_serializer or "json",
            value_serializer=value_serializer or "json",
            compacting=True,
        )
        self._encoder = ChangelogEncoder(self.changelog, name)
        self.store = check_store(app.store if store is None else store)
        """Where the rows live: ``memory://`` or ``rocksdb://`` (see :mod:`streamnb.tables.stores`)."""
        self.store_named = store is not None
        """False when the table took the app's store (it follows ``app.conf.store = "memory://"`` until started)."""
        self.persistence: TableStore | None = None
        """The RocksDB side of a ``rocksdb://`` table, else None."""
        self.restore_tracker = RestoreTracker(name)
        self.changes = ChangeFeed()  # (the keys each commit wrote, for live views)
        if self.store == ROCKSDB:
            self.persistence = TableStore(app, name, self.changelog, self.restore_tracker)
            self.state = self.persistence.state
        self.data: MutableMapping[Any, Any] = self.state.rows
        self.stream_times: StreamTimeTopic | None = None
        """Where a windowed table keeps its stream time (``<app id>-<table>-streamtime``), else None."""
        self.late_topic: Topic[Any, Any] | None = self._late_topic(late_topic)
        """Where late events go (``late_topic=True``: ``<app id>-<table>-late``), or None."""
        self.emit_final: Topic[Any, Any] | None = (
            None if emit_final is None else app.resolve_topic(emit_final)
        )
        """Where one record per closed window goes (``{key, window_start, window_end, value}``), or None."""

    def _late_topic(self, late_topic: Topic[Any, Any] | str | bool | None) -> Topic[Any, Any] | None:
        if late_topic is None or late_topic is False:
            return None
        if late_topic is True:
            return self.app.internal_topic(
                naming.late_topic(self.app.id, self.name), key_serializer="raw", value_serializer="raw"
            )
        return self.app.resolve_topic(late_topic)

    def topics(self) -> list[Topic[Any, Any]]:
        """The topics the table writes: its changelog, and its late and final-results topics if any."""
        return [t for t in (self.changelog, self.late_topic, self.emit_final) if t is not None]

    def take_over(self, old: Table[Any, Any]) -> None:
        """Keep the contents of ``old``, a table of the same name this one redefines.

        A table redefined with another ``store=`` keeps nothing: it is read from its changelog again.
        """
        if (self.persistence is None) != (old.persistence is None):
            if old.persistence is not None:
                old.persistence.close()
            self.version = old.version + 1
            return
        if old.persistence is not None:
            self.persistence = old.persistence
        self.restore_tracker = old.restore_tracker
        self.use_state(old.state)
        self._recovered = old.recovered_partitions
        self.version = old.version + 1

    def keep_in_memory(self) -> None:
        """Keep the rows in memory from now on (``app.conf.store = "memory://"`` before the app starts).

        For a table that named no ``store=`` and took the app's ``rocksdb://``.
        """
        persistence, window = self.persistence, getattr(self, "window", None)
        if persistence is None:
            return
        persistence.close()
        self.persistence, self.store = None, MEMORY
        state = persistence.held or (PlainHistoryState() if self.history_kept else PlainState())
        # (a state held in memory stays as it is)
        if isinstance(persistence.rows, WindowCache) and window is not None:
            state = windowed_state(self.name, state, window.window, None, self.default, self.value_type)
            window.use_state(state)
        self.use_state(state)

    def use_state(self, state: TableState) -> None:
        """Keep rows in ``state`` from now on (how a table becomes windowed)."""
        if self.persistence is not None:
            self.persistence.hold(state)  # (kept in memory, loaded from the stores at a restart)
        self.state = state
        self.data = state.rows  # type: ignore[assignment]

    @property
    def changelog_topic(self) -> Topic[Any, Any]:
        """The changelog topic (Faust's name for :attr:`changelog`)."""
        return self.changelog

    @property
    def source_topics(self) -> set[str]:
        """Names of the topics whose events have written this table (so far, in this process)."""
        return set(self._checked_topics)

    @property
    def restore_progress(self) -> dict[int, RestoreProgress]:
        """``{partition: RestoreProgress(done, remaining)}`` of the partitions being restored now.

        Records read from the changelog and still to read; empty when no
        restore is under way (on ``rocksdb://`` a restart reads only the
        changelog's tail, so the figures are small).

        >>> from streamnb import App
        >>> App("demo", broker="memory://").Table("counts", default=int).restore_progress
        {}
        """
        return self.restore_tracker.progress

    @property
    def recovered_partitions(self) -> set[int]:
        """Partitions rebuilt from the changelog (and owned) by this worker."""
        return self._recovered

    @property
    def standby_progress(self) -> dict[int, StandbyProgress]:
        """``{partition: StandbyProgress(offset, behind)}`` of the standby replicas this worker keeps of the table.

        On Kafka with ``table_standby_replicas`` (``rocksdb://`` tables):
        the changelog offset each standby store has read to, and how many
        offsets it is behind the changelog's end as the follower last saw
        it (every half second once caught up; what a takeover would read
        now). Empty elsewhere.

        >>> from streamnb import App
        >>> App("demo", broker="memory://").Table("counts", default=int).standby_progress
        {}
        """
        return {} if self.persistence is None else self.persistence.standby_progress()

    # -- reads ------------------------------------------------------------------------------

    def __getitem__(self, key: K) -> V:
        try:
            return self.data[key]  # type: ignore[no-any-return]
        except KeyError:
            if self.default is not None:
                return self.default()  # type: ignore[no-any-return]
            raise

    def __contains__(self, key: object) -> bool:
        return key in self.data

    def __iter__(self) -> Iterator[K]:
        return iter(self.data)

    def estimated_len(self) -> int:
        """About ``len(table)``, without a scan of a large table: exact in memory and below :attr:`exact_below`
        rows, else RocksDB's estimate (which counts overwritten rows until a compaction).

        >>> from streamnb import App
        >>> App("demo", broker="memory://").Table("t", default=int).estimated_len()
        0
        """
        if isinstance(self.state, (StoredState, WindowCache)):
            estimate = self.state.estimate()
            return len(self) if estimate <= self.exact_below else estimate
        return len(self)

    exact_below: int = 10_000
    """:meth:`estimated_len` counts a stored table exactly up to this estimate (a scan of that many rows)."""

    def __len__(self) -> int:
        return len(self.data)

    def get(self, key: K, default: Any = None) -> Any:
        """The value of ``key``, or ``default`` (the table's own default is not used)."""
        return self.data.get(key, default)

    # -- writes -----------------------------------------------------------------------------

    def __setitem__(self, key: K, value: V) -> None:
        txn = current_transaction()
        if txn is None:
            raise self.outside_agent()
        if type(value) not in PLAIN_VALUES:
            self.check_value(key, value)
        msg = txn.message
        self._plain_state().write(self.dirty(txn), key, value, msg[1], msg[3])  # type: ignore[index]

    def __delitem__(self, key: K) -> None:
        txn = current_transaction()
        if txn is None:
            raise self.outside_agent()
        if key not in self.data:
            raise KeyError(key)
        msg = txn.message
        self._plain_state().write(self.dirty(txn), key, MISSING, msg[1], msg[3])  # type: ignore[index]

    def keep_history(self) -> None:
        """Write every change to the (uncompacted) changelog from now on, so ``at()`` can answer.

        On ``rocksdb://`` a plain table's rows stay in the stores (each key's newest value): a restart
        loads nothing; ``at()`` and ``history()`` read the changelog.
        """
        persistence = self.persistence
        if type(self.state) is StoredState and persistence is not None and not self.history_kept:
            self.history_kept = True
            self.changelog.compacting = False
            self.use_state(persistence.history())
            return
        super().keep_history()

    def _plain_state(self) -> PlainState | StoredState:
        state = self.state
        if not isinstance(state, (PlainState, StoredState)):
            raise ConfigurationError(
                f"table {self.name!r} is windowed: write it through its windowed view "
                f"(the object .tumbling()/.hopping() returned), e.g. `views[key] += 1`"
            )
        return state

    def check_value(self, key: Any, value: Any) -> None:
        """Raise :class:`~streamnb.errors.SerializationError` naming table and key when ``value``
        cannot be encoded for the changelog (and the store): the write is refused, nothing is committed.
        """
        self._encoder.check(key, value)

    def now(self) -> float:
        """The app's clock (the wall clock, or virtual time in a replay)."""
        return self.app.now()

    @property
    def max_event_time_skew(self) -> float | None:
        """The app's ``max_event_time_skew``: how far an event time may be ahead of :meth:`now`."""
        return self.app.max_event_time_skew

    def outside_agent(self) -> TableWriteError:
        """The error for a write outside an agent (what to do instead)."""
        return TableWriteError(
            f"table {self.name!r} can only be written inside an agent, so the write goes to the "
            "changelog partition of the event being processed; send an event to a topic an agent "
            "reads and write the table there"
        )

    def dirty(self, txn: Transaction) -> Dirty[Any]:
        """This table's bookkeeping in ``txn``, created (and co-partitioning checked) on first use."""
        dirty: Dirty[Any] | None = txn.dirty.get(self)
        if dirty is None:
            msg = txn.message
            if msg is None:
                raise TableWriteError(
                    f"table {self.name!r} was written before the agent read any event; "
                    "write tables while processing an event"
                )
            if msg.topic not in self._checked_topics:
                self._check_copartitioned(msg.topic)
            dirty = txn.dirty[self] = Dirty()
        return dirty

    def _check_copartitioned(self, topic_name: str) -> None:
        topic = self.app.topics.get(topic_name)
        if topic is not None and topic.partition_count != self.changelog.partition_count:
            raise PartitionMismatchError(
                f"table {self.name!r} has {self.changelog.partition_count} partitions but topic "
                f"{topic_name!r}, whose events write it, has {topic.partition_count}: tables must be "
                f"co-partitioned with their source; create the table with partitions={topic.partition_count} "
                "(or use a fresh app id if its changelog already exists with another count)"
            )
        self._checked_topics.add(topic_name)

    def check_partitions(self) -> None:
        """Raise when ``partitions=`` disagrees with an existing changelog (``app.start()`` calls it)."""
        actual = self.changelog.partition_count if self.changelog.declared else None
        if self.partitions is not None and actual is not None and actual != self.partitions:
            raise PartitionMismatchError(
                f"table {self.name!r} is declared with partitions={self.partitions} but its changelog topic "
                f"{self.changelog.name!r} already exists with {actual} partitions: tables must be "
                f"co-partitioned with their source; create the table (and its source topics) with "
                f"partitions={actual}, or use a fresh app id to start the table over"
            )

    def late_event(self, txn: Transaction, windows: list[WindowRange]) -> None:
        """The event being processed missed ``windows``, all closed: route it (it is counted already)."""
        msg = txn.message
        if msg is None:
            return
        if self.late_topic is not None:
            txn.records.append(late_record(self.late_topic, self.name, msg, windows))
        if self.on_late is not None:
            event = event_of(self.app.topics, msg, txn.value)
            self._call("on_late", self.on_late, event, [tuple(w) for w in windows])

    def _call(self, what: str, callback: Callable[..., Any], *args: Any) -> None:
        try:
            out = callback(*args)
            if out is not None and inspect.isawaitable(out):
                self.app.spawn(out, f"{what}({self.name})")  # type: ignore[arg-type]
        except Exception:
            logger.exception("%s of table %r failed for %r", what, self.name, args[0])

    # -- the commit protocol (streamnb.transaction.CommitParticipant) -------------------------

    def before_commit(self, txn: Transaction) -> None:
        """Close and expire windows due at this commit; queue their final results."""
        dirty: Dirty[Any] | None = txn.dirty.get(self)
        if dirty is None:
            return
        closed = self.state.before_commit(txn, dirty)
        if not closed:
            return
        self._closing[id(dirty)] = closed
        final = self.emit_final
        if final is not None:
            for c in closed:  # with the transaction of the input partition whose events made the window
                txn.records_for(c.partition).append(final_record(final, c))

    def changelog_records(self, dirty: Dirty[Any], timestamp: float) -> list[ProducerRecord]:
        """One changelog record per row ``dirty`` changed, then stream-time records (to a windowed table's own topic).

        Each record carries the event time of the last event that changed the
        row (``timestamp``, the commit's wall-clock time, when there is none).
        """
        state = self.state
        records = self._encoder.records(state.changes(dirty), timestamp)
        if dirty.stream_time and isinstance(state, EventTimeState):
            records += self._encoder.stream_time_records(state.stream_time_changes(dirty), timestamp)
        if self.persistence is not None:
            self.persistence.committing(records)
        return records

    def changelog_steps(self, dirty: Dirty[Any], timestamp: float, size: int) -> Iterator[list[ProducerRecord]]:
        """:meth:`changelog_records` in lists of at most ``size`` (a commit yields to the loop between two)."""
        state = self.state
        changes = state.changes(dirty)
        persistence = self.persistence
        written: list[ProducerRecord] = []
        while chunk := list(itertools.islice(changes, size)):
            records = self._encoder.records(chunk, timestamp)
            if persistence is not None:
                written += records
            yield records
        if dirty.stream_time and isinstance(state, EventTimeState):
            times = self._encoder.stream_time_records(state.stream_time_changes(dirty), timestamp)
            if persistence is not None:
                written += times  # (kept in the stores with the rows)
            yield times
        if persistence is not None:
            persistence.committing(written)

    def restore(self, dirty: Dirty[Any]) -> None:
        """Undo the writes ``dirty`` records."""
        self._closing.pop(id(dirty), None)
        self.state.restore(dirty)
        if self.persistence is not None:
            self.persistence.rolled_back()

    def after_commit(self, dirty: Dirty[Any] | None = None) -> None:
        """The changes are durable: bump the version, call ``on_window_close`` for windows that closed."""
        self.version += 1
        if self.persistence is not None:
            self.persistence.committed()
        self.state.after_commit()
        closed = None if dirty is None else self._closing.pop(id(dirty), None)
        self.changes.committed(() if dirty is None else dirty.rows)
        callback = self.on_window_close
        if closed and callback is not None:
            for c in closed:
                self._call("on_window_close", callback, (c.key, c.window), c.value)

    # -- windowing (the kinds' constructors are in tables/kinds.py) --------------------------

    def _windowed(self, window: Any, merge: Callable[[Any, Any], Any] | None = None) -> WindowedTable:
        state: Any = None if self.persistence is None else stored_windows(
            self.persistence, self.name, self.state, window, merge, self.default, self.value_type, self.history_kept)
        if state is None:
            state = windowed_state(self.name, self.state, window, merge, self.default, self.value_type)
            state = self.with_history(state)
        if state is not self.state:
            self.use_state(state)
        if self.stream_times is None:  # (compacted unless the table keeps its history, as its changelog)
            self.stream_times = StreamTimeTopic.for_table(self.app, self.name, compacting=self.changelog.compacting)
            self._encoder.stream_times = self.stream_times
        self.window = WindowedTable(self, state)
        return self.window

    def __repr__(self) -> str:
        if isinstance(self.state, (StoredState, WindowCache)):
            return f"<Table {self.name!r} rows~{self.state.estimate()} store={self.store}>"
        return f"<Table {self.name!r} rows={len(self.data)}>"

    # Identity, not contents: tables are dict keys of transactions (C-level slots, fast).
    __hash__ = object.__hash__
    __eq__ = object.__eq__

