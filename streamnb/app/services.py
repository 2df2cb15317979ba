"""Services: background components started and stopped with the app (Faust's ``faust.Service``, ``@app.service``).

Example::

    @app.service
    class Heartbeat(streamnb.Service):
        async def on_start(self):
            self.log.info("starting")

        @streamnb.Service.timer(5.0)
        async def beat(self):
            self.log.info("still here")

        @streamnb.Service.task
        async def poll(self):
            while not self.should_stop:
                await fetch_something()
                await self.sleep(1.0)          # returns early when the service stops

streamnb writes the subset of `mode`'s ``Service`` that Faust programs use
(rather than depending on ``mode-streaming``: a few dozen lines instead of
a library with its own supervisors and loop handling): ``on_first_start``,
``on_start``, ``on_started``, ``on_stop``, ``on_shutdown``,
``@Service.task``, ``@Service.timer(interval)``, ``add_dependency``,
``add_future``, ``self.log``, ``self.sleep``, ``self.should_stop``,
``start``/``stop``/``maybe_start``. The order is mode's: ``start`` runs
``on_first_start`` (once), ``on_start``, starts the ``@Service.task`` and
``@Service.timer`` functions, starts the dependencies (in the order they
were added), then ``on_started``; ``stop`` sets ``should_stop``, runs
``on_stop``, stops the dependencies (last added first), cancels the
service's tasks, then ``on_shutdown``.

``@app.service`` takes a Service class (made with no arguments, as Faust
does) or an instance. The app starts its services after the broker
connection, topics and tables, before the agents, in the order they were
registered, and stops them after the agents and before closing the
connection, last registered first. A service whose start raises makes
``app.start()`` raise that error, after stopping the services already
started (so a worker exits with it). A task or timer of a running service
that raises is logged and kept in ``service.last_error``; the service goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from ..errors import ConfigurationError

__all__ = ["AppServices", "Service"]

logger = logging.getLogger("streamnb")

S = TypeVar("S", bound="Service")
Method = Callable[[Any], Awaitable[Any]]
F = TypeVar("F", bound=Method)

_TASK = "_streamnb_service_task"  # on a method: None for @Service.task, the interval for @Service.timer


class _Log(logging.LoggerAdapter):  # type: ignore[type-arg]
    """``self.log``: the streamnb logger with the service's name before each message, as mode's."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[{self.extra['label'] if self.extra else ''}] {msg}", kwargs


