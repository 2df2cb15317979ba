"""Agent replies: the reply topic, the reply envelope, and which ask waits for which correlation id.

An ``agent.ask(value)`` (see :mod:`streamnb.processing.rpc`) sends
``value`` to the agent's topic with two headers, Faust's
``Faust-Ag-ReplyTo`` (the topic to answer on) and
``Faust-Ag-CorrelationId`` (a fresh uuid). When the agent yields while
processing such an event, :func:`answer` adds a reply to the agent's
transaction: one message on the reply topic whose value is a JSON
envelope ``{"correlation_id", "value", "type", "error"}``. It is written
with the agent's next commit, together with its offsets and table writes,
so a reply is only ever seen for work that was committed. An event the
agent gives up on (dead-lettered after ``max_retries`` crashes, or an
agent stopped by a configuration error) is answered with the error
(:func:`answer_failure`): the asker gets a
:class:`~streamnb.errors.RemoteAgentError` instead of waiting forever.

Each process that asks reads its reply topics with a :class:`Replies`
reader: a consumer in a group of its own that starts at the topic's end,
so replies to asks made before a restart are never mistaken for new ones;
replies whose correlation id nobody here waits for (another worker's, or
from before a restart) are skipped and counted. The default reply topic is
``<app id>-reply`` (one partition, ``retention=reply_expires``), created
on demand; ``App(reply_to=...)`` names another. An ask answered by an
agent of the same app instance is also resolved in memory as soon as the
agent's commit stored its reply, and the copy read back is skipped (see
:mod:`streamnb.processing.handover`). A request older than
``reply_expires`` (default one day, as Faust) is processed but not
answered: its asker is long gone.

Example (what travels; an app answers by itself)::

    >>> envelope = encode_reply("c-1", {"total": 3})
    >>> decode_reply(envelope)
    Reply(correlation_id='c-1', value={'total': 3}, error=None)
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
import weakref
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Protocol

from ..errors import AppNotRunningError, ConfigurationError, SerializationError
from ..models.record import Record
from ..topics import Topic, TopicHost
from ..transaction import current_transaction
from ..transport.base import TP, Headers, Message, ProducerRecord, RebalanceListener, Transport
from .handover import ASKER_HEADER, HandedOver, Handover, asker_of

__all__ = [
    "CORRELATION_ID_HEADER",
    "DEFAULT_REPLY_EXPIRES",
    "REPLY_TO_HEADER",
    "Replies",
    "Reply",
    "ReplyHost",
    "answer",
    "answer_failure",
    "decode_reply",
    "encode_reply",
    "replies_of",
    "reply_expires",
    "reply_to_name",
    "reply_topic_name",
    "request_headers",
    "request_of",
]

logger = logging.getLogger("streamnb")

REPLY_TO_HEADER = "Faust-Ag-ReplyTo"
"""The header naming the topic an agent answers a request on (Faust's)."""
CORRELATION_ID_HEADER = "Faust-Ag-CorrelationId"
"""The header carrying the id that matches a reply to its request (Faust's)."""
DEFAULT_REPLY_EXPIRES = 86400.0
"""Seconds a reply topic keeps replies, and a request stays worth answering (Faust's one day)."""
_REQUEST_HEADERS = (REPLY_TO_HEADER, CORRELATION_ID_HEADER, ASKER_HEADER)


class ReplyHost(TopicHost, Protocol):
    """What replies need from the app (:class:`~streamnb.app.App` provides it): a topic's host, and these."""

    id: str
    state: str
    """``init``, ``starting``, ``running``, ``stopping`` or ``stopped``."""
    conf: Any
    """The settings (``reply_to``, ``reply_expires``)."""


class Reply(NamedTuple):
    """One decoded reply."""

    correlation_id: str
    """The id of the request it answers."""
    value: Any
    """What the agent yielded (a Record again when it was one), or ``None`` with an error."""
    error: tuple[str, str] | None
    """``(type name, message)`` of what the agent raised on the request, else ``None``."""


# -- the envelope ---------------------------------------------------------------------------


def _type_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _record_class(name: str) -> type[Record] | None:
    """The newest Record subclass named ``name`` (a notebook may have redefined it)."""
    found: type[Record] | None = None
    todo: list[type[Record]] = [Record]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if _type_name(sub) == name:
                found = sub
            todo.append(sub)
    return found


def _default(obj: Any) -> Any:
    to_representation = getattr(obj, "to_representation", None)
    if to_representation is not None:
        return to_representation()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def encode_reply(correlation_id: str, value: Any = None, error: tuple[str, str] | None = None) -> bytes:
    """The reply envelope as JSON bytes; a value JSON cannot hold becomes an error reply saying so.

    >>> decode_reply(encode_reply("c-2", b"raw")).error[0]
    'SerializationError'
    """
    body: dict[str, Any] = {"correlation_id": correlation_id, "value": None, "type": None, "error": None}
    if error is not None:
        body["error"] = list(error)
    else:
        body["value"] = value
        if isinstance(value, Record):
            body["type"] = _type_name(type(value))
    try:
        return json.dumps(body, default=_default, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        message = f"the agent yielded {type(value).__name__}, which a reply cannot carry as JSON: {exc}"
        return encode_reply(correlation_id, error=("SerializationError", message))


def decode_reply(data: bytes | None) -> Reply:
    """A reply envelope back to a :class:`Reply` (a Record value rebuilt as its class, when defined here).

    >>> decode_reply(b"not json")
    Traceback (most recent call last):
    ...
    streamnb.errors.SerializationError: not a reply envelope: b'not json'
    """
    try:
        body = json.loads(data or b"")
        cid = body["correlation_id"]
    except (ValueError, TypeError, KeyError) as exc:
        raise SerializationError(f"not a reply envelope: {(data or b'')[:80]!r}") from exc
    if body.get("error"):
        kind, message = body["error"]
        return Reply(str(cid), None, (str(kind), str(message)))
    value = body.get("value")
    if body.get("type") and isinstance(value, Mapping):
        cls = _record_class(body["type"])
        if cls is not None:
            value = cls.from_data(value)
    return Reply(str(cid), value, None)


def request_headers(
    headers: Any, reply_to: str, correlation_id: str, asker: str | None = None
) -> list[tuple[str, bytes]]:
    """``headers`` (a mapping, pairs or ``None``) with the two request headers added.

    ``asker``: the token of the app instance waiting for the reply (the
    in-process fast path, :mod:`streamnb.processing.handover`).

    >>> request_headers({"trace": "1"}, "app-reply", "c-3")
    [('trace', '1'), ('Faust-Ag-ReplyTo', b'app-reply'), ('Faust-Ag-CorrelationId', b'c-3')]
    """
    items = list(headers.items()) if isinstance(headers, Mapping) else list(headers or ())
    items = [(name, value) for name, value in items if name not in _REQUEST_HEADERS]
    items += [(REPLY_TO_HEADER, reply_to.encode()), (CORRELATION_ID_HEADER, correlation_id.encode())]
    if asker is not None:
        items.append((ASKER_HEADER, asker.encode()))
    return items


def request_of(headers: Headers | Sequence[tuple[str, bytes]]) -> tuple[str, str] | None:
    """``(reply_to, correlation_id)`` of a request's headers; ``None`` for an ordinary message.

    >>> request_of(request_headers(None, "app-reply", "c-4"))
    ('app-reply', 'c-4')
    >>> request_of(()) is None
    True
    """
    reply_to = cid = None
    for name, value in headers:
        if name == REPLY_TO_HEADER:
            reply_to = value.decode()
        elif name == CORRELATION_ID_HEADER:
            cid = value.decode()
    if not reply_to or not cid:
        return None
    return reply_to, cid


# -- the app's replies ----------------------------------------------------------------------


def reply_to_name(channel: Any) -> str:
    """The topic name of a ``reply_to=``: a name, a topic or an agent (its topic).

    >>> reply_to_name("answers")
    'answers'
    """
    if isinstance(channel, str):
        return channel
    inner = getattr(channel, "channel", channel)
    if isinstance(inner, Topic):
        return inner.name
    raise ConfigurationError(f"reply_to= takes a topic, a topic name or an agent, got {channel!r}")


def reply_topic_name(app: ReplyHost) -> str:
    """The app's reply topic: ``App(reply_to=...)``, else ``<app id>-reply``."""
    name = app.conf.reply_to
    return str(name) if name else f"{app.id}-reply"


def reply_expires(app: ReplyHost) -> float:
    """Seconds replies are kept and requests answered (``App(reply_expires=...)``, default one day)."""
    value = app.conf.reply_expires
    if value is None:
        return DEFAULT_REPLY_EXPIRES
    seconds = float(value.total_seconds() if hasattr(value, "total_seconds") else value)
    if seconds <= 0:
        raise ConfigurationError(f"reply_expires must be a positive number of seconds, got {value!r}")
    return seconds


class Replies:
    """One app's asks waiting for replies, the readers of its reply topics and its batched request sends."""

    def __init__(self, app: ReplyHost) -> None:
        self.app = app
        self.waiting: dict[str, asyncio.Future[Reply]] = {}
        """Futures of the asks waiting here, by correlation id."""
        self.unmatched = 0
        """Replies read that nobody here waited for (another worker's, a restarted asker's, an answered one)."""
        self.token = uuid.uuid4().hex
        """Names this app instance as the asker in its requests (``streamnb-asker``): see :mod:`.handover`."""
        self.handed = HandedOver()
        """Replies handed over in memory to asks of this instance (and their copies read back, skipped)."""
        self.handover = Handover(self.hand_over)
        """The commit participant that hands replies over once an agent's commit stored them."""
        self._readers: dict[str, tuple[asyncio.Task[Any], asyncio.Future[None]]] = {}
        self._declared: dict[str, tuple[Transport, Topic[Any, Any]]] = {}
        self._outbox: list[tuple[ProducerRecord, asyncio.Future[None]]] = []

    # -- topics ---------------------------------------------------------------------------

    async def reply_topic(self, name: str) -> Topic[Any, Any]:
        """The reply topic ``name``, created on the broker if missing (one partition, retention ``reply_expires``)."""
        transport = self.app.require_transport()
        known = self._declared.get(name)
        if known is not None and known[0] is transport:
            return known[1]
        existing = await transport.partition_count(name)
        # Not registered in app.topics: a reply_to= naming one of the app's topics keeps its definition.
        topic: Topic[Any, Any] = Topic(
            self.app, name, partitions=existing or 1, retention=reply_expires(self.app),
            key_serializer="raw", value_serializer="raw", internal=True,
        )
        await topic.declare()
        self._declared[name] = (transport, topic)
        return topic

    # -- asking ---------------------------------------------------------------------------

    async def expect(self, reply_to: str, correlation_id: str) -> asyncio.Future[Reply]:
        """A future for the reply to ``correlation_id`` on ``reply_to``, once that topic is being read."""
        if correlation_id in self.waiting:
            raise ConfigurationError(
                f"correlation_id={correlation_id!r} is already waiting for its reply: give each request its own id "
                "(or none: a fresh uuid is made)"
            )
        await self._reading(reply_to)
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self.waiting[correlation_id] = future
        return future

    def hand_over(self, envelope: bytes) -> bool:
        """Resolve the ask waiting here for ``envelope`` (stored in the reply topic); False if none waits any more.

        Called inside the agent's commit: it never raises (a reply that does
        not decode here is left to the reply topic's reader).
        """
        try:
            reply = decode_reply(envelope)
        except Exception:  # (a Record class redefined meanwhile, say)
            logger.warning("a reply is left to the reply topic: it does not decode here", exc_info=True)
            return False
        future = self.waiting.pop(reply.correlation_id, None)
        if future is None or future.done():
            return False  # (its reply was read from the topic first, or the ask gave up)
        self.handed.add(reply.correlation_id)
        future.set_result(reply)
        return True

    def forget(self, correlation_id: str) -> None:
        """Stop waiting for ``correlation_id`` (answered, or given up)."""
        self.waiting.pop(correlation_id, None)

    async def send(self, record: ProducerRecord) -> None:
        """Write ``record`` now, outside any agent's transaction; sends made in one loop turn go as one batch."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._outbox.append((record, future))
        if len(self._outbox) == 1:
            asyncio.get_running_loop().call_soon(self._flush)
        await future

    def _flush(self) -> None:
        batch, self._outbox = self._outbox, []
        if batch and self.app.spawn(self._write(batch), "send agent requests") is None:  # pragma: no cover
            for _, future in batch:
                future.cancel()

    async def _write(self, batch: list[tuple[ProducerRecord, asyncio.Future[None]]]) -> None:
        try:
            await self.app.require_transport().send([record for record, _ in batch])
        except BaseException as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            for _, future in batch:
                if not future.done():
                    future.set_result(None)

    # -- reading --------------------------------------------------------------------------

    async def _reading(self, name: str) -> None:
        """Return once ``name`` is read from its current end (starting a reader if none runs)."""
        entry = self._readers.get(name)
        if entry is None or entry[0].done():
            ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            task = self.app.spawn(self._read(name, ready), f"read replies on {name}")
            if task is None:  # pragma: no cover - spawn needs the running loop we are on
                raise AppNotRunningError("agent RPC needs the running event loop")
            entry = self._readers[name] = (task, ready)
        await asyncio.shield(entry[1])

    async def _read(self, name: str, ready: asyncio.Future[None]) -> None:
        transport = self.app.require_transport()
        consumer = None
        try:
            topic = await self.reply_topic(name)
            group = f"{self.app.id}-replies-{uuid.uuid4().hex[:12]}"
            consumer = transport.consumer(group, [topic.name], RebalanceListener(_nothing, _nothing))
            await consumer.start()
            tps = [TP(topic.name, p) for p in range(topic.partition_count)]
            for tp, end in (await transport.end_offsets(tps)).items():
                consumer.seek(tp, end)  # only replies to asks made from now on
            ready.set_result(None)
            while True:
                for msg in await consumer.getmany(1.0, 10_000):
                    self._settle(msg)
        except BaseException as exc:
            self._fail(name, ready, exc)
            raise
        finally:
            entry = self._readers.get(name)
            if entry is not None and entry[1] is ready:
                del self._readers[name]
            if consumer is not None:
                await consumer.stop()

    def _fail(self, name: str, ready: asyncio.Future[None], exc: BaseException) -> None:
        """The reader of ``name`` ended: every ask still waiting gets a clear error."""
        if isinstance(exc, asyncio.CancelledError):
            error: BaseException = AppNotRunningError(
                f"app {self.app.id!r} stopped before the reply came; ask again once it runs"
            )
        else:
            error = exc
        if not ready.done():
            ready.set_exception(error)
            ready.exception()  # (retrieved: the asks awaiting it raise it)
        waiting, self.waiting = self.waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(error)

    def _settle(self, msg: Message) -> None:
        if msg.key is not None and len(self.handed) and self.handed.copy_read(msg.key.decode(errors="replace")):
            return  # handed over in memory already (the key is the correlation id): see handover
        try:
            reply = decode_reply(msg.value)
        except SerializationError:
            logger.warning("skipped a message on reply topic %s that is no reply: %r", msg.topic, msg.value)
            return
        future = self.waiting.pop(reply.correlation_id, None)
        if future is None or future.done():
            self.unmatched += 1
            return
        future.set_result(reply)


async def _nothing(tps: set[TP]) -> None:
    """A rebalance callback with nothing to do (the reply reader commits nothing)."""


_replies: weakref.WeakKeyDictionary[Any, Replies] = weakref.WeakKeyDictionary()


def replies_of(app: ReplyHost) -> Replies:
    """The :class:`Replies` of ``app`` (made on first use)."""
    replies = _replies.get(app)
    if replies is None:
        replies = _replies[app] = Replies(app)
    return replies


# -- answering (the agent's side) -----------------------------------------------------------


async def answer(app: ReplyHost, value: Any) -> None:
    """If the event being processed is a request, add the reply ``value`` to the agent's transaction.

    Called for every value an agent yields; a no-op for ordinary events.
    """
    txn = current_transaction()
    if txn is None or txn.message is None or not txn.message.headers:
        return
    msg = txn.message
    request = request_of(msg.headers)
    if request is None or app.now() - msg.timestamp > reply_expires(app):
        return
    reply_to, cid = request
    replies = replies_of(app)
    topic = await replies.reply_topic(reply_to)
    envelope = encode_reply(cid, value)
    txn.records.append(ProducerRecord(topic.name, 0, cid.encode(), envelope, app.now(), ()))
    if cid in replies.waiting and asker_of(msg.headers) == replies.token:
        replies.handover.add(txn, envelope)  # the asker is in this app instance: in memory once stored


def answer_failure(app: ReplyHost, msg: Message, reason: str) -> None:
    """If ``msg`` was a request, answer it with ``reason`` (``"TypeName: message"``), now, in the background."""
    request = request_of(msg.headers)
    if request is None:
        return
    kind, _, message = reason.partition(": ")
    reply_to, cid = request

    async def send() -> None:
        replies = replies_of(app)
        topic = await replies.reply_topic(reply_to)
        envelope = encode_reply(cid, error=(kind, message))
        await replies.send(ProducerRecord(topic.name, 0, cid.encode(), envelope, app.now(), ()))
        if asker_of(msg.headers) == replies.token:
            replies.hand_over(envelope)  # stored: an ask of this app instance needs not read it back

    app.spawn(send(), f"answer request {cid} with its error")
