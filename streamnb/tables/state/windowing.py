"""Which state a table gets when it is made windowed (``tumbling``, ``hopping``, ``sliding``, ``session``).

:func:`windowed_state` picks (or keeps) the state object for a window kind:
a table redefined with the same window keeps its windows; one redefined
with other settings of the same kind keeps its rows under the new rules.
Sliding and session windows merge the values of their events, so they need
a merge function: ``+`` for numbers, else the table's ``merge=``.

>>> from streamnb.tables.state.base import PlainState
>>> from streamnb.tables.windows import SessionWindow
>>> type(windowed_state("visits", PlainState(), SessionWindow(30), None, int, None)).__name__
'SessionState'
"""

from __future__ import annotations

import numbers
import operator
from collections.abc import Callable
from typing import Any

from ...errors import ConfigurationError
from ...transaction import MISSING
from ..windows import SessionWindow, SlidingWindow
from .base import TableState
from .fixed import WindowedState
from .sessions import SessionState
from .sliding import SlidingState

__all__ = ["merge_function", "windowed_state"]


def merge_function(
    table: str,
    window: SlidingWindow | SessionWindow,
    merge: Callable[[Any, Any], Any] | None,
    default: Callable[[], Any] | None,
    value_type: Any,
) -> Callable[[Any, Any], Any]:
    """The function that merges two window values: ``merge``, or ``+`` when values are numbers."""
    if merge is not None:
        if not callable(merge):
            raise ConfigurationError(f"table {table!r}: merge= must be a function of two values")
        return merge
    sample = default() if default is not None else None
    numeric = isinstance(sample, numbers.Number) or (
        isinstance(value_type, type) and issubclass(value_type, numbers.Number)
    )
    if not numeric or isinstance(sample, bool):
        raise ConfigurationError(
            f"table {table!r}: {window.kind} windows merge the values of their events, which "
            f"works with + for numbers (default=int or float); for other values pass merge=, "
            f"e.g. .{window.kind}(..., merge=lambda a, b: a | b) for sets"
        )
    return operator.add


def windowed_state(
    table: str,
    old: TableState,
    window: Any,
    merge: Callable[[Any, Any], Any] | None,
    default: Callable[[], Any] | None,
    value_type: Any,
) -> Any:
    """The state for ``window`` (a window kind), reusing ``old`` when it is the same."""
    if isinstance(window, (SlidingWindow, SessionWindow)):
        fn = merge_function(table, window, merge, default, value_type)
        kind = SlidingState if isinstance(window, SlidingWindow) else SessionState
        if isinstance(old, kind) and repr(old.window) == repr(window) and old.merge is fn:
            return old
        return kind(window, fn)  # type: ignore[arg-type]
    if merge is not None:
        raise ConfigurationError(
            f"table {table!r}: merge= applies to sliding and session windows only; "
            f"{window.kind} windows apply each event to every window it falls in"
        )
    if isinstance(old, WindowedState) and repr(old.window) == repr(window):
        return old
    state = WindowedState(window)
    if isinstance(old, WindowedState):  # redefined with other window settings: keep the rows
        state.stream_time.update(old.stream_time)
        for (key, start), partition in old.partition_of.items():
            value = old.store.by_key.get(key, {}).get(start, MISSING)
            if value is not MISSING:
                state.load((key, (start, start + window.size)), value, partition)
        state.loaded()
    return state
