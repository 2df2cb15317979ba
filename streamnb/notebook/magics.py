"""IPython magics: ``%streamnb``, ``%peek`` and ``%%produce`` (``%load_ext streamnb``).

Example (in a notebook)::

    %load_ext streamnb
    %streamnb start                 # await app.start() on the kernel's loop
    %streamnb status                # agents: state, processed, rate, dead letters, last error; warnings
    %streamnb dashboard             # live dashboard (app.dashboard())
    %streamnb metrics               # the app's metrics now, as a DataFrame (app.metrics())
    %streamnb table counts --top 10 # live view of a table (counts.live(top=10))
    %streamnb topology              # the dataflow: topics, agents, tables (app.topology())
    %streamnb record page_views --from kafka://127.0.0.1:9092 --to local://slice --last 10m
    %streamnb history counts /home  # every change of one key (table.history(key))
    %peek page_views -n 5           # last 5 messages as a DataFrame (--live: keeps following)

    %%produce page_views --key user
    {"id": "1", "user": "alice", "page": "/"}
    {"id": "2", "user": "bob", "page": "/cart"}

The app is the one named by ``--app NAME`` (a variable of the notebook), or
else the only ``streamnb.App`` in the notebook's namespace.

How the magics wait (``await`` of a top-level magic line, work in the
background elsewhere) is :mod:`streamnb.notebook.awaiting`.

Mistakes (wrong arguments, no or several apps, unknown topic or table,
invalid JSON, app not running) are one-line ``UsageError``s; nothing
already running is disturbed by them.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from ..errors import StreamnbError
from ..tables.progress import restore_lines, standby_lines
from . import awaiting
from ._stats import agent_figures, future_warnings, join_lines
from .awaiting import Pending, schedule, wait_for_magic
from .metrics_view import metrics_table

if TYPE_CHECKING:

    from ..app.base import App
    from ..topics import Topic

__all__ = [
    "Pending",
    "StreamnbMagics",
    "find_app",
    "load_ipython_extension",
    "parse_messages",
    "status_text",
    "unload_ipython_extension",
    "wait_for_magic",
]

NOT_RUNNING = "app {id!r} is not running: run `await app.start()` or `%streamnb start` first"


# -- finding things --------------------------------------------------------------------------


def find_app(namespace: dict[str, Any], name: str | None = None) -> App:
    """The app named ``name`` in ``namespace``, or else its only ``App``.

    >>> from streamnb import App
    >>> namespace = {"app": App("page-views", broker="memory://"), "n": 1}  # get_ipython().user_ns in a notebook
    >>> find_app(namespace)
    <App 'page-views' init broker='memory://'>
    """
    from ..app.base import App

    if name:
        app = namespace.get(name)
        if app is None:
            raise UsageError(f"--app {name}: no variable {name!r} in this notebook")
        if not isinstance(app, App):
            raise UsageError(f"--app {name}: that variable is a {type(app).__name__}, not a streamnb.App")
        return app
    found: dict[int, tuple[str, App]] = {}
    for var, value in list(namespace.items()):
        if isinstance(value, App) and not var.startswith("_") and id(value) not in found:
            found[id(value)] = (var, value)
    if not found:
        raise UsageError("no streamnb.App in this notebook: create one, e.g. `app = streamnb.App('demo', broker='memory://')`")
    if len(found) > 1:
        names = ", ".join(sorted(var for var, _ in found.values()))
        raise UsageError(f"{len(found)} streamnb.App instances ({names}): say which one with --app NAME")
    return next(iter(found.values()))[1]


def _topic(app: App, name: str) -> Topic[Any, Any]:
    topic = app.topics.get(name)
    if topic is None:
        known = ", ".join(sorted(n for n, t in app.topics.items() if not t.internal)) or "none"
        raise UsageError(f"no topic {name!r} in app {app.id!r} (topics: {known}); define it with app.topic({name!r})")
    return topic


def _require_running(app: App) -> None:
    if app.state not in ("running", "starting"):
        raise UsageError(NOT_RUNNING.format(id=app.id))


def _parse(magic: Any, line: str) -> Any:
    try:
        return parse_argstring(magic, line)
    except UsageError as exc:
        raise UsageError(f"{exc}; {_usage(magic)}") from None


# -- the magics ------------------------------------------------------------------------------


@magics_class
class StreamnbMagics(Magics):
    """``%streamnb``, ``%peek`` and ``%%produce``."""

    def _app(self, name: str | None) -> App:
        return find_app(self.shell.user_ns if self.shell is not None else {}, name)

    @magic_arguments()
    @argument(
        "action",
        choices=["start", "stop", "status", "dashboard", "metrics", "table", "topology", "record", "history"],
        help="what to do",
    )
    @argument("table", nargs="?", help="for `table`: the table's name")
    @argument("--app", metavar="NAME", help="the variable holding the App (default: the only App)")
    @argument("--top", type=int, metavar="N", help="for `table`: show the first N rows")
    @argument("--sort-by", metavar="COLUMN", help="for `table`: sort by this column (largest first)")
    @argument("--ascending", action="store_true", help="for `table`: sort smallest first")
    @argument("--filter", metavar="TEXT", help="for `table`: keys containing TEXT")
    @line_magic
    def streamnb(self, line: str) -> Any:
        """Start, stop or inspect the notebook's streamnb App; record Kafka topics; show a key's history."""
        from . import replay_magics

        action, _, rest = line.strip().partition(" ")
        if action == "record":
            return schedule(replay_magics.record_magic(rest), "recording")
        if action == "history":
            app = self._app(replay_magics.app_name(rest))
            return schedule(replay_magics.history_magic(app, rest), f"history {rest.strip()}")
        args = _parse(self.streamnb, line)
        if args.table is not None and args.action != "table":
            raise UsageError(f"`%streamnb {args.action}` takes no table name; {_usage(self.streamnb)}")
        app = self._app(args.app)
        if args.action == "start":
            if app.state == "running":
                print(f"app {app.id!r} is already running")
                return None
            return schedule(_start(app), f"starting app {app.id!r}")
        if args.action == "stop":
            if app.state in ("init", "stopped") and app.transport is None:
                print(f"app {app.id!r} is not running")
                return None
            return schedule(_stop(app), f"stopping app {app.id!r}")
        if args.action == "status":
            print(status_text(app))
            return None
        if args.action == "dashboard":
            return app.dashboard()
        if args.action == "metrics":
            return metrics_table(app)
        if args.action == "topology":
            return app.topology()
        return self._table(app, args)

    def _table(self, app: App, args: Any) -> Any:
        from .views import live_table

        if not args.table:
            raise UsageError(f"`%streamnb table` needs a table name; {_usage(self.streamnb)}")
        table = app.tables.get(args.table)
        if table is None:
            known = ", ".join(sorted(app.tables)) or "none"
            raise UsageError(f"no table {args.table!r} in app {app.id!r} (tables: {known})")
        if args.top is not None and args.top < 1:
            raise UsageError(f"--top must be at least 1, got {args.top}")
        try:
            return live_table(
                table.window or table, sort_by=args.sort_by, ascending=args.ascending, top=args.top,
                key_filter=args.filter,
            )
        except StreamnbError as exc:
            raise UsageError(str(exc)) from None

    @magic_arguments()
    @argument("topic", help="the topic's name")
    @argument("-n", type=int, default=10, metavar="N", help="how many messages (default 10)")
    @argument("--live", action="store_true", help="a widget that keeps following the topic")
    @argument("--app", metavar="NAME", help="the variable holding the App (default: the only App)")
    @line_magic
    def peek(self, line: str) -> Any:
        """Show the last N messages of a topic as a DataFrame."""
        args = _parse(self.peek, line)
        if args.n < 1:
            raise UsageError(f"-n must be at least 1, got {args.n}")
        app = self._app(args.app)
        _require_running(app)
        return schedule(_peek(app, args.topic, args.n, args.live), f"peek {args.topic}")

    @magic_arguments()
    @argument("topic", help="the topic's name (defined in the app)")
    @argument("--key", metavar="FIELD", help="take each message's key from this field of the value")
    @argument("--app", metavar="NAME", help="the variable holding the App (default: the only App)")
    @cell_magic
    def produce(self, line: str, cell: str) -> Any:
        """Send each non-empty line of the cell, parsed as JSON, as a message value."""
        args = _parse(self.produce, line)
        app = self._app(args.app)
        topic = _topic(app, args.topic)
        _require_running(app)
        messages = parse_messages(topic, cell, key_field=args.key)
        if not messages:
            raise UsageError(f"nothing to send to {topic.name!r}: write one JSON value per line under %%produce")
        return schedule(_produce(app, topic, messages), f"producing to {topic.name}")


def _usage(magic: Any) -> str:
    """``usage: %name ...`` on one line."""
    text = " ".join(magic.parser.format_usage().split())
    return "usage: %" + text.lstrip(":% ")


# -- what the magics do ------------------------------------------------------------------------


async def _start(app: App) -> None:
    await app.start()
    print(f"app {app.id!r} running on {app.broker}: {_n(len(app.agents), 'agent')}, {_n(len(app.tables), 'table')}")


async def _stop(app: App) -> None:
    await app.stop()
    print(f"app {app.id!r} stopped")


async def _peek(app: App, name: str, n: int, live: bool) -> Any:
    from .peek import _ends, _transport, live_peek, peek

    if live:
        await _ends(await _transport(app), name)  # an unknown topic fails here, not in the widget
        return live_peek(app, name, n)
    return await peek(app, name, n)


def parse_messages(
    topic: Topic[Any, Any], cell: str, *, key_field: str | None = None
) -> list[tuple[bytes | None, Any]]:
    """``(encoded key, value)`` for each non-empty line of ``cell``; a bad line raises UsageError.

    Values are validated against the topic's ``value_type`` (a Record) when it has one.

    >>> from streamnb import App
    >>> topic = App("demo", broker="memory://").topic("page_views")
    >>> parse_messages(topic, '{"page": "/"}\\n\\n{"page": "/cart"}')
    [(None, {'page': '/'}), (None, {'page': '/cart'})]
    """
    from_data = getattr(topic.value_type, "from_data", None)
    out: list[tuple[bytes | None, Any]] = []
    for number, text in enumerate(cell.splitlines(), 1):
        text = text.strip()
        if not text:
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"line {number}: invalid JSON: {exc.msg} at column {exc.colno}: {_short(text)}") from None
        key: Any = None
        if key_field is not None:
            if not isinstance(value, dict) or key_field not in value:
                raise UsageError(f"line {number}: --key {key_field}: no field {key_field!r} in {_short(text)}")
            key = value[key_field]
        try:
            if from_data is not None:
                if not isinstance(value, dict):
                    raise UsageError(
                        f"line {number}: {topic.value_type.__name__} needs a JSON object, got {_short(text)}"
                    )
                value = from_data(value)
            raw_key = topic.encode_key(key) if topic.prepared else key
            if topic.prepared:  # else (Avro before its schema id is known) checked when sending
                topic.encode_value(value)
        except StreamnbError as exc:
            raise UsageError(f"line {number}: {exc}") from None
        out.append((raw_key, value))
    return out


async def _produce(app: App, topic: Topic[Any, Any], messages: list[tuple[bytes | None, Any]]) -> None:
    from .peek import _transport

    transport = await _transport(app)
    await topic.maybe_declare()
    if not topic.prepared:  # an Avro topic: its schema id from the registry first
        await topic.prepare()
        try:
            messages = [(topic.encode_key(key), value) for key, value in messages]
        except StreamnbError as exc:
            raise UsageError(f"--key: {exc}") from None
    records = []
    for number, (raw_key, value) in enumerate(messages, 1):
        try:
            records.append(topic.record(value=value, raw_key=raw_key))
        except StreamnbError as exc:
            raise UsageError(f"message {number}: {exc}") from None
    await transport.send(records)
    print(f"sent {_n(len(records), 'message')} to {topic.name}")


def status_text(app: App) -> str:
    """What ``%streamnb status`` prints: the app's state and a table of its agents.

    >>> from streamnb import App
    >>> app = App("demo", broker="memory://")
    >>> print(status_text(app))
    app 'demo' init on memory://: 0 agents, 0 topics, 0 tables
    (no agents)
    """
    import pandas as pd

    from ..tables._text import text_table

    head = (
        f"app {app.id!r} {app.state} on {app.broker}: {_n(len(app.agents), 'agent')}, "
        f"{_n(len(app.topics), 'topic')}, {_n(len(app.tables), 'table')}"
    )
    warnings = "".join(f"\nwarning: {line}" for line in future_warnings(app))
    warnings += "".join(f"\n{line}" for line in restore_lines(app.tables.values()))
    warnings += "".join(f"\n{line}" for line in standby_lines(app.tables.values()))
    figures = agent_figures(app)
    if not figures:
        return head + "\n(no agents)" + warnings
    df = pd.DataFrame(
        [
            (
                f.name, f.state, f"{f.processed:,}", f"{f.rate:,.1f}", f"{f.dead_lettered:,}", f.crashes,
                f.last_error or "-",
            )
            for f in figures
        ],
        columns=["agent", "state", "processed", "events/s", "dead-lettered", "crashes", "last error"],
    )
    joins = "".join(
        f"\njoin in {name}: {line}" for name, agent in list(app.agents.items()) for line in join_lines(agent)
    )
    return head + "\n" + text_table(df, "agents", sort=False) + joins + warnings


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- the extension ------------------------------------------------------------------------------


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext streamnb``: register the magics and the await transformer."""
    ipython.register_magics(StreamnbMagics)
    awaiting.install(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext streamnb``: remove the magics and the transformer."""
    awaiting.uninstall(ipython)
    for kind, names in (("line", ("streamnb", "peek")), ("cell", ("produce",))):
        registry = ipython.magics_manager.magics[kind]
        for name in names:
            registry.pop(name, None)
