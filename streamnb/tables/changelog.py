"""Writing a table's changes to its changelog topic.

:class:`ChangelogEncoder` turns a table's changes
(:class:`~streamnb.tables.state.base.Change`) into records: keys with the
changelog's key codec (windowed keys ``[key, [start, end]]`` without the
general JSON encoder), values with its value codec (an int as itself), a
deleted row as a tombstone, each stamped with the event time of the change.
A windowed table's stream times go to its stream-time topic instead (see
:mod:`~streamnb.tables.streamtime`): the changelog holds rows only.

>>> from streamnb import App
>>> table = App("shop", broker="memory://").Table("totals", default=int)
>>> [r[2:5] for r in ChangelogEncoder(table.changelog).records([Change("ann", 0, 3, 12.5)], 99.0)]
[(b'"ann"', b'3', 12.5)]
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from ..errors import SerializationError
from ..topics import Topic
from ..transaction import MISSING
from ..transport.base import ProducerRecord
from .state.base import Change
from .streamtime import StreamTimeTopic

__all__ = ["PLAIN_VALUES", "ChangelogEncoder", "window_key_json"]

PLAIN_VALUES = frozenset({int, float, str, bool, type(None)})
"""Types every value codec encodes: a write of one is not checked."""

_quote = json.encoder.encode_basestring_ascii  # what the json codec writes a str as


def window_key_json(key: Any) -> bytes | None:
    """The JSON of a windowed changelog key -- ``[key, t]`` or ``[key, [start, end]]`` with a str key -- or None.

    The same bytes as the json codec writes, without its general encoder
    (a windowed table writes one such key per window per commit).

    >>> window_key_json(("ann", (100.0, 110.0))), window_key_json(("ann", 12.5)), window_key_json(("ann", 1))
    (b'["ann",[100.0,110.0]]', b'["ann",12.5]', None)
    """
    if type(key) is not tuple or len(key) != 2 or type(key[0]) is not str:
        return None
    where = key[1]
    if type(where) is float:
        return f"[{_quote(key[0])},{where!r}]".encode()
    if type(where) is tuple and len(where) == 2 and type(where[0]) is float and type(where[1]) is float:
        return f"[{_quote(key[0])},[{where[0]!r},{where[1]!r}]]".encode()
    return None


def _no_fast_key(key: Any) -> None:
    return None


class ChangelogEncoder:
    """Encodes a table's changes for its changelog topic (keeps a cache of encoded keys)."""

    def __init__(self, topic: Topic[Any, Any], table: str = "") -> None:
        self.topic = topic
        self.table = table or topic.name
        """The table's name (in errors)."""
        self.keys: dict[Any, bytes] = {}
        self.stream_times: StreamTimeTopic | None = None
        """Where a windowed table's stream-time changes go (set when the table is made windowed)."""

    def check(self, key: Any, value: Any) -> None:
        """Raise :class:`~streamnb.errors.SerializationError` naming the table and ``key`` when ``value``
        cannot be encoded for the changelog (and the store): at the write, not at the commit.

        >>> from streamnb import App
        >>> table = App("shop", broker="memory://").Table("totals", default=int)
        >>> ChangelogEncoder(table.changelog, "totals").check("ann", object())  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        streamnb.errors.SerializationError: table 'totals': the value written for key 'ann' cannot be stored: ...
        """
        topic = self.topic
        try:
            if topic.value_serializer == "json":
                topic.value_codec.dumps(value)
            else:
                topic.encode_value(value)
        except Exception as exc:
            raise self.refused(key, exc) from exc

    def refused(self, key: Any, exc: BaseException) -> SerializationError:
        """The error for a value of ``key`` that the changelog codec cannot encode."""
        text = str(exc).strip() or type(exc).__name__
        return SerializationError(
            f"table {self.table!r}: the value written for key {key!r} cannot be stored: {text} "
            "(nothing was written: the event is retried, then dead-lettered)"
        )

    def records(self, changes: Iterable[Change], timestamp: float) -> list[ProducerRecord]:
        """Changelog records for ``changes``; ``timestamp`` stamps those without an event time.

        A value the codec cannot encode raises :class:`~streamnb.errors.SerializationError`
        naming the key, before anything is committed.
        """
        topic = self.topic
        name = topic.name
        dumps_key = topic.key_codec.dumps
        fast_key = window_key_json if topic.key_serializer == "json" else _no_fast_key
        json_values = topic.value_serializer == "json"
        # JSON (the default) straight through the codec; other serializers (Avro) through the topic's serde
        dumps_value = topic.value_codec.dumps if json_values else topic.encode_value
        key_cache = self.keys
        if len(key_cache) > 200_000:
            key_cache.clear()
        new = tuple.__new__
        out = []
        for key, partition, value, when in changes:
            kb = key_cache.get(key)
            if kb is None:
                kb = fast_key(key) or dumps_key(key)
                key_cache[key] = kb
            if value is MISSING:
                vb = None
            elif json_values and type(value) is int:
                vb = b"%d" % value  # an int is its own JSON
            else:
                try:
                    vb = dumps_value(value)
                except Exception as exc:
                    raise self.refused(key, exc) from exc
            out.append(new(ProducerRecord, (name, partition, kb, vb, timestamp if when is None else when, ())))
        return out

    def stream_time_records(
        self, stream_times: Iterable[tuple[int, float | None]], timestamp: float
    ) -> list[ProducerRecord]:
        """Stream-time topic records for ``(partition, stream time)`` pairs (``None``: a tombstone at ``timestamp``)."""
        topic = self.stream_times
        if topic is None:
            raise RuntimeError(f"{self.topic.name}: a stream-time change without a stream-time topic")
        return [
            topic.record(partition, MISSING, timestamp) if t is None else topic.record(partition, t, t)
            for partition, t in stream_times
        ]
