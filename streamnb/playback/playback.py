"""What an App adds for replays: its clock, ``now()``, ``fork()``, ``player()``.

A mixin of :class:`~streamnb.app.App` (the App module stays about the
lifecycle). ``App(..., clock="virtual", speed=..., history=...)`` sets the
clock up here; see :mod:`streamnb.playback.clock` and :mod:`streamnb.playback.replay`.

Example::

    app = App("pv", broker="local://slice", clock="virtual")
    app.now()                       # the replay's virtual time
    await app.fork(at=t, broker="local://fork")
    app.player()                    # a notebook widget driving the clock
"""

from __future__ import annotations

import weakref
from typing import Any, ClassVar

from .. import display
from ..errors import ConfigurationError
from ..transaction import current_transaction
from ..transport import check_broker
from .clock import VirtualClock, WallClock, check_speed
from .replay import KAFKA_REPLAY, move
from .replay import fork as fork_into

__all__ = ["CLOCKS", "UNSET", "Playback"]

CLOCKS = ("wall", "virtual")
"""The values of ``App(clock=...)``."""

UNSET: Any = object()
"""``speed`` not given."""


class Playback:
    """The replay side of an App (a mixin): the clock, ``now()``, ``fork()``, ``player()``."""

    _instances: ClassVar[dict[tuple[str, str], weakref.ref[Any]]]
    id: str
    broker: str
    state: str
    _kafka_options: dict[str, Any]

    def _set_clock(self, clock: str, speed: Any, history: bool | None, distributed: bool) -> None:
        """``clock``, ``speed`` and ``history`` of ``App(...)``: checked, and the clock made."""
        if clock not in CLOCKS:
            raise ConfigurationError(f"clock must be one of {CLOCKS}, got {clock!r}")
        if clock == "wall" and speed is not UNSET:
            raise ConfigurationError("speed= applies to a virtual clock only: add clock='virtual' (a replay)")
        if clock == "virtual" and distributed:
            raise ConfigurationError(KAFKA_REPLAY)
        if history is not None and not isinstance(history, bool):
            raise ConfigurationError(f"history must be True or False, got {history!r}")
        self.clock: WallClock | VirtualClock = (
            VirtualClock(None if speed is UNSET else check_speed(speed)) if clock == "virtual" else WallClock()
        )
        """The app's clock; under ``clock="virtual"``: ``pause()``, ``resume()``, ``step()``, ``seek()``."""
        self.history = self.clock.virtual if history is None else history
        """True when tables keep every change (``table.at()``, ``table.history()``)."""

    def now(self) -> float:
        """The time on the app's clock (epoch seconds).

        The wall clock's, or under a virtual clock the replay's: inside an
        agent, the timestamp of the event being processed; elsewhere, the
        clock's time.

        >>> from streamnb import App
        >>> App("demo-now", broker="memory://", clock="virtual").now()
        -inf
        """
        clock = self.clock
        if not isinstance(clock, VirtualClock):
            return clock.now()
        txn = current_transaction()
        if txn is not None and txn.message is not None:
            return max(txn.message.timestamp, clock.floor)
        return clock.now()

    async def fork(self, at: Any, broker: str, *, progress: Any = None) -> Any:
        """Go on from time ``at`` in a new folder: tables as they were then, agents from there.

        Writes ``broker`` (a new ``local://`` or ``memory://`` folder) with
        the inputs, each table's state at ``at`` and each agent's position,
        then moves this app there and starts it (a virtual clock pauses at
        ``at``: redefine an agent, then ``app.clock.resume()``). The old
        folder is left as it was. Needs the tables' history (``history=True``,
        the default under a virtual clock). The folder appears only once
        complete: a fork stopped midway leaves nothing to clean up, so
        forking again works. ``progress``: as for :func:`streamnb.record`.

        >>> await app.fork(at=app.clock.start_time + 300, broker="local://fork")  # doctest: +SKIP
        """
        url = await fork_into(self, at, broker, progress)  # type: ignore[arg-type]
        if isinstance(self.clock, VirtualClock):
            self.clock.speed = 0
        await move(self, url)  # type: ignore[arg-type]
        return self

    def move_to(self, broker: str) -> None:
        """Use ``broker`` from the next ``start()`` on (what :meth:`fork` does); the app must be stopped."""
        if self.state in ("running", "starting", "stopping"):
            raise ConfigurationError(f"app {self.id!r} is {self.state}: stop it before moving it to {broker!r}")
        check_broker(broker, self._kafka_options)
        registry = self._instances  # (the class-wide registry of App.current)
        registry.pop((self.id, self.broker), None)
        self.broker = broker
        registry[(self.id, broker)] = weakref.ref(self)

    def player(self) -> Any:
        """A notebook widget driving a replay: play, pause, speed, scrubber, steps (``clock="virtual"``)."""
        return display.show("player", self)
