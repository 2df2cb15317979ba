"""Recording: copy a slice of Kafka topics into a ``local://`` folder, to replay it again and again.

``await streamnb.record("kafka://HOST:PORT", ["page_views"], to="local://slice")``
copies every message (key, value, timestamp, headers, partition) of the
topics, or the part between ``since`` and ``until``, or the first
``max_messages``, into topics of the same names and partition counts in the
folder. It reads with a plain group-less consumer: it commits no offsets and
writes nothing to the source cluster. Recording again into the same folder
copies only what came since.

The source offsets are kept in the folder's ``__streamnb-recordings`` topic
(JSON records per topic partition and recording: the runs of source
offsets and the local offsets they went to), which :func:`recordings`
reads back and :func:`source_offset` uses to say where a replayed message
was in Kafka.

A recording is written in steps, each one sqlite transaction holding a run
of messages of one partition *and* the record saying which source offsets
they are. A recording stopped at any moment (Ctrl-C, ``kill -9``, a lost
connection) leaves a folder that is consistent up to its last step: every
message copied is accounted for, and recording again resumes exactly after
it, copying nothing twice.

Example::

    summary = await streamnb.record("kafka://127.0.0.1:9092", ["page_views"], to="local://slice",
                                    since=time.time() - 600)
    summary          # per partition: messages, bytes, first and last time, source offsets
    app = streamnb.App("pv", broker="local://slice", clock="virtual")

In a notebook: ``%streamnb record page_views --from kafka://127.0.0.1:9092 --to local://slice --last 10m``.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import _gc, naming
from ..errors import ConfigurationError
from ..transport import open_transport
from ..transport.base import TP, ProducerRecord, TopicSpec, Transport
from ..transport.local.batch import Columns
from .clock import to_seconds
from .progress import Progress, progress

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["PartitionRecording", "Progress", "record", "recorded_topics", "recordings", "source_offset"]


@dataclass
class PartitionRecording:
    """What one recording copied from one topic partition.

    Stored as JSON records in ``__streamnb-recordings``, one per step of the
    recording (what that step copied); :func:`recordings` merges the steps.
    """

    source: str
    """The Kafka URL recorded from."""
    topic: str
    partition: int
    runs: list[list[int]] = field(default_factory=list)
    """``[local offset, source offset, count]`` per run of consecutive source offsets."""
    next: int = 0
    """The source offset the next recording starts from."""
    messages: int = 0
    size: int = 0
    """Bytes of keys, values and headers copied."""
    first: float | None = None
    """The oldest timestamp copied (epoch seconds)."""
    last: float | None = None
    """The newest timestamp copied."""
    recorded_at: float = 0.0
    recording: str = ""
    """Which recording this is (its steps share it); empty in records of older versions (one per recording)."""

    def add(self, local: int, records: Sequence[Any], columns: Columns) -> None:
        """Source ``records`` (one partition, in offset order), copied as ``columns``, went to ``local...``."""
        keys, values, stamps, headers = columns
        first_offset, last_offset = records[0].offset, records[-1].offset
        if last_offset - first_offset == len(records) - 1:  # no gap: one run
            spans = [[local, first_offset, len(records)]]
        else:
            spans = []
            for i, r in enumerate(records):
                if spans and spans[-1][1] + spans[-1][2] == r.offset:
                    spans[-1][2] += 1
                else:
                    spans.append([local + i, r.offset, 1])
        _join(self.runs, spans)
        self.messages += len(keys)
        self.size += sum(map(len, filter(None, keys))) + sum(map(len, filter(None, values)))
        if any(headers):
            self.size += sum(len(k) + len(v) for h in headers for k, v in h)
        self._times(min(stamps), max(stamps))
        self.next = last_offset + 1

    def merge(self, step: PartitionRecording) -> None:
        """Add what a later step of the same recording copied."""
        _join(self.runs, step.runs)
        self.messages += step.messages
        self.size += step.size
        if step.first is not None and step.last is not None:
            self._times(step.first, step.last)
        self.next = max(self.next, step.next)
        self.recorded_at = max(self.recorded_at, step.recorded_at)

    def _times(self, first: float, last: float) -> None:
        self.first = first if self.first is None or first < self.first else self.first
        self.last = last if self.last is None or last > self.last else self.last

    def to_json(self) -> bytes:
        """The record's value."""
        return json.dumps(self.__dict__, separators=(",", ":")).encode()

    def record(self) -> ProducerRecord:
        """The ``__streamnb-recordings`` record of this (step of a) recording."""
        key = f"{self.topic}/{self.partition}".encode()
        return ProducerRecord(naming.RECORDING_TOPIC, 0, key, self.to_json(), self.recorded_at)


