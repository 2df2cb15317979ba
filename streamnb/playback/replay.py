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
import logging
import math
from collections.abc import Iterable
from typing import Any, Protocol

from .. import naming
from ..errors import ConfigurationError
from ..processing.agents import Agent
from ..processing.tasks import Task, Timer
from ..tables.table import Table
from ..topics import Topic
from ..transport.base import TP, Transport
from .clock import VirtualClock, check_speed, to_seconds
from .fork import fork_of, restore_fork, write_fork
from .progress import Progress
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
        if table.persistence is not None:  # (its changelog was recreated: the stores start over too, quietly)
            table.persistence.wipe()
    start, end = await _time_span(transport, sorted(inputs))
    forked = await fork_of(transport, app.id)
    if forked is not None:
        await restore_fork(transport, forked, _history_changelogs(app))
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
                first += [m.timestamp for m in head if 0 <= m.timestamp < math.inf]  # (nan, inf: no time)
                last += [m.timestamp for m in tail if 0 <= m.timestamp < math.inf]
    return (min(first) if first else None, max(last) if last else None)


async def restart(app: ReplayHost) -> None:
    """Start the replay over: stop agents, timers and tasks, start from scratch, start them again."""
    clock: VirtualClock = app.clock
    await clock.stop()
    for item in [*app.timers.values(), *app.tasks.values()]:
        await item.stop()
    await asyncio.gather(*(agent.stop() for agent in app.agents.values()))
    await prepare(app)
    for table in list(app.tables.values()):
        if table.persistence is not None:  # rows in the stores: served again, rebuilt from the new changelog
            await table.recover()
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


async def fork(app: ReplayHost, at: Any, broker: str, progress: bool | Progress | None = None) -> str:
    """Write a new folder that starts where the app was at time ``at``; return its URL.

    The folder gets the app's inputs (whole, at the same offsets), each
    table's state at ``at`` (rebuilt from its history) as its changelog,
    and each agent's position in its inputs: the first message of each
    partition later than ``at``. It is built under a temporary name and
    renamed into place once complete (see :mod:`streamnb.playback.fork`).
    ``App.fork`` then moves the app there.

    >>> url = await fork(app, at=app.clock.start_time + 300, broker="local://fork")  # doctest: +SKIP
    """
    when = to_seconds(at)
    inputs = sorted(await inputs_of(app, await app.connect()))
    return await write_fork(app, inputs, when, broker, progress)


def _history_changelogs(app: ReplayHost) -> set[str]:
    """The changelogs (and stream-time topics) that keep every record: not compacted."""
    kept = [t for t in app.tables.values() if t.history_kept]
    return {t.changelog.name for t in kept} | {t.stream_times.topic.name for t in kept if t.stream_times is not None}


async def move(app: ReplayHost, broker: str) -> None:
    """Stop the app, point it at ``broker`` and start it there (its tables recover from that folder)."""
    await app.stop()
    app.move_to(broker)
    for table in app.tables.values():
        table.clear_state()
    await app.start()
