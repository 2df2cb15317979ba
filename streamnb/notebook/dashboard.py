"""The app dashboard: agents, offsets and lag, tables; with start/stop/pause buttons.

Example (in a notebook)::

    app.dashboard()          # or dashboard(app), or %streamnb dashboard

Per agent: state (running / paused / crashed / stopped), events processed,
events per second over the last refresh, dead-lettered count, a line per
join of its stream (results, records held per side, late records), the last
error with its traceback (collapsed), and buttons to start, stop and
pause/resume it. Per topic partition: the end offset and each reading
agent's committed offset and lag. Per table: its row count and, for windowed
tables, its stream time and late events. Per timer and crontab: its
schedule, its next run (a crontab's in its own time zone), runs and last error.

A background task on the kernel's loop refreshes it about every second,
with the transport's async calls only (nothing blocks the loop). It stops
when the widget is closed or the app stops.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from ..errors import ConfigurationError
from ._live import LiveWidget, clock, escape, styled
from ._stats import (
    AgentFigures,
    OffsetRow,
    Rates,
    agent_figures,
    future_warnings,
    join_lines,
    offsets,
    table_rows,
    timer_rows,
)
from .metrics_view import MetricsSparklines

if TYPE_CHECKING:
    from ..app.base import App
    from ..processing.agents import Agent

__all__ = ["Dashboard", "dashboard"]

logger = logging.getLogger("streamnb")

STATE_COLOURS = {"running": "#1a7f37", "paused": "#9a6700", "crashed": "#cf222e", "starting": "#0969da"}


def dashboard(app: App, *, interval: float = 1.0) -> Dashboard:
    """A live dashboard of ``app``'s agents, topic offsets and lag, and tables.

    >>> from streamnb import App
    >>> app = App("demo", broker="memory://")
    >>> @app.agent("orders")
    ... async def count(stream):
    ...     async for order in stream:
    ...         pass
    >>> board = dashboard(app)  # shown when it is a cell's last expression
    >>> [figure.name for figure in board.figures]
    ['count']
    """
    from ..app.base import App

    if not isinstance(app, App):
        raise ConfigurationError(f"dashboard() takes a streamnb.App, got {app!r}")
    return Dashboard(app, interval=interval)


class _AgentRow(widgets.VBox):
    """One agent: a summary line, its buttons and its last error."""

    def __init__(self, board: Dashboard, name: str) -> None:
        self.board = board
        self.agent_name = name
        self.summary = widgets.HTML()
        self.joins = widgets.HTML()
        """One line per join of the agent's stream (results, records held per side, late)."""
        self.error = widgets.HTML()
        layout = widgets.Layout(width="auto")
        self.start_button = widgets.Button(description="Start", tooltip=f"start agent {name}", layout=layout)
        self.stop_button = widgets.Button(description="Stop", tooltip=f"stop agent {name}", layout=layout)
        self.pause_button = widgets.Button(description="Pause", tooltip=f"pause/resume agent {name}", layout=layout)
        self.start_button.on_click(lambda _b: board.act(name, "start"))
        self.stop_button.on_click(lambda _b: board.act(name, "stop"))
        self.pause_button.on_click(lambda _b: board.act(name, "toggle"))
        buttons = widgets.HBox([self.start_button, self.stop_button, self.pause_button])
        super().__init__([widgets.HBox([self.summary, buttons]), self.joins, self.error])

    def show(self, figures: AgentFigures, agent: Agent, app_running: bool) -> None:
        colour = STATE_COLOURS.get(figures.state, "#57606a")
        summary = (
            f"<span style='display:inline-block;min-width:34em'><b>{escape(figures.name)}</b> "
            f"<span style='color:{colour}'>{escape(figures.state)}</span> · "
            f"{figures.processed:,} processed · {figures.rate:,.1f} events/s · "
            f"{figures.dead_lettered:,} dead-lettered · {figures.crashes} crashes</span>"
        )
        _set(self.summary, summary)
        _set(self.joins, "".join(f"<div style='margin-left:1em'>↳ {escape(line)}</div>" for line in join_lines(agent)))
        _set(self.error, _error_html(agent))
        live = figures.state in ("running", "paused", "crashed", "starting")
        paused = agent.paused
        _set_attr(self.start_button, "disabled", live or not app_running)
        _set_attr(self.stop_button, "disabled", not live or not app_running)
        _set_attr(self.pause_button, "disabled", not live or not app_running)
        _set_attr(self.pause_button, "description", "Resume" if paused else "Pause")


