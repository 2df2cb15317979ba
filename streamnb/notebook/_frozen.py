"""Static outputs of live views: what a notebook shows of a view once it froze (internal).

A live view (table, chart, dashboard, player) is displayed with a
``display_id``. When its app stops (or is replaced by a newer one) the view
*freezes*: it renders the final state once more, stops updating and replaces
its output by static forms only (the table as HTML, the chart as SVG) with an
``update_display_data`` message. So what a notebook file holds after the
app stopped is the final state, readable without a kernel or widgets:
``jupyter nbconvert --execute``, nbclient, GitHub, VS Code and Colab render
``text/html`` and ``image/svg+xml``. (A widget in a saved file needs a live
kernel, or saved widget state and scripts from a CDN: nbconvert's HTML picks
the widget over every other form of an output, so the frozen output leaves
the widget out.)

Views freeze at the end of the cell in which their app stopped (IPython's
``post_run_cell`` event), so the update belongs to that cell and
``nbconvert --execute`` records it before it runs the next cell; a view whose
background task notices the stop first freezes then. The update is sent with
the kernel's current parent message, not the one of the cell that showed
the view (which finished long ago).

A replay (an app on a virtual clock) does not stop when it has replayed
everything: its clock goes idle (at the end of the recording, or paused) and
the app keeps running, so the player can seek back. Views of such an app
*rest* while the clock is idle: at the end of a cell in which the replay is
idle (and when their background task notices the clock came to rest), they
render once more and show that state in static forms, as a frozen view does,
but keep watching the clock; when it moves again (a seek, a step, play),
they *thaw*: their displays become the live widget again. So a notebook file
holds the state each view showed when the replay last came to rest. The
player itself stays a widget at rest (it is what moves the clock); the static
form in its output is brought up to date.
"""

from __future__ import annotations

import contextvars
import logging
import uuid
import weakref
from typing import Any

from ..playback.clock import VirtualClock

__all__ = ["StaticOutput", "freeze_stopped_views", "replay_rest"]

logger = logging.getLogger("streamnb")

_VIEWS: weakref.WeakSet[StaticOutput] = weakref.WeakSet()
_HOOKED: set[int] = set()


class StaticOutput:
    """A mixin for live views: display with an id, and :meth:`freeze` into static forms."""

    frozen: bool = False
    """True once the view showed its final state and stopped updating for good."""
    static_at_rest: bool = True
    """Whether the view's displays become static while its replay rests (the player's do not)."""
    rested_at: int | None = None
    """The version of the replay's clock at the rest the view's displays show, or ``None`` while live."""
    _display_id: str | None = None

    # -- what subclasses provide ------------------------------------------------------------

    def _live_bundle(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """The mime bundle (and metadata) of the live view: the widget and its static forms."""
        raise NotImplementedError

    def _static_bundle(self) -> dict[str, Any]:
        """The static forms of what the view shows now (no widget)."""
        raise NotImplementedError

    def freeze_reason(self) -> str | None:
        """Why the view should freeze now (``"app stopped"``, ``"app replaced"``), or ``None``."""
        raise NotImplementedError

    def _final_refresh(self) -> None:
        """Render the final state (synchronously)."""
        raise NotImplementedError

    def _on_frozen(self, reason: str) -> None:
        """Stop the background task and say why updates stopped."""
        raise NotImplementedError

    def _view_app(self) -> Any:
        """The App whose data the view shows."""
        raise NotImplementedError

    def _rest_marker(self) -> Any:
        """Something that changes whenever the view renders something new (compared across rests)."""
        raise NotImplementedError

    # -- display and freeze -------------------------------------------------------------------

    def _ipython_display_(self) -> None:
        from IPython.display import display

        if self._display_id is None:
            self._display_id = uuid.uuid4().hex
        _VIEWS.add(self)
        _hook()
        metadata: dict[str, Any] = {}
        if self.frozen or (self.rested_at is not None and self.static_at_rest):
            data = self._static_bundle()
        else:
            data, metadata = self._live_bundle()
        display(data, metadata=metadata, raw=True, display_id=self._display_id)

    def freeze(self, reason: str = "app stopped") -> None:
        """Show the final state, stop updating and make every display of the view static.

        Called when the view's app stopped; calling it again does nothing.
        """
        if self.frozen:
            return
        self.frozen = True
        try:
            self._final_refresh()
        except Exception:
            logger.exception("the last refresh of %r failed", self)
        self._on_frozen(reason)
        if self._display_id is None:
            return
        try:
            data = self._static_bundle()
        except Exception:
            logger.exception("could not draw the output of %r", self)
            return
        self._update(data, {})

    # -- rests of a replay ----------------------------------------------------------------------

    def follow_rest(self, *, rendered: bool, final: bool = False) -> None:
        """Rest or thaw as the replay does (the view's task calls this after each look, ``final`` the cell end).

        ``rendered``: whether the view rendered something new since its displays last rested.
        At rest, ``final`` renders once more first; displays are updated only when something changed.
        """
        if self.frozen:
            return
        key = replay_rest(self._view_app())
        if key is None:
            self._thaw()
            return
        if final:
            marker = self._rest_marker()
            try:
                self._final_refresh()
            except Exception:
                logger.exception("the last refresh of %r failed", self)
            rendered = rendered or self._rest_marker() != marker
        if key != self.rested_at or rendered:
            self._rest(key)

    def _rest(self, key: int) -> None:
        self.rested_at = key
        if self._display_id is None:
            return
        if self.static_at_rest:
            self._update(self._static_bundle(), {})
        else:
            self._update(*self._live_bundle())

    def _thaw(self) -> None:
        if self.rested_at is None:
            return
        self.rested_at = None
        if self._display_id is not None and self.static_at_rest:
            self._update(*self._live_bundle())

    def _update(self, data: dict[str, Any], metadata: dict[str, Any]) -> None:
        from IPython.display import update_display

        try:
            # An empty context: the kernel's current parent message (the cell running now), not the
            # parent the view's task inherited from the cell that showed it.
            contextvars.Context().run(update_display, data, metadata=metadata, raw=True, display_id=self._display_id)
        except Exception:
            logger.exception("could not update the output of %r", self)


def replay_rest(app: Any) -> int | None:
    """The clock's version while ``app`` is a running replay whose clock is idle, else ``None``.

    >>> from streamnb import App
    >>> replay_rest(App("demo-rest", broker="memory://", clock="virtual")) is None  # not started
    True
    """
    clock = getattr(app, "clock", None)
    if getattr(app, "state", None) != "running" or not isinstance(clock, VirtualClock) or not clock.resting:
        return None
    return clock.version


def freeze_stopped_views(*_args: Any) -> int:
    """Freeze every displayed view whose app stopped, rest those of idle replays; the number frozen.

    Runs after each cell.
    """
    frozen = 0
    for view in list(_VIEWS):
        if view.frozen:
            continue
        reason = view.freeze_reason()
        if reason is not None:
            view.freeze(reason)
            frozen += 1
        else:
            view.follow_rest(rendered=False, final=True)
    return frozen


def _hook() -> None:
    """Freeze views at the end of every cell of this IPython shell (registered once)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency
        return
    shell = get_ipython()
    if shell is None or id(shell) in _HOOKED:
        return
    shell.events.register("post_run_cell", freeze_stopped_views)
    _HOOKED.add(id(shell))
