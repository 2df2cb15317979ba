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
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

from ..errors import PartitionMismatchError, TableWriteError
from ..transaction import MISSING, Transaction, current_transaction
from ..transport.base import TP, ProducerRecord

if TYPE_CHECKING:
    import pandas as pd

    from ..app import App
    from ..topics import Topic
    from .windowed import WindowedTable

__all__ = ["Table"]


def _hashable(obj: Any) -> Any:
    """JSON arrays back to tuples, so decoded keys can be dict keys."""
    if isinstance(obj, list):
        return tuple(_hashable(x) for x in obj)
    return obj


class Table(MutableMapping[Any, Any]):
    """A dict backed by a changelog topic. Create with :meth:`App.Table`.

    >>> counts = app.Table("counts", default=int)  # doctest: +SKIP
    >>> counts["home"]                              # doctest: +SKIP
    0
    """

    def __init__(
        self,
        app: App,
        name: str,
        *,
        default: Callable[[], Any] | None = None,
        partitions: int | None = None,
        key_type: Any = None,
        value_type: Any = None,
        key_serializer: str | None = None,
        value_serializer: str | None = None,
        on_window_close: Callable[..., Any] | None = None,
        help: str = "",
    ) -> None:
        self.app = app
        self.name = name
        self.default = default
        self.partitions = partitions
        self.key_type = key_type
        self.value_type = value_type
        self.on_window_close = on_window_close
        self.help = help
        self.data: dict[Any, Any] = {}
        """The table's contents (read freely; write through ``table[k] = v`` inside agents)."""
        self.version = 0
        """Increases on every commit that changed the table (live views watch it)."""
        self.window: WindowedTable | None = None
        """Set when the table was made windowed with ``tumbling``/``hopping``."""
        self._partition_of: dict[Any, int] = {}
        self._key_bytes: dict[Any, bytes] = {}
        self._recovered: set[int] = set()
        self._checked_topics: set[str] = set()
        self._recovering: dict[int, asyncio.Future[None]] = {}
        self.changelog: Topic = app._internal_topic(
            f"{app.id}-{name}-changelog",
            partitions=partitions,
            key_type=None,
            value_type=value_type,
            key_serializer=key_serializer or "json",
            value_serializer=value_serializer or "json",
            compacting=True,
        )

    def _adopt(self, old: Table) -> None:
        """Take over the state of a table defined earlier under the same name."""
        self.data = old.data
        self._partition_of = old._partition_of
        self._recovered = old._recovered
        self.version = old.version + 1

    # -- reads ------------------------------------------------------------------------------

    def __getitem__(self, key: Any) -> Any:
        try:
            return self.data[key]
        except KeyError:
            if self.default is not None:
                return self.default()
            raise

    def __contains__(self, key: object) -> bool:
        return key in self.data

    def __iter__(self) -> Iterator[Any]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def get(self, key: Any, default: Any = None) -> Any:
        return self.data.get(key, default)

    # -- writes -----------------------------------------------------------------------------

    def __setitem__(self, key: Any, value: Any) -> None:
        txn = current_transaction()
        if txn is None:
            raise self._outside()
        self._write(txn, key, value)

    def __delitem__(self, key: Any) -> None:
        txn = current_transaction()
        if txn is None:
            raise self._outside()
        if key not in self.data:
            raise KeyError(key)
        self._write(txn, key, MISSING)

    def _outside(self) -> TableWriteError:
        return TableWriteError(
            f"table {self.name!r} can only be written inside an agent, so the write goes to the "
            "changelog partition of the event being processed; send an event to a topic an agent "
            "reads and write the table there"
        )

    def _dirty(self, txn: Transaction) -> dict[Any, Any]:
        dirty = txn.dirty.get(self)
        if dirty is None:
            msg = txn.message
            if msg is None:
                raise TableWriteError(
                    f"table {self.name!r} was written before the agent read any event; "
                    "write tables while processing an event"
                )
            if msg.topic not in self._checked_topics:
                self._check_copartitioned(msg.topic)
            dirty = txn.dirty[self] = {}
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

    def _check_declared_partitions(self) -> None:
        """Raise early when ``partitions=`` disagrees with an existing changelog (called by ``app.start()``)."""
        actual = self.changelog._actual_partitions
        if self.partitions is not None and actual is not None and actual != self.partitions:
            raise PartitionMismatchError(
                f"table {self.name!r} is declared with partitions={self.partitions} but its changelog topic "
                f"{self.changelog.name!r} already exists with {actual} partitions: tables must be "
                f"co-partitioned with their source; create the table (and its source topics) with "
                f"partitions={actual}, or use a fresh app id to start the table over"
            )

    def _write(self, txn: Transaction, key: Any, value: Any) -> None:
        dirty = txn.dirty.get(self) or self._dirty(txn)
        data = self.data
        entry = dirty.get(key)
        partition = txn.message.partition  # type: ignore[union-attr]
        if entry is None:
            dirty[key] = [partition, data.get(key, MISSING)]
        else:
            entry[0] = partition
        if value is MISSING:
            data.pop(key, None)
        else:
            data[key] = value

    # -- commit, abort, recovery --------------------------------------------------------------

    def _before_commit(self, txn: Transaction) -> None:
        """Hook for windowed tables (expiry) right before the transaction commits."""

    def _after_commit(self) -> None:
        self.version += 1

    def _changelog_records(self, dirty: dict[Any, Any], timestamp: float) -> list[ProducerRecord]:
        data = self.data
        return self._encode_changes(
            ((key, partition, data.get(key, MISSING)) for key, (partition, _old) in dirty.items()), timestamp
        )

    def _encode_changes(self, changes: Iterable[tuple[Any, int, Any]], timestamp: float) -> list[ProducerRecord]:
        """Changelog records for ``(key, partition, value or MISSING)`` changes.

        Shared by plain and windowed tables; keeps the key-to-partition map
        and a cache of encoded keys up to date.
        """
        topic = self.changelog
        name = topic.name
        dumps_key = topic.key_codec.dumps
        dumps_value = topic.value_codec.dumps
        json_values = topic.value_serializer == "json"
        partition_of = self._partition_of
        key_cache = self._key_bytes
        if len(key_cache) > 200_000:
            key_cache.clear()
        new = tuple.__new__
        out = []
        for key, partition, value in changes:
            kb = key_cache.get(key)
            if kb is None:
                kb = key_cache[key] = dumps_key(key)
            if value is MISSING:
                vb = None
                partition_of.pop(key, None)
            else:
                partition_of[key] = partition
                vb = b"%d" % value if json_values and type(value) is int else dumps_value(value)  # int: JSON as is
            out.append(new(ProducerRecord, (name, partition, kb, vb, timestamp, ())))
        return out

    def _restore(self, dirty: dict[Any, Any]) -> None:
        data = self.data
        for key, (_partition, old) in dirty.items():
            if old is MISSING:
                data.pop(key, None)
            else:
                data[key] = old

    async def recover(self, partitions: Iterable[int] | None = None) -> int:
        """Rebuild the given partitions (default: all) from the changelog; returns records read."""
        transport = await self.app._connect()
        count = await self.changelog.declare()
        wanted = range(count) if partitions is None else [p for p in partitions if p < count]
        total = 0
        for p in wanted:
            if p in self._recovered:
                continue
            pending = self._recovering.get(p)
            if pending is not None:
                await pending
                continue
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._recovering[p] = fut
            try:
                total += await self._recover_partition(transport, p)
                self._recovered.add(p)
            finally:
                del self._recovering[p]
                fut.set_result(None)
        if total:
            self.version += 1
        return total

    async def _recover_partition(self, transport: Any, partition: int) -> int:
        tp = TP(self.changelog.name, partition)
        start = (await transport.beginning_offsets([tp]))[tp]
        end = (await transport.end_offsets([tp]))[tp]
        loads_key = self.changelog.key_codec.loads
        decode_value = self.changelog.decode_value
        data = self.data
        partition_of = self._partition_of
        read = 0
        while start < end:
            msgs = await transport.read(tp, start, end, 50_000)
            if not msgs:
                break
            for msg in msgs:
                key = _hashable(loads_key(msg.key)) if msg.key is not None else None
                if msg.value is None:
                    data.pop(key, None)
                    partition_of.pop(key, None)
                else:
                    data[key] = decode_value(msg.value)
                    partition_of[key] = partition
            read += len(msgs)
            start = msgs[-1].offset + 1
        self._recovered_hook()
        return read

    def _recovered_hook(self) -> None:
        """Hook for windowed tables to rebuild their indexes after recovery."""

    def _drop_partitions(self, partitions: set[int]) -> None:
        """Forget keys of partitions this worker no longer owns (Kafka rebalance)."""
        drop = [k for k, p in self._partition_of.items() if p in partitions]
        for key in drop:
            self.data.pop(key, None)
            del self._partition_of[key]
        self._recovered -= partitions
        if drop:
            self.version += 1

    # -- windowing --------------------------------------------------------------------------

    def tumbling(self, size: float, expires: float | None = None) -> WindowedTable:
        """Make this a table of tumbling windows of ``size`` seconds.

        >>> counts = app.Table("counts", default=int).tumbling(60, expires=3600)  # doctest: +SKIP
        """
        from .windowed import WindowedTable
        from .windows import TumblingWindow

        return WindowedTable(self, TumblingWindow(size, expires))

    def hopping(self, size: float, step: float, expires: float | None = None) -> WindowedTable:
        """Make this a table of hopping windows: ``size`` seconds long, one every ``step``.

        >>> counts = app.Table("counts", default=int).hopping(60, 10)  # doctest: +SKIP
        """
        from .windowed import WindowedTable
        from .windows import HoppingWindow

        return WindowedTable(self, HoppingWindow(size, step, expires))

    # -- views ------------------------------------------------------------------------------

    def as_dataframe(self) -> pd.DataFrame:
        """The table as a DataFrame with columns ``key`` and ``value``.

        >>> counts.as_dataframe()  # doctest: +SKIP
        """
        import pandas as pd

        items = list(self.data.items())
        if items and all(hasattr(v, "asdict") for _, v in items):
            rows = [{"key": k, **v.asdict()} for k, v in items]
            return pd.DataFrame(rows)
        return pd.DataFrame({"key": [k for k, _ in items], "value": [v for _, v in items]})

    def as_ansitable(self, title: str | None = None, sort: bool = True) -> str:
        """The table as a text table (for terminals and logs).

        >>> print(counts.as_ansitable())  # doctest: +SKIP
        """
        from ._text import text_table

        return text_table(self.as_dataframe(), title or self.name, sort=sort)

    def live(self, **options: Any) -> Any:
        """A widget showing the table as a live DataFrame (see :mod:`streamnb.notebook`)."""
        from ..notebook.views import live_table

        return live_table(self, **options)

    def chart(self, **options: Any) -> Any:
        """A live Altair chart of the table (see :mod:`streamnb.notebook`)."""
        from ..notebook.chart import live_chart

        return live_chart(self, **options)

    def __repr__(self) -> str:
        return f"<Table {self.name!r} rows={len(self.data)}>"

    # Identity, not contents: tables are dict keys of transactions (C-level slots, fast).
    __hash__ = object.__hash__  # type: ignore[assignment]
    __eq__ = object.__eq__  # type: ignore[assignment]
