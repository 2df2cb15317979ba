"""Replays: run an app under a virtual clock from the start of a recording, again and again; fork it.

An app made with ``clock="virtual"`` (or started by :func:`replay`) always
starts from the beginning of what its folder holds, with empty tables: in
the folder it deletes its consumer groups, its internal topics (changelogs,
repartition, dead-letter and late topics) and every topic it defines that is
not an input. Inputs are the topics :func:`streamnb.record` copied into the
folder; in a folder with no recording, the topics agents read that no agent
writes to as a sink. So the same code gives the same tables and outputs on
every run, and a changed agent shows what its change does.

:func:`fork` starts a new folder from a moment of a replay: the inputs, the
tables as they were then (rebuilt from their history) and the agents'
positions in the inputs, so changed code can go on from there without
replaying everything before.

Example::

    app = App("pv", broker="local://slice", clock="virtual")
    ...
    await replay(app)                       # start, play as fast as possible to the end
    forked = await app.fork(at=app.clock.start_time + 300, broker="local://fork")
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from .. import naming
from ..errors import ConfigurationError
from ..processing.agents import Agent
from ..processing.feed import running_max
from ..processing.tasks import Task, Timer
from ..tables.table import Table
from ..topics import Topic
from ..transport import open_transport
from ..transport.base import TP, ProducerRecord, RebalanceListener, TopicSpec, Transport
from .clock import VirtualClock, check_speed, to_seconds
from .recording import recorded_topics

__all__ = ["KAFKA_REPLAY", "ReplayHost", "fork", "fork_of", "inputs_of", "move", "prepare", "replay", "restart"]

logger = logging.getLogger("streamnb")


class ReplayHost(Protocol):
    """What a replay needs from the app (:class:`~streamnb.app.App` provides it)."""

    id: str
    broker: str
    state: str
    clock: Any
    topics: dict[str, Topic[Any, Any]]
    agents: dict[str, Agent]
    tables: dict[str, Table[Any, Any]]
    timers: dict[str, Timer]
    tasks: dict[str, Task]

    async def connect(self) -> Transport:
        """The broker connection."""
        ...

    async def start(self) -> None:
        """Start the app."""
        ...

    async def stop(self) -> None:
        """Stop the app."""
        ...

    def move_to(self, broker: str) -> None:
        """Use ``broker`` from the next start on."""
        ...


async def inputs_of(app: ReplayHost, transport: Transport) -> set[str]:
    """The topics a replay reads and never deletes: the recorded ones, or else what agents read and nobody sinks to."""
    recorded = await recorded_topics(transport)
    if recorded:
        return recorded
    sinks = {s.name for a in app.agents.values() for s in a.sinks if isinstance(s, Topic)}
    sinks |= {s.channel.name for a in app.agents.values() for s in a.sinks if isinstance(s, Agent)}
    return {a.channel.name for a in app.agents.values() if not a.channel.internal} - sinks


async def _owned_topics(app: ReplayHost, transport: Transport, inputs: set[str]) -> list[str]:
    names = set(app.topics)
    prefix = f"{app.id}-"
    names.update(t for t in await transport.list_topics() if t.startswith(prefix))
    names.discard(naming.RECORDING_TOPIC)
    return sorted(names - inputs)


async def prepare(app: ReplayHost) -> None:
    """Make the app start from scratch (see the module docstring) and set its clock to the start."""
    clock: VirtualClock = app.clock
    transport = await app.connect()
    inputs = await inputs_of(app, transport)
    await transport.delete_topics(await _owned_topics(app, transport, inputs))
    groups = [naming.consumer_group(app.id, name) for name in app.agents]
    groups += [naming.consumer_group(app.id, naming.stream_owner(t)) for t in app.topics]
    await transport.delete_groups(groups)
    for topic in app.topics.values():
        if topic.declared:
            await topic.declare()
    for table in app.tables.values():
        table.clear_state()
    start, end = await _time_span(transport, sorted(inputs))
    forked = await fork_of(transport, app.id)
    if forked is not None:
        await _restore_fork(app, transport, forked)
        start = forked["at"]
    clock.reset(transport, start, end)
    clock.expected_feeds = lambda: sum(
        a.concurrency for a in app.agents.values() if a.running or a.state == "defined"
    )
    clock.restart = lambda: restart(app)


async def _time_span(transport: Transport, topics: Iterable[str]) -> tuple[float | None, float | None]:
    """The oldest first timestamp and the newest last one over the topics' partitions."""
    first: list[float] = []
    last: list[float] = []
    for name in topics:
        count = await transport.partition_count(name)
        tps = [TP(name, p) for p in range(count or 0)]
        if not tps:
            continue
        starts = await transport.beginning_offsets(tps)
        ends = await transport.end_offsets(tps)
        for tp in tps:
            if starts[tp] < ends[tp]:
                head = await transport.read(tp, starts[tp], ends[tp], 1)
                tail = await transport.read(tp, ends[tp] - 1, ends[tp], 1)
                first += [m.timestamp for m in head]
                last += [m.timestamp for m in tail]
    return (min(first) if first else None, max(last) if last else None)


