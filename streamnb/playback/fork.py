"""Forks: a new folder that goes on from a moment of a replay, written whole or not at all.

:func:`write_fork` copies the replay's inputs (whole, at the same offsets),
each table's state at the moment (rebuilt from its history) as its
changelog, and each agent's position (the first message of each partition
later than the moment), then a marker record saying all that
(``__streamnb-forks``). A replay of the folder starts from the fork
(:func:`restore_fork`).

**All or nothing.** A fork is built under a temporary name and renamed into
place when complete: ``local://PATH`` is written in a sibling folder
``.NAME.forking-PID-ID`` (which holds an ``INCOMPLETE`` file meanwhile:
opening it is an error saying to delete it), ``memory://NAME`` in a broker
of a temporary name. A fork stopped at any moment (``kill -9``, Ctrl-C, an
error) leaves no ``PATH``, so forking again just works; the temporary folder
of a fork whose process is gone is deleted by the next fork next to it.

Example::

    url = await write_fork(app, ["page_views"], 1_700_000_300.0, "local://fork")
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Mapping
from typing import Any, Protocol

from .. import naming
from ..errors import ConfigurationError
from ..processing.agents import Agent
from ..processing.feed import running_max
from ..tables.table import Table
from ..transport import open_transport
from ..transport.base import TP, ProducerRecord, RebalanceListener, TopicSpec, Transport
from ..transport.local.store import LOCK_NAME
from ..transport.local.transport import INCOMPLETE_MARKER, parse_local_url
from ..transport.memory import MemoryBroker
from .progress import Progress, progress

__all__ = ["ForkHost", "commit_groups", "fork_of", "restore_fork", "write_fork"]

logger = logging.getLogger("streamnb")

CHUNK = 20_000
"""Messages copied (or table rows written) per send."""


class ForkHost(Protocol):
    """What a fork reads from the app (:class:`~streamnb.app.App` provides it)."""

    id: str
    broker: str
    agents: dict[str, Agent]
    tables: dict[str, Table[Any, Any]]

    async def connect(self) -> Transport:
        """The broker connection."""
        ...


async def write_fork(
    app: ForkHost, inputs: list[str], when: float, broker: str, show: bool | Progress | None = None
) -> str:
    """Write the fork of ``app`` at ``when`` into ``broker`` (see the module docstring); return its URL.

    >>> await write_fork(app, ["page_views"], t, "local://fork")  # doctest: +SKIP
    'local://fork'
    """
    if not isinstance(broker, str) or not broker.startswith(("local://", "memory://")):
        raise ConfigurationError(f"fork(broker={broker!r}): a fork goes into a local:// or memory:// folder")
    if broker == app.broker:
        raise ConfigurationError(f"fork(broker={broker!r}) is the app's own folder: fork into a new one")
    target = _Folder(broker) if broker.startswith("local://") else _MemoryBroker(broker)
    source = await app.connect()
    snapshots = {name: await table.at(time=when) for name, table in app.tables.items()}
    logs = {name: _snapshot_records(table, snapshots[name], when) for name, table in app.tables.items()}
    copied = [*inputs, naming.RECORDING_TOPIC]
    total = await _messages(source, copied) + sum(len(rows) + len(times) for rows, times in logs.values())
    bar = progress(show, total, f"forking {app.id} at {when:.3f}")
    counter = _Counter(bar)
    dest = open_transport(target.begin(), client_id=app.id)
    try:
        await dest.start()
        target.mark()
        positions = {}
        for name in copied:
            positions.update(await _copy_topic(source, dest, name, when, counter))
        tables = await _write_tables(app, dest, logs, counter)
        groups = _groups(app, inputs, positions)
        info = {"app": app.id, "at": when, "groups": groups, "tables": tables}
        await dest.create_topic(TopicSpec(naming.FORK_TOPIC, 1))
        await dest.send([ProducerRecord(naming.FORK_TOPIC, 0, app.id.encode(), json.dumps(info).encode(), when)])
        await commit_groups(dest, groups)
    except BaseException:
        with contextlib.suppress(Exception):
            await dest.stop()
        target.discard()
        raise
    await dest.stop()
    target.publish()
    bar.close(f"{counter.done:,} messages into {broker}")
    return broker


class _Counter:
    """Counts what was written and reports it."""

    def __init__(self, bar: Progress) -> None:
        self.bar = bar
        self.done = 0

    def add(self, n: int) -> None:
        self.done += n
        self.bar.update(self.done)


async def _messages(transport: Transport, topics: list[str]) -> int:
    total = 0
    for name in topics:
        tps = [TP(name, p) for p in range(await transport.partition_count(name) or 0)]
        if tps:
            starts, ends = await transport.beginning_offsets(tps), await transport.end_offsets(tps)
            total += sum(ends[tp] - starts[tp] for tp in tps)
    return total


async def _copy_topic(source: Transport, dest: Transport, name: str, when: float, counter: _Counter) -> dict[TP, int]:
    """Copy a topic whole (same offsets); return, per partition, the offset of its first message later than ``when``."""
    count = await source.partition_count(name)
    if not count or await dest.partition_count(name):
        return {}
    await dest.create_topic(TopicSpec(name, count))
    positions = {}
    for p in range(count):
        tp = TP(name, p)
        begin = (await source.beginning_offsets([tp]))[tp]
        end = (await source.end_offsets([tp]))[tp]
        position, first_after, newest = begin, None, float("-inf")
        while position < end:
            msgs = await source.read(tp, position, end, CHUNK)
            if not msgs:
                break
            keys = running_max(msgs, newest)
            newest = keys[-1]
            if first_after is None:
                first_after = next((m.offset for m, k in zip(msgs, keys) if k > when), None)
            await dest.send([ProducerRecord(name, p, m.key, m.value, m.timestamp, m.headers) for m in msgs])
            counter.add(len(msgs))
            position = msgs[-1].offset + 1
        positions[tp] = first_after if first_after is not None else end
    return positions


async def _write_tables(
    app: ForkHost, dest: Transport, logs: Mapping[str, tuple[list[ProducerRecord], list[ProducerRecord]]],
    counter: _Counter,
) -> dict[str, str]:
    """Each table's rows (and stream times) as its changelog, and a copy a replay of the fork starts from."""
    tables: dict[str, str] = {}
    for name, table in app.tables.items():
        rows, times = logs[name]
        written = [(table.changelog, rows)]
        if table.stream_times is not None:
            written.append((table.stream_times.topic, times))
        for log, records in written:
            for topic in (log.name, naming.fork_state_topic(log.name)):
                await dest.create_topic(TopicSpec(topic, table.changelog.partition_count, log.compacting))
                for at in range(0, len(records), CHUNK):
                    await dest.send([r._replace(topic=topic) for r in records[at : at + CHUNK]])
            counter.add(len(records))
            tables[log.name] = naming.fork_state_topic(log.name)
    return tables


