"""The Vega-Lite specs of live charts (internal): defaults, your own Altair chart, event time.

A windowed table's default chart is a layer chart over the named dataset
:data:`DATASET` (the table's rows):

* the windows: a line per key with a point per window (``mark="line"``),
  bars spanning ``[start, end)`` (``"bar"``), or spans ``x = window_start,
  x2 = window_end, y = key`` (``"rect"``: session windows as a timeline;
  a session of one event, zero wide, is drawn as a tick);
* open windows drawn faded, closed ones (final) solid: the rows' ``closed``
  column, with a legend;
* a dashed rule at the table's stream time (the Vega-Lite parameter
  :data:`STREAM_TIME`, epoch milliseconds), and the stream time and late
  event count in the title (:data:`LATE_EVENTS`, :data:`LATE_WINDOWS`).

The parameters are set by the widget (``view.signal``) without re-rendering,
so pan and zoom survive. Your own chart (``chart=``) gets the parameters too,
to use in its expressions.

>>> spec = default_spec("views", True, [], x=None, y=None, color=None, mark=None)   # doctest: +SKIP
>>> [p["name"] for p in spec["params"]]                                             # doctest: +SKIP
['streamnb_stream_time', 'streamnb_late_events', 'streamnb_late_windows']
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DATASET",
    "EVENT_TIME_PARAMS",
    "LATE_EVENTS",
    "LATE_WINDOWS",
    "MARKS",
    "STREAM_TIME",
    "default_spec",
    "field_name",
    "spec_from_chart",
    "with_event_time",
]

DATASET = "streamnb_rows"
"""Name of the Vega dataset the table rows go to (use it in your own specs)."""

STREAM_TIME = "streamnb_stream_time"
"""Vega-Lite parameter: the table's stream time in epoch milliseconds (null before any event)."""
LATE_EVENTS = "streamnb_late_events"
"""Vega-Lite parameter: the table's late events (written in no window)."""
LATE_WINDOWS = "streamnb_late_windows"
"""Vega-Lite parameter: window updates the table refused because the window had closed."""
EVENT_TIME_PARAMS = {STREAM_TIME: "stream_time", LATE_EVENTS: "late_events", LATE_WINDOWS: "late_windows"}
"""Parameter name -> key of the widget's ``event_time`` trait."""

MARKS = ("area", "bar", "circle", "line", "point", "rect", "rule", "square", "tick", "trail")
_KNOWN_TYPES = {
    "key": "nominal", "window_start": "temporal", "window_end": "temporal", "value": "quantitative",
    "closed": "nominal",
}
_TIME_FIELDS = ("window_start", "window_end")
_RULE_COLOUR = "#cf222e"


# -- entry points -------------------------------------------------------------------------------


