"""Peek at a topic: its last messages as a DataFrame, once or live.

Example (in a notebook)::

    await peek(app, "page_views", n=20)     # DataFrame: partition, offset, timestamp, key, value
    live_peek(app, "page_views")            # a widget that follows the topic
    %peek page_views -n 20 --live           # the same through the magic

Messages of a topic the app defines are decoded with its codecs (a
``value_type`` Record shows as the Record; Avro with the writer schemas
fetched from the schema registry); anything else is shown best effort:
Avro in Confluent's framing when the app has a schema registry, JSON when
it parses, else text, else bytes. Peeking reads the log
directly and belongs to no consumer group, so it never moves an agent's
offsets. It holds at most about ``stream_batch_max_bytes`` of messages
(the newest first): a peek at a topic of 10 MB values shows the last one
or two, not a gigabyte. A dead-letter topic (``<app id>-<agent>-dlq``) is
peeked the same way.
"""

from __future__ import annotations

import json
from collections import deque
from contextlib import suppress
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from ..errors import AppNotRunningError, ConfigurationError, SchemaRegistryUnavailableError, StreamnbError
from ..transport.base import TP, Message, message_size, within_bytes
from ._live import HtmlLabelWidget, clock, styled

if TYPE_CHECKING:
    import pandas as pd

    from ..app.base import App
    from ..codecs.base import Serde
    from ..topics import Topic
    from ..transport.base import Transport

__all__ = ["COLUMNS", "LivePeek", "best_effort", "diverted_from", "live_peek", "peek"]

COLUMNS = ["partition", "offset", "timestamp", "key", "value"]

DECODE_ERRORS = (StreamnbError, ValueError, TypeError, KeyError, AttributeError)
"""What a codec or Record may raise on bytes it cannot decode."""


async def peek(app: App, topic: str | Topic[Any, Any], n: int = 10) -> pd.DataFrame:
    """The last ``n`` messages of a topic (over all partitions, oldest first).

    Columns: ``partition, offset, timestamp`` (UTC datetime), ``key, value``;
    a dead-letter topic's messages also have ``reason`` (the error) and
    ``origin`` (``topic[partition]@offset`` of the message that failed).

    >>> await peek(app, "page_views", n=5)  # doctest: +SKIP
    """
    if n < 1:
        raise ConfigurationError(f"peek(): n must be at least 1, got {n!r}")
    transport = await _transport(app)
    name, decoder = _decoder(app, topic)
    ends = await _ends(transport, name)
    return await _read_last(transport, ends, n, decoder, app.stream_batch_max_bytes)


def live_peek(app: App, topic: str | Topic[Any, Any], n: int = 10, *, interval: float = 1.0) -> LivePeek:
    """A widget showing the last ``n`` messages of a topic, updated as messages arrive.

    >>> from streamnb import App
    >>> app = App("demo", broker="memory://")
    >>> follow = live_peek(app, "page_views", n=20)  # shown when it is a cell's last expression
    """
    if n < 1:
        raise ConfigurationError(f"live_peek(): n must be at least 1, got {n!r}")
    return LivePeek(app, topic, n, interval=interval)


class LivePeek(HtmlLabelWidget):
    """The widget :func:`live_peek` returns: ``children == (html, label)``."""

    kind = "peek"

    def __init__(self, app: App, topic: str | Topic[Any, Any], n: int, *, interval: float) -> None:
        self.topic_name, self._decoder = _decoder(app, topic)
        self.n = n
        self.html = widgets.HTML("<em>reading…</em>")
        self.label = widgets.Label(f"{self.topic_name}: waiting for the first read")
        self.frame: pd.DataFrame | None = None
        """The messages shown."""
        self._seen: dict[TP, int] | None = None
        super().__init__(app, name=self.topic_name, interval=interval, children=[self.html, self.label])
        self._start()

    async def _poll(self) -> None:
        transport = self.app.transport
        if transport is None:  # not connected (yet): nothing to read
            return
        ends = await _ends(transport, self.topic_name)
        if ends == self._seen:
            return
        self.frame = await _read_last(transport, ends, self.n, self._decoder, self.app.stream_batch_max_bytes)
        self._seen = ends
        body = styled(self.frame.to_html(index=False, border=0, classes="streamnb-peek"))
        if self.html.value != body:
            self.html.value = body
        self._mark_updated()
        self._set_label()

    def _set_label(self) -> None:
        total = sum(self._seen.values()) if self._seen else 0
        text = f"{self.topic_name}: last {len(self.frame) if self.frame is not None else 0} of {total:,} offsets"
        text += f" · updated {clock(self.last_update)}"
        if self.error:
            text += f" · error: {self.error}"
        if self.stopped:
            text += f" · not updating ({self.stopped})"
        self.label.value = text



