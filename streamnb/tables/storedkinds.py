"""Which stored state holds a ``rocksdb://`` table's windows: tumbling, hopping, sliding and session windows
live in the stores (:mod:`~streamnb.tables.state.stored_windows`, :mod:`~streamnb.tables.state.stored_sliding`,
:mod:`~streamnb.tables.state.stored_sessions`).

>>> from streamnb import App
>>> app = App("demo", broker="memory://", store="rocksdb://")
>>> type(app.Table("views", default=int).tumbling(60).state).__name__
'StoredWindowedState'
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .persistence import TableStore
from .state.base import PlainState, TableState
from .state.history import StoredWindowedHistoryState
from .state.stored_sessions import StoredSessionState
from .state.stored_sliding import StoredSlidingState
from .state.stored_windows import StoredWindowedState
from .state.windowing import merge_function, windowed_state
from .windows import HoppingWindow, SessionWindow, SlidingWindow, TumblingWindow

__all__ = ["stored_windows"]


def stored_windows(
    persistence: TableStore, name: str, old: TableState, window: Any, merge: Callable[[Any, Any], Any] | None,
    default: Callable[[], Any] | None, value_type: Any, history: bool = False,
) -> Any:
    """The state keeping ``window``'s windows in the stores, or None (a kind held in memory).

    ``old`` is the table's state so far: a table redefined with other settings keeps its windows.
    ``history``: the table keeps its history (tumbling and hopping windows log every write; session windows
    keep none yet, and live in the stores as without it).
    """
    if isinstance(window, SessionWindow):
        fn = merge_function(name, window, merge, default, value_type)
        if isinstance(old, StoredSessionState):  # redefined (with other settings: the sessions stay)
            old.rewindow(window)
            old.merge = fn
            return old
        return StoredSessionState(window, fn, persistence.stores, *persistence.codecs())
    if isinstance(window, SlidingWindow) and not history:
        fn = merge_function(name, window, merge, default, value_type)
        if isinstance(old, StoredSlidingState):  # redefined (with other settings: the buckets stay)
            old.rewindow(window)
            old.merge = fn
            return old
        return StoredSlidingState(window, fn, persistence.stores, *persistence.codecs())
    if not isinstance(window, (TumblingWindow, HoppingWindow)):
        return None
    windowed_state(name, PlainState(), window, merge, default, value_type)  # (checks merge=)
    if isinstance(old, StoredWindowedState) and isinstance(old, StoredWindowedHistoryState) == history:
        old.rewindow(window)  # redefined (with other settings: the windows stay)
        return old
    kind = StoredWindowedHistoryState if history else StoredWindowedState
    return kind(window, persistence.stores, *persistence.codecs())