class Dashboard(LiveWidget):
    """The widget :func:`dashboard` returns."""

    kind = "dashboard"

    def __init__(self, app: App, *, interval: float = 1.0) -> None:
        self.header = widgets.HTML()
        self.agents_box = widgets.VBox()
        self.offsets_html = widgets.HTML()
        self.tables_html = widgets.HTML()
        self.timers_html = widgets.HTML()
        self.sparklines = MetricsSparklines(app)
        """Rate, lag and commit latency per agent (:mod:`streamnb.notebook.metrics_view`)."""
        self.rows: dict[str, _AgentRow] = {}
        """The agent rows, by agent name."""
        self.figures: list[AgentFigures] = []
        """The agent figures shown."""
        self.offsets: list[OffsetRow] = []
        """The offsets shown."""
        self._rates = Rates()
        self._actions: set[asyncio.Task[None]] = set()
        super().__init__(
            app, name=app.id, interval=interval,
            children=[self.header, self.agents_box, self.sparklines, self.offsets_html, self.tables_html,
                      self.timers_html],
        )
        self._render_sync()
        self._start()

    # -- refresh ------------------------------------------------------------------------------

    async def _poll(self) -> None:
        app = self.app
        rows: list[OffsetRow] = []
        if app.state == "running" and app.transport is not None:
            rows = await offsets(app)
        self.offsets = rows
        self._render_sync()

    async def refresh(self) -> None:
        """Refresh now (the background task does this every ``interval`` s).

        >>> await board.refresh()  # doctest: +SKIP
        """
        await self._poll()

    def _render_sync(self) -> None:
        app = self.app
        self.figures = agent_figures(app, self._rates)
        running = app.state == "running"
        names = [f.name for f in self.figures]
        if names != list(self.rows):
            for name in set(self.rows) - set(names):
                _close(self.rows.pop(name))
            self.rows = {name: self.rows.get(name) or _AgentRow(self, name) for name in names}
            self.agents_box.children = list(self.rows.values())
        for fig in self.figures:
            agent = app.agents.get(fig.name)
            if agent is not None:
                self.rows[fig.name].show(fig, agent, running)
        _set(self.offsets_html, _offsets_html(self.offsets))
        _set(self.tables_html, _tables_html(app))
        _set(self.timers_html, _timers_html(app))
        self.sparklines.update()
        self._mark_updated()
        self._set_header()

    def _set_header(self) -> None:
        app = self.app
        text = (
            f"<b>{escape(app.id)}</b> · {escape(app.state)} on <code>{escape(app.broker)}</code> · "
            f"agents: {len(app.agents)} · tables: {len(app.tables)} · updated {clock(self.last_update)}"
        )
        if self.error:
            text += f" · <span style='color:#cf222e'>refresh error: {escape(self.error)}</span>"
        if self.stopped:
            text += f" · <em>not updating ({escape(self.stopped)})</em>"
        _set(self.header, text)

    def _show_error(self, message: str) -> None:
        self._set_header()

    def _final_refresh(self) -> None:
        self._render_sync()

    def _stopped(self, reason: str) -> None:
        super()._stopped(reason)
        if reason != "closed":
            self.figures = agent_figures(self.app, self._rates)
            for fig in self.figures:
                row = self.rows.get(fig.name)
                agent = self.app.agents.get(fig.name)
                if row is not None and agent is not None:
                    row.show(fig, agent, False)
            self._set_header()

    # -- buttons ------------------------------------------------------------------------------

    def act(self, name: str, action: str) -> asyncio.Task[None] | None:
        """Start, stop or pause/resume an agent (what the buttons do)."""
        agent = self.app.agents.get(name)
        if agent is None or self.app.state != "running":
            return None
        if action == "toggle":
            if agent.paused:
                agent.resume()
            else:
                agent.pause()
            self._render_sync()
            return None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        task = loop.create_task(self._lifecycle(name, action), name=f"streamnb-dashboard-{action}-{name}")
        self._actions.add(task)
        task.add_done_callback(self._actions.discard)
        return task

    async def _lifecycle(self, name: str, action: str) -> None:
        app = self.app
        try:
            if action == "start":
                await app.start_agent(name)
            else:
                await app.stop_agent(name)
        except Exception as exc:
            self.error = f"{action} {name}: {type(exc).__name__}: {exc}"
            logger.exception("dashboard: %s agent %r failed", action, name)
        if not self._closing:
            self._render_sync()
            self.wake()

    def _snapshot_html(self) -> str:
        agents = "".join(
            f"<tr><td>{escape(f.name)}</td><td>{escape(f.state)}</td><td>{f.processed:,}</td>"
            f"<td>{f.rate:,.1f}</td><td>{f.dead_lettered:,}</td><td>{f.crashes}</td>"
            f"<td>{escape(f.last_error)}</td></tr>"
            + "".join(f"<tr><td colspan='7'>↳ {escape(line)}</td></tr>"
                      for line in join_lines(self.app.agents[f.name]) if f.name in self.app.agents)
            for f in self.figures
        )
        table = (
            "<table><thead><tr><th>agent</th><th>state</th><th>processed</th><th>events/s</th>"
            f"<th>dead-lettered</th><th>crashes</th><th>last error</th></tr></thead><tbody>{agents}</tbody></table>"
        )
        return (
            f"<div>{self.header.value}</div>{table}{self.sparklines.value}{self.offsets_html.value}"
            f"{self.tables_html.value}{self.timers_html.value}"
        )


