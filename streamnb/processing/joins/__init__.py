"""Joins: stream–table (:mod:`.stream_table`; versioned: :mod:`.asof`) and stream–stream (:mod:`.windowed`).

``stream.join(table, how=...)`` and ``stream.join(topic, within=..., how=...)``
(:meth:`streamnb.processing.streams.Stream.join`) come here.

>>> from streamnb import App
>>> app = App("demo", broker="memory://")
>>> app.stream("orders").join(app.Table("t", source=app.topic("t")), within=5)
Traceback (most recent call last):
...
streamnb.errors.ConfigurationError: join('t', within=...): within/before/after apply to stream–stream joins; \
a stream–table join takes how= (and on= for a GlobalTable, grace= for a versioned table)
"""

from __future__ import annotations

from typing import Any

from ...errors import ConfigurationError
from .stream_stream import StreamStreamJoin, stream_stream_join
from .stream_table import (
    JoinableTable,
    JoinStats,
    Op,
    check_copartitioned,
    is_table,
    lookup_key,
    stream_table_join,
)
from .windowed import JoinWindow, Result, WindowJoin

__all__ = [
    "JoinStats", "JoinWindow", "JoinableTable", "Result", "StreamStreamJoin", "WindowJoin", "check_copartitioned",
    "is_table", "join_operation", "lookup_key", "stream_stream_join", "stream_table_join",
]

_WINDOW_OPTIONS = ("within", "before", "after", "grace")


def join_operation(stream: Any, other: Any, how: str, options: dict[str, Any]) -> tuple[Op, JoinStats, str]:
    """The operation, counters and stage label of ``stream.join(other, how=..., **options)``."""
    if is_table(other):
        given = [o for o in _WINDOW_OPTIONS if options.get(o) is not None and o != "grace"]
        if given:
            raise ConfigurationError(
                f"join({other.name!r}, {given[0]}=...): within/before/after apply to stream–stream joins; "
                "a stream–table join takes how= (and on= for a GlobalTable, grace= for a versioned table)"
            )
        unknown = sorted(set(options) - {"on", *_WINDOW_OPTIONS})
        if unknown:
            raise ConfigurationError(f"join({other.name!r}): unknown option(s) {', '.join(unknown)}")
        grace = options.get("grace")
        grace_ms = None if grace is None else JoinWindow.of(within=0, grace=grace).grace
        op, stats = stream_table_join(stream, other, how, options.get("on"), grace_ms)
        label = f"join({other.name}, {how}" + ("" if grace_ms is None else f", grace={grace_ms / 1000} s") + ")"
        return op, stats, label
    return stream_stream_join(stream, other, how, options)
