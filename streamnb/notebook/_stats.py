"""What the status magic and the dashboard show: agent, offset and table figures (internal)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, NamedTuple

from .. import naming
from ..transport.base import TP

if TYPE_CHECKING:
    from ..app.base import App
    from ..processing.agents import Agent

__all__ = [
    "FUTURE",
    "AgentFigures",
    "OffsetRow",
    "Rates",
    "agent_figures",
    "agent_state",
    "future_warnings",
    "group_of",
    "join_lines",
    "offsets",
    "one_line",
    "timer_rows",
]

FUTURE = 3600.0
"""Seconds a partition's stream time may be ahead of the clock before the views warn (or ``max_event_time_skew``)."""


class AgentFigures(NamedTuple):
    """One agent's line in ``%streamnb status`` and in the dashboard."""

    name: str
    """Agent name."""
    state: str
    """``running``, ``paused``, ``crashed``, ``starting`` or ``stopped``."""
    processed: int
    """Events processed (dead-lettered ones included)."""
    rate: float
    """Events per second (over the last interval, or since the start)."""
    dead_lettered: int
    """Events sent to the dead-letter topic."""
    crashes: int
    """Times the agent raised."""
    last_error: str
    """The last problem on one line: ``Type: message`` of a crash, or ``dead-lettered topic[p]@o: why``."""


class OffsetRow(NamedTuple):
    """One topic partition as an agent's consumer group sees it."""

    topic: str
    """Topic name."""
    partition: int
    """Partition number."""
    end: int
    """Offset the next message will get."""
    agent: str
    """Agent reading it (``""`` for topics no agent reads)."""
    committed: int | None
    """The agent's committed offset (``None`` when no agent reads the topic)."""
    lag: int | None
    """Messages not yet committed by the agent."""


def agent_state(agent: Agent) -> str:
    """The state to show: ``running``, ``paused``, ``crashed``, ``starting`` or ``stopped``."""
    state = agent.state
    if state in ("defined", "stopped"):
        return "stopped"
    if state in ("running", "paused", "crashed") and not agent.running:
        return "stopped"  # the agent function returned
    return state


