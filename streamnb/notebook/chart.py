"""Live Altair charts of tables and windowed tables, updated in place.

Example::

    per_minute = app.Table("per_minute", default=int).tumbling(60, expires=3600)
    per_minute.chart()                        # window start on x, count on y, a line per key
    per_minute.chart(mark="bar", top=5)       # bars, only the five busiest keys
    visits.chart(mark="rect")                 # spans: x = window start..end, y = key (sessions)
    counts.chart(x="key", y="value")          # a plain table needs x= and y=

    import altair as alt
    per_minute.chart(chart=alt.Chart().mark_area().encode(x="window_start:T", y="sum(value):Q"))

The chart is a small widget (anywidget) that draws the Vega-Lite spec with
vega-embed once, then, while the app runs, sends only the rows that changed
since the last update (keyed by key and window start) as Vega changesets;
the chart is never re-rendered, so pan and zoom survive updates. A background
task on the running loop looks at ``table.version`` at most every
``interval`` seconds and ends when the widget is closed or the app stops.
The JavaScript (Vega, Vega-Lite, vega-embed) is bundled with streamnb in
``static/chart.js``: nothing is loaded from a CDN.

Every display also carries a static SVG snapshot (drawn by ``vl-convert``).
When the app stops, the chart takes the final rows and *freezes*: its
outputs become the final SVG alone, which is what nbconvert, GitHub and
other readers without a kernel show (see :mod:`._frozen`).

Chart rows have the columns of ``as_dataframe()``: ``key``, ``value`` (or
a Record value's fields) and, for windowed tables, ``window_start`` and
``window_end`` as epoch *milliseconds* (which Vega-Lite reads as times) and
``closed``. A windowed table's chart also shows event time: a dashed rule at
the table's stream time, open windows faded and closed ones solid, and the
stream time and late events in its title (see :mod:`._chart_spec`).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
import traitlets

from ..errors import ConfigurationError
from ..tables.table import Table
from ..tables.windowed import WindowedTable
from ._chart_rows import event_time_of, keep_top, table_rows
from ._chart_spec import DATASET, default_spec, field_name, spec_from_chart
from ._chart_static import static_spec, to_svg
from ._frozen import StaticOutput
from ._live import app_of, base_table

if TYPE_CHECKING:
    import altair as alt

__all__ = ["DATASET", "LiveChart", "live_chart"]

logger = logging.getLogger("streamnb")

_STATIC = Path(__file__).with_name("static")


class LiveChart(StaticOutput, anywidget.AnyWidget):
    """A Vega-Lite chart of a table's rows that updates in place. Made by :func:`live_chart`.

    >>> from streamnb import App
    >>> per_minute = App("demo", broker="memory://").Table("per_minute", default=int).tumbling(60)
    >>> chart = per_minute.chart()
    >>> chart.refresh()              # push pending changes now (the task does it every interval)
    False
    >>> chart.close()                # stops the update task
    """

    _esm = _STATIC / "chart.js"

    spec = traitlets.Dict().tag(sync=True)
    """The Vega-Lite spec; its data is the named dataset :data:`DATASET`."""
    dataset = traitlets.Unicode(DATASET).tag(sync=True)
    renderer = traitlets.Unicode("svg").tag(sync=True)
    """``svg`` (marks are DOM elements) or ``canvas`` (faster for many points)."""
    uid = traitlets.Unicode().tag(sync=True)
    snapshot = traitlets.Dict().tag(sync=True)
    """``{"seq": n, "rows": [...]}``: every row as of change ``n`` (sent at creation, at the end and on request)."""
    change = traitlets.Dict().tag(sync=True)
    """``{"seq": n, "remove": [ids], "insert": [rows]}``: the rows changed since change ``n - 1``."""
    row_count = traitlets.Int(0).tag(sync=True)
    """Rows the chart shows."""
    event_time = traitlets.Dict().tag(sync=True)
    """Windowed tables: ``{"stream_time": epoch ms or None, "late_events": n, "late_windows": n}``.

    The front end sets them as the spec's parameters ``streamnb_stream_time``,
    ``streamnb_late_events`` and ``streamnb_late_windows`` (the stream-time
    rule and the title), without re-rendering the chart.
    """

    def __init__(
        self,
        source: Table[Any, Any] | WindowedTable,
        spec: dict[str, Any],
        *,
        interval: float = 0.5,
        top: int | None = None,
        rank_by: str = "value",
        renderer: str = "svg",
    ) -> None:
        windowed = isinstance(source, WindowedTable)
        table = base_table(source)
        rows = table_rows(table, windowed)
        if top is not None:
            rows = keep_top(rows, top, rank_by)
        # Everything the front end needs goes out with the widget itself.
        super().__init__(
            spec=spec, uid=uuid.uuid4().hex, renderer=renderer,
            snapshot={"seq": 0, "rows": list(rows.values())},
            change={"seq": 0, "remove": [], "insert": []},
            row_count=len(rows), event_time=event_time_of(table) if windowed else {},
        )
        self.source = source
        self.interval = interval
        self.top = top
        self._rank_by = rank_by
        self._windowed = windowed
        self._table = table
        self._last: dict[str, dict[str, Any]] = rows
        self._seq = 0
        self._version = table.version
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self._error: str | None = None
        self.stopped: str | None = None
        """Why updates stopped (``"closed"``, ``"app stopped"``, ``"app replaced"``), or ``None``."""
        self.on_msg(self._on_front_end_msg)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
            self.stopped = "no running event loop (call refresh() to update)"
        if loop is not None:
            self._task = loop.create_task(self._poll(), name=f"streamnb chart of {self._table.name}")

    # -- rows ---------------------------------------------------------------------------------

    def _collect(self) -> dict[str, dict[str, Any]]:
        rows = table_rows(self._table, self._windowed)
        if self.top is not None:
            rows = keep_top(rows, self.top, self._rank_by)
        return rows

    def rows(self) -> list[dict[str, Any]]:
        """The rows the chart shows now (without the internal ``__id``).

        A windowed table's row looks like ``{'key': '/', 'window_start':
        1700000040000.0, 'window_end': 1700000100000.0, 'value': 12}``.

        >>> from streamnb import App
        >>> chart = App("demo", broker="memory://").Table("t", default=int).tumbling(60).chart()
        >>> chart.rows()  # nothing counted yet
        []
        """
        return [{k: v for k, v in row.items() if k != "__id"} for row in self._last.values()]

    def refresh(self) -> bool:
        """Send the rows that changed since the last update (and the stream time); ``True`` when any did.

        The background task calls it whenever ``table.version`` moved.

        >>> from streamnb import App
        >>> chart = App("demo", broker="memory://").Table("t", default=int).tumbling(60).chart()
        >>> chart.refresh()  # the table did not change
        False
        """
        self._version = self._table.version
        current = self._collect()
        last = self._last
        remove = [rid for rid in last if rid not in current]
        insert = [row for rid, row in current.items() if last.get(rid) != row]
        self._last = current
        event_time = event_time_of(self._table) if self._windowed else {}
        moved = event_time != self.event_time
        if not remove and not insert and not moved:
            return False
        with self.hold_sync():
            if remove or insert:
                self._seq += 1
                self.change = {"seq": self._seq, "remove": remove, "insert": insert}
                self.row_count = len(current)
            if moved:
                self.event_time = event_time
        return True

    def _send_snapshot(self) -> None:
        new = {"seq": self._seq, "rows": list(self._last.values())}
        if new == self.snapshot:
            self.send_state("snapshot")
        else:
            self.snapshot = new

    def _on_front_end_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        # A view noticed a missing change (page reload, late model): send every row.
        if isinstance(content, dict) and content.get("type") == "resync":
            self.refresh()
            self._send_snapshot()

    # -- the update task ----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True while the background task updates the chart."""
        return self._task is not None and not self._task.done()

    def _follow(self) -> None:
        """Chart the table as defined now: a re-run table cell makes a new object sharing the data."""
        newest = app_of(self._table).tables.get(self._table.name)
        if newest is not None and newest is not self._table:
            self._table = newest
            if self._windowed and newest.window is not None:
                self.source = newest.window

    def _stop_reason(self) -> str | None:
        app = app_of(self._table)
        if self._closed:
            return "closed"
        if app.state == "stopped":
            return "app stopped"
        if not app.is_current:
            return "app replaced"
        return None

    async def _poll(self) -> None:
        try:
            while True:
                self._follow()
                changed = False
                if self._table.version != self._version:
                    try:
                        changed = self.refresh()
                        self._error = None
                    except Exception as exc:  # keep the chart alive; say it once
                        if str(exc) != self._error:
                            self._error = str(exc)
                            logger.exception("updating the chart of table %r failed", self._table.name)
                reason = self._stop_reason()
                if reason is not None:
                    if reason == "closed":
                        self.stopped = reason
                    else:
                        self.freeze(reason)  # once more with the final rows, then static
                    break
                self.follow_rest(rendered=changed)  # a replay at rest: static until its clock moves
                await asyncio.sleep(self.interval)
        finally:
            if not self._closed and not self.frozen:
                # Leave every row in the widget's state, so a reloaded page or
                # a saved notebook shows the final chart.
                self._send_snapshot()

    def close(self) -> None:
        """Stop updating and close the widget.

        >>> from streamnb import App
        >>> chart = App("demo", broker="memory://").Table("t", default=int).tumbling(60).chart()
        >>> chart.close()
        >>> chart.stopped
        'closed'
        """
        self._closed = True
        self.stopped = "closed"
        if self._task is not None and not self._task.done():
            self._task.cancel()
        super().close()

    # -- freezing (see ._frozen) ----------------------------------------------------------------

    def freeze_reason(self) -> str | None:
        """Why the chart should freeze now (its app stopped or was replaced), or ``None``."""
        reason = self._stop_reason()
        return None if reason == "closed" else reason

    def _final_refresh(self) -> None:
        self._follow()
        self.refresh()

    def _on_frozen(self, reason: str) -> None:
        self.stopped = reason
        task = self._task
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()
        self._send_snapshot()

    def _view_app(self) -> Any:
        return app_of(self._table)

    def _rest_marker(self) -> Any:
        return (self._seq, dict(self.event_time))

    def _live_bundle(self) -> tuple[dict[str, Any], dict[str, Any]]:
        out = self._repr_mimebundle_()
        if out is None:  # closed
            return self._static_bundle(), {}
        data, metadata = out
        return data, metadata

    def _static_bundle(self) -> dict[str, Any]:
        data: dict[str, Any] = {"text/plain": repr(self)}
        try:
            data["image/svg+xml"] = self.to_svg()
        except Exception:
            logger.warning("could not draw the static SVG of the chart of %r", self._table.name, exc_info=True)
        return data

    # -- static output --------------------------------------------------------------------------

    def static_spec(self) -> dict[str, Any]:
        """The Vega-Lite spec with the current rows inlined, for a static picture (files, static renderers).

        Without pan and zoom, tooltips and unused columns; with many rows,
        without the point per window (see :mod:`._chart_static`).

        >>> import altair as alt
        >>> from streamnb import App
        >>> chart = App("demo", broker="memory://").Table("t", default=int).tumbling(60).chart()
        >>> alt.LayerChart.from_dict(chart.static_spec())  # the windows, and a rule at the stream time
        alt.LayerChart(...)
        """
        return static_spec(self.spec, self.event_time, self.rows())

    def to_svg(self) -> str:
        """The chart as it is now, as SVG (offline, with ``vl-convert-python``).

        >>> from streamnb import App
        >>> chart = App("demo", broker="memory://").Table("t", default=int).tumbling(60).chart()
        >>> chart.to_svg().startswith("<svg")
        True
        """
        return to_svg(self.static_spec())

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        out = super()._repr_mimebundle_(**kwargs)
        if out is None:
            return None
        data, metadata = out
        try:
            data["image/svg+xml"] = self.to_svg()
        except ImportError:
            pass  # no vl-convert: the widget alone
        except Exception:
            logger.warning("could not draw the static SVG of the chart of %r", self._table.name, exc_info=True)
        return data, metadata

    def __repr__(self) -> str:
        state = "live" if self.running else f"stopped: {self.stopped}"
        return f"<LiveChart of {self._table.name!r} rows={len(self._last)} {state}>"