def default_spec(
    name: str, windowed: bool, sample: list[dict[str, Any]], *, x: Any, y: Any, color: Any, mark: str | None,
    event_time: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The spec ``table.chart(x=, y=, color=, mark=)`` draws (see the module docstring)."""
    import altair as alt

    mark = mark or ("line" if windowed else "bar")
    if mark not in MARKS:
        raise ConfigurationError(f"unknown mark {mark!r}; use one of: {', '.join(MARKS)}")
    if not windowed:
        encoding = {"x": _channel(alt.X, x, sample), "y": _channel(alt.Y, y, sample)}
        if color is not None:
            encoding["color"] = _channel(alt.Color, color, sample)
        tips = [f for f in (field_name(x), field_name(color), field_name(y)) if f]
        encoding["tooltip"] = [_tooltip(f, sample) for f in dict.fromkeys(tips)]
        chart = getattr(alt.Chart(_frame(sample, windowed)), f"mark_{mark}")()
        chart = chart.encode(**encoding).properties(title=name, width=640, height=300).interactive()
        return _named(chart.to_dict())
    return _windowed_spec(name, sample, x=x, y=y, color=color, mark=mark, event_time=event_time)


def spec_from_chart(
    chart: Any, sample: list[dict[str, Any]], windowed: bool, event_time: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Your own Altair chart, fed the table's rows (and, windowed, the event-time parameters)."""
    if not hasattr(chart, "to_dict") or not hasattr(chart, "properties"):
        raise ConfigurationError(f"chart= takes an Altair chart (alt.Chart(...)), got {type(chart).__name__}")
    # Types of untyped shorthands ("value") are inferred from the sample rows.
    spec = _named(chart.properties(data=_frame(sample, windowed)).to_dict())
    if windowed:
        taken = {p.get("name") for p in spec.get("params", [])}
        spec.setdefault("params", []).extend(p for p in _params(event_time) if p["name"] not in taken)
    return spec


def with_event_time(spec: dict[str, Any], event_time: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``spec`` whose event-time parameters hold ``event_time`` (for static snapshots)."""
    out: dict[str, Any] = json.loads(json.dumps(spec))
    for param in out.get("params", []):
        key = EVENT_TIME_PARAMS.get(param.get("name", ""))
        if key is not None:
            param["value"] = event_time.get(key)
    return out


# -- windowed charts ----------------------------------------------------------------------------


TIME_LABEL = (
    "timeFormat(datum.value, '%L') != '000' ? '' : "
    "timeFormat(datum.value, '%H:%M:%S') == '00:00:00' ? timeFormat(datum.value, '%b %d') : "
    "timeFormat(datum.value, '%H:%M:%S')"
)
"""Labels of the time axis: ``HH:MM:SS`` on whole seconds (a date at midnight), none between seconds."""


def _windowed_spec(
    name: str, sample: list[dict[str, Any]], *, x: Any, y: Any, color: Any, mark: str,
    event_time: dict[str, Any] | None,
) -> dict[str, Any]:
    import altair as alt

    if x is None:  # padded, so that the first and last windows are not drawn on the plot's edge
        # Times of day on whole seconds: a window's start never reads as ".500" in the first seconds.
        axis = alt.Axis(tickCount=8, tickMinStep=1000, labelExpr=TIME_LABEL)
        x = alt.X("window_start:T", title="window start", scale=alt.Scale(padding=16), axis=axis)
    spans = mark == "rect" and y is None
    if spans:
        y = alt.Y("key:N", title=None, scale=alt.Scale(paddingInner=0.25, paddingOuter=0.15))
    y = y if y is not None else alt.Y("value:Q", title=name)
    color = color if color is not None else alt.Color("key:N", title="key")
    xf = field_name(x)
    encoding: dict[str, Any] = {
        "x": _channel(alt.X, x, sample), "y": _channel(alt.Y, y, sample), "color": _channel(alt.Color, color, sample),
    }
    extent = "window_end" if xf == "window_start" else None
    tips = [f for f in (xf, extent, field_name(color), field_name(y), "value" if spans else None, "closed") if f]
    tooltip = [_tooltip(f, sample) for f in dict.fromkeys(tips)]
    state = _closed_opacity()
    layers: list[Any] = []
    if mark in ("line", "area", "trail"):
        # The line (or area) joins a key's windows; a point per window shows whether it closed.
        layers.append(getattr(alt.Chart(), f"mark_{mark}")(**({"opacity": 0.5} if mark == "area" else {}))
                      .encode(**encoding))
        layers.append(alt.Chart().mark_point(filled=True, size=50).encode(**encoding, opacity=state, tooltip=tooltip))
    elif mark in ("bar", "rect") and xf == "window_start":
        encoding["x2"] = alt.X2("window_end")  # a bar spans its window [start, end)...
        if not spans:
            encoding["y2"] = alt.datum(0)  # ...from zero up to the value
        layers.append(getattr(alt.Chart(), f"mark_{mark}")(stroke="white", strokeWidth=1)
                      .encode(**encoding, opacity=state, tooltip=tooltip))
        if spans:  # a session of one event is zero wide: draw it as a tick
            point = {k: v for k, v in encoding.items() if k != "x2"}
            layers.append(alt.Chart().transform_filter("datum.window_end <= datum.window_start")
                          .mark_tick(thickness=3).encode(**point, opacity=state, tooltip=tooltip))
    else:
        layers.append(getattr(alt.Chart(), f"mark_{mark}")().encode(**encoding, opacity=state, tooltip=tooltip))
    layers[0] = layers[0].interactive(bind_y=False)  # pan and zoom in time; y follows the data
    if xf in _TIME_FIELDS:
        layers.extend(_stream_time_layers())
    chart = alt.layer(*layers, data=_frame(sample, True)).properties(
        title=alt.Title(alt.ExprRef(_title_expr(name))), width=640, height=300
    )
    spec = _named(chart.to_dict())
    spec["params"] = [*spec.get("params", []), *_params(event_time)]
    return spec


def _closed_opacity() -> Any:
    import altair as alt

    return alt.Opacity(
        "closed:N",
        scale=alt.Scale(domain=[True, False], range=[0.95, 0.35]),
        legend=alt.Legend(title="window", labelExpr="datum.label == 'true' ? 'closed (final)' : 'open'"),
    )


def _stream_time_layers() -> list[Any]:
    """A dashed rule at the stream time, labelled (nothing before the first event)."""
    import altair as alt

    def at_stream_time() -> Any:
        return (
            alt.Chart(alt.Data(values=[{}]))
            .transform_calculate(stream_time=STREAM_TIME)
            .transform_filter("isValid(datum.stream_time)")
        )

    x = alt.X("stream_time:T", title="window start")  # the same title: one axis, named after the windows
    rule = at_stream_time().mark_rule(color=_RULE_COLOUR, strokeDash=[5, 3], strokeWidth=1.5).encode(x=x)
    label = at_stream_time().mark_text(
        color=_RULE_COLOUR, align="right", baseline="top", dx=-3, dy=3
    ).encode(x=x, y=alt.value(0), text=alt.value("stream time"))
    return [rule, label]


def _title_expr(name: str) -> str:
    """``name · stream time 12:03:05 · 2 late events`` as a Vega expression of the parameters."""
    st, le, lw = STREAM_TIME, LATE_EVENTS, LATE_WINDOWS
    clock = f"timeFormat({st}, {st} % 1000 ? '%H:%M:%S.%L' : '%H:%M:%S')"
    return (
        f"{json.dumps(name)} + ' · ' + (isValid({st}) ? 'stream time ' + {clock} : 'no event yet')"
        f" + ' · ' + {le} + ({le} == 1 ? ' late event' : ' late events')"
        f" + ({lw} > {le} ? ' (' + {lw} + ' window updates refused)' : '')"
    )


def _params(event_time: dict[str, Any] | None) -> list[dict[str, Any]]:
    event_time = event_time or {}
    defaults = {"stream_time": None, "late_events": 0, "late_windows": 0}
    return [{"name": p, "value": event_time.get(k, defaults[k])} for p, k in EVENT_TIME_PARAMS.items()]


# -- helpers ------------------------------------------------------------------------------------


def _named(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec with its DataFrame data replaced by the named dataset :data:`DATASET`."""
    inline = set(spec.pop("datasets", {}))
    _drop_data(spec, inline)
    spec["data"] = {"name": DATASET}
    # Lay out again on every update: the first layout is made with no rows, so
    # without this, legends and axes that grow later would be cut off.
    spec.setdefault("autosize", {"type": "pad", "resize": True})
    return spec


def _drop_data(node: Any, names: set[str]) -> None:
    """Remove references to the consolidated datasets ``names`` (layers then read the top-level data)."""
    if isinstance(node, dict):
        data = node.get("data")
        if isinstance(data, dict) and data.get("name") in names:
            del node["data"]
        for key in ("layer", "hconcat", "vconcat", "concat"):
            for child in node.get(key, []):
                _drop_data(child, names)
        if isinstance(node.get("spec"), dict):
            _drop_data(node["spec"], names)


def _frame(sample: list[dict[str, Any]], windowed: bool) -> pd.DataFrame:
    """A small DataFrame with the table's columns and types, for Altair's type inference."""
    import pandas as pd

    rows = [{k: v for k, v in r.items() if k != "__id"} for r in sample]
    columns = ["key", "window_start", "window_end", "value", "closed"] if windowed else ["key", "value"]
    frame = pd.DataFrame(rows) if rows else pd.DataFrame({c: pd.Series(dtype="float64") for c in columns})
    if not rows:
        frame["key"] = frame["key"].astype("object")
        if windowed:
            frame["closed"] = frame["closed"].astype("bool")
    for column in _TIME_FIELDS:
        if column in frame:
            frame[column] = pd.to_datetime(frame[column], unit="ms")
    return frame


def field_name(channel: Any) -> str | None:
    """The plain field a channel shows (``None`` for aggregates and values)."""
    if channel is None:
        return None
    if isinstance(channel, str):
        shorthand = channel.split(":")[0]
        if "(" in shorthand:  # an aggregate such as sum(value): no plain field to show
            return None
        return shorthand
    given = getattr(channel, "shorthand", None)
    if isinstance(given, str) and given:
        return field_name(given)
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