def _groups(app: ForkHost, inputs: list[str], positions: Mapping[TP, int]) -> dict[str, list[list[Any]]]:
    """Each agent's consumer group's positions in the inputs it reads."""
    groups: dict[str, list[list[Any]]] = {}
    for agent in app.agents.values():
        reads = set(agent.read_topics()) & set(inputs)
        groups[naming.consumer_group(app.id, agent.name)] = [
            [tp.topic, tp.partition, o] for tp, o in positions.items() if tp.topic in reads
        ]
    return groups


def _snapshot_records(
    table: Table[Any, Any], snap: Any, when: float
) -> tuple[list[ProducerRecord], list[ProducerRecord]]:
    """Records that rebuild ``snap``: one per row for the changelog, and a windowed table's stream times."""
    topic = table.changelog
    name = topic.name
    dumps_key = topic.key_codec.dumps
    state = snap.state
    partition_of: Mapping[Any, int] = state.partition_of
    records: list[ProducerRecord] = []
    if snap.window is None:
        for key, value in state.rows.items():
            records.append(
                ProducerRecord(name, partition_of.get(key, 0), dumps_key(key), topic.encode_value(value), when)
            )
        return records, []
    for (key, window), value in state.store.items():
        p = partition_of.get((key, window[0]), 0)
        records.append(ProducerRecord(name, p, dumps_key([key, list(window)]), topic.encode_value(value), when))
    times = table.stream_times
    stream_times = [] if times is None else [times.record(p, t, t) for p, t in state.stream_time.items()]
    return records, stream_times


async def fork_of(transport: Transport, app_id: str) -> dict[str, Any] | None:
    """The newest fork made for ``app_id`` in this folder (see :func:`write_fork`), if any."""
    if not await transport.partition_count(naming.FORK_TOPIC):
        return None
    tp = TP(naming.FORK_TOPIC, 0)
    end = (await transport.end_offsets([tp]))[tp]
    found = None
    for msg in await transport.read(tp, 0, end, 100_000):
        info = json.loads(msg.value or b"{}")
        if info.get("app") == app_id:
            found = info
    return found


async def commit_groups(transport: Transport, groups: Mapping[str, list[list[Any]]]) -> None:
    """Store each group's committed offsets (through a consumer that never starts)."""

    async def nothing(tps: set[TP]) -> None:
        return None

    for group, offsets in groups.items():
        if offsets:
            topics = sorted({t for t, _p, _o in offsets})
            consumer = transport.consumer(group, topics, RebalanceListener(nothing, nothing))
            await consumer.commit({TP(t, p): o for t, p, o in offsets})


