"""The window kinds a table can become: ``tumbling``, ``hopping``, ``sliding``, ``session``.

A mixin of :class:`~streamnb.tables.table.Table`; each constructor builds the
window's rule object (:mod:`streamnb.tables.windows`) and hands it to the
table, which swaps its state for the windowed one.

>>> from streamnb import App
>>> App("demo-kinds", broker="memory://").Table("views", default=int).tumbling(60).window
TumblingWindow(size=60.0, expires=60.0)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .windowed import WindowedTable
from .windows import HoppingWindow, SessionWindow, SlidingWindow, TumblingWindow

__all__ = ["WindowKinds"]


class WindowKinds:
    """``tumbling``, ``hopping``, ``sliding`` and ``session`` of a table."""

    def _windowed(self, window: Any, merge: Callable[[Any, Any], Any] | None = None) -> WindowedTable:
        raise NotImplementedError  # the table's

    def tumbling(self, size: float, expires: float | None = None, grace: float | None = None) -> WindowedTable:
        """Make this a table of tumbling windows of ``size`` seconds.

        ``grace``: how long after its end a window still accepts events (it
        then closes); ``expires``: how long after its end it stays readable.

        >>> from streamnb import App
        >>> app = App("demo", broker="memory://")
        >>> counts = app.Table("counts", default=int).tumbling(60, expires=3600)
        """
        return self._windowed(TumblingWindow(size, expires, grace))

    def hopping(
        self, size: float, step: float, expires: float | None = None, grace: float | None = None
    ) -> WindowedTable:
        """Make this a table of hopping windows: ``size`` seconds long, one every ``step``.

        >>> from streamnb import App
        >>> app = App("demo", broker="memory://")
        >>> counts = app.Table("counts", default=int).hopping(60, 10)
        """
        return self._windowed(HoppingWindow(size, step, expires, grace))

    def sliding(
        self,
        size: float,
        expires: float | None = None,
        grace: float | None = None,
        merge: Callable[[Any, Any], Any] | None = None,
    ) -> WindowedTable:
        """Make this a table of sliding windows: for every event, the ``size`` seconds up to it.

        As Kafka Streams' ``SlidingWindows``: a window ``[t - size, t]``
        (inclusive) ends at every event, and one starts just after it when
        a later event follows within ``size``. A window's value merges the
        values of its events: with ``+`` for numbers, else give ``merge``.

        >>> from streamnb import App
        >>> app = App("demo", broker="memory://")
        >>> app.Table("last_minute", default=int).sliding(60, grace=5).window
        SlidingWindow(size=60.0, expires=60.0, grace=5.0)
        """
        return self._windowed(SlidingWindow(size, expires, grace), merge)

    def session(
        self,
        gap: float,
        expires: float | None = None,
        grace: float | None = None,
        merge: Callable[[Any, Any], Any] | None = None,
    ) -> WindowedTable:
        """Make this a table of session windows: a key's events closer than ``gap`` seconds form one session.

        An event can merge sessions; their values are merged with ``+`` for
        numbers, else with ``merge(a, b)``. A session closes once stream
        time reaches its end plus ``gap`` plus ``grace``.

        >>> from streamnb import App
        >>> app = App("demo", broker="memory://")
        >>> app.Table("visits", default=int).session(30).window
        SessionWindow(gap=30.0, expires=30.0, grace=0.0)
        >>> app.Table("pages", default=set).session(30)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        streamnb.errors.ConfigurationError: table 'pages': session windows merge ... pass merge=, ...
        """
        return self._windowed(SessionWindow(gap, expires, grace), merge)
