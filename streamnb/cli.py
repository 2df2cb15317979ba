"""The worker command and custom commands: ``streamnb -A module[:app] worker``, ``app.main()``.

Deploying what was prototyped in a notebook::

    $ streamnb -A proj worker -l info            # the App named `app` in proj.py
    $ streamnb -A proj:orders_app worker --web-port 6067
    $ python proj.py worker                      # when proj.py ends with app.main()

The worker runs the app in the foreground until SIGTERM or Ctrl-C (SIGINT),
then stops its agents, which commit what they processed, and exits with
status 0. It serves the app's web views (``@app.page``) when there are any.
Start several workers of the same module on ``kafka://`` and they split the
partitions.

Custom commands, as in Faust (``option``/``argument`` are click's)::

    from streamnb.cli import argument, option

    @app.command(argument("location"), argument("name"), option("--times", type=int, default=1))
    async def joining(self, location: str, name: str, times: int) -> None:
        for _ in range(times):
            await joining_topic.send(key=location, value=name)

    $ streamnb -A proj joining paris alice --times 2

A command connects to the broker (it does not start the agents), runs, and
disconnects. ``self`` is an :class:`AppCommand` (``self.app``,
``self.say()``); a function without parameters is called without it.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, Protocol, cast, runtime_checkable

import click

from .errors import ConfigurationError, StreamnbError

__all__ = ["AppCommand", "Command", "CommandHost", "argument", "cli", "find_app", "main", "option", "run_worker"]

logger = logging.getLogger("streamnb")

option = click.option
"""A command option (``click.option``), as ``faust.cli.option``."""
argument = click.argument
"""A command argument (``click.argument``), as ``faust.cli.argument``."""

LEVELS = ("debug", "info", "warning", "warn", "error", "critical")


@runtime_checkable
class CommandHost(Protocol):
    """What commands and the worker need from the app (:class:`~streamnb.app.App`)."""

    id: str
    broker: str
    conf: Any
    commands: dict[str, Command]
    worker_mode: bool
    transport: Any

    async def connect(self) -> Any:
        """Open the broker connection."""
        ...

    async def stop(self) -> None:
        """Stop the app."""
        ...

    def run(self, on_started: Callable[[Any], Any] | None = None) -> None:
        """Run until SIGTERM/SIGINT; ``on_started(app)`` once everything runs."""
        ...


class AppCommand:
    """What ``self`` is in an ``@app.command`` function (Faust's ``AppCommand``)."""

    def __init__(self, app: CommandHost) -> None:
        self.app = app

    def say(self, *args: Any, err: bool = False, **kwargs: Any) -> None:
        """Print a message (to stderr with ``err=True``)."""
        click.echo(" ".join(str(a) for a in args), err=err)

    def carp(self, *args: Any, **kwargs: Any) -> None:
        """Print a message to stderr."""
        self.say(*args, err=True)


class Command:
    """A command made with ``@app.command(...)``: run it from the shell, or ``await cmd.invoke(...)``.

    >>> from streamnb import App
    >>> app = App("demo", broker="memory://")
    >>> @app.command(argument("name"))
    ... async def greet(self, name):
    ...     self.say(f"hello {name}")
    >>> greet.name, sorted(app.commands)
    ('greet', ['greet'])
    """

    def __init__(self, app: CommandHost, fun: Callable[..., Any], options: Sequence[Any], name: str | None) -> None:
        if not inspect.iscoroutinefunction(fun):
            raise ConfigurationError(f"@app.command needs an `async def` function, got {fun!r}")
        self.app = app
        self.fun = fun
        self.name = (name or fun.__name__).replace("_", "-")
        self.takes_self = bool(inspect.signature(fun).parameters)
        self.__doc__ = fun.__doc__

        def callback(**params: Any) -> None:
            _run_blocking(self.run(params))

        for decorate in reversed(options):
            callback = decorate(callback)
        self.click = click.command(name=self.name, help=fun.__doc__)(callback)

    async def run(self, params: dict[str, Any]) -> Any:
        """Connect the app (unless it runs already), call the function with ``params``, disconnect."""
        app = self.app
        connected_here = app.transport is None
        await app.connect()
        try:
            if self.takes_self:
                return await self.fun(AppCommand(app), **params)
            return await self.fun(**params)
        finally:
            if connected_here:
                await app.stop()

    async def invoke(self, *args: str) -> Any:
        """Parse ``args`` as the shell would and run the command on the running loop (tests, notebooks)."""
        with self.click.make_context(self.name, list(args)) as ctx:
            return await self.run(dict(ctx.params))

    def __repr__(self) -> str:
        return f"<Command {self.name!r} of app {self.app.id!r}>"


def _run_blocking(coro: Any) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    coro.close()
    raise ConfigurationError("a command blocks and needs its own event loop; in a notebook use `await cmd.invoke(...)`")


def _configure_logging(level: str | None) -> None:
    if level is None:
        return
    name = level.upper()
    name = "WARNING" if name == "WARN" else name
    logging.basicConfig(
        level=getattr(logging, name), stream=sys.stderr,
        format="[%(asctime)s] [%(process)d] %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger().setLevel(getattr(logging, name))


def run_worker(
    app: CommandHost, *, loglevel: str | None = "warning", web_port: int | None = None,
    web_bind: str | None = None, web_host: str | None = None, with_web: bool | None = None,
) -> None:
    """Run ``app`` in the foreground until SIGTERM or SIGINT, then stop it cleanly (a final commit)."""
    _configure_logging(loglevel or "warning")
    conf = app.conf
    for name, value in (("web_port", web_port), ("web_bind", web_bind), ("web_host", web_host),
                        ("web_enabled", with_web)):
        if value is not None:
            setattr(conf, name, value)
    click.echo(f"streamnb worker: app {app.id!r} on {app.broker} (pid {os.getpid()}); "
               "stop with Ctrl-C or SIGTERM", err=True)
    app.worker_mode = True

    def started(app: Any) -> None:
        agents = ", ".join(app.agents) or "none"
        web = f"; web views at {app.web.url}" if app.web.url else ""
        click.echo(f"streamnb worker: running (agents: {agents}){web}", err=True)

    try:
        app.run(on_started=started)
    except StreamnbError as exc:
        click.echo(f"streamnb worker: error: {exc}", err=True)
        raise SystemExit(1) from exc
    click.echo(f"streamnb worker: app {app.id!r} stopped; what the agents processed is committed", err=True)


def _worker_command(get_app: Callable[[], CommandHost]) -> click.Command:
    @click.command(name="worker", help="Run the app's agents, timers, tasks and web views until stopped.")
    @click.option("-l", "--loglevel", type=click.Choice(LEVELS, case_sensitive=False), default=None,
                  help="Logging level (default: warning).")
    @click.option("--web-port", type=int, default=None, help="Port of the web views (default 6066; 0: any free).")
    @click.option("--web-bind", default=None, help="Address the web server listens on (default 127.0.0.1).")
    @click.option("--web-host", default=None, help="Host name other workers use to reach this one.")
    @click.option("--with-web/--without-web", default=None, help="Serve the web views (default: when defined).")
    @click.pass_context
    def worker(
        ctx: click.Context, loglevel: str | None, web_port: int | None, web_bind: str | None,
        web_host: str | None, with_web: bool | None,
    ) -> None:
        level = loglevel or (ctx.obj or {}).get("loglevel")
        run_worker(get_app(), loglevel=level, web_port=web_port, web_bind=web_bind, web_host=web_host,
                   with_web=with_web)

    return worker


class _Group(click.Group):
    """The command group: ``worker`` plus the app's own commands (found once ``-A`` is known)."""

    def __init__(self, app: CommandHost | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.app = app

    def _app(self, ctx: click.Context) -> CommandHost | None:
        if self.app is None:
            spec = (ctx.obj or {}).get("app")
            if spec:
                self.app = find_app(spec)
        return self.app

    def list_commands(self, ctx: click.Context) -> list[str]:
        app = self._app(ctx)
        return ["worker", *sorted(app.commands if app is not None else ())]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name == "worker":
            return _worker_command(lambda: self._require_app(ctx))
        app = self._app(ctx)
        if app is None:
            return None
        command = app.commands.get(name) or app.commands.get(name.replace("_", "-"))
        return command.click if command is not None else None

    def _require_app(self, ctx: click.Context) -> CommandHost:
        app = self._app(ctx)
        if app is None:
            raise click.UsageError("which app? give -A module[:attribute], e.g. `streamnb -A proj worker`")
        return app


def _group(app: CommandHost | None) -> click.Group:
    @click.group(cls=_Group, app=app, help="streamnb: run an app as a worker, or one of its commands.")
    @click.option("-A", "--app", "app_spec", default=None, help="The app: module[:attribute] (e.g. proj:app).")
    @click.option("-l", "--loglevel", type=click.Choice(LEVELS, case_sensitive=False), default=None,
                  help="Logging level for every command.")
    @click.pass_context
    def group(ctx: click.Context, app_spec: str | None, loglevel: str | None) -> None:
        ctx.obj = {"app": app_spec, "loglevel": loglevel}
        _configure_logging(loglevel)

    return group


def main(app: CommandHost | None = None, argv: Sequence[str] | None = None) -> None:
    """Run the command line for ``app`` (``app.main()``), or for the app ``-A`` names."""
    _group(app).main(args=list(argv) if argv is not None else None, prog_name=_prog_name(app))


def cli() -> None:
    """The ``streamnb`` console script."""
    main()


def _prog_name(app: CommandHost | None) -> str:
    if app is None:
        return "streamnb"
    return os.path.basename(sys.argv[0]) or "streamnb"


def find_app(spec: str) -> CommandHost:
    """The App ``spec`` names: ``module:attribute``, or ``module`` (its ``app``, or its only App).

    The current directory is importable, as for ``python -m``.
    """
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name.split(".")[0] and exc.name != module_name:
            raise
        raise click.UsageError(f"-A {spec}: no module {module_name!r} (run from the folder that holds it)") from exc
    if attribute:
        found = getattr(module, attribute, None)
        if not _is_app(found):
            raise click.UsageError(f"-A {spec}: {module_name}.{attribute} is not an App")
        return cast(CommandHost, found)
    named = getattr(module, "app", None)
    if _is_app(named):
        return cast(CommandHost, named)
    apps = [value for value in vars(module).values() if _is_app(value)]
    if len(apps) == 1:
        return cast(CommandHost, apps[0])
    names = sorted(name for name, value in vars(module).items() if _is_app(value))
    raise click.UsageError(
        f"-A {spec}: " + (f"several Apps ({', '.join(names)}); name one: -A {module_name}:{names[0]}"
                          if names else f"module {module_name!r} has no App")
    )


def _is_app(value: Any) -> bool:
    return isinstance(value, CommandHost) and not isinstance(value, type)