class Service:
    """A background component with a start/stop lifecycle (Faust's ``faust.Service``, from ``mode``).

    >>> class Ticker(Service):
    ...     ticks = 0
    ...     @Service.timer(0.01)
    ...     async def tick(self):
    ...         self.ticks += 1
    >>> async def demo():
    ...     ticker = Ticker()
    ...     await ticker.start()
    ...     while ticker.ticks < 3:
    ...         await asyncio.sleep(0.01)
    ...     await ticker.stop()
    ...     return ticker.state, ticker.should_stop
    >>> asyncio.run(demo())
    ('stopped', True)
    """

    def __init__(self, *, beacon: Any = None, loop: Any = None, **kwargs: Any) -> None:
        del beacon, loop  # mode's; services run on the loop running when they start
        if kwargs:
            raise ConfigurationError(
                f"{type(self).__name__}() got unknown keyword(s) {', '.join(sorted(kwargs))}; "
                "a Service takes none (set your own attributes in your __init__)"
            )
        self.log = _Log(logger, {"label": type(self).__name__})
        """A logger whose messages start with ``[ServiceName]``."""
        self.state = "init"
        """``init``, ``starting``, ``running``, ``stopping`` or ``stopped``."""
        self.last_error: BaseException | None = None
        """The last error of one of the service's tasks or timers."""
        self._dependencies: list[Service] = []
        self._futures: set[asyncio.Future[Any]] = set()
        self._stopped: asyncio.Event | None = None
        self._first_start = True

    # -- decorators ---------------------------------------------------------------------------

    @staticmethod
    def task(fun: F) -> F:
        """Run ``async def f(self)`` in the background while the service runs (mode's ``@Service.task``).

        >>> class Poller(Service):
        ...     @Service.task
        ...     async def poll(self):
        ...         while not self.should_stop:
        ...             await self.sleep(1.0)
        """
        _check_method(fun, "@Service.task")
        setattr(fun, _TASK, None)
        return fun

    @staticmethod
    def timer(interval: float) -> Callable[[F], F]:
        """Run ``async def f(self)`` every ``interval`` seconds (the first time after one interval).

        >>> class Beat(Service):
        ...     @Service.timer(5.0)
        ...     async def beat(self):
        ...         self.log.info("alive")
        """
        seconds = float(interval.total_seconds() if hasattr(interval, "total_seconds") else interval)
        if seconds <= 0:
            raise ConfigurationError(f"@Service.timer needs an interval > 0 seconds, got {interval!r}")

        def decorator(fun: F) -> F:
            _check_method(fun, "@Service.timer")
            setattr(fun, _TASK, seconds)
            return fun

        return decorator

    # -- hooks (override) ---------------------------------------------------------------------

    async def on_first_start(self) -> None:
        """Called before the first :meth:`on_start` only."""

    async def on_start(self) -> None:
        """Called when the service starts (before its tasks and dependencies)."""

    async def on_started(self) -> None:
        """Called once the service, its tasks and its dependencies run."""

    async def on_stop(self) -> None:
        """Called when the service stops (``should_stop`` is already true; tasks still run)."""

    async def on_shutdown(self) -> None:
        """Called last, once dependencies and tasks are stopped."""

    # -- what a service uses ------------------------------------------------------------------

    @property
    def should_stop(self) -> bool:
        """True once :meth:`stop` began (loops in tasks check it)."""
        return self.state in ("stopping", "stopped")

    @property
    def started(self) -> bool:
        """True while the service runs."""
        return self.state == "running"

    @property
    def label(self) -> str:
        """The service's name in logs."""
        return type(self).__name__

    shortlabel = label

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or less if the service stops meanwhile.

        >>> await self.sleep(1.0)  # doctest: +SKIP
        """
        if self.should_stop:
            return
        stopped = self._stopped_event()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stopped.wait(), timeout=max(float(seconds), 0.0))

    def add_dependency(self, service: S) -> S:
        """Start ``service`` with this one (after :meth:`on_start`) and stop it before :meth:`on_shutdown`.

        >>> parent, child = Service(), Service()
        >>> parent.add_dependency(child) is child
        True
        """
        if not isinstance(service, Service):
            raise ConfigurationError(f"add_dependency() takes a streamnb.Service, got {service!r}")
        if service not in self._dependencies:
            self._dependencies.append(service)
        return service

    def add_future(self, coro: Coroutine[Any, Any, Any] | Awaitable[Any]) -> asyncio.Future[Any]:
        """Run ``coro`` in the background until the service stops (then it is cancelled)."""
        future = asyncio.ensure_future(coro)
        self._futures.add(future)
        future.add_done_callback(self._future_done)
        return future

    # -- lifecycle ----------------------------------------------------------------------------

    async def maybe_start(self) -> None:
        """Start unless already started."""
        if self.state not in ("starting", "running"):
            await self.start()

    async def start(self) -> None:
        """Start: hooks, tasks and timers, dependencies (see the module docstring for the order)."""
        self.state = "starting"
        self._stopped = asyncio.Event()
        if self._first_start:
            self._first_start = False
            await self.on_first_start()
        await self.on_start()
        for fun, interval in self._methods():
            self.add_future(fun() if interval is None else self._every(interval, fun))
        for dependency in self._dependencies:
            await dependency.maybe_start()
        self.state = "running"
        await self.on_started()

    async def stop(self) -> None:
        """Stop: ``should_stop``, :meth:`on_stop`, dependencies (last first), tasks, :meth:`on_shutdown`."""
        if self.state in ("init", "stopped", "stopping"):
            self.state = "stopped" if self.state == "init" else self.state
            return
        self.state = "stopping"
        self._stopped_event().set()
        try:
            await self.on_stop()
        finally:
            for dependency in reversed(self._dependencies):
                await dependency.stop()
            futures = [f for f in self._futures if not f.done()]
            for future in futures:
                future.cancel()
            if futures:
                await asyncio.wait(futures)
            try:
                await self.on_shutdown()
            finally:
                self.state = "stopped"

    # -- the parts ----------------------------------------------------------------------------

    def _stopped_event(self) -> asyncio.Event:
        if self._stopped is None:
            self._stopped = asyncio.Event()
        return self._stopped

    def _methods(self) -> list[tuple[Callable[[], Awaitable[Any]], float | None]]:
        """The service's ``@Service.task`` and ``@Service.timer`` methods, bound, with their interval."""
        found: list[tuple[Callable[[], Awaitable[Any]], float | None]] = []
        seen: set[str] = set()
        for cls in type(self).__mro__:
            for name, member in vars(cls).items():
                if name not in seen and hasattr(member, _TASK):
                    seen.add(name)
                    found.append((getattr(self, name), getattr(member, _TASK)))
        return found

    async def _every(self, interval: float, fun: Callable[[], Awaitable[Any]]) -> None:
        while not self.should_stop:
            await self.sleep(interval)
            if self.should_stop:
                return
            try:
                await fun()
            except Exception as exc:  # a timer run that fails is logged; the next one still comes
                self._failed(exc)

    def _future_done(self, future: asyncio.Future[Any]) -> None:
        self._futures.discard(future)
        if not future.cancelled() and future.exception() is not None:
            self._failed(future.exception())

    def _failed(self, exc: BaseException | None) -> None:
        self.last_error = exc
        self.log.error("failed: %r", exc, exc_info=exc)

    def __repr__(self) -> str:
        return f"<{self.label} {self.state}>"


