"""The machinery behind every live notebook widget (internal).

A :class:`LiveWidget` is an ipywidgets ``VBox`` that re-renders itself from
a background task on the running loop (a Jupyter kernel's). The task wakes
every ``interval`` seconds, asks the subclass to :meth:`~LiveWidget._poll`
(which only renders when something changed) and stops on its own when the
widget is closed, when its app stops or when its app is replaced by a newer
one with the same id. Updates set widget traits: never ``with Output():``
from the task (that would capture whatever cell runs at the time).

Outside a widget-capable front end (nbconvert, GitHub), the widget's mime
bundle also carries ``text/html``: a static snapshot of what it shows. When
the app stops, the widget polls once more and *freezes*: its outputs are
replaced by that final static snapshot; while a replay's clock is idle, it
*rests* in that static snapshot until the clock moves (see :mod:`._frozen`).
"""

from __future__ import annotations

import asyncio
import html
import logging
import time
from collections.abc import Sequence
from typing import Any, cast

import ipywidgets as widgets

from ..app.base import App
from ..tables.table import Table
from ..tables.windowed import WindowedTable
from ._frozen import StaticOutput

__all__ = ["MIN_INTERVAL", "TASK_PREFIX", "HtmlLabelWidget", "LiveWidget", "app_of", "base_table"]

logger = logging.getLogger("streamnb")

MIN_INTERVAL = 0.2
"""Live widgets update at most five times a second, whatever ``interval`` asks."""

TASK_PREFIX = "streamnb-view-"
"""Names of the background tasks of live widgets start with this."""


def base_table(table: Table[Any, Any] | WindowedTable) -> Table[Any, Any]:
    """The Table itself (a windowed view wraps one).

    >>> from streamnb import App
    >>> counts = App("demo", broker="memory://").Table("counts", default=int)
    >>> base_table(counts.tumbling(10)) is counts
    True
    """
    if isinstance(table, WindowedTable):
        return cast(Table[Any, Any], table.table)
    return table


def app_of(table: Table[Any, Any] | WindowedTable) -> App:
    """The App a table (or a windowed view) belongs to."""
    return cast(App, base_table(table).app)