# -- html -----------------------------------------------------------------------------------------


def _error_html(agent: Agent) -> str:
    if agent.last_error is None:
        return ""
    when = clock(agent.errors[-1][0]) if agent.errors else "-"
    summary = escape(" ".join(f"{type(agent.last_error).__name__}: {agent.last_error}".split())[:200])
    tb = escape(agent.last_traceback or "")
    return (
        "<details style='margin-left:1em'>"
        f"<summary style='color:#cf222e'>last error at {when}: {summary}</summary>"
        f"<pre style='font-size:85%'>{tb}</pre></details>"
    )


def _offsets_html(rows: list[OffsetRow]) -> str:
    if not rows:
        return "<div><em>offsets: shown while the app is running</em></div>"
    body = "".join(
        f"<tr><td>{escape(r.topic)}</td><td>{r.partition}</td><td>{r.end:,}</td><td>{escape(r.agent)}</td>"
        f"<td>{'' if r.committed is None else f'{r.committed:,}'}</td>"
        f"<td>{'' if r.lag is None else f'{r.lag:,}'}</td></tr>"
        for r in rows
    )
    return styled(
        "<details open><summary><b>offsets and lag</b> "
        f"(total lag {sum(r.lag or 0 for r in rows):,})</summary>"
        "<table><thead><tr><th>topic</th><th>partition</th><th>end offset</th><th>agent</th>"
        f"<th>committed</th><th>lag</th></tr></thead><tbody>{body}</tbody></table></details>"
    )