def live_chart(
    table_or_windowed: Table[Any, Any] | WindowedTable,
    *,
    x: Any = None,
    y: Any = None,
    color: Any = None,
    mark: str | None = None,
    chart: alt.TopLevelMixin | None = None,
    interval: float = 0.5,
    top: int | None = None,
) -> LiveChart:
    """A live chart of a table, updated in place while the app runs.

    Windowed tables default to window start (time) on x, ``value`` on y and
    one line per key (``color="key"``), zoomable on the time axis, with the
    stream time as a dashed rule, open windows faded, closed ones solid, and
    the stream time and late events in the title. ``mark="rect"`` draws each
    window as a span from its start to its end, one row per key (session
    windows as a timeline). A plain
    table has no default: pass ``x=`` and ``y=`` (for example ``x="key",
    y="value"``; then the default mark is ``bar``).

    Args:
        x: a column name (``"key"``, ``"value"``, ``"window_start"``,
            ``"window_end"`` or a Record value's fields), an Altair shorthand
            such as ``"sum(value):Q"``, or ``alt.X``.
        y: likewise (``alt.Y``).
        color: likewise (``alt.Color``).
        mark: ``line`` (windowed default), ``bar`` (plain default), ``rect``
            (windowed: spans per key), ``area``, ``point``, ``circle``, ``tick``, ...
        chart: your own Altair chart instead; its data is replaced by the
            table's rows (the named dataset :data:`DATASET`). Give types in
            its encodings (``"value:Q"``) when the table may still be empty.
        interval: seconds between looks at the table (the update throttle).
        top: only the ``top`` keys with the largest total ``value`` (or y field).

    >>> from streamnb import App
    >>> app = App("demo", broker="memory://")
    >>> per_minute = app.Table("per_minute", default=int).tumbling(60)
    >>> counts = app.Table("counts", default=int)
    >>> chart = per_minute.chart()  # shown when it is a cell's last expression
    >>> top_pages = live_chart(counts, x="key", y="value", top=10)
    """
    if not isinstance(table_or_windowed, (Table, WindowedTable)):
        raise ConfigurationError(
            f"live_chart() charts a streamnb Table or windowed table, got {type(table_or_windowed).__name__}"
        )
    if interval <= 0:
        raise ConfigurationError(f"interval must be > 0 seconds, got {interval!r}")
    if top is not None and (not isinstance(top, int) or top < 1):
        raise ConfigurationError(f"top must be a positive int, got {top!r}")
    windowed = isinstance(table_or_windowed, WindowedTable)
    table = base_table(table_or_windowed)
    sample = list(table_rows(table, windowed).values())[:50]
    event_time = event_time_of(table) if windowed else None
    if chart is not None:
        if any(v is not None for v in (x, y, color, mark)):
            raise ConfigurationError("pass either chart= (your own Altair chart) or x=/y=/color=/mark=, not both")
        spec = spec_from_chart(chart, sample, windowed, event_time)
        rank_by = "value"
    else:
        if not windowed and (x is None or y is None):
            raise ConfigurationError(
                f"table {table.name!r} is not windowed, so chart() needs x= and y=, "
                f'e.g. {table.name}.chart(x="key", y="value")'
            )
        spec = default_spec(
            table.name, windowed, sample, x=x, y=y, color=color, mark=mark, event_time=event_time
        )
        rank_by = field_name(y) or "value"
    return LiveChart(table_or_windowed, spec, interval=interval, top=top, rank_by=rank_by)
