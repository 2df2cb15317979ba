"""Stream time, kept out of the changelog: the ``<app id>-<table>-streamtime`` topic.

A windowed table's changelog holds its rows and nothing else, so any Kafka
client can rebuild the table from it. Its *stream time* per partition (see
:mod:`~streamnb.tables.state.event_time`) goes, with each commit that advanced it,
to an internal topic of its own with as many partitions as the changelog,
in the same commit as the rows (the same Kafka transaction with
``exactly_once``; the same sqlite transaction on ``local://``):

* partition ``p`` holds the stream time of changelog partition ``p``; the
  newest record is the current value (the topic is compacted, unless the
  table keeps its history: then, like the changelog, it keeps every record);
* a record's key is the partition number in JSON (``b"3"``), its value the
  stream time in epoch seconds in JSON (``b"1012.5"``), its timestamp that
  same moment.

Versions before this topic wrote stream time into the changelog itself,
under the key ``"__stream_time__"``. Recovery still reads such a record,
and the first commit that advances that partition's stream time deletes it
(a tombstone in the changelog), so compaction removes it.

>>> from streamnb import App
>>> times = StreamTimeTopic.for_table(App("shop", broker="memory://"), "per_minute", compacting=True)
>>> times.topic.name
'shop-per_minute-streamtime'
>>> times.record(3, 1012.5, 1012.5)
ProducerRecord(topic='shop-per_minute-streamtime', partition=3, key=b'3', value=b'1012.5', timestamp=1012.5, headers=())
"""

from __future__ import annotations

import json
from typing import Any

from .. import naming
from ..errors import PartitionMismatchError
from ..runtime import Runtime
from ..topics import Topic
from ..transaction import MISSING
from ..transport.base import TP, Message, ProducerRecord, Transport
from .state.event_time import EventTimeState

__all__ = ["StreamTimeTopic"]

READ_CHUNK = 50_000


class StreamTimeTopic:
    """The stream-time topic of one windowed table: its records, and reading them back."""

    def __init__(self, topic: Topic[Any, Any]) -> None:
        self.topic = topic
        """The topic (JSON keys and values)."""

    @classmethod
    def for_table(cls, app: Runtime, table: str, *, compacting: bool) -> StreamTimeTopic:
        """Define ``<app id>-<table>-streamtime`` (``compacting``: as the table's changelog)."""
        return cls(app.internal_topic(
            naming.stream_time_topic(app.id, table), key_serializer="json", value_serializer="json",
            compacting=compacting,
        ))

    def record(self, partition: int, value: Any, timestamp: float) -> ProducerRecord:
        """The record saying that the stream time of ``partition`` is ``value`` (MISSING: none, a tombstone)."""
        encoded = None if value is MISSING else json.dumps(float(value)).encode()
        return ProducerRecord(self.topic.name, partition, b"%d" % partition, encoded, timestamp)

    async def declare(self, partitions: int) -> None:
        """Create the topic with ``partitions`` (the changelog's count) unless it exists with them."""
        self.topic.partitions = partitions
        actual = await self.topic.declare()
        if actual != partitions:
            raise PartitionMismatchError(
                f"topic {self.topic.name!r} has {actual} partitions but the table's changelog has "
                f"{partitions}: it was left over from an earlier table of that name; delete it "
                "(a table starts over when both its changelog and this topic are deleted), "
                "or use a fresh app id"
            )

    async def messages(self, transport: Transport, partition: int, start: int | None = None) -> list[Message]:
        """The records of ``partition`` from ``start`` (default: the log's start) to its end."""
        tp = TP(self.topic.name, partition)
        if not self.topic.declared and not await transport.partition_count(tp.topic):
            return []  # not created yet: nothing was written
        if start is None:
            start = (await transport.beginning_offsets([tp]))[tp]
        end = (await transport.end_offsets([tp]))[tp]
        out: list[Message] = []
        while start < end:
            chunk = await transport.read(tp, start, end, READ_CHUNK)
            if not chunk:
                break
            out += chunk
            start = chunk[-1].offset + 1
        return out

    async def read(
        self, transport: Transport, partition: int, state: EventTimeState, start: int | None = None
    ) -> tuple[int, int | None]:
        """Apply the records of ``partition`` from ``start`` to ``state``: (records read, next offset or None)."""
        msgs = await self.messages(transport, partition, start)
        for msg in msgs:
            state.load_stream_time_record(partition, value_of(msg))
        return len(msgs), (msgs[-1].offset + 1 if msgs else start)


def value_of(msg: Message) -> float | None:
    """The stream time a record of the topic holds (None: a tombstone).

    >>> value_of(Message("t", 0, 0, 12.5, b"0", b"12.5", ()))
    12.5
    """
    return None if msg.value is None else float(json.loads(msg.value))