def _join(runs: list[list[int]], more: Iterable[list[int]]) -> None:
    """Append ``[local, source, count]`` runs, joining one that goes on where the last ended."""
    for at, source, count in more:
        if runs and runs[-1][0] + runs[-1][2] == at and runs[-1][1] + runs[-1][2] == source:
            runs[-1][2] += count
        else:
            runs.append([at, source, count])


async def recordings(transport: Transport) -> list[PartitionRecording]:
    """Every recording made into the folder behind ``transport``, oldest first (one per topic partition)."""
    count = await transport.partition_count(naming.RECORDING_TOPIC)
    if not count:
        return []
    tp = TP(naming.RECORDING_TOPIC, 0)
    end = (await transport.end_offsets([tp]))[tp]
    out: list[PartitionRecording] = []
    steps: dict[tuple[str, str, int], PartitionRecording] = {}
    start = (await transport.beginning_offsets([tp]))[tp]
    while start < end:
        msgs = await transport.read(tp, start, end, 10_000)
        if not msgs:
            break
        for m in msgs:
            if not m.value:
                continue
            rec = PartitionRecording(**json.loads(m.value))
            found = steps.get((rec.recording, rec.topic, rec.partition)) if rec.recording else None
            if found is not None:
                found.merge(rec)
                continue
            out.append(rec)
            if rec.recording:
                steps[(rec.recording, rec.topic, rec.partition)] = rec
        start = msgs[-1].offset + 1
    return out


async def recorded_topics(transport: Transport) -> set[str]:
    """Names of the topics :func:`record` copied into this folder (empty: no recording there)."""
    return {r.topic for r in await recordings(transport)}


async def source_offset(transport: Transport, topic: str, partition: int, offset: int) -> int | None:
    """Where the message at ``offset`` of a recorded topic partition was in the source cluster.

    >>> await source_offset(app.require_transport(), "page_views", 0, 42)  # doctest: +SKIP
    1042
    """
    for rec in await recordings(transport):
        if rec.topic == topic and rec.partition == partition:
            for local, source, count in rec.runs:
                if local <= offset < local + count:
                    return source + offset - local
    return None


def _check_arguments(source: str, names: list[str], to: str, max_messages: int | None) -> None:
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ConfigurationError(f"record() needs one or more topic names, got {names!r}")
    if not isinstance(source, str) or not source.startswith("kafka://"):
        raise ConfigurationError(f"record() reads from a kafka:// cluster, got {source!r}; e.g. 'kafka://127.0.0.1:9092'")
    if not isinstance(to, str) or not to.startswith(("local://", "memory://")):
        raise ConfigurationError(
            f"record(to={to!r}): recordings go into a local:// folder (or memory:// for tests), "
            "e.g. to='local://slice'"
        )
    if max_messages is not None and (isinstance(max_messages, bool) or not isinstance(max_messages, int)
                                     or max_messages < 1):
        raise ConfigurationError(f"max_messages must be a positive int, got {max_messages!r}")


