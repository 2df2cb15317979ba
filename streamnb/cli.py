"""The worker command and custom commands: ``streamnb -A module[:app] worker``, ``app.main()``.

Deploying what was prototyped in a notebook::

    $ streamnb -A proj worker -l info            # the App named `app` in proj.py
    $ streamnb -A proj:orders_app worker --web-port 6067
    $ python proj.py worker                      # when proj.py ends with app.main()

The worker runs the app in the foreground until SIGTERM or Ctrl-C (SIGINT),
then stops its agents, which commit what they processed, and exits with
status 0. It serves the app's web views (``@app.page``) and its metrics
(``GET /metrics``, Prometheus' text format; see :mod:`streamnb.app.metering`).
Start several workers of the same module on ``kafka://`` and they split the
partitions.

Custom commands, as in Faust (``option``/``argument`` are click's)::

    from streamnb.cli import argument, option

    @app.command(argument("location"), argument("name"), option("--times", type=int, default=1))
    async def joining(self, location: str, name: str, times: int) -> None:
        for _ in range(times):
            await joining_topic.send(key=location, value=name)

    $ streamnb -A proj joining paris alice --times 2

    $ streamnb -A proj --help                    # lists `worker` and the app's commands

A command connects to the broker (it does not start the agents), runs, and
disconnects. ``self`` is an :class:`AppCommand` (``self.app``,
``self.say()``); a function without parameters is called without it.

``streamnb check local://PATH``, ``streamnb salvage local://PATH --to local://NEW``: see
:mod:`streamnb.transport.local.check`.

What fails before the worker runs (importing the module, the configuration,
the broker, a ``local://`` folder in use, the web port) is one line on
stderr, ``streamnb worker: error: ...`` saying what to do, and exit status 1;
``--traceback`` prints the full traceback first. All of it is checked before
any agent joins its consumer group. ``-l info`` logs one line per assignment
change, table restore and rebalance (see :mod:`streamnb.app.membership`);
``-l debug`` adds every commit and aiokafka's own lines.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import IO, Any, Protocol, cast, runtime_checkable

import click

from .errors import ConfigurationError, StreamnbError
from .worker.failures import failure

__all__ = [
    "AppCommand", "Command", "CommandHost", "StartError", "argument", "cli", "find_app", "main", "option", "run_worker",
]

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
            try:
                _run_blocking(self.run(params))
            except StreamnbError as exc:  # the broker, the configuration: one line, not a traceback
                raise StartError(str(exc), who=f"streamnb {self.name}") from exc

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


_TRACEBACK = "streamnb.traceback"
"""``ctx.meta`` key: ``--traceback`` was given (the full traceback before an error's line)."""


class StartError(click.ClickException):
    """An error that stops the worker or a command (importing the app, connecting): one line, exit status 1.

    ``streamnb worker: error: <message>``; with ``--traceback`` the full
    traceback of its cause comes first.

    >>> StartError("the web port is taken", who="streamnb worker").format_message()
    'the web port is taken'
    """

    exit_code = 1

    def __init__(self, message: str, *, who: str = "streamnb", traceback: bool | None = None) -> None:
        super().__init__(message)
        self.who = who
        if traceback is None:
            ctx = click.get_current_context(silent=True)
            traceback = bool(ctx is not None and ctx.meta.get(_TRACEBACK))
        self.traceback = traceback

    def show(self, file: IO[Any] | None = None) -> None:
        """Print the traceback of the cause (with ``--traceback``), then the one line."""
        out = file if file is not None else sys.stderr
        if self.traceback and self.__cause__ is not None:
            traceback.print_exception(self.__cause__, file=out)
        click.echo(f"{self.who}: error: {self.format_message()}", file=out)


def _configure_logging(level: str | None) -> None:
    if level is None:
        return
    name = level.upper()
    name = "WARNING" if name == "WARN" else name
    value = getattr(logging, name)
    logging.basicConfig(
        level=value, stream=sys.stderr,
        format="[%(asctime)s] [%(process)d] %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger().setLevel(value)
    # aiokafka's info lines (unsorted partition sets, "Updating subscribed topics") say again, less
    # readably, what streamnb's assignment, restore and rebalance lines say: shown from debug on.
    logging.getLogger("aiokafka").setLevel(value if value <= logging.DEBUG else max(value, logging.WARNING))


def run_worker(
    app: CommandHost, *, loglevel: str | None = "warning", web_port: int | None = None,
    web_bind: str | None = None, web_host: str | None = None, with_web: bool | None = None,
    traceback: bool = False,
) -> None:
    """Run ``app`` in the foreground until SIGTERM or SIGINT, then stop it cleanly (a final commit).

    An error that stops it is printed as one line (after the full traceback
    with ``traceback=True``) and exits with status 1.

    >>> run_worker(app, loglevel="info", web_port=6067)  # doctest: +SKIP
    """
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
    except Exception as exc:
        error = StartError(failure(exc), who="streamnb worker", traceback=traceback)
        error.__cause__ = exc
        error.show()
        raise SystemExit(1) from exc
    click.echo(f"streamnb worker: app {app.id!r} stopped; what the agents processed is committed", err=True)


def _folder(url: str | None, app: CommandHost | None, who: str) -> str:
    """The folder of ``local://PATH`` (or of the -A app's broker)."""
    from .transport.local import parse_local_url

    url = url or (app.broker if app is not None else None)
    if not url or not url.startswith("local://"):
        raise click.UsageError(f"{who} needs a local:// URL, e.g. `{who} local://.streamnb`")
    return parse_local_url(url)[0]


def _store_commands(get_app: Callable[[], CommandHost | None]) -> dict[str, click.Command]:
    """``check`` and ``salvage``: the logic is :mod:`streamnb.transport.local.check`."""
    from .transport.local import check as store

    @click.command(name="check", short_help="Check a stopped local:// folder for damage.",
                   help="Check a stopped local:// folder: sqlite's integrity and every stored "
                   "batch's checksum. Prints what is damaged; exit status 0 clean, 1 damaged, 2 not checked.")
    @click.argument("url", required=False)
    def check(url: str | None) -> None:
        try:
            report = store.check(_folder(url, get_app(), "streamnb check"))
        except StreamnbError as exc:
            raise _StoreError(str(exc), who="streamnb check") from exc
        click.echo("\n".join(report.lines()))
        sys.exit(0 if report.ok else 1)

    @click.command(name="salvage", short_help="Copy what is intact of a local:// folder.",
                   help="Copy every undamaged partition, changelog and committed offset of a "
                   "stopped local:// folder into a new one; lists what it could not (exit status 1 then).")
    @click.argument("url", required=False)
    @click.option("--to", "to", required=True, help="The new folder, local://NEW (must not hold a store).")
    def salvage(url: str | None, to: str) -> None:
        try:
            report = store.salvage(_folder(url, get_app(), "streamnb salvage"), _folder(to, None, "--to"))
        except StreamnbError as exc:
            raise _StoreError(str(exc), who="streamnb salvage") from exc
        click.echo("\n".join(report.lines()))
        sys.exit(0 if report.ok else 1)

    return {"check": check, "salvage": salvage}


class _StoreError(StartError):
    exit_code = 2  # could not check at all (1 means: checked, and damaged)


def _worker_command(get_app: Callable[[], CommandHost]) -> click.Command:
    @click.command(name="worker", help="Run the app's agents, timers, tasks and web views until stopped.")
    @click.option("-l", "--loglevel", type=click.Choice(LEVELS, case_sensitive=False), default=None,
                  help="Logging level (default: warning).")
    @click.option("--web-port", type=int, default=None, help="Port of the web views (default 6066; 0: any free).")
    @click.option("--web-bind", default=None, help="Address the web server listens on (default 127.0.0.1).")
    @click.option("--web-host", default=None, help="Host name other workers use to reach this one.")
    @click.option("--with-web/--without-web", default=None, help="Serve the web views (default: when defined).")
    @click.option("--traceback", "show_traceback", is_flag=True, default=False,
                  help="Print the full traceback of an error that stops the worker.")
    @click.pass_context
    def worker(
        ctx: click.Context, loglevel: str | None, web_port: int | None, web_bind: str | None,
        web_host: str | None, with_web: bool | None, show_traceback: bool,
    ) -> None:
        if show_traceback:
            ctx.meta[_TRACEBACK] = True
        level = loglevel or (ctx.obj or {}).get("loglevel")
        run_worker(get_app(), loglevel=level, web_port=web_port, web_bind=web_bind, web_host=web_host,
                   with_web=with_web, traceback=bool(ctx.meta.get(_TRACEBACK)))

    return worker


class _Group(click.Group):
    """The command group: ``worker`` plus the app's own commands.

    The app comes from ``main(app)``, or from ``-A``: read from the
    arguments before click processes them, so that ``--help`` (handled
    while they are processed) lists the app's commands too.
    """

    def __init__(self, app: CommandHost | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.app = app
        self.spec: str | None = None

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            found, _, _ = self.make_parser(ctx).parse_args(list(args))
        except click.UsageError:
            found = {}  # click itself reports it below
        self.spec = found.get("app_spec") or self.spec
        if found.get("show_traceback"):
            ctx.meta[_TRACEBACK] = True
        return super().parse_args(ctx, args)

    def _app(self, ctx: click.Context, who: str = "streamnb") -> CommandHost | None:
        if self.app is None:
            spec = ctx.params.get("app_spec") or self.spec
            if spec:
                try:
                    self.app = find_app(spec)
                except StartError as exc:
                    exc.who = who
                    raise
        return self.app

    def list_commands(self, ctx: click.Context) -> list[str]:
        app = self._app(ctx)
        return ["check", "salvage", "worker", *sorted(app.commands if app is not None else ())]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name == "worker":
            return _worker_command(lambda: self._require_app(ctx))
        if name in ("check", "salvage"):
            return _store_commands(lambda: self._app(ctx, f"streamnb {name}"))[name]
        app = self._app(ctx, f"streamnb {name}")
        if app is None:
            if not ctx.resilient_parsing and not name.startswith("-"):
                raise click.UsageError(
                    f"no such command {name!r}: there is `worker`, and the app's own commands once "
                    f"-A module[:attribute] names it (e.g. `streamnb -A proj {name}`)", ctx)
            return None
        command = app.commands.get(name) or app.commands.get(name.replace("_", "-"))
        return command.click if command is not None else None

    def _require_app(self, ctx: click.Context) -> CommandHost:
        app = self._app(ctx, "streamnb worker")
        if app is None:
            raise click.UsageError("which app? give -A module[:attribute], e.g. `streamnb -A proj worker`")
        return app


def _group(app: CommandHost | None) -> click.Group:
    @click.group(cls=_Group, app=app, help="streamnb: run an app as a worker, or one of its commands.")
    @click.option("-A", "--app", "app_spec", default=None, help="The app: module[:attribute] (e.g. proj:app).")
    @click.option("-l", "--loglevel", type=click.Choice(LEVELS, case_sensitive=False), default=None,
                  help="Logging level for every command.")
    @click.option("--traceback", "show_traceback", is_flag=True, default=False,
                  help="Print the full traceback of an error before its one-line message.")
    @click.pass_context
    def group(ctx: click.Context, app_spec: str | None, loglevel: str | None, show_traceback: bool) -> None:
        ctx.obj = {"app": app_spec, "loglevel": loglevel}
        _configure_logging(loglevel)

    return group


def main(app: CommandHost | None = None, argv: Sequence[str] | None = None) -> None:
    """Run the command line for ``app`` (``app.main()``), or for the app ``-A`` names.

    >>> main(None, ["-A", "proj", "worker", "-l", "info"])  # doctest: +SKIP
    """
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

    The current directory is importable, as for ``python -m``. A module
    that cannot be found or holds no (single) App is a usage error; one
    that fails while it is imported is a :class:`StartError` naming the
    line it failed at.
    """
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name.split(".")[0] and exc.name != module_name:
            raise StartError(failure(exc, importing=module_name)) from exc
        raise click.UsageError(f"-A {spec}: no module {module_name!r} (run from the folder that holds it)") from exc
    except Exception as exc:
        raise StartError(failure(exc, importing=module_name)) from exc
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
