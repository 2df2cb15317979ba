"""The static SVG of a live chart (internal): what a frozen or resting chart shows, drawn by vl-convert.

A static picture needs none of what makes the live chart interactive, and
vl-convert's time grows with the rows it lays out, so the static spec:

* leaves out pan and zoom (parameters bound to the scales) and tooltips;
* keeps only the columns the spec names (a row of a windowed table has five);
* of a windowed table with more than :data:`ROWS_LIMIT` rows, draws the
  latest windows that fit and says so in the title ("the latest 16 of 60
  windows"): what takes vl-convert's time is laying out rows, about 20 ms
  a thousand (``benchmarks/live_views.py``);
* above :data:`POINTS_LIMIT` rows, leaves out the point per window of the
  default line chart (the lines still join every window; the open/closed
  legend goes with the points).

>>> spec = {"layer": [{"mark": {"type": "line"}, "encoding": {"x": {"field": "a"}, "tooltip": [{"field": "a"}]},
...                    "name": "view_1"}],
...         "params": [{"name": "p", "select": {"type": "interval"}, "bind": "scales", "views": ["view_1"]}]}
>>> static = static_spec(spec, {}, [{"a": 1, "b": 2}])
>>> static["layer"], static["params"], static["data"]
([{'mark': {'type': 'line'}, 'encoding': {'x': {'field': 'a'}}}], [], {'values': [{'a': 1}]})
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from ._chart_spec import with_event_time

__all__ = ["POINTS_LIMIT", "ROWS_LIMIT", "latest_windows", "static_spec", "to_svg"]

POINTS_LIMIT = 500
"""Rows above which the static SVG of the default line chart draws no point per window."""
ROWS_LIMIT = 1000
"""Rows of a windowed table the static SVG draws at most (the latest windows)."""


def static_spec(spec: dict[str, Any], event_time: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """``spec`` for a static picture of ``rows`` (see the module docstring)."""
    out = with_event_time(spec, event_time)
    scale_params = {p["name"] for p in out.get("params", []) if p.get("bind") == "scales" and "select" in p}
    if scale_params:
        out["params"] = [p for p in out["params"] if p.get("name") not in scale_params]
    named = {v for p in out.get("params", []) for v in p.get("views", [])}
    _strip(out, scale_params, named)
    if len(rows) > ROWS_LIMIT and "window_start" in rows[0]:
        rows, kept, windows = latest_windows(rows, ROWS_LIMIT)
        _note_in_title(out, f"the latest {kept} of {windows} windows")
    if len(rows) > POINTS_LIMIT:
        _drop_window_points(out)
    text = json.dumps(out)
    columns = {c for row in rows[:1] for c in row}
    unused = {c for c in columns if c not in text}
    if unused:
        rows = [{k: v for k, v in row.items() if k not in unused} for row in rows]
    out["data"] = {"values": rows}
    return out


def to_svg(spec: dict[str, Any]) -> str:
    """The SVG of a Vega-Lite spec, offline (vl-convert; nothing is loaded from the network)."""
    import vl_convert

    return str(vl_convert.vegalite_to_svg(spec, allowed_base_urls=[]))


def latest_windows(rows: list[dict[str, Any]], limit: int) -> tuple[list[dict[str, Any]], int, int]:
    """The rows of the latest windows (by start) that fit in ``limit`` (at least one window); how many of how many.

    >>> rows = [{"window_start": s, "key": k} for s in (0, 60, 120) for k in "ab"]
    >>> kept, n, of = latest_windows(rows, 4)
    >>> sorted({r["window_start"] for r in kept}), n, of
    ([60, 120], 2, 3)
    """
    per_start = Counter(row["window_start"] for row in rows)
    starts = sorted(per_start, reverse=True)
    total = kept = 0
    for start in starts:
        if kept and total + per_start[start] > limit:
            break
        total += per_start[start]
        kept += 1
    first = starts[kept - 1]
    return [row for row in rows if row["window_start"] >= first], kept, len(starts)


def _note_in_title(spec: dict[str, Any], note: str) -> None:
    title = spec.get("title")
    if isinstance(title, str):
        spec["title"] = f"{title} · {note}"
    elif isinstance(title, dict) and isinstance(title.get("text"), dict) and "expr" in title["text"]:
        title["text"]["expr"] = f"{title['text']['expr']} + {json.dumps(' · ' + note)}"
    elif isinstance(title, dict) and isinstance(title.get("text"), str):
        title["text"] = f"{title['text']} · {note}"
    elif title is None:
        spec["title"] = note


def _strip(node: Any, scale_params: set[str], named: set[str]) -> None:
    """Remove tooltips and the view names only the pan-and-zoom parameters used."""
    if isinstance(node, dict):
        encoding = node.get("encoding")
        if isinstance(encoding, dict):
            encoding.pop("tooltip", None)
        name = node.get("name")
        if scale_params and isinstance(name, str) and name.startswith("view_") and name not in named:
            del node["name"]
        for key in ("layer", "hconcat", "vconcat", "concat"):
            for child in node.get(key, []):
                _strip(child, scale_params, named)
        if isinstance(node.get("spec"), dict):
            _strip(node["spec"], scale_params, named)


def _drop_window_points(spec: dict[str, Any]) -> None:
    """Leave out the point layer of the default line chart (a point per window, faded while open)."""
    layers = spec.get("layer")
    if not isinstance(layers, list):
        return
    marks = [_mark(layer) for layer in layers]
    if "point" not in marks or not {"line", "area", "trail"} & set(marks):
        return
    spec["layer"] = [
        layer for layer, mark in zip(layers, marks, strict=True)
        if not (mark == "point" and layer.get("encoding", {}).get("opacity", {}).get("field") == "closed")
    ]


def _mark(layer: Any) -> str | None:
    mark = layer.get("mark") if isinstance(layer, dict) else None
    if isinstance(mark, dict):
        mark = mark.get("type")
    return mark if isinstance(mark, str) else None