async def record(
    source: str,
    topics: str | Iterable[str],
    *,
    to: str,
    since: Any = None,
    until: Any = None,
    max_messages: int | None = None,
    progress: bool | Progress | None = None,
    **kafka_options: Any,
) -> pd.DataFrame:
    """Copy a slice of Kafka ``topics`` into the folder ``to``; returns a summary per partition.

    Args:
        source: ``kafka://HOST:PORT``.
        topics: a topic name or several.
        to: ``local://PATH`` (``memory://NAME`` works too, for tests).
        since: copy messages from this time on (epoch seconds or a datetime);
            default: the start of each log, or where the last recording
            into ``to`` stopped (recording again appends only what is new).
        until: copy messages before this time; default: up to the end of
            each log as it was when recording began.
        max_messages: stop after this many messages in all.
        progress: show a progress bar (default: in a notebook or a terminal),
            or an object with ``update(done)`` and ``close(text)``.
        **kafka_options: security options for the source (as for ``App``).

    The summary has one row per topic partition: ``topic, partition,
    messages, bytes, first, last`` (times of the oldest and newest message
    copied) and ``source_offsets`` (the range copied). Each step is
    committed with the record of what it copied, so a recording stopped
    midway resumes where it stopped when run again.

    >>> await record("kafka://127.0.0.1:9092", "page_views", to="local://slice", max_messages=10_000)  # doctest: +SKIP
    """
    from ..transport.kafka.slice import SliceReader
    from ..transport.kafka.transport import KafkaTransport

    names = [topics] if isinstance(topics, str) else list(topics)
    _check_arguments(source, names, to, max_messages)
    since_s = None if since is None else to_seconds(since)
    until_s = None if until is None else to_seconds(until)
    kafka = KafkaTransport(source, client_id="streamnb-record", **kafka_options)  # never started: no producer
    reader = SliceReader(kafka)
    dest = open_transport(to, client_id="streamnb-record")
    await reader.start()
    _gc.acquire()  # millions of short-lived tuples: collect less often, as a running app does
    try:
        await dest.start()
        try:
            ranges = await _plan(reader, dest, source, names, since_s, until_s)
            total = sum(stop - start for start, stop in ranges.values())
            bar = _progress(progress, total if max_messages is None else min(total, max_messages),
                            f"recording {', '.join(names)}")
            copier = _Copier(dest, source, ranges)
            done = await copier.copy(reader, max_messages, bar)
            summary = _summary(list(copier.parts.values()))
            bar.close(f"{done:,} messages, {int(summary['bytes'].sum()):,} bytes into {dest.url}")
            return summary
        finally:
            await dest.stop()
    finally:
        _gc.release()
        await reader.stop()


_progress = progress  # (the name ``progress`` is record()'s argument)


async def _plan(
    reader: Any, dest: Transport, source: str, names: Sequence[str], since: float | None, until: float | None
) -> dict[TP, tuple[int, int]]:
    """Create the topics in ``dest`` and decide what to copy: source offsets ``[start, stop)`` per partition."""
    counts = await reader.partition_counts(names)
    missing = [n for n in names if n not in counts]
    if missing:
        raise ConfigurationError(f"no topic {', '.join(map(repr, missing))} at {source}: check the names")
    for name in names:
        local = await dest.partition_count(name)
        if local is not None and local != counts[name]:
            raise ConfigurationError(
                f"topic {name!r} has {counts[name]} partitions at {source} but {local} in {dest.url}: "
                "record into a fresh folder"
            )
        await dest.create_topic(TopicSpec(name, counts[name]))
    await dest.create_topic(TopicSpec(naming.RECORDING_TOPIC, 1))
    previous = {(r.topic, r.partition): r.next for r in await recordings(dest) if r.source == source}
    tps = [TP(n, p) for n in names for p in range(counts[n])]
    starts, ends = await reader.bounds(tps)
    if since is not None:
        for tp, offset in (await reader.offsets_at(tps, since)).items():
            starts[tp] = ends[tp] if offset is None else max(starts[tp], offset)
    for tp in tps:
        if tp in previous:
            starts[tp] = max(starts[tp], previous[tp])
    if until is not None:
        for tp, offset in (await reader.offsets_at(tps, until)).items():
            if offset is not None:
                ends[tp] = min(ends[tp], offset)
    return {tp: (starts[tp], max(starts[tp], ends[tp])) for tp in tps}


