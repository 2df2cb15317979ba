"""Scheduled work of an app: ``@app.timer``, ``@app.crontab`` and ``@app.task``.

:class:`Scheduling` is a base class of :class:`~streamnb.app.App`. Each
decorator defines (or redefines) one job under its function's name; a job
defined again replaces the old one, also while the app runs::

    @app.timer(60.0)
    async def report():
        print(counts.as_dataframe())

    @app.crontab("0 19 * * *", timezone="Europe/Paris")
    async def evening():
        ...
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, cast

from ..errors import ConfigurationError
from ..processing.crontab import Crontab
from ..processing.tasks import Task, TaskHost, Timer
from .conf import Settings
from .definitions import name_of

__all__ = ["Scheduling"]

F = TypeVar("F", bound=Callable[..., Any])


class Scheduling:
    """Timers, crontabs and start-up tasks (a base class of :class:`~streamnb.app.App`)."""

    state: str
    timers: dict[str, Timer]
    tasks: dict[str, Task]
    conf: Settings

    def spawn(self, coro: Coroutine[Any, Any, Any], what: str) -> asyncio.Task[Any] | None:
        """Run ``coro`` in the background (the App's)."""
        raise NotImplementedError

    def timer(self, interval: float, *, name: str | None = None, on_leader: bool = False) -> Callable[[F], F]:
        """Run ``async def f()`` (or ``f(app)``) every ``interval`` seconds while the app runs.

        >>> from streamnb import App
        >>> app = App("demo", broker="memory://")
        >>> @app.timer(5.0)
        ... async def heartbeat():
        ...     print("alive")
        """

        def decorator(fun: F) -> F:
            timer = Timer(cast(TaskHost, self), fun, interval, name=name or name_of(fun), on_leader=on_leader)
            self._register_background(self.timers, timer)
            return fun

        return decorator

    def crontab(
        self,
        cron_format: str,
        *,
        timezone: Any = None,
        on_leader: bool = False,
        traced: bool = True,
        name: str | None = None,
        tz: Any = None,
    ) -> Callable[[F], F]:
        """Run ``async def f()`` (or ``f(app)``) at each time the cron expression gives (Faust's ``app.crontab``).

        ``timezone`` (or ``tz``): a zone name, a ``zoneinfo`` or ``pytz``
        zone; by default ``app.conf.timezone`` (UTC unless set). Follows the
        app's clock like :meth:`timer` (virtual times in a replay), lives in
        ``app.timers``, and is replaced when defined again. ``traced`` is
        accepted for Faust's sake (there is no tracing). See
        :mod:`streamnb.processing.crontab` for the expression and daylight saving.

        >>> from streamnb import App
        >>> app = App("demo", broker="memory://")
        >>> @app.crontab("0 19 * * *", timezone="America/New_York")
        ... async def evening_report():
        ...     print("report")
        >>> app.timers["evening_report"].schedule
        "cron '0 19 * * *' in America/New_York"
        """
        if timezone is not None and tz is not None and timezone is not tz:
            raise ConfigurationError("@app.crontab: give timezone= or tz=, not both")
        zone = timezone if timezone is not None else tz
        if zone is None:
            zone = self.conf.timezone

        def decorator(fun: F) -> F:
            job = Crontab(cast(TaskHost, self), fun, cron_format, name=name or name_of(fun), timezone=zone,
                          on_leader=on_leader)
            self._register_background(self.timers, job)
            return fun

        return decorator

    def task(self, fun: F | None = None, *, name: str | None = None) -> Any:
        """Run ``async def f()`` (or ``f(app)``) once when the app starts.

        >>> from streamnb import App
        >>> app = App("demo", broker="memory://")
        >>> @app.task
        ... async def hello():
        ...     print("started")
        """

        def decorator(f: F) -> F:
            task = Task(cast(TaskHost, self), f, name=name or name_of(f))
            self._register_background(self.tasks, task)
            return f

        return decorator(fun) if fun is not None else decorator

    def _register_background(self, registry: dict[str, Any], item: Timer | Task) -> None:
        old = registry.get(item.name)
        registry[item.name] = item
        if old is not None or self.state == "running":

            async def swap() -> None:
                if old is not None:
                    await old.stop()
                if self.state == "running" and registry.get(item.name) is item:
                    item.start()

            self.spawn(swap(), f"start {item.name}")