def _check_method(fun: Any, what: str) -> None:
    if not inspect.iscoroutinefunction(fun):
        raise ConfigurationError(f"{what} decorates an `async def` method taking self, got {fun!r}")


class AppServices:
    """What the App gains for services and Faust's small names (a base class of :class:`~streamnb.app.App`).

    ``@app.service``, ``app.services``, ``await app.sleep(s)`` and
    ``app.should_stop``.
    """

    state: str

    def spawn(self, coro: Coroutine[Any, Any, Any], what: str) -> asyncio.Task[Any] | None:
        """Run ``coro`` in the background (the App's)."""
        raise NotImplementedError

    @property
    def services(self) -> list[Service]:
        """The services registered with ``@app.service``, in order."""
        found: list[Service] | None = self.__dict__.get("_services")
        if found is None:
            found = self.__dict__["_services"] = []
        return found

    def _stop_event(self) -> asyncio.Event:
        """Set while the app stops or is stopped after running (``app.sleep`` returns early on it)."""
        event: asyncio.Event | None = self.__dict__.get("_services_stopped")
        if event is None:
            event = self.__dict__["_services_stopped"] = asyncio.Event()
        return event

    def service(self, cls: Any) -> Any:
        """Register a :class:`Service` class (made with no arguments) or instance; returns what it was given.

        A service registered while the app runs starts at once; a class
        defined again under the same name (a notebook cell run twice)
        replaces the earlier one's service (stopping it if it runs).

        >>> from streamnb import App, Service
        >>> app = App("demo", broker="memory://")
        >>> @app.service
        ... class Background(Service):
        ...     pass
        >>> [type(s).__name__ for s in app.services]
        ['Background']
        """
        instance = cls() if isinstance(cls, type) and issubclass(cls, Service) else cls
        if not isinstance(instance, Service):
            raise ConfigurationError(
                f"@app.service takes a streamnb.Service subclass or instance, got {cls!r}: "
                "subclass streamnb.Service (Faust's faust.Service)"
            )
        services = self.services
        old = next((s for s in services if _same_definition(s, instance)), None)
        if old is None:
            services.append(instance)
        elif old is instance:
            return cls
        else:
            services[services.index(old)] = instance
        if self.state == "running":
            self.spawn(_swap(old, instance), f"start service {instance.label}")
        return cls

    async def start_services(self) -> None:
        """Start every service in order; if one raises, stop those started (last first) and raise its error."""
        self.__dict__["_services_stopped"] = asyncio.Event()
        started: list[Service] = []
        for service in list(self.services):
            try:
                await service.maybe_start()
            except BaseException as exc:
                logger.error("service %s failed to start: %r; stopping the app", service.label, exc)
                for done in [service, *reversed(started)]:
                    with contextlib.suppress(Exception):
                        await done.stop()
                raise
            started.append(service)

    async def stop_services(self) -> None:
        """Stop every service, last registered first (a failing stop is logged, the others still stop)."""
        self._stop_event().set()
        for service in reversed(list(self.services)):
            try:
                await service.stop()
            except Exception as exc:
                logger.error("service %s failed to stop: %r", service.label, exc)

    @property
    def should_stop(self) -> bool:
        """True while the app stops and once it stopped (Faust's ``app.should_stop``).

        >>> from streamnb import App
        >>> App("demo", broker="memory://").should_stop
        False
        """
        return self.state in ("stopping", "stopped")

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or less if the app stops meanwhile (Faust's ``app.sleep``).

        >>> await app.sleep(1.0)  # doctest: +SKIP
        """
        if self.should_stop:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stop_event().wait(), timeout=max(float(seconds), 0.0))


def _same_definition(a: Service, b: Service) -> bool:
    """True when ``b`` is ``a`` itself, or of a class redefined under the same name (a notebook cell run again)."""
    if a is b:
        return True
    ta, tb = type(a), type(b)
    return ta is not tb and ta.__module__ == tb.__module__ and ta.__qualname__ == tb.__qualname__


async def _swap(old: Service | None, new: Service) -> None:
    """A service registered while the app runs: stop the one it replaces, start it."""
    if old is not None:
        await old.stop()
    await new.maybe_start()
