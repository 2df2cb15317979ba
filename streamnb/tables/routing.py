"""The records a windowed table sends besides its changelog: late events and final results.

A late event goes, unchanged, to the table's late topic with headers saying
which windows it missed and where it came from; a closed window goes to the
``emit_final`` topic as ``{key, window_start, window_end, value}``.

>>> from streamnb.transport.base import Message
>>> msg = Message("clicks", 1, 42, 109.0, b"ann", b"{}", ())
>>> class Late:
...     name, partition_count = "shop-per10-late", 1
>>> record = late_record(Late(), "per10", msg, [(100.0, 110.0)])
>>> dict(record.headers)["streamnb-late-windows"], record.partition
(b'[[100.0, 110.0]]', 0)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from ..events import Event, divert
from ..topics import Topic
from ..transport.base import Message, ProducerRecord
from .state.base import Closed

__all__ = ["event_of", "final_record", "late_record"]


class _Named(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def partition_count(self) -> int: ...


def late_record(topic: _Named, table: str, msg: Message, windows: Sequence[Sequence[float]]) -> ProducerRecord:
    """The late event ``msg`` for ``topic``, with the windows it missed and its origin in headers."""
    headers = (
        ("streamnb-late-windows", json.dumps([[w[0], w[1]] for w in windows]).encode()),
        ("streamnb-table", table.encode()),
    )
    return divert(msg, topic.name, topic.partition_count, headers)


def final_record(topic: Topic[Any, Any], closed: Closed) -> ProducerRecord:
    """The final result of a closed window for ``topic`` (keyed by the table key, stamped with the window end)."""
    value = {"key": closed.key, "window_start": closed.window[0], "window_end": closed.window[1], "value": closed.value}
    return topic.record(key=closed.key, value=value, timestamp=closed.window[1])


def event_of(topics: Mapping[str, Topic[Any, Any]], msg: Message, value: Any) -> Event[Any, Any]:
    """``msg`` as an Event, its key decoded by its topic when that works (else left as bytes)."""
    source = topics.get(msg.topic)
    key: Any = msg.key
    if source is not None and key is not None:
        try:
            key = source.decode_key(key)
        except Exception:  # noqa: BLE001 - the raw key is still useful
            pass
    return Event(key, value, msg)
