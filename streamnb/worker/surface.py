"""What a deployed app offers besides processing: web views and command-line commands.

:class:`AppSurface` is a base class of :class:`~streamnb.app.App`: web views
(``@app.page``, ``@app.table_route``, ``@app.topic_route``, served by
:mod:`streamnb.worker.web`) and commands (``@app.command``, ``app.main()``, run by
:mod:`streamnb.cli`). It works through :class:`SurfaceHost`, what it needs
from the App, so it never imports the App itself.

Example::

    table = app.SetTable("people", value_type=str)

    @app.page("/people/{location}/")
    @app.table_route(table=table, match_info="location")
    async def people(web, request, location):
        return web.json({location: table[location]})

    @app.command(argument("location"), argument("name"))
    async def joining(self, location, name):
        await joining_topic.send(key=location, value=name)

    if __name__ == "__main__":
        app.main()          # python proj.py worker -l info | python proj.py joining paris alice
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from .. import cli
from ..errors import ConfigurationError
from ..topics import Topic
from .web import View, Web

__all__ = ["AppSurface", "SurfaceHost"]


class SurfaceHost(Protocol):
    """What :class:`AppSurface` needs from the App."""

    id: str
    commands: dict[str, cli.Command]
    web: Web
    worker_mode: bool

    async def start(self) -> None:
        """Start the app."""
        ...

    async def stop(self) -> None:
        """Stop the app."""
        ...


class AppSurface:
    """Web views, commands and running as a script (a base class of the App)."""

    # -- running as a script ----------------------------------------------------------------------

    def run(self: SurfaceHost, on_started: Callable[[Any], Any] | None = None) -> None:
        """Start the app and block until Ctrl-C or SIGTERM (for scripts, not notebooks).

        Runs as a worker: web views are served (see :mod:`streamnb.worker.web`).
        On the signal the agents stop after committing what they processed.
        ``on_started(app)`` is called once everything runs.

        >>> app.run()  # doctest: +SKIP
        """
        self.worker_mode = True
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise ConfigurationError(
                "app.run() blocks and needs its own event loop, but one is already running "
                "(a notebook?): use `await app.start()` there instead"
            )
        asyncio.run(_run_until_signal(self, on_started))

    # -- web views --------------------------------------------------------------------------------

    def page(
        self: SurfaceHost, path: str, *, base: type[View] = View, name: str | None = None,
        cors_options: Any = None,
    ) -> Callable[[Any], type[View]]:
        """Serve ``async def f(web, request, **params)`` (or a :class:`~streamnb.worker.web.View`) at ``path``.

        The worker serves the views (see :mod:`streamnb.worker.web`).

        >>> from streamnb import App
        >>> app = App("demo", broker="memory://")
        >>> @app.page("/count/{word}/")
        ... async def get_count(web, request, word):
        ...     return web.json({word: 1})
        >>> get_count.view_path
        '/count/{word}/'
        """
        if cors_options is not None:
            raise ConfigurationError("@app.page(cors_options=...) is not supported; put a proxy in front for CORS")
        return self.web.page(path, base=base, name=name)

    def table_route(
        self: SurfaceHost, table: Any, shard_param: str | None = None, *, query_param: str | None = None,
        match_info: str | None = None, exact_key: str | None = None,
    ) -> Callable[[Any], Any]:
        """Run the view on the worker owning the request's key of ``table`` (forwarding to it).

        >>> @app.page("/count/{word}/")  # doctest: +SKIP
        ... @app.table_route(table=word_counts, match_info="word")
        ... async def get_count(web, request, word):
        ...     return web.json({word: word_counts[word]})
        """
        return self.web.table_route(
            table, shard_param, query_param=query_param, match_info=match_info, exact_key=exact_key
        )

    def topic_route(
        self: SurfaceHost, topic: Topic[Any, Any], shard_param: str | None = None, *,
        query_param: str | None = None, match_info: str | None = None, exact_key: str | None = None,
    ) -> Callable[[Any], Any]:
        """Run the view on the worker owning the partition of ``topic`` the request's key goes to.

        >>> @app.page("/last/{word}/")  # doctest: +SKIP
        ... @app.topic_route(topic=posts, match_info="word")
        ... async def get_last(web, request, word):
        ...     return web.json({word: last[word]})
        """
        return self.web.topic_route(
            topic, shard_param, query_param=query_param, match_info=match_info, exact_key=exact_key
        )

    # -- commands ---------------------------------------------------------------------------------

    def command(
        self: SurfaceHost, *options: Any, name: str | None = None, base: Any = None
    ) -> Callable[[Callable[..., Any]], cli.Command]:
        """Make ``async def f(self, ...)`` a command of the app's command line (click options).

        >>> from streamnb import App
        >>> from streamnb.cli import argument
        >>> app = App("demo", broker="memory://")
        >>> @app.command(argument("name"))
        ... async def greet(self, name):
        ...     self.say(f"hello {name}")
        >>> app.commands["greet"]
        <Command 'greet' of app 'demo'>
        """
        if base is not None:
            raise ConfigurationError("@app.command(base=...) is not supported: streamnb has one command class")

        def decorator(fun: Callable[..., Any]) -> cli.Command:
            command = cli.Command(self, fun, options, name)  # type: ignore[arg-type]
            self.commands[command.name] = command
            return command

        return decorator

    def main(self: SurfaceHost, argv: Sequence[str] | None = None) -> None:
        """The app's command line: ``python proj.py worker -l info``, or one of its ``@app.command`` s.

        >>> app.main()  # doctest: +SKIP
        """
        cli.main(self, argv)  # type: ignore[arg-type]


async def _run_until_signal(app: SurfaceHost, on_started: Callable[[Any], Any] | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # no signals off the main thread
            loop.add_signal_handler(sig, stop.set)
    try:
        await app.start()
        if on_started is not None:
            on_started(app)
        await stop.wait()
    finally:
        await app.stop()