def _tables_html(app: App) -> str:
    rows = table_rows(app)
    if not rows:
        return ""
    windowed = any(r["late_events"] is not None for r in rows)
    head = "<th>table</th><th>kind</th><th>rows</th>"
    if windowed:
        head += (
            "<th title='the newest event time on each partition (the oldest of them): "
            "windows close when it passes their end plus grace'>stream time</th>"
            "<th title='events written in no window (every window they belonged to had closed)'>late events</th>"
            "<th title='window updates refused because the window had closed'>late window updates</th>"
        )
    body = ""
    for r in rows:
        cells = f"<td>{escape(r['table'])}</td><td>{escape(r['kind'])}</td><td>{r['rows']:,}</td>"
        if windowed:
            if r["late_events"] is None:
                cells += "<td></td><td></td><td></td>"
            else:
                late = r["late_events"]
                colour = " style='color:#cf222e'" if late else ""
                cells += (
                    f"<td>{escape(_event_clock(r['stream_time']))}</td>"
                    f"<td{colour}>{late:,}</td><td>{r['late_windows']:,}</td>"
                )
        body += f"<tr>{cells}</tr>"
    warnings = "".join(
        f"<div style='color:#cf222e'>&#9888; {escape(line)}</div>" for line in future_warnings(app)
    )
    return styled(
        f"<details open><summary><b>tables</b></summary>{warnings}{_restoring_html(app)}{_standby_html(app)}"
        f"<table><thead><tr>{head}"
        f"</tr></thead><tbody>{body}</tbody></table></details>"
    )


def _restoring_html(app: App) -> str:
    """A progress bar per table partition being restored (``table.restore_progress``)."""
    return "".join(
        f"<div>restoring {escape(t.name)} partition {p}: <progress value='{r.done}' max='{r.done + r.remaining}'>"
        f"</progress> {r.done:,} of {r.done + r.remaining:,} records</div>"
        for t in list(app.tables.values()) for p, r in sorted(t.restore_progress.items())
    )


def _standby_html(app: App) -> str:
    """A line per table partition this worker keeps a standby replica of, and how far behind it is."""
    return "".join(
        f"<div>standby replica of {escape(t.name)} partition {p}: <progress value='{s.offset}' "
        f"max='{s.offset + s.behind}'></progress> "
        f"{'caught up' if s.behind <= 0 else f'{s.behind:,} records behind'} (offset {s.offset:,})</div>"
        for t in list(app.tables.values()) for p, s in sorted(t.standby_progress.items())
    )


def _timers_html(app: App) -> str:
    rows = timer_rows(app)
    if not rows:
        return ""
    body = ""
    for r in rows:
        error = f"<td style='color:#cf222e'>{escape(r['last_error'])}</td>" if r["last_error"] else "<td></td>"
        body += (
            f"<tr><td>{escape(r['timer'])}</td><td>{escape(r['schedule'])}</td>"
            f"<td>{escape(_next_run(r['next_run'], r['zone']))}</td><td>{r['runs']:,}</td>"
            f"<td>{r['skipped']:,}</td>{error}</tr>"
        )
    return styled(
        "<details open><summary><b>timers and crontabs</b></summary><table><thead><tr><th>name</th>"
        "<th>schedule</th><th title='on the app clock (a replay: virtual time)'>next run</th><th>runs</th>"
        "<th title='turns skipped: this worker was not the leader'>skipped</th><th>last error</th>"
        f"</tr></thead><tbody>{body}</tbody></table></details>"
    )


def _next_run(ts: float | None, zone: tzinfo | None) -> str:
    """A timer's next run: local time, or a crontab's in its zone with the zone's abbreviation.

    >>> from zoneinfo import ZoneInfo
    >>> _next_run(1743296400.0, ZoneInfo("Europe/Berlin"))
    '2025-03-30 03:00:00 CEST'
    >>> _next_run(None, None)
    '-'
    """
    if ts is None:
        return "-"
    if zone is None:
        return _event_clock(ts)
    return datetime.fromtimestamp(ts, zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def _event_clock(ts: float | None) -> str:
    """An event time as local ``YYYY-MM-DD HH:MM:SS`` (with milliseconds when it has some), or ``-``.

    >>> _event_clock(None)
    '-'
    """
    if ts is None:
        return "-"
    text = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
    millis = round(ts * 1000) % 1000
    return f"{text}.{millis:03d}" if millis else text


def _set(widget: widgets.HTML, value: str) -> None:
    if widget.value != value:
        widget.value = value


def _set_attr(widget: Any, name: str, value: Any) -> None:
    if getattr(widget, name) != value:
        setattr(widget, name, value)


def _close(widget: Any) -> None:
    for child in list(getattr(widget, "children", ()) or ()):
        _close(child)
    widget.close()

