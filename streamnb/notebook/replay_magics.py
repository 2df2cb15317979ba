"""``%streamnb record`` and ``%streamnb history``: recording Kafka topics and a key's history, in a notebook.

Example (in a notebook)::

    %streamnb record page_views --from kafka://127.0.0.1:9092 --to local://slice --last 10m
    %streamnb record page_views clicks --from kafka://127.0.0.1:9092 --to local://slice --n 100000
    %streamnb history counts /home          # every change of counts["/home"] as a DataFrame

The magics call the public API (:func:`streamnb.playback.recording.record`,
``table.history(key)``) and, like the other ``%streamnb`` magics, a
top-level line waits until the work is done.
"""

from __future__ import annotations

import json
import re
import time
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

if TYPE_CHECKING:
    from ..app.base import App

__all__ = ["ACTIONS", "app_name", "history_magic", "parse_duration", "record_magic"]

ACTIONS = ("record", "history")
"""The ``%streamnb`` actions this module handles."""

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """Seconds in ``90``, ``30s``, ``10m``, ``2h`` or ``1d``.

    >>> parse_duration("10m")
    600.0
    """
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text or "")
    if not found:
        raise UsageError(f"--last {text!r}: write a duration such as 30s, 10m, 2h or 1d")
    return float(found.group(1)) * _UNITS[found.group(2) or "s"]


@magic_arguments()
@argument("topics", nargs="+", help="the topics to record")
@argument("--from", dest="source", required=True, metavar="URL", help="the Kafka cluster, kafka://HOST:PORT")
@argument("--to", dest="to", required=True, metavar="URL", help="the folder, local://PATH")
@argument("--last", metavar="DURATION", help="only messages of the last 30s, 10m, 2h, 1d")
@argument("--n", type=int, metavar="N", help="at most N messages")
def _record_args(line: str) -> None:
    """%streamnb record TOPIC [TOPIC ...] --from kafka://HOST:PORT --to local://PATH [--last 10m] [--n N]"""


@magic_arguments()
@argument("table", help="the table's name")
@argument("key", help="the key (text; JSON such as 42 or [1, 2] when the table has such keys)")
@argument("--app", metavar="NAME", help="the variable holding the App (default: the only App)")
def _history_args(line: str) -> None:
    """%streamnb history TABLE KEY [--app NAME]"""


def _parse(fn: Any, line: str, usage: str) -> Any:
    try:
        return parse_argstring(fn, line)
    except UsageError as exc:
        raise UsageError(f"{exc}; usage: {usage}") from None


def record_magic(line: str) -> Any:
    """What ``%streamnb record ...`` runs: a coroutine giving the recording's summary."""
    from ..playback.recording import record

    args = _parse(_record_args, line, _record_args.__doc__ or "")
    if args.n is not None and args.n < 1:
        raise UsageError(f"--n must be at least 1, got {args.n}")
    since = time.time() - parse_duration(args.last) if args.last is not None else None
    return record(args.source, args.topics, to=args.to, since=since, max_messages=args.n)


def _key(table: Any, text: str) -> Any:
    """The key ``text`` means for ``table``: a JSON value when that is a key it has, else the text."""
    try:
        parsed = json.loads(text)
    except ValueError:
        return text
    if isinstance(parsed, list):
        parsed = tuple(parsed)
    keys = table.window.keys() if table.window is not None else table.data
    if text in keys or parsed not in keys:
        return text
    return parsed


def history_magic(app: App, line: str) -> Any:
    """What ``%streamnb history TABLE KEY`` runs: a coroutine giving the key's changes."""
    args = _parse(_history_args, line, _history_args.__doc__ or "")
    table = app.tables.get(args.table)
    if table is None:
        known = ", ".join(sorted(app.tables)) or "none"
        raise UsageError(f"no table {args.table!r} in app {app.id!r} (tables: {known})")
    return table.history(_key(table, args.key))


def app_name(line: str) -> str | None:
    """The ``--app NAME`` of a history line, if any."""
    found = re.search(r"--app[ =](\S+)", line)
    return found.group(1) if found else None
