"""Web views: ``@app.page``, ``@app.table_route``, ``@app.topic_route``, served by the worker.

Example (Faust's word count)::

    @app.page("/count/{word}/")
    @app.table_route(table=word_counts, match_info="word")
    async def get_count(web, request, word):
        return web.json({word: word_counts[word]})

The worker (``streamnb -A module worker``, ``app.main()``, ``app.run()``)
serves the views with aiohttp (``pip install 'streamnb[web]'``) on
``web_bind:web_port`` (``127.0.0.1:6066`` unless set; ``web_port=0`` takes
any free port). In a notebook the server is off unless the app was made
with ``web_enabled=True``.

A view function gets a :class:`View` (``web``: ``web.json()``,
``web.text()``, ``web.error()``, ...), the aiohttp request and the path's
parameters; a class deriving from :class:`View` with ``get``/``post``/...
methods works too. A view that raises answers ``{"error": message,
"type": exception class}`` with status 500, and the worker keeps running.

On ``kafka://`` several workers share the partitions, so a table's key
lives on one of them. A ``table_route`` view asked for a key another
worker owns forwards the request to it and returns its answer (the header
``X-Streamnb-Worker`` names the worker that answered). Workers find each
other through the compacted topic ``<app id>-web-workers``, where each
records its URL and the partitions it owns whenever they change.
"""

from __future__ import annotations

import contextlib
import datetime
import decimal
import importlib.util
import inspect
import json as _json
import logging
import socket
from collections.abc import Awaitable, Callable, Set
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import ConfigurationError
from ..topics import Topic, partition_for_key
from .directory import DirectoryHost, WorkerDirectory

if TYPE_CHECKING:
    from aiohttp import ClientSession
    from aiohttp import web as aioweb

__all__ = ["FORWARDED_HEADER", "WORKER_HEADER", "View", "Web", "WebHost", "dumps"]

logger = logging.getLogger("streamnb")

WORKER_HEADER = "X-Streamnb-Worker"
"""Response header naming the URL of the worker that ran the view."""
FORWARDED_HEADER = "X-Streamnb-Forwarded"
"""Request header marking a request forwarded by another worker (answered where it lands)."""

ViewHandler = Callable[..., Awaitable[Any]]


def _default(obj: Any) -> Any:
    to_representation = getattr(obj, "to_representation", None)
    if to_representation is not None:
        return to_representation()
    if isinstance(obj, Set):  # sets, and a SetTable's values
        return sorted(obj, key=repr)
    if isinstance(obj, (datetime.datetime, datetime.date)):
        return obj.isoformat()
    if isinstance(obj, decimal.Decimal):
        return str(obj)
    if isinstance(obj, bytes):
        return obj.decode(errors="replace")
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def dumps(value: Any) -> str:
    """JSON text of ``value``: Records, sets, datetimes and decimals included.

    >>> dumps({"count": 3, "tags": {"b", "a"}})
    '{"count": 3, "tags": ["a", "b"]}'
    """
    return _json.dumps(value, default=_default)


def _require_aiohttp() -> None:
    try:
        import aiohttp  # noqa: F401 - only checking that the optional 'web' extra is installed
    except ImportError as exc:  # pragma: no cover - the web extra is missing
        raise ConfigurationError(
            "serving web views needs aiohttp: pip install 'streamnb[web]' (or run without views, "
            "or with web_enabled=False)"
        ) from exc