def one_line(exc: BaseException | None, limit: int = 120) -> str:
    """``Type: message`` on one line, shortened to ``limit`` characters."""
    if exc is None:
        return ""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Rates:
    """Events per second per agent between two calls (a new Agent object starts over)."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[int, float, int]] = {}

    def __call__(self, agent: Agent, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        prev = self._last.get(agent.name)
        self._last[agent.name] = (id(agent), now, agent.events_processed)
        if prev is None or prev[0] != id(agent) or now <= prev[1]:
            return agent.rate() if agent.running else 0.0
        return max(agent.events_processed - prev[2], 0) / (now - prev[1])


def agent_figures(app: App, rates: Rates | None = None) -> list[AgentFigures]:
    """Figures for every agent of ``app`` (rates since start unless ``rates`` tracks intervals)."""
    out = []
    for agent in list(app.agents.values()):
        rate = rates(agent) if rates is not None else (agent.rate() if agent.running else 0.0)
        out.append(
            AgentFigures(
                agent.name, agent_state(agent), agent.events_processed, rate, agent.dead_lettered,
                agent.crashes, last_problem(agent),
            )
        )
    return out


def join_lines(agent: Agent) -> list[str]:
    """One line per join of the agent's stream: results, records held per side, late records.

    A stream–table join's line counts its unmatched events (inner: skipped),
    the events it holds back (a versioned table's ``grace=``) and the records
    of the table's ``source=`` topic it read into the table in step with the
    stream (a table it does not move, such as a GlobalTable, reads none).

    >>> from streamnb import App
    >>> app = App("demo", broker="memory://")
    >>> customers = app.Table("customers", source=app.topic("customers"))
    >>> @app.agent("orders")
    ... async def enrich(stream):
    ...     async for pair in stream.join(customers, how="left"):
    ...         pass
    >>> join_lines(app.agents["enrich"])  # (filled once the agent runs)
    []
    """
    out = []
    for stage, stats in list(getattr(agent, "joins", {}).items()):
        if stats.table is None:  # stream–stream: the records each side keeps for matching
            held = f"buffered {stats.buffered_left:,} left / {stats.buffered_right:,} right"
        else:  # stream–table: events held back (versioned, grace=), records of the table's topic read
            held = (f"{stats.unmatched:,} unmatched · {stats.buffered_left:,} events held · "
                    f"{stats.table_read:,} records of table {stats.table!r} read")
        out.append(f"{stage}: {stats.joined:,} joined · {held} · {stats.late:,} late · {stats.dropped:,} dropped")
    return out


def last_problem(agent: Agent, limit: int = 160) -> str:
    """The agent's newest error on one line: a crash, or a message it dead-lettered and why."""
    if agent.errors:
        _when, text = agent.errors[-1]
        if text.startswith("dead-lettered "):
            line = " ".join(text.split())
            return line if len(line) <= limit else line[: limit - 1] + "…"
    return one_line(agent.last_error)


def group_of(app: App, agent: Agent) -> str:
    """The consumer group of an agent (each agent has its own)."""
    return naming.consumer_group(app.id, agent.name)


async def _partitions(app: App, name: str) -> int:
    topic = app.topics.get(name)
    if topic is not None and topic.declared:
        return topic.partition_count
    transport = app.transport
    if transport is None:
        return 0
    return await transport.partition_count(name) or 0


async def offsets(app: App) -> list[OffsetRow]:
    """End offset and, per agent reading it, committed offset and lag of each partition.

    Topics the app defined that no agent reads are listed with their end
    offsets only. Needs a connected app (all calls are the transport's async ones).
    """
    transport = app.transport
    if transport is None:
        return []
    rows: list[OffsetRow] = []
    read: set[str] = set()
    for agent in list(app.agents.values()):
        group = group_of(app, agent)
        for name in agent.read_topics():
            read.add(name)
            count = await _partitions(app, name)
            tps = [TP(name, p) for p in range(count)]
            if not tps:
                continue
            ends = await transport.end_offsets(tps)
            committed = await transport.committed(group, tps)
            begins = await transport.beginning_offsets(tps)
            for tp in tps:
                done = committed.get(tp, begins.get(tp, 0))
                rows.append(OffsetRow(name, tp.partition, ends[tp], agent.name, done, max(ends[tp] - done, 0)))
    for name, topic in list(app.topics.items()):
        if topic.internal or name in read or not topic.declared:
            continue
        tps = [TP(name, p) for p in range(topic.partition_count)]
        ends = await transport.end_offsets(tps)
        rows.extend(OffsetRow(name, tp.partition, ends[tp], "", None, None) for tp in tps)
    return rows


def table_rows(app: App) -> list[dict[str, Any]]:
    """Name, kind and row count of every table; stream time and late counts of windowed ones.

    The row count is exact in memory, RocksDB's estimate on ``rocksdb://``
    (a refresh never scans a table).

    ``stream_time`` (epoch seconds, or None before the first event) is the
    oldest over the table's partitions, as ``windowed.stream_time()``;
    ``late_events`` counts events written in no window, ``late_windows``
    refused window updates. Plain tables have None for all three.
    """
    out = []
    for table in list(app.tables.values()):
        window = table.window
        row: dict[str, Any] = {
            "table": table.name, "kind": "table", "rows": table.estimated_len(), "version": table.version,
            "stream_time": None, "late_events": None, "late_windows": None,
        }
        if window is not None:
            row.update(
                kind=repr(window.window), stream_time=window.stream_time(),
                late_events=window.late_events, late_windows=window.late_windows,
            )
        out.append(row)
    return out


def timer_rows(app: App) -> list[dict[str, Any]]:
    """Every timer and crontab: its schedule, next run, runs, skipped turns and last error.

    ``next_run`` (epoch seconds on the app's clock) is known while the app
    runs; ``zone`` is a crontab's time zone (None for an interval timer).

    >>> from streamnb import App
    >>> app = App("demo", broker="memory://")
    >>> @app.crontab("*/5 * * * *", timezone="Europe/Berlin")
    ... async def tick():
    ...     pass
    >>> [(r["timer"], r["kind"], r["schedule"], r["next_run"]) for r in timer_rows(app)]
    [('tick', 'crontab', "cron '*/5 * * * *' in Europe/Berlin", None)]
    """
    out = []
    for timer in list(app.timers.values()):
        out.append({
            "timer": timer.name, "kind": "timer" if timer.interval is not None else "crontab",
            "schedule": timer.schedule, "next_run": timer.next_run, "zone": getattr(timer, "timezone", None),
            "runs": timer.runs, "skipped": timer.skipped, "last_error": one_line(timer.last_error),
        })
    return out
def future_warnings(app: App, now: float | None = None) -> list[str]:
    """One line per windowed table partition whose stream time is far ahead of the clock.

    Far: more than the app's ``max_event_time_skew``, or :data:`FUTURE`
    (an hour) without one. The clock is the wall clock (the replay's time
    under a virtual clock). Such a partition's windows up to there are
    closed, and every event before that time will be late.
    """
    clock = app.now() if now is None else now
    if clock != clock or clock in (float("inf"), float("-inf")):
        return []
    ahead = app.max_event_time_skew or FUTURE
    out = []
    for table in list(app.tables.values()):
        window = table.window
        if window is None:
            continue
        for p in range(table.changelog.partition_count):
            t = window.stream_time(partition=p)
            if t is not None and t > clock + ahead:
                out.append(
                    f"table {table.name!r} partition {p}: stream time {_when(t)} is {_span(t - clock)} ahead of "
                    "the clock, so every event older than that will be late there. An event far in the future "
                    "moved it (App(max_event_time_skew=...) dead-letters such events instead); to start that "
                    f"table over, delete its changelog and stream-time topics (or use a new app id)"
                )
    return out


def _when(ts: float) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) + " UTC"
    except (OverflowError, ValueError, OSError):
        return f"{ts!r} s"


def _span(seconds: float) -> str:
    for unit, size in (("years", 365.25 * 86400), ("days", 86400.0), ("hours", 3600.0)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds / 60:.0f} minutes"