# -- reading ------------------------------------------------------------------------------------


async def _transport(app: App) -> Transport:
    if app.state == "starting":
        await app.start()  # returns once the start under way is done
    transport = app.transport
    if transport is None or app.state not in ("running", "starting"):
        raise AppNotRunningError(
            f"app {app.id!r} is not running: run `await app.start()` or `%streamnb start` first"
        )
    return transport


async def _ends(transport: Transport, name: str) -> dict[TP, int]:
    count = await transport.partition_count(name)
    if not count:
        raise ConfigurationError(f"no topic {name!r} on {transport.url}; is the name right?")
    return await transport.end_offsets([TP(name, p) for p in range(count)])


async def _read_last(
    transport: Transport, ends: dict[TP, int], n: int, decoder: _Decoder, max_bytes: int
) -> pd.DataFrame:
    """The last ``n`` messages over the partitions, within ``max_bytes`` (the newest first; at least one)."""
    import pandas as pd

    begins = await transport.beginning_offsets(list(ends))
    share = max(1, max_bytes // max(1, len(ends)))
    msgs: list[Message] = []
    for tp, end in ends.items():
        start = max(begins.get(tp, 0), end - n)
        if start < end:
            msgs.extend(await _tail(transport, tp, start, end, n, share))
    msgs.sort(key=lambda m: (m.timestamp, m.partition, m.offset))
    msgs = msgs[-n:]
    newest_first = within_bytes(msgs[::-1], max_bytes)
    msgs = newest_first[::-1]
    await decoder.prefetch(msgs)
    rows = [(m.partition, m.offset, m.timestamp, *decoder(m)) for m in msgs]
    df = pd.DataFrame(rows, columns=COLUMNS)
    millis = (df["timestamp"].astype("float64") * 1000).round().astype("int64")
    df["timestamp"] = pd.to_datetime(millis, unit="ms", utc=True)
    diverted = [diverted_from(m) for m in msgs]
    if any(d is not None for d in diverted):  # a dead-letter (or late-events) topic: why, and from where
        df["reason"] = [d[0] if d is not None else None for d in diverted]
        df["origin"] = [d[1] if d is not None else None for d in diverted]
    return df


def diverted_from(msg: Message) -> tuple[str | None, str] | None:
    """``(reason, "topic[partition]@offset")`` of a dead letter or late event, from its headers; else None.

    >>> from streamnb.events import divert
    >>> bad = Message("views", 1, 7, 0.0, b"k", b"?", ())
    >>> letter = divert(bad, "app-count-dlq", 1, (("streamnb-error", b"ValueError: not a page"),))
    >>> diverted_from(Message(*letter[:2], 0, letter[4], letter[2], letter[3], letter[5]))
    ('ValueError: not a page', 'views[1]@7')
    """
    headers = {name: value for name, value in msg.headers or () if isinstance(value, bytes | bytearray)}
    topic = headers.get("streamnb-topic")
    if topic is None:
        return None
    reason = headers.get("streamnb-error")
    partition = headers.get("streamnb-partition", b"?").decode("utf-8", "replace")
    offset = headers.get("streamnb-offset", b"?").decode("utf-8", "replace")
    origin = f"{topic.decode('utf-8', 'replace')}[{partition}]@{offset}"
    return (reason.decode("utf-8", "replace") if reason is not None else None), origin


async def _tail(transport: Transport, tp: TP, start: int, end: int, n: int, max_bytes: int) -> list[Message]:
    """The messages of ``tp`` from ``start`` to ``end``, keeping the newest within ``max_bytes`` (at least one).

    Read in chunks of at most ``max_bytes``: a peek at a topic of large
    messages holds about twice that, never the whole range.
    """
    kept: deque[Message] = deque()
    size = 0
    position = start
    while position < end:
        chunk = await transport.read(tp, position, end, n, max_bytes)
        if not chunk:
            break
        for m in chunk:
            kept.append(m)
            size += message_size(m)
        while len(kept) > 1 and size > max_bytes:
            size -= message_size(kept.popleft())
        position = chunk[-1].offset + 1
    return list(kept)


def _decoder(app: App, topic: str | Topic[Any, Any]) -> tuple[str, _Decoder]:
    """The topic's name and its :class:`_Decoder`."""
    from ..topics import Topic

    if isinstance(topic, Topic):
        defined: Topic[Any, Any] | None = topic
        name = topic.name
    elif isinstance(topic, str) and topic:
        name = topic
        defined = app.topics.get(name)
    else:
        raise ConfigurationError(f"expected a topic or a topic name, got {topic!r}")
    return name, _Decoder(app, name, defined)


class _Decoder:
    """``Message -> (key, value)`` for one topic: its own codecs, else best effort (Avro, JSON, text, bytes)."""

    def __init__(self, app: App, name: str, defined: Topic[Any, Any] | None) -> None:
        self.defined = defined
        self.avro: tuple[Serde, Serde] | None = None
        if defined is None and app.schema_registry is not None:
            from ..avro import AvroCodec

            codec = AvroCodec(registry=app.schema_registry)
            self.avro = (codec.serde_for(None, role="key", topic=name), codec.serde_for(None, role="value", topic=name))
        self.registry_ok = True

    async def prefetch(self, msgs: list[Message]) -> None:
        """Fetch the Avro writer schemas these messages need (once; an unreachable registry is skipped)."""
        self.registry_ok = True
        try:
            if self.defined is not None and self.defined.needs_prefetch:
                await self.defined.prefetch(msgs)
            elif self.avro is not None:
                key_serde, value_serde = self.avro
                if key_serde.prefetch is not None:
                    await key_serde.prefetch([m.key for m in msgs])
                if value_serde.prefetch is not None:
                    await value_serde.prefetch([m.value for m in msgs])
        except SchemaRegistryUnavailableError:
            self.registry_ok = False  # shown best effort; no blocking request per message

    def __call__(self, msg: Message) -> tuple[Any, Any]:
        key: Any = best_effort(msg.key)
        value: Any = best_effort(msg.value)
        defined, avro = self.defined, self.avro
        if defined is not None and (self.registry_ok or not defined.needs_prefetch):
            if msg.key is not None:
                with suppress(*DECODE_ERRORS):
                    key = _unless_raw(defined.decode_key(msg.key), key, defined.key_type)
            with suppress(*DECODE_ERRORS):
                value = _unless_raw(defined.decode_value(msg.value), value, defined.value_type)
        elif avro is not None and self.registry_ok:
            if _framed(msg.key):
                with suppress(*DECODE_ERRORS):
                    key = avro[0].decode(msg.key)
            if _framed(msg.value):
                with suppress(*DECODE_ERRORS):
                    value = avro[1].decode(msg.value)
        return _readable(key), value


def _unless_raw(decoded: Any, best: Any, declared: Any) -> Any:
    """What the topic's codec decoded, unless it is bytes of no declared type (dead letters): the best effort."""
    return best if declared is None and isinstance(decoded, bytes | bytearray) else decoded


def _framed(data: bytes | None) -> bool:
    """Could ``data`` be Avro in Confluent's framing (magic byte 0, a 4-byte id, a body)?"""
    return data is not None and len(data) >= 5 and data[0] == 0


def best_effort(data: bytes | None) -> Any:
    """Bytes as JSON when they parse, else as UTF-8 text, else as bytes.

    >>> best_effort(b'{"page": "/"}')
    {'page': '/'}
    >>> best_effort(b"alice")
    'alice'
    """
    if data is None:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return data
    try:
        return json.loads(text)
    except ValueError:
        return text


def _readable(key: Any) -> Any:
    if isinstance(key, bytes):
        try:
            return key.decode("utf-8")
        except UnicodeDecodeError:
            return key
    return key