class View:
    """A web view (Faust's ``faust.web.View``): one instance answers one request.

    Subclass it with ``async def get(self, request, **params)`` (``post``,
    ``put``, ``patch``, ``delete``) and decorate with ``@app.page(path)``;
    a decorated function becomes a view whose every method calls it.

    >>> view = View(app=None, web=None)
    >>> view.json({"a": 1}).status, view.error(404, "no such key").status  # doctest: +SKIP
    (200, 404)
    """

    view_name: str = ""
    view_path: str = ""

    def __init__(self, app: Any, web: Web | None) -> None:
        self.app = app
        self.web = web

    @classmethod
    def from_handler(cls, fun: ViewHandler) -> type[View]:
        """A view class whose methods all call ``fun(view, request, **params)``."""
        if not callable(fun):
            raise ConfigurationError(f"@app.page needs an async function or a View class, got {fun!r}")
        methods: dict[str, Any] = {m: fun for m in ("get", "post", "put", "patch", "delete")}
        name = getattr(fun, "__name__", "view")
        return type(name, (cls,), {**methods, "__doc__": fun.__doc__, "__module__": getattr(fun, "__module__", "")})

    # -- responses (Faust's names) -------------------------------------------------------------

    def json(
        self, value: Any, *, status: int = 200, headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> aioweb.Response:
        """A JSON response (Records, sets, datetimes and decimals are converted)."""
        _require_aiohttp()
        from aiohttp import web as aioweb

        return aioweb.Response(text=dumps(value), status=status, headers=headers, content_type=content_type)

    def text(
        self, value: str, *, status: int = 200, headers: dict[str, str] | None = None,
        content_type: str = "text/plain",
    ) -> aioweb.Response:
        """A text response."""
        _require_aiohttp()
        from aiohttp import web as aioweb

        return aioweb.Response(text=value, status=status, headers=headers, content_type=content_type)

    def html(self, value: str, *, status: int = 200, headers: dict[str, str] | None = None) -> aioweb.Response:
        """An HTML response."""
        return self.text(value, status=status, headers=headers, content_type="text/html")

    def bytes(
        self, value: bytes, *, status: int = 200, headers: dict[str, str] | None = None,
        content_type: str = "application/octet-stream",
    ) -> aioweb.Response:
        """A response with a raw body."""
        _require_aiohttp()
        from aiohttp import web as aioweb

        return aioweb.Response(body=value, status=status, headers=headers, content_type=content_type)

    def error(self, status: int, reason: str, **kwargs: Any) -> aioweb.Response:
        """A JSON error: ``{"error": reason, ...}`` with ``status``."""
        return self.json({"error": reason, **kwargs}, status=status)

    def notfound(self, reason: str = "Not Found", **kwargs: Any) -> aioweb.Response:
        """A JSON 404."""
        return self.error(404, reason, **kwargs)


class WebHost(DirectoryHost, Protocol):
    """What the web server needs from the app (:class:`~streamnb.app.App` implements it)."""

    conf: Any
    worker_mode: bool
    """True when the app runs as a worker (``app.run()``, ``app.main()``, the ``streamnb`` command)."""

    def read_topics(self) -> list[Topic[Any, Any]]:
        """The topics the app's agents read (their own and ``group_by`` topics)."""
        ...


class Web:
    """The app's web server (``app.web``): its views and, while it runs, its URL.

    >>> from streamnb import App
    >>> app = App("demo", broker="memory://")
    >>> @app.page("/hello/")
    ... async def hello(web, request):
    ...     return web.json({"hello": "world"})
    >>> [v.view_path for v in app.web.views]
    ['/hello/']
    """

    def __init__(self, app: WebHost) -> None:
        self.app = app
        self.views: list[type[View]] = []
        self.url: str | None = None
        """``http://HOST:PORT`` while the server runs, else None."""
        self.port: int | None = None
        self.directory: WorkerDirectory | None = None
        self.endpoints: dict[str, Callable[[], tuple[bytes, str]]] = {}
        """Built-in GET endpoints (``/metrics``): path -> a function returning the body and its content type."""
        self._runner: Any = None
        self._session: ClientSession | None = None

    # -- definitions ----------------------------------------------------------------------------

    def add_endpoint(self, path: str, produce: Callable[[], tuple[bytes, str]]) -> None:
        """Serve ``GET path`` with ``produce()``'s ``(body, content type)`` (how the app adds ``/metrics``).

        >>> from streamnb import App
        >>> sorted(App("demo-endpoints", broker="memory://").web.endpoints)
        ['/metrics']
        """
        self.endpoints[path] = produce

    def page(self, path: str, *, base: type[View] = View, name: str | None = None) -> Callable[[Any], type[View]]:
        """Decorate an ``async def f(web, request, **params)`` or a :class:`View` class to serve ``path``."""
        if not isinstance(path, str) or not path.startswith("/"):
            raise ConfigurationError(f"@app.page path must start with '/', got {path!r}")

        def decorator(fun: Any) -> type[View]:
            if inspect.isclass(fun):
                if not issubclass(fun, View):
                    raise ConfigurationError(
                        f"@app.page({path!r}) decorates an async function or a subclass of streamnb.worker.web.View, "
                        f"not {fun.__name__}"
                    )
                view: type[View] = fun
            else:
                view = base.from_handler(fun)
            view.view_name = name or view.__name__
            view.view_path = path
            self.views = [v for v in self.views if v.view_path != path] + [view]
            return view

        return decorator

    def table_route(
        self, table: Any, shard_param: str | None = None, *, query_param: str | None = None,
        match_info: str | None = None, exact_key: str | None = None,
    ) -> Callable[[ViewHandler], ViewHandler]:
        """Answer on the worker that owns the request's key of ``table`` (forwarding to it when needed)."""
        key_of = _key_getter("table_route", shard_param, query_param, match_info, exact_key)

        def decorator(fun: ViewHandler) -> ViewHandler:
            async def routed(view: View, request: aioweb.Request, *args: Any, **kwargs: Any) -> Any:
                answer = await self.route(request, lambda: self.table_partition(table, key_of(request)))
                if answer is not None:
                    return answer
                return await fun(view, request, *args, **kwargs)

            return _wraps(routed, fun)

        return decorator

    def topic_route(
        self, topic: Topic[Any, Any], shard_param: str | None = None, *, query_param: str | None = None,
        match_info: str | None = None, exact_key: str | None = None,
    ) -> Callable[[ViewHandler], ViewHandler]:
        """Answer on the worker that owns the partition of ``topic`` the request's key goes to."""
        key_of = _key_getter("topic_route", shard_param, query_param, match_info, exact_key)

        def decorator(fun: ViewHandler) -> ViewHandler:
            async def routed(view: View, request: aioweb.Request, *args: Any, **kwargs: Any) -> Any:
                def partition() -> int | None:
                    return partition_for_key(topic.encode_key(key_of(request)), topic.partition_count)

                answer = await self.route(request, partition)
                if answer is not None:
                    return answer
                return await fun(view, request, *args, **kwargs)

            return _wraps(routed, fun)

        return decorator

    # -- routing --------------------------------------------------------------------------------

    def table_partition(self, table: Any, key: Any) -> int | None:
        """The partition of ``key`` in ``table``, or None when this worker answers for it anyway.

        A key this worker holds, or any key of a global table, is answered
        here. Otherwise the key is placed the way the table's writers place
        it: by the key encoding of the topics the agents read (tables are
        co-partitioned with them).
        """
        if getattr(table, "is_global", False):
            return None
        if key in getattr(table.state, "partition_of", {}):
            return None
        count = table.changelog.partition_count
        writers = [t for t in self.app.read_topics() if t.name in table.source_topics]
        sources = writers or [t for t in self.app.read_topics() if t.partition_count == count]
        candidates = {t.encode_key(key) for t in sources}
        encoded = candidates.pop() if len(candidates) == 1 else table.changelog.encode_key(key)
        return partition_for_key(encoded, count)

    async def route(self, request: aioweb.Request, partition: Callable[[], int | None]) -> aioweb.Response | None:
        """None when this worker answers; else the answer of the worker owning the partition."""
        transport = self.app.transport
        if transport is None or not transport.distributed or self.directory is None:
            return None
        if request.headers.get(FORWARDED_HEADER):
            return None
        p = partition()
        if p is None or p in self.app.owned_partitions():
            return None
        owner = await self.directory.owner_of(p)
        _require_aiohttp()
        from aiohttp import web as aioweb

        if owner is None:
            return aioweb.Response(
                text=dumps({"error": f"no worker owns partition {p} right now (a rebalance?); try again",
                            "partition": p}),
                status=503, content_type="application/json",
            )
        if owner == self.url:
            return None
        return await self.forward(request, owner)

    async def forward(self, request: aioweb.Request, owner: str) -> aioweb.Response:
        """Send ``request`` on to the worker at ``owner`` and return its answer."""
        _require_aiohttp()
        from aiohttp import web as aioweb

        if self._session is None:
            from aiohttp import ClientSession

            self._session = ClientSession()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        headers[FORWARDED_HEADER] = self.url or "1"
        try:
            async with self._session.request(
                request.method, owner + request.path_qs, headers=headers, data=await request.read()
            ) as answer:
                body = await answer.read()
                out = aioweb.Response(body=body, status=answer.status, content_type=answer.content_type)
                if WORKER_HEADER in answer.headers:
                    out.headers[WORKER_HEADER] = answer.headers[WORKER_HEADER]
                return out
        except Exception as exc:  # noqa: BLE001 - the owner is gone or not answering: say so
            return aioweb.Response(
                text=dumps({"error": f"the worker owning this key ({owner}) does not answer: {exc}",
                            "owner": owner}),
                status=503, content_type="application/json",
            )

    # -- the server -----------------------------------------------------------------------------

    def enabled(self) -> bool:
        """Whether the app serves its views now: ``web_enabled=True``, or a worker with views."""
        setting = self.app.conf.web_enabled
        if setting is not None:
            return bool(setting)
        if not self.views and importlib.util.find_spec("aiohttp") is None:
            return False  # a worker without views runs without aiohttp (and so without /metrics)
        return self.app.worker_mode and (bool(self.views) or bool(self.endpoints))

    async def start(self) -> str:
        """Listen on ``web_bind:web_port``; returns the URL."""
        if self._runner is not None:
            assert self.url is not None
            return self.url
        _require_aiohttp()
        from aiohttp import web as aioweb

        conf = self.app.conf
        application = aioweb.Application()
        for view in self.views:
            handler = self._handler(view)
            application.router.add_route("*", view.view_path, handler)
            other = view.view_path[:-1] if view.view_path.endswith("/") else view.view_path + "/"
            if other and other != view.view_path:
                application.router.add_route("*", other, handler)
        for path, produce in self.endpoints.items():
            application.router.add_get(path, _endpoint(produce))
        runner = aioweb.AppRunner(application, access_log=None)
        await runner.setup()
        bind, port = conf.web_bind, conf.web_port
        try:
            try:
                await aioweb.TCPSite(runner, bind, port).start()
            except OSError:
                if self.views or conf.web_enabled or not port:
                    raise
                # Only built-in endpoints (/metrics): several workers on one machine each take a port.
                await aioweb.TCPSite(runner, bind, 0).start()
                logger.warning("app %r: web port %d is taken; /metrics is served on another port (see the "
                               "worker's URL), or choose one with --web-port N", self.app.id, port)
        except OSError as exc:
            await runner.cleanup()
            raise ConfigurationError(
                f"the web server cannot listen on {bind}:{port} ({exc.strerror or exc}): another worker may use "
                "that port; start this one with --web-port N (or web_port=N, 0 for any free port), "
                "or without web views (--without-web)"
            ) from exc
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        host = conf.web_host or (socket.gethostname() if bind in ("0.0.0.0", "::") else bind)
        self.url = (conf.canonical_url or f"http://{host}:{self.port}").rstrip("/")
        transport = self.app.transport
        if transport is not None and transport.distributed and self.views:
            self.directory = WorkerDirectory(self.app, self.url)
            await self.directory.start()
        logger.info("app %r serves web views at %s", self.app.id, self.url)
        return self.url

    async def stop(self) -> None:
        """Stop serving (and tell the other workers this one is gone)."""
        if self.directory is not None:
            await self.directory.stop()
            self.directory = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.url = None
        self.port = None

    def ownership_changed(self) -> None:
        """The partitions this worker owns changed (called by the app on every rebalance)."""
        if self.directory is not None:
            self.directory.changed.set()

    def _handler(self, view_cls: type[View]) -> Callable[[aioweb.Request], Awaitable[aioweb.StreamResponse]]:
        _require_aiohttp()
        from aiohttp import web as aioweb


        async def handle(request: aioweb.Request) -> aioweb.StreamResponse:
            view = view_cls(self.app, self)
            method = getattr(view, request.method.lower(), None)
            if method is None:
                response: Any = view.error(405, f"{request.method} is not allowed on {request.path}")
            else:
                try:
                    response = await method(request, **request.match_info)
                except aioweb.HTTPException:
                    raise
                except Exception as exc:
                    logger.exception("web view %s failed on %s %s", view_cls.view_name, request.method, request.path)
                    response = view.json(
                        {"error": str(exc) or repr(exc), "type": type(exc).__name__, "path": request.path},
                        status=500,
                    )
                if isinstance(response, (dict, list)):
                    response = view.json(response)
                elif not isinstance(response, aioweb.StreamResponse):
                    response = view.json(
                        {"error": f"view {view_cls.view_name} returned {type(response).__name__}; "
                                  "return web.json(...), web.text(...) or another response",
                         "type": "TypeError", "path": request.path},
                        status=500,
                    )
            if self.url and WORKER_HEADER not in response.headers:
                response.headers[WORKER_HEADER] = self.url
            return response  # type: ignore[no-any-return]

        return handle


def _endpoint(produce: Callable[[], tuple[bytes, str]]) -> Callable[[aioweb.Request], Awaitable[aioweb.Response]]:
    from aiohttp import web as aioweb

    async def handle(_request: aioweb.Request) -> aioweb.Response:
        body, content_type = produce()
        return aioweb.Response(body=body, headers={"Content-Type": content_type})

    return handle


def _key_getter(
    what: str, shard_param: str | None, query_param: str | None, match_info: str | None, exact_key: str | None
) -> Callable[[aioweb.Request], Any]:
    query = query_param or shard_param
    if query is None and match_info is None and exact_key is None:
        raise ConfigurationError(f"@app.{what} needs one of match_info=, query_param= (shard_param=) or exact_key=")
    if exact_key is not None:
        return lambda request: exact_key
    if match_info is not None:
        return lambda request: request.match_info[match_info]
    assert query is not None
    return lambda request: request.query[query]


def _wraps(wrapper: ViewHandler, fun: ViewHandler) -> ViewHandler:
    for attribute in ("__name__", "__qualname__", "__doc__", "__module__"):
        with contextlib.suppress(AttributeError):
            setattr(wrapper, attribute, getattr(fun, attribute))
    return wrapper
