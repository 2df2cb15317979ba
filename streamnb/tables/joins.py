"""Table–table joins: ``left.join(right, how="inner" | "left" | "outer", emit=topic)`` for two tables with ``source=``.

The result is a read-only table of ``(left, right)`` pairs per key, updated as
either side changes, exactly as Kafka Streams' KTable–KTable joins forward
updates with caching off (:class:`TableJoinRule`):

- **inner**: an update of one side emits a pair when the other side has the
  key; a deletion of one side emits a tombstone when the other side has the
  key (even for a key that had no result); nothing when the other side has not.
- **left**: an update of the left side emits ``(left, right or None)``; its
  deletion a tombstone when the right side has the key or the left side had
  it. An update of the right side emits ``(left, right or None)`` when the
  left side has the key, else nothing.
- **outer**: an update emits ``(left or None, right or None)``; a deletion
  when the other side has not the key emits a tombstone if the deleted side
  had it, else nothing.
- A result's timestamp is the larger of the update's and the other side's
  stored one.

The joined table reads both topics itself, partition by partition, together
in timestamp order (the left topic first at equal timestamps), as they grow.
With ``emit=topic`` each change is also sent there as ``{"left": ..., "right":
...}`` (a tombstone for a deletion). At a start both topics are read to their
end before anything is sent: ``emit=`` gets the changes made while the app
runs.

>>> rule = TableJoinRule("left")
>>> rule.update(LEFT, "k", 1, "ann"), rule.update(RIGHT, "k", 5, "paris"), rule.update(RIGHT, "k", 6, None)
(('k', 1, ('ann', None)), ('k', 5, ('ann', 'paris')), ('k', 6, ('ann', None)))
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..errors import ConfigurationError, PartitionMismatchError, TableWriteError
from ..topics import Topic
from ..transaction import MISSING
from ..transport.base import TP, Message, Transport
from .recovery import hashable
from .stores import MEMORY
from .table import Table

__all__ = ["LEFT", "RIGHT", "TOMBSTONE", "JoinedTable", "TableJoinRule"]

logger = logging.getLogger("streamnb")

LEFT = 0
RIGHT = 1
TOMBSTONE: Any = None
"""What an emitted change carries for a deleted result."""

Change = tuple[Any, int, Any]  # key, timestamp (ms), (left, right) or TOMBSTONE


class TableJoinRule:
    """Both sides' latest values (with timestamps) and Kafka Streams' forwarding rule (module docstring)."""

    def __init__(self, how: str) -> None:
        if how not in ("inner", "left", "outer"):
            raise ConfigurationError(f"table.join(how={how!r}): a table–table join is 'inner', 'left' or 'outer'")
        self.how = how
        self.sides: tuple[dict[Any, tuple[Any, int]], dict[Any, tuple[Any, int]]] = ({}, {})

    def update(self, side: int, key: Any, ts: int, value: Any) -> Change | None:
        """Side ``side`` (LEFT/RIGHT) sets ``key`` to ``value`` (None: deletes) at ``ts``: the change it emits."""
        mine, theirs = self.sides[side], self.sides[1 - side]
        old = mine.pop(key, None)
        if value is not None:
            mine[key] = (value, ts)
        other = theirs.get(key)
        when = ts if other is None or other[1] <= ts else other[1]
        other_value = None if other is None else other[0]
        how = self.how
        if how == "inner":
            if other is None:
                return None
            return key, when, TOMBSTONE if value is None else self._pair(side, value, other_value)
        if how == "left" and side == RIGHT:
            return None if other is None else (key, when, (other_value, value))
        if value is None and other is None:  # left (a left delete) or outer
            return None if old is None else (key, when, TOMBSTONE)
        if how == "left" and value is None:
            return key, when, TOMBSTONE
        return key, when, self._pair(side, value, other_value)

    @staticmethod
    def _pair(side: int, value: Any, other: Any) -> tuple[Any, Any]:
        return (value, other) if side == LEFT else (other, value)


class JoinedTable(Table[Any, Any]):
    """The read-only table of a table–table join. Create with ``left_table.join(right_table, how=..., emit=...)``.

    A table of ``key -> (left, right)`` (``live_table()``, ``as_dataframe()`` work); ``version`` grows with each
    change. It keeps no changelog of its own: both topics are read again at a restart.
    """

    is_global = False
    follow_interval: float = 0.2

    def __init__(self, app: Any, left: Any, right: Any, how: str, emit: Topic[Any, Any] | str | None) -> None:
        for table in (left, right):
            if getattr(table, "source", None) is None:
                raise ConfigurationError(
                    f"table {table.name!r} is not read from a topic: a table–table join joins tables created with "
                    "source=topic (app.Table(name, source=topic))"
                )
        self.rule = TableJoinRule(how)
        super().__init__(app, f"{left.name}-join-{right.name}", store=MEMORY)
        self.changes.complete = False  # (it changes as its topics are read, not by commits)
        self.left_source: Topic[Any, Any] = left.source
        self.right_source: Topic[Any, Any] = right.source
        self.emit_to: Topic[Any, Any] | None = None if emit is None else app.resolve_topic(emit)
        self.positions: dict[tuple[int, int], int] = {}
        app.task(self.follow, name=f"table join {self.name}")  # runs while the app runs
        tables = getattr(app, "tables", None)
        if isinstance(tables, dict):  # app.start() declares its topics and checks their partition counts
            tables[self.name] = self

    def check_partitions(self) -> None:
        """Raise PartitionMismatchError when the two topics have different partition counts."""
        a, b = self.left_source.partition_count, self.right_source.partition_count
        if a != b:
            raise PartitionMismatchError(
                f"table join {self.name!r}: topic {self.left_source.name!r} has {a} partitions but "
                f"{self.right_source.name!r} "
                f"has {b}; a table–table join needs co-partitioned topics: copy one into a topic of {a} "
                "partitions, or join a GlobalTable instead"
            )

    # -- reading --------------------------------------------------------------------------

    async def follow(self) -> None:
        """Read both topics to their end (nothing sent), then keep reading them, sending changes to ``emit``."""
        transport = await self.app.connect()
        for topic in (self.left_source, self.right_source):
            await topic.declare()
        if self.emit_to is not None:
            await self.emit_to.declare()
        self.check_partitions()
        await self.read(transport, send=False)
        while True:
            await asyncio.sleep(self.follow_interval)
            try:
                await self.read(transport, send=True)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("table join %r could not read its topics; trying again", self.name)

    async def read(self, transport: Transport, send: bool) -> int:
        """Apply what is new in both topics, each partition's two sides in timestamp order; returns how many."""
        done = 0
        for partition in range(self.left_source.partition_count):
            lefts = await self._new(transport, LEFT, partition)
            rights = await self._new(transport, RIGHT, partition)
            i = j = 0
            while i < len(lefts) or j < len(rights):
                if j >= len(rights) or (i < len(lefts) and lefts[i].timestamp <= rights[j].timestamp):
                    await self._apply(LEFT, lefts[i], send)
                    i += 1
                else:
                    await self._apply(RIGHT, rights[j], send)
                    j += 1
            done += len(lefts) + len(rights)
        if done:
            self.version += 1
        return done

    async def _new(self, transport: Transport, side: int, partition: int) -> list[Message]:
        topic = self.left_source if side == LEFT else self.right_source
        tp = TP(topic.name, partition)
        start = self.positions.get((side, partition))
        if start is None:
            start = (await transport.beginning_offsets([tp]))[tp]
        end = (await transport.end_offsets([tp]))[tp]
        out: list[Message] = []
        while start < end:
            msgs = await transport.read(tp, start, end, 10_000)
            if not msgs:
                break
            out += msgs
            start = msgs[-1].offset + 1
        self.positions[(side, partition)] = start
        return out

    async def _apply(self, side: int, msg: Message, send: bool) -> None:
        topic = self.left_source if side == LEFT else self.right_source
        key = hashable(topic.decode_key(msg.key)) if msg.key is not None else None
        value = None if msg.value is None else topic.decode_value(msg.value)
        change = self.rule.update(side, key, round(msg.timestamp * 1000), value)
        if change is None:
            return
        _key, ts, pair = change
        partition = msg.partition
        self.state.load(key, MISSING if pair is TOMBSTONE else pair, partition)
        if send and self.emit_to is not None:
            value_out = None if pair is TOMBSTONE else {"left": pair[0], "right": pair[1]}
            await self.emit_to.send(key=key, value=value_out, timestamp=ts / 1000)

    # -- read-only, no changelog of its own --------------------------------------------------

    def topics(self) -> list[Topic[Any, Any]]:
        """The topics it reads (and ``emit=``)."""
        return [t for t in (self.left_source, self.right_source, self.emit_to) if t is not None]

    def __setitem__(self, key: Any, value: Any) -> None:
        raise TableWriteError(f"table join {self.name!r} is read-only: it follows {self.left_source.name!r} and "
                              f"{self.right_source.name!r}")

    def __delitem__(self, key: Any) -> None:
        self.__setitem__(key, MISSING)

    async def recover(self, partitions: Any = None) -> int:
        """Nothing to recover: it reads both topics while the app runs."""
        return 0

    def drop_partitions(self, partitions: set[int]) -> None:
        """Nothing to drop: it keeps every partition it read."""

    def reset_recovery(self) -> None:
        """Nothing to reset (the read positions stay: a restart goes on from them)."""

    def __repr__(self) -> str:
        return f"<JoinedTable {self.name!r} {self.rule.how} rows={len(self.data)}>"
