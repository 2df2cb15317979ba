"""The group-less reader behind ``KafkaTransport.read`` (table recovery, ``%peek``).

One ``AIOKafkaConsumer`` with manual assignment (``read_committed``) reads
one partition at a time under a lock. It stays positioned where the previous
read stopped, so a loop of ``read(tp, pos, end)`` streams a whole changelog
partition without re-fetching, and it pauses a partition read to its end (no
idle fetching).

Transactional topics hold offsets without messages: commit and abort
markers, and aborted records a ``read_committed`` reader skips. A changelog
written by an exactly-once app ends with a marker, so the caller's next
``start`` (the last message's offset + 1) is the marker's offset while the
reader already stands past it; the reader then goes on from where it stands
instead of seeking back to the marker (and waiting for a fetch that returns
nothing: aiokafka #911).

Example (on a running loop, ``consumer`` started with ``group_id=None``)::

    reader = PartitionReader(consumer, request_timeout=15.0)
    messages = await reader.read(TopicPartition("orders", 0), 0, 100, 10_000)
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from ..base import Message, message_size, within_bytes

__all__ = ["PartitionReader", "log_end", "message_of"]


def log_end(reader: AIOKafkaConsumer, tp: TopicPartition) -> int | None:
    """End of ``tp``'s readable log as of the reader's latest fetch, when known."""
    last = reader.last_stable_offset(tp)
    high: int | None = reader.highwater(tp)
    return high if last is None else last


def _take(batch: Any, start: int, stop: int, out: list[Message], count_bytes: bool) -> tuple[bool, int]:
    """Append the records of ``batch`` in ``[start, stop)`` to ``out``: (one was past ``stop``, bytes added)."""
    size = 0
    for record in batch:
        if record.offset >= stop:
            return True, size
        if record.offset >= start:
            out.append(message_of(record))
            if count_bytes:
                size += message_size(out[-1])
    return False, size


def message_of(record: Any) -> Message:
    """An aiokafka ``ConsumerRecord`` as a streamnb :class:`Message`."""
    headers = record.headers
    return Message(
        record.topic,
        record.partition,
        record.offset,
        record.timestamp / 1000.0,
        record.key,
        record.value,
        headers if type(headers) is tuple else tuple(headers or ()),
    )


class PartitionReader:
    """A started group-less ``AIOKafkaConsumer``, read one partition at a time.

    Made by ``KafkaTransport.start`` on the running loop (the lock binds to it).
    """

    def __init__(self, consumer: AIOKafkaConsumer, request_timeout: float) -> None:
        self.consumer = consumer
        self.request_timeout = request_timeout
        self.lock = asyncio.Lock()
        self._tp: TopicPartition | None = None
        self._next: int | None = None  # the reader's position when known
        self._returned_end: int | None = None  # last offset the previous read returned, + 1

    async def read(
        self, atp: TopicPartition, start: int, stop: int, max_records: int, max_bytes: int | None = None
    ) -> list[Message]:
        """Messages of ``atp`` with ``start <= offset < stop`` (at most ``max_records``, and ``max_bytes``)."""
        async with self.lock:
            out = await self._read_locked(atp, start, stop, max_records, max_bytes)
            kept = within_bytes(out, max_bytes)
            if len(kept) < len(out):
                self._next = self._returned_end = None  # the reader went past what is returned: seek next time
            return kept

    async def _read_locked(
        self, atp: TopicPartition, start: int, stop: int, max_records: int, max_bytes: int | None = None
    ) -> list[Message]:
        """The body of :meth:`read`, holding the lock (``max_bytes``: stops fetching once that much was read)."""
        reader = self.consumer
        self._stand_at(atp, start)
        out: list[Message] = []
        size, limit = 0, math.inf if max_bytes is None else max_bytes
        deadline = time.monotonic() + self.request_timeout
        while len(out) < max_records and size <= limit:
            if await reader.position(atp) >= stop:
                break
            batch = (await reader.getmany(atp, timeout_ms=100, max_records=max_records - len(out))).get(atp)
            if batch:
                overshoot, added = _take(batch, start, stop, out, max_bytes is not None)
                size += added
                if overshoot:
                    return out  # a record at or past stop: the reader's position is not remembered
                if out and await self._at_log_end(atp):
                    break  # only trusted when returning something (the caller asks again)
                deadline = time.monotonic() + self.request_timeout
                continue
            # Nothing fetched: ask where the log ends now (gaps, aborted
            # transactions and markers hold offsets but no records).
            if await reader.position(atp) >= (await reader.end_offsets([atp]))[atp]:
                break
            if time.monotonic() > deadline:
                break
        await self._remember(atp, start, out)
        return out

    def _stand_at(self, atp: TopicPartition, start: int) -> None:
        """Assign ``atp`` and seek to ``start``, unless the reader stands past it with no message between; resume."""
        reader = self.consumer
        if self._tp != atp:
            reader.assign([atp])
            self._tp, self._next = atp, None
        skipped = self._next is not None and start == self._returned_end and self._next > start
        if self._next != start and not skipped:  # (skipped: start.._next holds no message)
            reader.seek(atp, start)
        reader.resume(atp)
        self._next = self._returned_end = None

    async def _at_log_end(self, atp: TopicPartition) -> bool:
        """True when the reader stands at the end of ``atp``'s log as of its latest fetch (which may be stale)."""
        last = log_end(self.consumer, atp)
        return last is not None and await self.consumer.position(atp) >= last

    async def _remember(self, atp: TopicPartition, start: int, out: list[Message]) -> None:
        """Note where the read left the reader; at the end of the log, pause ``atp`` (no idle fetching)."""
        reader = self.consumer
        self._next = await reader.position(atp)
        self._returned_end = out[-1].offset + 1 if out else start
        last = log_end(reader, atp)
        if last is not None and self._next >= last:
            reader.pause(atp)  # at the end of the log: no idle fetching until the next read