async def restart(app: ReplayHost) -> None:
    """Start the replay over: stop agents, timers and tasks, start from scratch, start them again."""
    clock: VirtualClock = app.clock
    await clock.stop()
    for item in [*app.timers.values(), *app.tasks.values()]:
        await item.stop()
    await asyncio.gather(*(agent.stop() for agent in app.agents.values()))
    await prepare(app)
    for agent in list(app.agents.values()):
        await agent.start()
    for item in [*app.timers.values(), *app.tasks.values()]:
        item.start()
    clock.start()


async def replay(app: ReplayHost, speed: float | None = None, *, until: Any = None) -> VirtualClock:
    """Replay what the app's folder holds under a virtual clock, from the start.

    With ``speed=None`` (as fast as possible) it returns once everything
    was processed (or the clock reached ``until``, then paused); at another
    speed it returns at once and the replay plays on. A running replay
    starts over. Returns the app's clock (``pause()``, ``step()``, ``seek()``).
    Tables keep every change (``table.at()``) when the app was made with
    ``clock="virtual"`` or ``history=True``, not when a wall-clock app is
    replayed.

    >>> clock = await replay(app)  # doctest: +SKIP
    >>> await replay(app, speed=10)  # doctest: +SKIP
    """
    speed = check_speed(speed)
    if not getattr(app.clock, "virtual", False):
        if app.state in ("running", "starting"):
            raise ConfigurationError(
                f"app {app.id!r} runs on the wall clock: stop it first (await app.stop()), or make it with "
                "App(..., clock='virtual')"
            )
        if app.broker.startswith("kafka://"):
            raise ConfigurationError(KAFKA_REPLAY)
        app.clock = VirtualClock(speed)
    clock: VirtualClock = app.clock
    clock.speed = speed
    if until is not None:
        clock.speed = 0
    if app.state == "running":
        await restart(app)
    else:
        await app.start()
    if until is not None:
        await clock.seek(until)
    elif speed is None:
        await clock.idle()
    return clock


KAFKA_REPLAY = (
    "a virtual clock replays a local:// or memory:// folder, not kafka://: copy the topics first with "
    "`await streamnb.record('kafka://...', topics, to='local://slice')` and replay that folder"
)


