"""The time an app runs on: the wall clock, or a virtual clock that event time drives (replays).

``App(..., clock="virtual")`` (or :func:`streamnb.playback.replay.replay`) replays
what a ``local://`` or ``memory://`` folder holds under a
:class:`VirtualClock`. Time is the recorded event time: ``speed=None``
plays as fast as possible, ``speed=10`` ten times faster than recorded,
``speed=0`` pauses. ``app.now()``, ``relative_to_now()`` windows, timers,
the timestamp of a message sent without one, and window closing all follow
it, so the same recording and the same code give the same tables and the
same outputs on every run.

How: the clock moves a *horizon* forward; sources read through a
:class:`~streamnb.processing.feed.Feed` that releases messages up to the horizon in
one deterministic order, in *rounds* (each round reads what the previous
ones wrote). When a round releases nothing the clock is *at rest* at the
horizon: ``app.now()`` is the horizon, timers due then run, and the clock
moves on (to the next timer, or the end, at ``speed=None``; with the wall
clock at other speeds). Inside an agent, ``app.now()`` is the timestamp of
the event being processed (never before the previous rest).

Example::

    app = App("pv-replay", broker="local://slice", clock="virtual")
    ...
    await app.start()                 # replays from the start of the recording
    await app.clock.idle()            # until everything recorded was processed
    app.clock.pause(); app.clock.resume(); app.clock.speed = 10
    await app.clock.step(100)         # the next 100 events (events at the same time go together)
    await app.clock.step(seconds=60)  # one virtual minute
    await app.clock.seek(t)           # to time t (back: restarts from the start with fresh tables)
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from ..errors import ConfigurationError
from ..transport.base import Transport
from .rounds import NEVER, Rounds, loop_time

__all__ = ["NEVER", "VirtualClock", "WallClock", "check_speed", "to_seconds"]

logger = logging.getLogger("streamnb")

TICK = 0.05
"""Seconds of wall-clock time between two moves of a clock playing at a finite speed."""


def check_speed(speed: Any) -> float | None:
    """``None`` (as fast as possible) or a number >= 0; anything else raises.

    >>> check_speed(10), check_speed(None)
    (10.0, None)
    """
    if speed is None:
        return None
    if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not speed >= 0 or math.isinf(speed):
        raise ConfigurationError(
            f"speed must be None (as fast as possible), 0 (paused) or a positive number of "
            f"recorded seconds per second, got {speed!r}"
        )
    return float(speed)


def to_seconds(when: Any) -> float:
    """Epoch seconds from a number, a ``datetime`` or a pandas ``Timestamp``.

    >>> to_seconds(12.5)
    12.5
    """
    if isinstance(when, datetime) or hasattr(when, "timestamp"):
        return float(when.timestamp())
    if isinstance(when, bool) or not isinstance(when, (int, float)):
        raise ConfigurationError(f"expected a time (epoch seconds or a datetime), got {when!r}")
    return float(when)


class WallClock:
    """The ordinary clock: ``now()`` is ``time.time()``.

    >>> WallClock().virtual
    False
    """

    virtual = False
    gate = None

    def now(self) -> float:
        """``time.time()``."""
        return time.time()

    async def sleep_until(self, when: float) -> None:
        """Sleep until the wall clock reads ``when``."""
        await asyncio.sleep(max(0.0, when - time.time()))

    def __repr__(self) -> str:
        return "<WallClock>"


class VirtualClock(Rounds):
    """A clock that event time drives: see the module docstring.

    ``speed``: ``None`` as fast as possible, ``0`` paused, else recorded
    seconds per wall-clock second. The App starts it, with every agent,
    from the start of the recording.

    >>> clock = VirtualClock(speed=10)
    >>> clock.speed, clock.virtual
    (10.0, True)
    """

    virtual = True

    def __init__(self, speed: float | None = None) -> None:
        super().__init__()
        self._speed = check_speed(speed)
        self._resume_speed: float | None = None if not self._speed else self._speed
        self.time = NEVER
        """The clock's time while at rest (epoch seconds); while playing, how far it got."""
        self.start_time: float | None = None
        """The oldest timestamp of the replayed topics (where the replay starts)."""
        self.end_time: float | None = None
        """The newest timestamp at the end of the replayed topics, when the replay started."""
        self.restart: Callable[[], Awaitable[None]] | None = None
        """What :meth:`seek` back calls to start over with fresh state (the app sets it)."""
        self.version = 0
        """Increases whenever the clock comes to rest (views watch it)."""
        self.resting = False
        """True while the clock is idle: paused, or at the end of what there is to replay (live views
        then show their final state; see :meth:`idle`). It keeps its last value once the app stopped."""
        self.rests = 0
        self._horizon = NEVER
        self._floor = NEVER
        self._sleepers: list[tuple[float, int, asyncio.Future[None], asyncio.Task[Any] | None]] = []
        self._sleeping: set[asyncio.Task[Any]] = set()
        self._woken: set[asyncio.Task[Any]] = set()
        self._changed: asyncio.Event | None = None
        self._seq = 0
        self._control = asyncio.Event()
        self._target: float | None = None
        self._reached: asyncio.Event | None = None
        self._anchor = (0.0, NEVER)  # (loop time, virtual time) when the current speed took effect
        self._driver: asyncio.Task[None] | None = None
        self._at_rest = asyncio.Event()

    # -- what the app reads -------------------------------------------------------------------

    @property
    def gate(self) -> VirtualClock:
        """The clock itself: sources read through it (:class:`~streamnb.runtime.Gate`)."""
        return self

    def now(self) -> float:
        """The virtual time (epoch seconds); ``NEVER`` before the replay started."""
        return self.time

    @property
    def horizon(self) -> float:
        """Messages whose running-maximum timestamp is at most this are released."""
        return self._horizon

    @property
    def floor(self) -> float:
        """The time of the previous rest: an older event is processed at this time."""
        return self._floor

    @property
    def speed(self) -> float | None:
        """``None`` (as fast as possible), ``0`` (paused) or recorded seconds per second."""
        return self._speed

    @speed.setter
    def speed(self, value: float | None) -> None:
        value = check_speed(value)
        if value != 0:
            self._resume_speed = value
        self._speed = value
        self._hold()
        self._control.set()

    @property
    def paused(self) -> bool:
        """True at ``speed == 0``."""
        return self._speed == 0

    @property
    def running(self) -> bool:
        """True while the clock drives a replay."""
        return self._driver is not None and not self._driver.done()

    def pause(self) -> None:
        """Stop releasing events (what is under way finishes); :meth:`resume` goes on."""
        self._target = None
        self.speed = 0

    def resume(self, speed: float | None | str = "same") -> None:
        """Play again, at the speed before the pause (or at ``speed``)."""
        self._target = None
        self.speed = self._resume_speed if speed == "same" else speed  # type: ignore[assignment]

    # -- sleeping (timers) -----------------------------------------------------------------------

    async def sleep_until(self, when: float) -> None:
        """Return once the clock rests at ``when`` (after every event up to it was processed)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._seq += 1
        task = asyncio.current_task()
        heapq.heappush(self._sleepers, (when, self._seq, fut, task))
        if task is not None:
            self._sleeping.add(task)
            self._woken.discard(task)
            task.add_done_callback(self._task_done)
        self._signal()
        self._control.set()
        try:
            await fut
        finally:
            if task is not None:
                self._sleeping.discard(task)
            if not fut.done():
                fut.cancel()

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._sleeping.discard(task)
        self._woken.discard(task)
        self._signal()

    def _signal(self) -> None:
        if self._changed is not None:
            self._changed.set()

    def _next_due(self) -> float:
        heap = self._sleepers
        while heap and heap[0][2].done():
            heapq.heappop(heap)
        return heap[0][0] if heap else math.inf

    async def _fire_timers(self) -> bool:
        """Wake the sleepers due now and wait until each sleeps again or ends; True if any woke."""
        woken: set[asyncio.Task[Any]] = set()
        fired = False
        heap = self._sleepers
        while heap and (heap[0][2].done() or heap[0][0] <= self.time):
            _when, _seq, fut, task = heapq.heappop(heap)
            if not fut.done():
                fut.set_result(None)
                fired = True
                if task is not None:
                    woken.add(task)
                    self._sleeping.discard(task)
        if not fired:
            return False
        self._woken = woken
        changed = self._changed = asyncio.Event()
        while self._woken:
            self._woken = {t for t in self._woken if not t.done() and t not in self._sleeping}
            if not self._woken:
                break
            changed.clear()
            await changed.wait()
        return True

    # -- driving ----------------------------------------------------------------------------------

    def reset(self, transport: Transport, start: float | None, end: float | None) -> None:
        """Start over at ``start`` (the oldest timestamp of the replayed topics)."""
        self._transport = transport
        self.start_time, self.end_time = start, end
        first = start if start is not None else time.time()
        self.time = self._horizon = self._floor = first
        self._anchor = (loop_time(), first)
        self._ends.clear()
        self._done.clear()
        self._progress = 0
        self._released_before_stop = 0
        self.resting = False
        self.version += 1

    def start(self) -> None:
        """Start driving (the app calls this once its agents and timers started)."""
        if not self.running:
            self._driver = asyncio.get_running_loop().create_task(self._drive(), name="streamnb-virtual-clock")

    async def stop(self) -> None:
        """Stop driving (the app calls this when it stops)."""
        driver, self._driver = self._driver, None
        if driver is not None and not driver.done():
            driver.cancel()
            await asyncio.wait([driver])
        waiter, self._next_round = self._next_round, None
        if waiter is not None and not waiter.done():
            waiter.cancel()
        self._released_before_stop = self.released  # (what a frozen player still shows)
        self._feeds.clear()
        self._done.clear()
        for _when, _seq, fut, _task in self._sleepers:
            fut.cancel()
        self._sleepers.clear()

    async def _drive(self) -> None:
        try:
            await self._wait_for_feeds()
            await self._start_round()
            while True:
                await self._all_done.wait()
                if self._progress:
                    self._moved()
                    await self._start_round()
                    continue
                self._rest()
                if await self._fire_timers():
                    await self._start_round()
                    continue
                await self._advance()
                await self._start_round()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("the virtual clock stopped")
            raise

    async def _start_round(self) -> None:
        self._at_rest.clear()
        self.resting = False
        await super()._start_round()

    def _set_resting(self) -> None:
        self.resting = True
        self._at_rest.set()

    def _moved(self) -> None:
        """A round released events: time is as far as they went (not past the horizon)."""
        newest = min(self._newest(), self._horizon)
        if newest > self.time:
            self.time = newest

    def _rest(self) -> None:
        if math.isinf(self._horizon):
            self.time = max(self.time, self._newest())
        else:
            self.time = max(self.time, self._horizon)
        self.rests += 1
        self.version += 1

    async def _advance(self) -> None:
        """Move the horizon on (waiting while paused, between ticks at a finite speed, or when idle)."""
        while True:
            if self._target is not None and self.time >= self._target:
                self._target = None
                self._speed = 0
                if self._reached is not None:
                    self._reached.set()
            speed = self._speed
            due = self._next_due()
            target = self._target if self._target is not None else math.inf
            if speed == 0:
                self._set_resting()
                await self._wait_control(None)
                continue
            if len(self._feeds) < self.expected_feeds():  # an agent (re)starting: wait for its source
                await self._wait_control(0.005)
                return
            if speed is None:
                if self._held_back() is None:  # everything read so far was released
                    if await self._more_written():
                        return  # (sent meanwhile) the next round reads it
                    if math.isinf(target):  # the end of what is there: time stops here
                        self._set_resting()
                        await self._wait_control(1.0)
                        continue
                self._move_horizon(min(due, target))
                return
            loop_now, (anchor_loop, anchor_time) = loop_time(), self._anchor
            virtual_now = anchor_time + speed * (loop_now - anchor_loop)
            limit = min(virtual_now, due, target)
            if limit <= self.time:
                next_stop = min(due, target)
                wait = TICK if math.isinf(next_stop) else min(TICK, (next_stop - virtual_now) / speed)
                await self._wait_control(max(wait, 0.001))
                continue
            self._move_horizon(limit)
            return

    def _move_horizon(self, limit: float) -> None:
        self._floor = self.time
        self._horizon = limit

    def _hold(self) -> None:
        """Release nothing beyond what was released already (pausing, or a new speed)."""
        now = max(self.time, min(self._newest(), self._horizon))
        if self._horizon > now:
            self._horizon = now
        self._anchor = (loop_time(), now)

    async def _wait_control(self, timeout: float | None) -> None:
        self._control.clear()
        try:
            async with asyncio.timeout(timeout):  # (not wait_for: on 3.11 it can swallow a cancellation)
                await self._control.wait()
        except TimeoutError:
            pass

    # -- controls that wait -----------------------------------------------------------------------

    async def idle(self, timeout: float | None = None) -> None:
        """Wait until the clock is at rest with nothing to do: the end of what was recorded, or paused.

        >>> await app.clock.idle()  # doctest: +SKIP
        """
        await asyncio.sleep(0)
        self._control.set()
        async with asyncio.timeout(timeout):
            await self._idle()

    async def _idle(self) -> None:
        while True:
            self._at_rest.clear()
            await self._at_rest.wait()
            await asyncio.sleep(0)
            if self._at_rest.is_set():
                return

    async def step(self, events: int | None = None, *, seconds: float | None = None) -> float:
        """Play ``events`` more events (events at the same time go together), or ``seconds`` of virtual time.

        Returns the clock's time once it rests there (then it is paused).

        >>> await app.clock.step(10)  # doctest: +SKIP
        >>> await app.clock.step(seconds=60)  # doctest: +SKIP
        """
        if (events is None) == (seconds is None):
            raise ConfigurationError("step() takes a number of events or seconds=, not both")
        if events is not None:
            if isinstance(events, bool) or not isinstance(events, int) or events < 1:
                raise ConfigurationError(f"step(events) needs a positive int, got {events!r}")
            upcoming = sorted(k for feed in self._feeds for k in feed.upcoming(events))
            if not upcoming:
                return self.time
            target = upcoming[min(events, len(upcoming)) - 1]
        else:
            if not isinstance(seconds, (int, float)) or seconds <= 0:
                raise ConfigurationError(f"step(seconds=) needs a positive number, got {seconds!r}")
            target = self.time + float(seconds)
        return await self._run_to(target)

    async def seek(self, when: Any) -> float:
        """Go to time ``when`` (epoch seconds or a datetime) and pause there.

        Forward, it plays as fast as possible up to ``when``; back, it
        starts over from the start of the recording with fresh tables
        (the app's restart) and plays up to ``when``.

        >>> await app.clock.seek(app.clock.start_time + 300)  # doctest: +SKIP
        """
        target = to_seconds(when)
        if target < self.time:
            if self.restart is None:
                raise ConfigurationError("this clock cannot go back: it does not drive a running app")
            await self.restart()
        return await self._run_to(target)

    async def _run_to(self, target: float) -> float:
        if not self.running:
            raise ConfigurationError("the virtual clock is not running: `await app.start()` first")
        self._reached = reached = asyncio.Event()
        self._target = target
        self._speed = None
        self._control.set()
        await reached.wait()
        return self.time

    def __repr__(self) -> str:
        state = "paused" if self.paused else ("as fast as possible" if self._speed is None else f"x{self._speed:g}")
        at = "not started" if self.time == NEVER else datetime.fromtimestamp(self.time).isoformat(sep=" ")
        return f"<VirtualClock {at} {state}>"
