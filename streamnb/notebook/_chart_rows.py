"""Table contents as chart rows: JSON-ready dicts keyed by a stable row id.

A windowed table gives one row per key and window (``window_start`` and
``window_end`` in epoch milliseconds, as Vega-Lite's temporal fields want,
and ``closed``); a plain table one row per key. The row id, made from the key and window
start, lets the chart send only rows that changed.

>>> from types import SimpleNamespace
>>> counts = SimpleNamespace(data={"/": 12, "/about": 3})  # what it reads of a Table
>>> table_rows(counts, windowed=False)['"/about"']
{'key': '/about', 'value': 3, '__id': '"/about"'}
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ..timeunits import ms

if TYPE_CHECKING:
    from ..tables.table import Table

__all__ = ["event_time_of", "keep_top", "table_rows"]


def table_rows(table: Table[Any, Any], windowed: bool) -> dict[str, dict[str, Any]]:
    """The table as chart rows, keyed by a row id made from (key, window start).

    Windowed rows carry ``closed``: whether stream time passed the window's end plus grace.
    """
    rows: dict[str, dict[str, Any]] = {}
    if windowed:
        view = table.window
        if view is None:
            return rows
        state = view.state
        for (key, (start, end)), v in view.items():
            row: dict[str, Any] = {
                "key": _json_key(key), "window_start": float(ms(start)), "window_end": float(ms(end)),
            }
            rid = json.dumps([row["key"], row["window_start"]], default=str)
            row.update(_value_fields(v))
            row["closed"] = bool(state.is_closed(key, (start, end)))
            row["__id"] = rid
            rows[rid] = row
        return rows
    for k, v in list(table.data.items()):
        row = {"key": _json_key(k)}
        rid = json.dumps(row["key"], default=str)
        row.update(_value_fields(v))
        row["__id"] = rid
        rows[rid] = row
    return rows


def event_time_of(table: Table[Any, Any]) -> dict[str, Any]:
    """A windowed table's stream time (epoch ms, or None) and late counts, for the chart."""
    view = table.window
    if view is None:
        return {}
    stream_time = view.stream_time()
    return {
        "stream_time": None if stream_time is None else float(ms(stream_time)),
        "late_events": view.late_events,
        "late_windows": view.late_windows,
    }


def _json_scalar(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return _json_scalar(float(value))
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)


def _json_key(key: Any) -> Any:
    if isinstance(key, (list, tuple)):
        return " | ".join(str(part) for part in key)
    return _json_scalar(key)


def _value_fields(value: Any) -> dict[str, Any]:
    if hasattr(value, "asdict"):
        return {str(k): _json_scalar(v) for k, v in value.asdict().items()}
    if isinstance(value, Mapping):
        return {str(k): _json_scalar(v) for k, v in value.items()}
    return {"value": _json_scalar(value)}


def keep_top(rows: dict[str, dict[str, Any]], top: int, field: str) -> dict[str, dict[str, Any]]:
    """Only the rows of the ``top`` keys with the largest total of ``field``."""
    totals: dict[Any, float] = {}
    for row in rows.values():
        v = row.get(field)
        totals[row["key"]] = totals.get(row["key"], 0.0) + (v if isinstance(v, (int, float)) else 0.0)
    keep = set(sorted(totals, key=lambda k: (-totals[k], str(k)))[:top])
    return {rid: row for rid, row in rows.items() if row["key"] in keep}