class LiveWidget(StaticOutput, widgets.VBox):
    """A VBox that refreshes itself in the background until closed or its app stops.

    When its app stops it renders once more and freezes (:meth:`freeze`).
    """

    kind = "view"

    def __init__(self, app: App, *, name: str, interval: float, children: Sequence[widgets.Widget] = ()) -> None:
        super().__init__(children=list(children))
        self.app = app
        self.name = name
        self.interval = max(float(interval), MIN_INTERVAL)
        self.updates = 0
        """How many times the widget re-rendered."""
        self.polls = 0
        """Rounds of the background task: each looked for changes (re-rendering or not), unless the app was stopping."""
        self.last_update: float | None = None
        """``time.time()`` of the last re-render."""
        self.stopped: str | None = None
        """Why the widget stopped updating (``"closed"``, ``"app stopped"``...), or ``None``."""
        self.error: str | None = None
        """The last error of a refresh (refreshing goes on), or ``None``."""
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._waiter: asyncio.Future[None] | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def _start(self) -> None:
        """Start the refresh task, if a loop is running and the app can still change."""
        reason = self._stop_reason()
        if reason is not None:
            self._end(reason)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._stopped("no running event loop (call refresh() to update)")
            return
        self._task = loop.create_task(self._run(), name=f"{TASK_PREFIX}{self.kind}-{self.name}")

    @property
    def running(self) -> bool:
        """True while the background task refreshes the widget."""
        return self._task is not None and not self._task.done()

    def _stop_reason(self) -> str | None:
        app = self.app
        if self._closing:
            return "closed"
        if app.state == "stopped":  # not while stopping: the last look shows the agents stopped
            return "app stopped"
        if not is_current(app):
            return "app replaced"
        return None

    async def _run(self) -> None:
        try:
            while True:
                reason = self._stop_reason()
                if reason is not None:
                    self._end(reason)
                    return
                try:
                    if self.app.state != "stopping":  # keep what the running app showed until it stopped
                        updates = self.updates
                        await self._poll()
                        if self.static_at_rest:  # (the player rests at the end of cells only)
                            self.follow_rest(rendered=self.updates != updates)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # never let a rendering bug kill the view silently
                    error = f"{type(exc).__name__}: {exc}"
                    if error != self.error:  # log each new error once, not every interval
                        logger.exception("live %s %r failed to refresh", self.kind, self.name)
                    self.error = error
                    self._show_error(error)
                self.polls += 1
                await self._nap()
        except asyncio.CancelledError:
            if not self.frozen:
                self._stopped("closed" if self._closing else "stopped")
            raise
        finally:
            self._task = None

    async def _nap(self) -> None:
        """Sleep ``interval`` seconds, or less when :meth:`wake` is called."""
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        handle = loop.call_later(self.interval, _resolve, waiter)
        try:
            await waiter
        finally:
            handle.cancel()
            self._waiter = None

    def wake(self) -> None:
        """Refresh soon instead of after the interval."""
        if self._waiter is not None:
            _resolve(self._waiter)

    def _end(self, reason: str) -> None:
        """The app stopped (or was replaced): freeze with the final state; or the widget was closed."""
        if reason == "closed":
            self._stopped(reason)
        else:
            self.freeze(reason)

    # -- freezing (see ._frozen) --------------------------------------------------------------

    def freeze_reason(self) -> str | None:
        """Why the view should freeze now (its app stopped or was replaced), or ``None``."""
        reason = self._stop_reason()
        return None if reason == "closed" else reason

    def _final_refresh(self) -> None:
        """Render the final state, synchronously (subclasses; the default keeps what is shown)."""

    def _on_frozen(self, reason: str) -> None:
        task = self._task
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()
        self._stopped(reason)

    def _view_app(self) -> App:
        return self.app

    def _rest_marker(self) -> Any:
        return self._snapshot_html()

    def _live_bundle(self) -> tuple[dict[str, Any], dict[str, Any]]:
        bundle = self._repr_mimebundle_()
        return (bundle or {"text/plain": repr(self)}), {}

    def _static_bundle(self) -> dict[str, Any]:
        return {"text/plain": repr(self), "text/html": self._snapshot_html()}

    def _stopped(self, reason: str) -> None:
        """Record why updates stopped and say so in the widget (hook for subclasses)."""
        self.stopped = reason

    def stop(self) -> None:
        """Stop updating (the widget keeps showing its last state)."""
        task = self._task
        if task is not None and not task.done():
            task.cancel()
        self._task = None

    def close(self) -> None:
        """Stop updating and remove the widget (and its children) from the front end."""
        self._closing = True
        self.stop()
        self._stopped("closed")
        for child in list(self.children):
            _close_tree(child)
        super().close()

    # -- rendering ----------------------------------------------------------------------------

    async def _poll(self) -> None:
        """Re-render if something changed (subclasses)."""
        raise NotImplementedError

    def _show_error(self, message: str) -> None:
        """Show a refresh error (subclasses)."""

    def _snapshot_html(self) -> str:
        """Static HTML of what the widget shows (subclasses)."""
        return ""

    def _mark_updated(self) -> None:
        self.updates += 1
        self.last_update = time.time()
        self.error = None

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        bundle: dict[str, Any] | None = super()._repr_mimebundle_(**kwargs)
        if bundle is None:  # closed
            return {"text/plain": repr(self), "text/html": self._snapshot_html()}
        bundle["text/html"] = self._snapshot_html()
        return bundle

    def _repr_html_(self) -> str:
        """The static snapshot (what a closed widget still shows)."""
        return self._snapshot_html()

    def __repr__(self) -> str:
        state = f"stopped: {self.stopped}" if self.stopped else ("live" if self.running else "idle")
        return f"<{type(self).__name__} {self.name!r} {state}, {self.updates} updates>"


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def is_current(app: App) -> bool:
    """False once a newer App with the same id and broker was created (a re-run App cell)."""
    return app.is_current


def _close_tree(widget: Any) -> None:
    for child in list(getattr(widget, "children", ()) or ()):
        _close_tree(child)
    widget.close()


def clock(ts: float | None) -> str:
    """``HH:MM:SS`` of an epoch time, local time zone (or ``-``)."""
    if ts is None:
        return "-"
    return time.strftime("%H:%M:%S", time.localtime(ts))


def styled(html_text: str) -> str:
    """Wrap HTML so JupyterLab (and the classic notebook) style its tables like DataFrames."""
    return (
        "<style>.streamnb-view table{margin-left:0;margin-right:0}</style>"
        f'<div class="streamnb-view jp-RenderedHTMLCommon rendered_html" style="padding:0">{html_text}</div>'
    )


def escape(text: Any) -> str:
    """HTML-escape ``str(text)``."""
    return html.escape(str(text), quote=True)


class HtmlLabelWidget(LiveWidget):
    """A live widget showing an ``html`` pane above a status ``label``.

    Subclasses set ``self.html`` and ``self.label`` and implement ``_set_label``.
    """

    html: widgets.HTML
    label: widgets.Label

    def _set_label(self) -> None:
        """Write the status line (subclasses)."""
        raise NotImplementedError

    def _show_error(self, message: str) -> None:
        self._set_label()

    def _stopped(self, reason: str) -> None:
        super()._stopped(reason)
        if reason != "closed":
            self._set_label()

    def _snapshot_html(self) -> str:
        return f"{self.html.value}<div>{html.escape(self.label.value)}</div>"

