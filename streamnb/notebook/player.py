"""The replay player: play, pause, speed, a scrubber over the recording and step buttons.

Example (in a notebook)::

    app = streamnb.App("pv", broker="local://slice", clock="virtual", speed=0)
    ...
    await app.start()
    app.player()            # or: player(app)
    counts.live()           # live views and charts follow the player

Moving the scrubber (or typing a time into the box next to it) seeks
there: forward it plays as fast as possible up to that time, back it
starts the replay over with fresh tables and plays up to it; then the
replay is paused, and live tables show the state at that time. The label
shows the virtual time, the number of events released and whether it plays
(or is at the end). At the end of a cell in which the replay is idle, the
static form of its output is brought up to date; once the app stopped, it
freezes with what it showed last.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import ipywidgets as widgets

from ..app.base import App
from ..errors import ConfigurationError
from ..playback.clock import VirtualClock
from ._live import LiveWidget, escape

__all__ = ["SPEEDS", "Player", "player"]

logger = logging.getLogger("streamnb")

SPEEDS: dict[str, float | None] = {
    "max": None, "x1": 1.0, "x10": 10.0, "x60": 60.0, "x600": 600.0, "x3600": 3600.0,
}
"""The speed menu: label and recorded seconds per second (``None``: as fast as possible)."""


def player(app: App, *, interval: float = 0.25, step_seconds: float = 10.0) -> Player:
    """A widget that drives ``app``'s virtual clock (``App(..., clock="virtual")``).

    >>> player(app)  # doctest: +SKIP
    """
    if not isinstance(app, App):
        raise ConfigurationError(f"player() takes a streamnb.App, got {app!r}")
    if not isinstance(app.clock, VirtualClock):
        raise ConfigurationError(
            f"app {app.id!r} runs on the wall clock; the player drives a replay: "
            "make the app with App(..., clock='virtual')"
        )
    return Player(app, interval=interval, step_seconds=step_seconds)


def _utc(seconds: float | None) -> str:
    if seconds is None or seconds in (float("inf"), float("-inf")):
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


class Player(LiveWidget):
    """The widget :func:`player` returns (see the module docstring)."""

    kind = "player"
    static_at_rest = False  # it moves the clock: a widget at rest too (its static form is kept up to date)

    def __init__(self, app: App, *, interval: float, step_seconds: float) -> None:
        clock = app.clock
        assert isinstance(clock, VirtualClock)
        self.clock = clock
        self.step_seconds = step_seconds
        start, end = self._span()
        self.play = widgets.ToggleButton(
            value=not clock.paused, description="Pause" if not clock.paused else "Play",
            icon="pause" if not clock.paused else "play", tooltip="play or pause the replay",
        )
        labels = {speed: label for label, speed in SPEEDS.items()}
        self.speed = widgets.Dropdown(
            options=list(SPEEDS), value=labels.get(clock.speed, "max") if not clock.paused else "max",
            description="speed", layout=widgets.Layout(width="160px"),
        )
        self.step_event = widgets.Button(description="+1 event", tooltip="play the next event, then pause")
        self.step_time = widgets.Button(
            description=f"+{step_seconds:g} s", tooltip=f"play {step_seconds:g} virtual seconds, then pause"
        )
        self.scrubber = widgets.FloatSlider(
            value=min(max(clock.time, start), end), min=start, max=end, step=0.001,
            continuous_update=False, readout=False, description="time",
            layout=widgets.Layout(width="60%"),
        )
        self.goto = widgets.FloatText(
            value=round(min(max(clock.time, start), end), 3), description="seek to", step=1.0,
            layout=widgets.Layout(width="260px"),
        )
        self.goto.add_class("streamnb-player-goto")
        self.label = widgets.HTML()
        self.label.add_class("streamnb-player-time")
        self.error: str | None = None
        self.seeks = 0
        """Seeks done (scrubber, box, step buttons)."""
        self._quiet = False  # set while the widget itself moves the scrubber
        self._seeking: asyncio.Task[None] | None = None
        self._next_target: float | None = None
        # Widget callbacks may run on another thread (ipykernel 7 handles some comm messages in a
        # subshell thread with its own loop): each one is handed to the app's loop.
        self._loop = asyncio.get_running_loop()
        self.play.observe(self._on_loop(self._on_play), "value")
        self.speed.observe(self._on_loop(self._on_speed), "value")
        self.scrubber.observe(self._on_loop(self._on_scrub), "value")
        self.goto.observe(self._on_loop(self._on_goto), "value")
        self.step_event.on_click(self._on_loop(lambda _b: self._launch(self.clock.step(1), "step")))
        self.step_time.on_click(
            self._on_loop(lambda _b: self._launch(self.clock.step(seconds=self.step_seconds), "step"))
        )
        controls = widgets.HBox([self.play, self.speed, self.step_event, self.step_time])
        timeline = widgets.HBox([self.scrubber, self.goto])
        super().__init__(app, name=app.id, interval=interval, children=[controls, timeline, self.label])
        self.add_class("streamnb-player")
        self.refresh()
        self._start()

    # -- what the user does --------------------------------------------------------------------

    def _on_loop(self, handler: Callable[[Any], None]) -> Callable[[Any], None]:
        """``handler`` run on the app's loop, whichever thread the widget calls it from."""
        loop = self._loop

        def call(arg: Any) -> None:
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop:
                handler(arg)
            else:
                loop.call_soon_threadsafe(handler, arg)

        return call

    def _on_play(self, change: dict[str, Any]) -> None:
        if self._quiet:
            return
        if change["new"]:
            self.clock.resume(SPEEDS[self.speed.value])
        else:
            self.clock.pause()
        self.refresh()

    def _on_speed(self, change: dict[str, Any]) -> None:
        if not self.clock.paused:
            self.clock.speed = SPEEDS[change["new"]]

    def _on_scrub(self, change: dict[str, Any]) -> None:
        if not self._quiet:
            self.seek(float(change["new"]))

    def _on_goto(self, change: dict[str, Any]) -> None:
        if not self._quiet and change["new"] is not None:
            self.seek(float(change["new"]))

    def seek(self, when: float) -> None:
        """Go to ``when`` (what moving the scrubber does); seeks asked meanwhile go after it, the last one wins."""
        self._next_target = when
        if self._seeking is None or self._seeking.done():
            self._seeking = asyncio.get_running_loop().create_task(self._seek_loop(), name="streamnb-player-seek")

    async def _seek_loop(self) -> None:
        while self._next_target is not None:
            target, self._next_target = self._next_target, None
            await self._guard(self.clock.seek(target))
            self.seeks += 1
            self.refresh()

    def _launch(self, coro: Any, what: str) -> None:
        async def go() -> None:
            await self._guard(coro)
            self.seeks += 1
            self.refresh()

        asyncio.get_running_loop().create_task(go(), name=f"streamnb-player-{what}")

    async def _guard(self, coro: Any) -> None:
        try:
            await coro
            self.error = None
        except Exception as exc:  # shown in the label: a widget callback has nowhere else to raise
            logger.exception("replay player: %s failed", coro)
            self.error = f"{type(exc).__name__}: {exc}"

    # -- showing the clock -----------------------------------------------------------------------

    def _span(self) -> tuple[float, float]:
        clock = self.clock
        start = clock.start_time if clock.start_time is not None else max(clock.time, 0.0)
        end = clock.end_time if clock.end_time is not None else start
        end = max(end, clock.time if clock.time != float("-inf") else end)
        return start, max(end, start + 1.0)

    def refresh(self) -> None:
        """Show the clock's state now (the background task calls this)."""
        clock = self.clock
        start, end = self._span()
        self._quiet = True
        try:
            if self.scrubber.max != end:
                if end < self.scrubber.min:
                    self.scrubber.min = start
                self.scrubber.max = end
            if self.scrubber.min != start:
                self.scrubber.min = start
            now = min(max(clock.time, start), end)
            if abs(self.scrubber.value - now) > 1e-6 and (self._seeking is None or self._seeking.done()):
                self.scrubber.value = now
            playing = not clock.paused
            if self.play.value != playing:
                self.play.value = playing
            self.play.description = "Pause" if playing else "Play"
            self.play.icon = "pause" if playing else "play"
        finally:
            self._quiet = False
        if clock.paused:
            state = "paused"
        elif clock.resting:
            state = "at the end"
        else:
            state = "playing" if clock.speed is not None else "playing (max)"
        text = f"<b>{escape(_utc(clock.time))}</b> · {state} · {clock.released:,} events"
        if self.error:
            text += f" · <span style='color:#b00'>{escape(self.error)}</span>"
        if self.stopped:
            text += f" · not updating ({escape(self.stopped)})"
        if self.label.value != text:
            self.label.value = text
        self._mark_updated()
        self._seen = clock.version

    async def _poll(self) -> None:
        self.refresh()

    def _final_refresh(self) -> None:
        self.refresh()

    def _snapshot_html(self) -> str:
        return str(self.label.value)