class _Copier:
    """Copies source records into ``dest`` in steps, each with its ``__streamnb-recordings`` record."""

    def __init__(self, dest: Transport, source: str, ranges: dict[TP, tuple[int, int]]) -> None:
        self.dest = dest
        self.source = source
        self.ranges = ranges
        self.id = uuid.uuid4().hex[:16]
        self.started = time.time()
        self.parts = {
            tp: PartitionRecording(source, tp.topic, tp.partition, next=start, recorded_at=self.started,
                                   recording=self.id)
            for tp, (start, _stop) in ranges.items()
        }
        """What this recording copied, per partition (the summary)."""
        self.stepped: set[TP] = set()
        self.local_end: dict[TP, int] = {}
        self.write = _writer(dest)

    async def copy(self, reader: Any, max_messages: int | None, bar: Progress) -> int:
        """Copy everything ``reader`` yields (up to ``max_messages``); returns how many messages."""
        self.local_end = await self.dest.end_offsets(list(self.parts))
        done = 0
        writing: asyncio.Future[None] | None = None
        async for tp, records in reader.read(self.ranges):
            if max_messages is not None:
                records = records[: max_messages - done]
                if not records:
                    break
            columns, meta = self.step(tp, records)
            done += len(records)
            if writing is not None:
                await writing  # one write at a time, in order; the next batch is fetched meanwhile
            writing = asyncio.ensure_future(self.write(tp, columns, meta))
            bar.update(done)
            if max_messages is not None and done >= max_messages:
                break
        if writing is not None:
            await writing
        # Partitions with nothing new still get a record: this recording looked at them.
        quiet = [self.parts[tp] for tp in self.parts if tp not in self.stepped]
        if quiet:
            await self.dest.send([part.record() for part in quiet])
        return done

    def step(self, tp: TP, records: Sequence[Any]) -> tuple[Columns, PartitionRecording]:
        """The columns to append for ``records`` and the record of what they are."""
        columns: Columns = (
            [r.key for r in records], [r.value for r in records], [r.timestamp / 1000.0 for r in records],
            [h if type(h := r.headers) is tuple else tuple(h) for r in records],
        )
        meta = PartitionRecording(self.source, tp.topic, tp.partition, recorded_at=self.started, recording=self.id)
        meta.add(self.local_end[tp], records, columns)
        self.parts[tp].merge(meta)
        self.stepped.add(tp)
        self.local_end[tp] += len(records)
        return columns, meta


def _writer(dest: Transport) -> Callable[[TP, Columns, PartitionRecording], Awaitable[None]]:
    """How a step goes into ``dest``: one commit holding the messages and their record.

    On local:// straight into the partitions (no tuple per message); elsewhere as records.
    """
    from ..transport.local import LocalTransport

    if isinstance(dest, LocalTransport):
        local = dest

        async def append(tp: TP, columns: Columns, meta: PartitionRecording) -> None:
            record = meta.record()
            await local.append_runs([
                (tp.topic, tp.partition, columns),
                (record.topic, 0, ([record.key], [record.value], [record.timestamp], [()])),
            ])

        return append

    async def send(tp: TP, columns: Columns, meta: PartitionRecording) -> None:
        records = [ProducerRecord(tp.topic, tp.partition, *fields) for fields in zip(*columns)]
        await dest.send([*records, meta.record()])

    return send


def _summary(parts: list[PartitionRecording]) -> pd.DataFrame:
    import pandas as pd

    rows = []
    for rec in parts:
        source = [rec.runs[0][1], rec.runs[-1][1] + rec.runs[-1][2] - 1] if rec.runs else None
        rows.append((rec.topic, rec.partition, rec.messages, rec.size, rec.first, rec.last,
                     None if source is None else f"{source[0]}..{source[1]}"))
    df = pd.DataFrame(rows, columns=["topic", "partition", "messages", "bytes", "first", "last", "source_offsets"])
    for column in ("first", "last"):
        df[column] = pd.to_datetime(df[column], unit="s", utc=True)
    return df
