"""A restore's batch of changelog records as store writes, a column at a time (no loop per record in Python).

A restore copies a changelog into a table partition's store
(:class:`~streamnb.tables.stores.rocksdb.RocksDBStore`) a batch of up to
50,000 records at a time. For a tumbling or hopping table each record is
a window written twice (:mod:`~streamnb.tables.stores.windowkeys`), and
cutting each changelog key apart in a Python loop cost more than reading
the changelog. :func:`window_columns` does it for a whole batch with one
regular expression over the keys joined by newlines and with ``map`` over
the pieces: the same store keys :meth:`WindowKeys.ops
<streamnb.tables.stores.windowkeys.WindowKeys.ops>` gives, for changelog
keys ``["<string>",[start,end]]`` whose string needs no escapes (what the
fast path of :meth:`WindowKeys.split
<streamnb.tables.stores.windowkeys.WindowKeys.split>` takes as it is). A
batch with any other key gives None, and the restore writes it record by
record as a commit does.

>>> columns = window_columns([b'["ann",[60.0,120.0]]', b'["bob",[0.0,60.0]]'], [b"3", None])
>>> [len(keys) for keys, _values in columns], columns[0][1], columns[1][1]
([2, 2], [b'3', None], [b'', None])
>>> window_columns([b'["ann",[60.0,120.0]]'], [b"3"])[1][1]    # no tombstone: one value for all
b''
>>> window_columns([b'[["a",1],[60.0,120.0]]'], [b"1"]) is None   # not a plain string key
True
"""

from __future__ import annotations

import re
from operator import itemgetter

from .windowkeys import BY_KEY, BY_TIME, time_bytes

__all__ = ["session_columns", "window_columns"]

_WINDOW = re.compile(rb'^\[("[^"\\\n\x80-\xff]*"),\[([^,\[\]\n]+),[^,\[\]\n]*\]\]\n', re.MULTILINE)
"""A whole line, one changelog key and its newline: the key's JSON string and the window start's text."""

_SESSION = re.compile(rb'^\[("[^"\\\n\x80-\xff]*"),\[([^,\[\]\n]+),([^,\[\]\n]+)\]\]\n', re.MULTILINE)
"""A session's changelog key and its newline: the key's JSON string, the session's start and end as text."""


class _Starts(dict[bytes, bytes]):
    """Window start as text -> as :func:`~.windowkeys.time_bytes` (a batch holds a few starts, many times each)."""

    def __missing__(self, text: bytes) -> bytes:
        found = self[text] = time_bytes(float(text))
        return found


class _TimePrefixes(dict[bytes, bytes]):
    """Window start as :func:`~.windowkeys.time_bytes` -> the first bytes of a window-by-time key."""

    def __missing__(self, at: bytes) -> bytes:
        found = self[at] = BY_TIME + at
        return found


class _Lengths(dict[int, bytes]):
    """Key length -> the first bytes of a window-by-key key."""

    def __missing__(self, n: int) -> bytes:
        found = self[n] = BY_KEY + n.to_bytes(4, "big")
        return found


_starts, _lengths, _by_time = _Starts(), _Lengths(), _TimePrefixes()
_key, _start = itemgetter(0), itemgetter(1)
_add = bytes.__add__


def window_columns(
    keys: list[bytes | None], values: list[bytes | None]
) -> list[tuple[list[bytes], list[bytes | None] | bytes]] | None:
    """The store writes of changelog records ``keys[i]: values[i]`` (None: a tombstone), as two runs.

    ``[(by-key keys, values), (by-time keys, values)]``, a delete where the
    value is None (the by-time keys' values: ``b""`` for all when no record is
    a tombstone); None when a key is not a window of a plain string key.
    """
    if not keys or None in keys:
        return None
    joined = b"\n".join(keys) + b"\n"  # type: ignore[arg-type]
    found = _WINDOW.findall(joined)
    if len(found) != len(keys) or joined.count(b"\n") != len(keys):  # (a key of another form, or holding a newline)
        return None
    kbs = list(map(_key, found))
    if len(_starts) > 100_000:
        _starts.clear()
        _by_time.clear()
    try:
        ats = list(map(_starts.__getitem__, map(_start, found)))
    except ValueError:  # (a start that is not a number)
        return None
    by_key = list(map(_add, map(_add, map(_lengths.__getitem__, map(len, kbs)), kbs), ats))
    by_time = list(map(_add, map(_by_time.__getitem__, ats), kbs))
    marks: list[bytes | None] | bytes = b"" if None not in values else [None if v is None else b"" for v in values]
    return [(by_key, values), (by_time, marks)]


def session_columns(
    keys: list[bytes | None], values: list[bytes | None]
) -> list[tuple[list[bytes], list[bytes | None] | bytes]] | None:
    """:func:`window_columns` for a session table: the keys of :class:`~.windowkeys.SessionKeys`.

    >>> columns = session_columns([b'["ann",[60.0,75.5]]'], [b"3"])
    >>> from .windowkeys import SessionKeys
    >>> import json
    >>> [k for k, _v in SessionKeys(json.dumps, json.loads).ops([(b'["ann",[60.0,75.5]]', b"3")])] == [
    ...     columns[0][0][0], columns[1][0][0]]
    True
    """
    if not keys or None in keys:
        return None
    joined = b"\n".join(keys) + b"\n"  # type: ignore[arg-type]
    found = _SESSION.findall(joined)
    if len(found) != len(keys) or joined.count(b"\n") != len(keys):
        return None
    try:
        starts = [time_bytes(float(start)) for _k, start, _e in found]
        ends = [time_bytes(float(end)) for _k, _s, end in found]
    except ValueError:  # (a time that is not a number)
        return None
    kbs = list(map(_key, found))
    by_key = list(map(_add, map(_add, map(_add, map(_lengths.__getitem__, map(len, kbs)), kbs), starts), ends))
    by_time = list(map(_add, map(_add, map(_by_time.__getitem__, ends), starts), kbs))
    marks: list[bytes | None] | bytes = b"" if None not in values else [None if v is None else b"" for v in values]
    return [(by_key, values), (by_time, marks)]
