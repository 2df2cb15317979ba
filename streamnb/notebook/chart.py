"""Live Altair charts of tables and windowed tables, updated in place.

Example::

    per_minute = app.Table("per_minute", default=int).tumbling(60, expires=3600)
    per_minute.chart()                        # window start on x, count on y, a line per key
    per_minute.chart(mark="bar", top=5)       # bars, only the five busiest keys
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

Where no widget can run (nbconvert, GitHub), the notebook shows the static
SVG snapshot that every display also carries (drawn by ``vl-convert``).

Chart rows have the columns of ``as_dataframe()``: ``key``, ``value`` (or
a Record value's fields) and, for windowed tables, ``window_start`` and
``window_end`` as epoch *milliseconds* (which Vega-Lite reads as times).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
import traitlets

from ..errors import ConfigurationError
from ..tables.table import Table
from ..tables.windowed import WindowedTable
from ._chart_rows import keep_top, table_rows
from ._live import app_of, base_table

if TYPE_CHECKING:
    import altair as alt
    import pandas as pd

__all__ = ["DATASET", "LiveChart", "live_chart"]

logger = logging.getLogger("streamnb")

DATASET = "streamnb_rows"
"""Name of the Vega dataset the table rows go to (use it in your own specs)."""

MARKS = ("area", "bar", "circle", "line", "point", "rect", "rule", "square", "tick", "trail")
_STATIC = Path(__file__).with_name("static")
_KNOWN_TYPES = {"key": "nominal", "window_start": "temporal", "window_end": "temporal", "value": "quantitative"}


class LiveChart(anywidget.AnyWidget):
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
            row_count=len(rows),
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
        """Send the rows that changed since the last update; ``True`` when there were any.

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
        if not remove and not insert:
            return False
        self._seq += 1
        with self.hold_sync():
            self.change = {"seq": self._seq, "remove": remove, "insert": insert}
            self.row_count = len(current)
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
                if self._table.version != self._version:
                    try:
                        self.refresh()
                        self._error = None
                    except Exception as exc:  # keep the chart alive; say it once
                        if str(exc) != self._error:
                            self._error = str(exc)
                            logger.exception("updating the chart of table %r failed", self._table.name)
                self.stopped = self._stop_reason()
                if self.stopped is not None:
                    break
                await asyncio.sleep(self.interval)
        finally:
            if not self._closed:
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

    # -- static output --------------------------------------------------------------------------

    def static_spec(self) -> dict[str, Any]:
        """The Vega-Lite spec with the current rows inlined (for files and static renderers).

        >>> import altair as alt
        >>> from streamnb import App
        >>> chart = App("demo", broker="memory://").Table("t", default=int).tumbling(60).chart()
        >>> alt.Chart.from_dict(chart.static_spec())
        alt.Chart(...)
        """
        spec: dict[str, Any] = json.loads(json.dumps(self.spec))
        spec["data"] = {"values": self.rows()}
        return spec

    def to_svg(self) -> str:
        """The chart as it is now, as SVG (offline, with ``vl-convert-python``).

        >>> from streamnb import App
        >>> chart = App("demo", broker="memory://").Table("t", default=int).tumbling(60).chart()
        >>> chart.to_svg().startswith("<svg")
        True
        """
        import vl_convert

        return str(vl_convert.vegalite_to_svg(self.static_spec(), allowed_base_urls=[]))

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
    one line per key (``color="key"``), zoomable on the time axis. A plain
    table has no default: pass ``x=`` and ``y=`` (for example ``x="key",
    y="value"``; then the default mark is ``bar``).

    Args:
        x, y, color: column names (``"key"``, ``"value"``, ``"window_start"``,
            ``"window_end"`` or a Record value's fields), Altair shorthands
            such as ``"sum(value):Q"``, or ``alt.X``/``alt.Y``/``alt.Color``.
        mark: ``line`` (windowed default), ``bar`` (plain default), ``area``,
            ``point``, ``circle``, ``tick``, ...
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
    if chart is not None:
        if any(v is not None for v in (x, y, color, mark)):
            raise ConfigurationError("pass either chart= (your own Altair chart) or x=/y=/color=/mark=, not both")
        spec = _spec_from_chart(chart, sample, windowed)
        rank_by = "value"
    else:
        if not windowed and (x is None or y is None):
            raise ConfigurationError(
                f"table {table.name!r} is not windowed, so chart() needs x= and y=, "
                f'e.g. {table.name}.chart(x="key", y="value")'
            )
        spec = _default_spec(table.name, windowed, sample, x=x, y=y, color=color, mark=mark)
        rank_by = _field_name(y) or "value"
    return LiveChart(table_or_windowed, spec, interval=interval, top=top, rank_by=rank_by)


# -- specs ------------------------------------------------------------------------------------


def _default_spec(
    name: str, windowed: bool, sample: list[dict[str, Any]], *, x: Any, y: Any, color: Any, mark: str | None
) -> dict[str, Any]:
    import altair as alt

    mark = mark or ("line" if windowed else "bar")
    if mark not in MARKS:
        raise ConfigurationError(f"unknown mark {mark!r}; use one of: {', '.join(MARKS)}")
    if windowed:
        x = x if x is not None else alt.X("window_start:T", title="window start")
        y = y if y is not None else alt.Y("value:Q", title=name)
        color = color if color is not None else alt.Color("key:N", title="key")
    encoding: dict[str, Any] = {"x": _channel(alt.X, x, sample), "y": _channel(alt.Y, y, sample)}
    options: dict[str, Any] = {"point": True} if mark == "line" else {}
    if windowed and mark in ("bar", "rect") and _field_name(x) == "window_start":
        encoding["x2"] = alt.X2("window_end")  # a bar spans its window [start, end)...
        encoding["y2"] = alt.datum(0)  # ...from zero up to the value
        options.update(opacity=0.7, stroke="white", strokeWidth=1)  # hopping windows overlap
    if color is not None:
        encoding["color"] = _channel(alt.Color, color, sample)
    tips = [f for f in (_field_name(x), _field_name(color), _field_name(y)) if f]
    encoding["tooltip"] = [_tooltip(f, sample) for f in dict.fromkeys(tips)]
    chart = getattr(alt.Chart(_frame(sample, windowed)), f"mark_{mark}")(**options)
    chart = chart.encode(**encoding).properties(title=name, width=640, height=300)
    if windowed:
        chart = chart.interactive(bind_y=False)  # pan and zoom in time; y follows the data
    else:
        chart = chart.interactive()
    return _named(chart.to_dict())


def _spec_from_chart(chart: Any, sample: list[dict[str, Any]], windowed: bool) -> dict[str, Any]:
    if not hasattr(chart, "to_dict") or not hasattr(chart, "properties"):
        raise ConfigurationError(f"chart= takes an Altair chart (alt.Chart(...)), got {type(chart).__name__}")
    # Types of untyped shorthands ("value") are inferred from the sample rows.
    spec = chart.properties(data=_frame(sample, windowed)).to_dict()
    return _named(spec)


def _named(spec: dict[str, Any]) -> dict[str, Any]:
    spec.pop("datasets", None)
    spec["data"] = {"name": DATASET}
    # Lay out again on every update: the first layout is made with no rows, so
    # without this, legends and axes that grow later would be cut off.
    spec.setdefault("autosize", {"type": "pad", "resize": True})
    return spec


def _frame(sample: list[dict[str, Any]], windowed: bool) -> pd.DataFrame:
    """A small DataFrame with the table's columns and types, for Altair's type inference."""
    import pandas as pd

    rows = [{k: v for k, v in r.items() if k != "__id"} for r in sample]
    columns = ["key", "window_start", "window_end", "value"] if windowed else ["key", "value"]
    frame = pd.DataFrame(rows) if rows else pd.DataFrame({c: pd.Series(dtype="float64") for c in columns})
    if not rows:
        frame["key"] = frame["key"].astype("object")
    for column in ("window_start", "window_end"):
        if column in frame:
            frame[column] = pd.to_datetime(frame[column], unit="ms")
    return frame


def _field_name(channel: Any) -> str | None:
    if channel is None:
        return None
    if isinstance(channel, str):
        shorthand = channel.split(":")[0]
        if "(" in shorthand:  # an aggregate such as sum(value): no plain field to show
            return None
        return shorthand
    given = getattr(channel, "shorthand", None)
    if isinstance(given, str) and given:
        return _field_name(given)
    field = getattr(channel, "field", None)
    return field if isinstance(field, str) else None


def _channel(cls: Any, value: Any, sample: list[dict[str, Any]]) -> Any:
    """An Altair channel; a bare column name gets its type from what we know of the rows."""
    if not isinstance(value, str) or ":" in value or "(" in value:
        return value if not isinstance(value, str) else cls(value)
    return cls(f"{value}:{_type_code(value, sample)}")


def _tooltip(field: str, sample: list[dict[str, Any]]) -> Any:
    import altair as alt

    kind = _type_code(field, sample)
    if kind == "T":
        return alt.Tooltip(f"{field}:T", format="%H:%M:%S")
    return alt.Tooltip(f"{field}:{kind}")


def _type_code(field: str, sample: list[dict[str, Any]]) -> str:
    known = {"nominal": "N", "temporal": "T", "quantitative": "Q"}
    if field in _KNOWN_TYPES:
        return known[_KNOWN_TYPES[field]]
    values = [r.get(field) for r in sample if r.get(field) is not None]
    if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return "Q"
    return "N"
