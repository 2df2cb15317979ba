"""Timers and tasks: background functions that run while the app runs.

Example::

    @app.timer(10.0)
    async def report():
        print(counts.as_ansitable())

    @app.task
    async def seed(app):
        await page_views.send(value=PageView(id="1", user="a", page="/"))
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import traceback
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from ..errors import ConfigurationError
from ..runtime import Clock

__all__ = ["Task", "TaskHost", "Timer"]

logger = logging.getLogger("streamnb")


class TaskHost(Protocol):
    """What timers and tasks need from the app (passed to ``f(app)``)."""

    @property
    def clock(self) -> Clock:
        """Timers wait on it: the wall clock, or a virtual clock in a replay."""
        ...

    def is_leader(self) -> bool:
        """True on the worker that runs ``on_leader`` timers."""
        ...


class Task:
    """Runs ``async def f()`` or ``f(app)`` once when the app starts."""

    def __init__(self, app: TaskHost, fun: Callable[..., Any], *, name: str) -> None:
        if not inspect.iscoroutinefunction(fun):
            raise ConfigurationError(f"{name!r} must be an `async def` function")
        self.app = app
        self.fun = fun
        self.name = name
        self.last_error: BaseException | None = None
        self.last_traceback: str | None = None
        self._takes_app = len(inspect.signature(fun).parameters) >= 1
        self._task: asyncio.Task[None] | None = None

    def _call(self) -> Any:
        return self.fun(self.app) if self._takes_app else self.fun()

    async def _main(self) -> None:
        try:
            await self._call()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        self.last_error = exc
        self.last_traceback = "".join(traceback.format_exception(exc))
        logger.error("%s %r failed\n%s", type(self).__name__.lower(), self.name, self.last_traceback)

    def start(self) -> None:
        """Schedule on the running loop."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._main(), name=f"streamnb-{self.name}")

    async def stop(self) -> None:
        """Cancel and wait."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])

    @property
    def running(self) -> bool:
        """True while the task runs."""
        return self._task is not None and not self._task.done()


class Timer(Task):
    """Runs ``async def f()`` or ``f(app)`` every ``interval`` seconds.

    A failing run is logged and kept in ``last_error``; the timer goes on.
    With ``on_leader=True`` it runs only on the leader worker
    (``app.is_leader()``); other workers skip their turns. Under a virtual
    clock (a replay) it runs at exact virtual moments: after every event up
    to that time was processed, before any later one.
    """

    def __init__(
        self, app: TaskHost, fun: Callable[..., Any], interval: float, *, name: str, on_leader: bool = False
    ) -> None:
        super().__init__(app, fun, name=name)
        interval = float(interval.total_seconds()) if hasattr(interval, "total_seconds") else interval
        if not isinstance(interval, (int, float)) or interval <= 0:
            raise ConfigurationError(f"timer {name!r}: interval must be > 0 seconds, got {interval!r}")
        self.interval: float | None = float(interval)
        """Seconds between two runs (``None`` for a :class:`~streamnb.processing.crontab.Crontab`)."""
        self._init_counters(on_leader)

    def _init_counters(self, on_leader: bool) -> None:
        """The counters every timer keeps (also what a :class:`~streamnb.processing.crontab.Crontab` sets up)."""
        self.on_leader = on_leader
        self.runs = 0
        self.skipped = 0
        """Turns skipped because this worker was not the leader."""
        self.next_run: float | None = None
        """When the timer runs next (epoch seconds on the app's clock), while it is running."""

    def _times(self, start: float) -> Iterator[float]:
        """The times to run at, after ``start`` (epoch seconds); asked for one after each run."""
        due, step = start, float(self.interval or 0.0)
        while True:
            due += step
            yield due

    @property
    def schedule(self) -> str:
        """How often the timer runs, in words (what the dashboard shows).

        >>> from streamnb import App
        >>> async def tick():
        ...     pass
        >>> Timer(App("demo", broker="memory://"), tick, 2.5, name="tick").schedule
        'every 2.5 s'
        """
        return f"every {self.interval or 0.0:g} s"

    async def _main(self) -> None:
        clock = self.app.clock
        try:
            for due in self._times(clock.now()):
                self.next_run = due
                await clock.sleep_until(due)
                if self.on_leader and not self.app.is_leader():
                    self.skipped += 1
                    continue
                try:
                    await self._call()
                    self.runs += 1
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self._failed(exc)
        finally:
            self.next_run = None