async def fork(app: ReplayHost, at: Any, broker: str) -> str:  # noqa: C901 - untangled on wt/s-fork (playback/fork.py)
    """Write a new folder that starts where the app was at time ``at``; return its URL.

    The folder gets the app's inputs (whole, at the same offsets), each
    table's state at ``at`` (rebuilt from its history) as its changelog,
    and each agent's position in its inputs: the first message of each
    partition later than ``at``. ``App.fork`` then moves the app there.

    >>> url = await fork(app, at=app.clock.start_time + 300, broker="local://fork")  # doctest: +SKIP
    """
    when = to_seconds(at)
    if not isinstance(broker, str) or not broker.startswith(("local://", "memory://")):
        raise ConfigurationError(f"fork(broker={broker!r}): a fork goes into a local:// or memory:// folder")
    if broker == app.broker:
        raise ConfigurationError(f"fork(broker={broker!r}) is the app's own folder: fork into a new one")
    source = await app.connect()
    inputs = sorted(await inputs_of(app, source))
    snapshots = {name: await table.at(time=when) for name, table in app.tables.items()}
    dest = open_transport(broker, client_id=app.id)
    await dest.start()
    try:
        if [t for t in await dest.list_topics() if t != naming.RECORDING_TOPIC]:
            raise ConfigurationError(f"fork(broker={broker!r}): that folder is not empty; fork into a new one")
        positions: dict[TP, int] = {}
        for name in [*inputs, naming.RECORDING_TOPIC]:
            count = await source.partition_count(name)
            if count and not await dest.partition_count(name):
                await dest.create_topic(TopicSpec(name, count))
                for p in range(count):
                    positions[TP(name, p)] = await _copy_partition(source, dest, TP(name, p), when)
        groups: dict[str, list[list[Any]]] = {}
        for agent in app.agents.values():
            reads = set(agent.read_topics()) & set(inputs)
            groups[naming.consumer_group(app.id, agent.name)] = [
                [tp.topic, tp.partition, o] for tp, o in positions.items() if tp.topic in reads
            ]
        tables = {}
        for name, table in app.tables.items():
            rows, times = _snapshot_records(table, snapshots[name], when)
            logs = [(table.changelog, rows)]
            if table.stream_times is not None:
                logs.append((table.stream_times.topic, times))
            for log, records in logs:
                for topic in (log.name, naming.fork_state_topic(log.name)):
                    await dest.create_topic(TopicSpec(topic, table.changelog.partition_count, log.compacting))
                    for at in range(0, len(records), 20_000):
                        await dest.send([r._replace(topic=topic) for r in records[at : at + 20_000]])
                tables[log.name] = naming.fork_state_topic(log.name)
        info = {"app": app.id, "at": when, "groups": groups, "tables": tables}
        await dest.create_topic(TopicSpec(naming.FORK_TOPIC, 1))
        await dest.send([ProducerRecord(naming.FORK_TOPIC, 0, app.id.encode(), json.dumps(info).encode(), when)])
        await _commit_groups(dest, groups)
    finally:
        await dest.stop()
    return broker


async def fork_of(transport: Transport, app_id: str) -> dict[str, Any] | None:
    """The newest fork made for ``app_id`` in this folder (see :func:`fork`), if any."""
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


async def _commit_groups(transport: Transport, groups: Mapping[str, list[list[Any]]]) -> None:
    """Store each group's committed offsets (through a consumer that never starts)."""

    async def nothing(tps: set[TP]) -> None:
        return None

    for group, offsets in groups.items():
        if offsets:
            topics = sorted({t for t, _p, _o in offsets})
            consumer = transport.consumer(group, topics, RebalanceListener(nothing, nothing))
            await consumer.commit({TP(t, p): o for t, p, o in offsets})


async def _restore_fork(app: ReplayHost, transport: Transport, info: dict[str, Any]) -> None:
    """A replay of a fork starts from it: the tables' changelogs and the agents' positions as forked."""
    for changelog, state in info["tables"].items():
        count = await transport.partition_count(state)
        if not count:
            continue
        await transport.create_topic(TopicSpec(changelog, count, changelog not in _history_changelogs(app)))
        for p in range(count):
            tp = TP(state, p)
            end = (await transport.end_offsets([tp]))[tp]
            msgs = await transport.read(tp, 0, end, end + 1)
            await transport.send(
                [ProducerRecord(changelog, p, m.key, m.value, m.timestamp, m.headers) for m in msgs]
            )
    await _commit_groups(transport, info["groups"])


def _history_changelogs(app: ReplayHost) -> set[str]:
    """The changelogs (and stream-time topics) that keep every record: not compacted."""
    kept = [t for t in app.tables.values() if t.history_kept]
    return {t.changelog.name for t in kept} | {t.stream_times.topic.name for t in kept if t.stream_times is not None}


async def _copy_partition(source: Transport, dest: Transport, tp: TP, when: float) -> int:
    """Copy a partition whole (same offsets); return the offset of its first message later than ``when``."""
    begin = (await source.beginning_offsets([tp]))[tp]
    end = (await source.end_offsets([tp]))[tp]
    position = begin
    first_after: int | None = None
    newest = float("-inf")
    while position < end:
        msgs = await source.read(tp, position, end, 20_000)
        if not msgs:
            break
        keys = running_max(msgs, newest)
        newest = keys[-1]
        if first_after is None:
            first_after = next((m.offset for m, k in zip(msgs, keys) if k > when), None)
        await dest.send([ProducerRecord(tp.topic, tp.partition, m.key, m.value, m.timestamp, m.headers) for m in msgs])
        position = msgs[-1].offset + 1
    return first_after if first_after is not None else end


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


async def move(app: ReplayHost, broker: str) -> None:
    """Stop the app, point it at ``broker`` and start it there (its tables recover from that folder)."""
    await app.stop()
    app.move_to(broker)
    for table in app.tables.values():
        table.clear_state()
    await app.start()