async def restore_fork(transport: Transport, info: dict[str, Any], kept: set[str]) -> None:
    """A replay of a fork starts from it: the tables' changelogs and the agents' positions as forked.

    ``kept``: the changelogs that keep every record (not compacted).
    """
    for changelog, state in info["tables"].items():
        count = await transport.partition_count(state)
        if not count:
            continue
        await transport.create_topic(TopicSpec(changelog, count, changelog not in kept))
        for p in range(count):
            tp = TP(state, p)
            end = (await transport.end_offsets([tp]))[tp]
            msgs = await transport.read(tp, 0, end, end + 1)
            await transport.send(
                [ProducerRecord(changelog, p, m.key, m.value, m.timestamp, m.headers) for m in msgs]
            )
    await commit_groups(transport, info["groups"])


# -- where a fork is built, and how it is put in place ---------------------------------------------


class _Folder:
    """``local://PATH``: built in a sibling folder, renamed to ``PATH`` when complete."""

    def __init__(self, url: str) -> None:
        self.folder, full_sync = parse_local_url(url)
        self.query = "?sync=full" if full_sync else ""
        self.building = ""
        if os.path.exists(self.folder) and (not os.path.isdir(self.folder) or os.listdir(self.folder)):
            raise ConfigurationError(
                f"fork(broker={url!r}): {self.folder} is not empty; fork into a new folder, or delete "
                f"that one (rm -r {self.folder}) if it holds nothing you need"
            )

    def begin(self) -> str:
        """Make the temporary folder (deleting those of dead forks next to it); return its URL."""
        parent, name = os.path.split(self.folder)
        os.makedirs(parent, exist_ok=True)
        for entry in os.listdir(parent):
            found = _TEMPORARY.fullmatch(entry)
            if found and found.group(1) == name and _abandoned(os.path.join(parent, entry), int(found.group(2))):
                logger.info("deleting %s, left by a fork that was stopped", os.path.join(parent, entry))
                shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)
        self.building = os.path.join(parent, f".{name}.forking-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        os.makedirs(self.building)
        return f"local://{self.building}{self.query}"

    def mark(self) -> None:
        """Say in the folder that it is incomplete (opening it is an error until :meth:`publish`)."""
        with open(os.path.join(self.building, INCOMPLETE_MARKER), "w") as out:
            out.write(
                f"A fork written by streamnb (process {os.getpid()}) into {self.folder}, not finished.\n"
                "If that process is gone, delete this folder.\n"
            )

    def publish(self) -> None:
        """Make the fork durable, then rename it to its place (atomic: all of it or nothing)."""
        os.remove(os.path.join(self.building, INCOMPLETE_MARKER))
        for entry in os.listdir(self.building):
            _fsync(os.path.join(self.building, entry))
        _fsync(self.building)
        try:
            os.rename(self.building, self.folder)
        except OSError as exc:
            self.discard()
            raise ConfigurationError(
                f"fork: cannot put the fork in place at {self.folder} ({exc}); something was written there "
                "meanwhile: fork into a new folder"
            ) from exc
        _fsync(os.path.dirname(self.folder))

    def discard(self) -> None:
        """Delete the temporary folder (the fork failed or was cancelled)."""
        if self.building:
            shutil.rmtree(self.building, ignore_errors=True)


_TEMPORARY = re.compile(r"\.(.+)\.forking-(\d+)-[0-9a-f]{8}")


def _abandoned(path: str, pid: int) -> bool:
    """True when no process writes the temporary folder ``path`` any more (its lock is free, or its maker is gone)."""
    try:
        fd = os.open(os.path.join(path, LOCK_NAME), os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # (releases the lock if taken)
    return True


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _MemoryBroker:
    """``memory://NAME``: built in a broker of a temporary name, renamed to ``NAME`` when complete."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.name = url.partition("://")[2]
        self.building = ""
        found = MemoryBroker.find(self.name)
        if found is not None and found.topics:
            raise ConfigurationError(f"fork(broker={url!r}): that folder is not empty; fork into a new one")

    def begin(self) -> str:
        self.building = f"{self.name}.forking-{uuid.uuid4().hex[:8]}"
        return f"memory://{self.building}"

    def mark(self) -> None:
        return None

    def publish(self) -> None:
        try:
            MemoryBroker.rename(self.building, self.name)
        except ValueError as exc:
            self.discard()
            raise ConfigurationError(f"fork: {self.url} was written meanwhile: fork into a new one") from exc

    def discard(self) -> None:
        if self.building:
            MemoryBroker.forget(self.building)
