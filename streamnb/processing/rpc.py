"""Agent RPC: ``ask``, ``cast``, ``send``, ``map``, ``kvmap``, ``join`` and ``kvjoin`` (Faust's names).

Example::

    @app.agent()
    async def double(stream):
        async for n in stream:
            yield 2 * n

    await double.ask(21)                      # 42: what the agent yielded for 21
    await double.join([1, 2, 3])              # [2, 4, 6], in input order
    async for result in double.map(range(10)):
        print(result)                         # as the replies come
    await double.cast(5)                      # no reply expected

An ask is a message on the agent's topic carrying a reply topic and a
correlation id in its headers; whichever worker processes it (this one or
another on Kafka) answers on the reply topic, and the asker matches the
reply by its id (see :mod:`streamnb.processing.replies` for the reply
topic, what is committed when, and ``reply_expires``; an ask answered by an
agent of this same app instance is resolved in memory once the agent's
commit stored the reply: :mod:`streamnb.processing.handover`). If the agent gives up
on the request (it crashed on it ``max_retries`` times, so it was
dead-lettered), the ask raises :class:`~streamnb.errors.RemoteAgentError`
with the remote error's type and message.

Asks need the app running (``await app.start()``; a notebook cell can
``await double.ask(...)`` then): the asker reads its reply topic while the
app runs. A request is written at once, also from inside another agent
(it does not wait for that agent's commit, or it would wait for itself).
An agent that yields nothing for a request leaves its asker waiting, as in
Faust: bound it with ``asyncio.wait_for(agent.ask(...), timeout)``.
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Any

from ..errors import AppNotRunningError, ConfigurationError, RemoteAgentError
from ..runtime import Runtime
from ..topics import RecordMetadata, Topic
from .replies import Replies, Reply, ReplyHost, replies_of, reply_to_name, reply_topic_name, request_headers

__all__ = ["AgentRPC"]


class AgentRPC:
    """The RPC half of :class:`~streamnb.processing.agents.Agent` (a base class of it)."""

    app: Runtime
    channel: Topic[Any, Any]
    name: str
    fun: Any

    # -- without a reply --------------------------------------------------------------------

    async def send(
        self,
        *,
        key: Any = None,
        value: Any = None,
        partition: int | None = None,
        timestamp: float | None = None,
        headers: Any = None,
        key_serializer: Any = None,
        value_serializer: Any = None,
        callback: Any = None,
        reply_to: Any = None,
        correlation_id: str | None = None,
        force: bool = False,
    ) -> RecordMetadata:
        """Send a value to the agent's topic (returns where it went, as :meth:`Topic.send`).

        Inside an agent it joins that agent's transaction. With ``reply_to``
        the agent answers on that topic (under ``correlation_id``), and
        nobody here waits for it: read it yourself, or use :meth:`ask`.

        >>> await count.send(value=PageView(id="1", user="a", page="/"))  # doctest: +SKIP
        """
        if key_serializer is not None or value_serializer is not None:
            raise ConfigurationError(
                f"{self.name}.send(key_serializer=/value_serializer=): the agent's topic decides the serializers"
            )
        if callback is not None:
            raise ConfigurationError(f"{self.name}.send(callback=...): await the send, it returns where it went")
        del force  # every send outside an agent is written at once
        if reply_to is not None:
            headers = request_headers(headers, reply_to_name(reply_to), correlation_id or str(uuid.uuid4()))
        return await self.channel.send(
            key=key, value=value, partition=partition, timestamp=timestamp, headers=headers
        )

    async def cast(
        self, value: Any = None, *, key: Any = None, partition: int | None = None,
        timestamp: float | None = None, headers: Any = None,
    ) -> None:
        """Send ``value`` to the agent expecting no reply (Faust's ``cast``).

        >>> await double.cast(5)  # doctest: +SKIP
        """
        await self.send(key=key, value=value, partition=partition, timestamp=timestamp, headers=headers)

    # -- one request ------------------------------------------------------------------------

    async def ask(
        self,
        value: Any = None,
        *,
        key: Any = None,
        partition: int | None = None,
        timestamp: float | None = None,
        headers: Any = None,
        reply_to: Any = None,
        correlation_id: str | None = None,
    ) -> Any:
        """Send ``value`` to the agent and return what it yields for it (from whichever worker processed it).

        Raises :class:`~streamnb.errors.RemoteAgentError` when the agent gave
        up on the request, :class:`~streamnb.errors.AppNotRunningError`
        outside a running app.

        >>> await double.ask(21)  # doctest: +SKIP
        42
        """
        replies = self._replies()
        future, cid = await self._request(
            replies, key, value, partition=partition, timestamp=timestamp, headers=headers,
            reply_to=reply_to, correlation_id=correlation_id,
        )
        try:
            return self._result(await future)
        finally:
            replies.forget(cid)

    async def ask_nowait(
        self,
        value: Any = None,
        *,
        key: Any = None,
        partition: int | None = None,
        timestamp: float | None = None,
        headers: Any = None,
        reply_to: Any = None,
        correlation_id: str | None = None,
        force: bool = False,
    ) -> asyncio.Future[Any]:
        """Send the request and return a future of the agent's reply (Faust's ``ReplyPromise``).

        >>> promise = await double.ask_nowait(21)  # doctest: +SKIP
        >>> await promise  # doctest: +SKIP
        42
        """
        del force
        replies = self._replies()
        future, cid = await self._request(
            replies, key, value, partition=partition, timestamp=timestamp, headers=headers,
            reply_to=reply_to, correlation_id=correlation_id,
        )
        return asyncio.ensure_future(self._await_reply(replies, future, cid))

    async def _await_reply(self, replies: Replies, future: asyncio.Future[Reply], cid: str) -> Any:
        try:
            return self._result(await future)
        finally:
            replies.forget(cid)

    # -- many requests ----------------------------------------------------------------------

    async def map(
        self, values: Iterable[Any] | AsyncIterable[Any], key: Any = None, reply_to: Any = None
    ) -> AsyncIterator[Any]:
        """Ask for each of ``values`` (one ``key`` for all); yield the replies as they come.

        >>> async for doubled in double.map(range(3)):  # doctest: +SKIP
        ...     print(doubled)
        """
        async for reply in self.kvmap(((key, value) async for value in _aiter(values)), reply_to):
            yield reply

    async def kvmap(
        self, items: Iterable[tuple[Any, Any]] | AsyncIterable[tuple[Any, Any]], reply_to: Any = None
    ) -> AsyncIterator[Any]:
        """Ask for each ``(key, value)`` of ``items``; yield the replies as they come.

        >>> async for doubled in double.kvmap([("a", 1), ("b", 2)]):  # doctest: +SKIP
        ...     print(doubled)
        """
        replies = self._replies()
        done: asyncio.Queue[asyncio.Future[Any]] = asyncio.Queue()
        requests: list[asyncio.Task[tuple[asyncio.Future[Reply], str]]] = []

        def sent(request: asyncio.Task[tuple[asyncio.Future[Reply], str]]) -> None:
            if request.cancelled() or request.exception() is not None:
                done.put_nowait(request)  # taking it raises why it could not be sent
            else:
                request.result()[0].add_done_callback(done.put_nowait)

        taken = 0
        try:
            async for key, value in _aiter(items):
                request = asyncio.ensure_future(self._request(replies, key, value, reply_to=reply_to))
                request.add_done_callback(sent)
                requests.append(request)
                while not done.empty():
                    taken += 1
                    yield self._result(done.get_nowait().result())
            while taken < len(requests):
                taken += 1
                yield self._result((await done.get()).result())
        finally:
            _forget(replies, requests)

    async def join(
        self, values: Iterable[Any] | AsyncIterable[Any], key: Any = None, reply_to: Any = None
    ) -> list[Any]:
        """Ask for each of ``values`` (one ``key`` for all); return the replies in input order.

        >>> await double.join([1, 2, 3])  # doctest: +SKIP
        [2, 4, 6]
        """
        return await self.kvjoin(((key, value) async for value in _aiter(values)), reply_to)

    async def kvjoin(
        self, items: Iterable[tuple[Any, Any]] | AsyncIterable[tuple[Any, Any]], reply_to: Any = None
    ) -> list[Any]:
        """Ask for each ``(key, value)`` of ``items``; return the replies in input order.

        >>> await double.kvjoin([("a", 1), ("b", 2)])  # doctest: +SKIP
        [2, 4]
        """
        replies = self._replies()
        requests: list[asyncio.Task[tuple[asyncio.Future[Reply], str]]] = []
        try:
            async for key, value in _aiter(items):  # sent together: one batch per loop turn
                requests.append(asyncio.ensure_future(self._request(replies, key, value, reply_to=reply_to)))
            asked = await asyncio.gather(*requests)
            return [self._result(reply) for reply in await asyncio.gather(*(future for future, _ in asked))]
        finally:
            _forget(replies, requests)

    # -- the parts --------------------------------------------------------------------------

    def _replies(self) -> Replies:
        """The app's :class:`Replies`; a clear error when this agent cannot be asked now."""
        app: Any = self.app
        state = getattr(app, "state", None)
        if state not in ("starting", "running"):
            raise AppNotRunningError(
                f"{self.name}.ask/map/join need the app running (it reads the replies), but app {app.id!r} is "
                f"{state}: `await app.start()` first (in a notebook, in an earlier cell), then await the ask"
            )
        if not inspect.isasyncgenfunction(self.fun):
            raise ConfigurationError(
                f"agent {self.name!r} does not yield, so it has nothing to reply with: make it `yield` a result "
                "for each value, or use cast()/send() when no reply is expected"
            )
        host: ReplyHost = app
        return replies_of(host)

    async def _request(
        self,
        replies: Replies,
        key: Any,
        value: Any,
        *,
        partition: int | None = None,
        timestamp: float | None = None,
        headers: Any = None,
        reply_to: Any = None,
        correlation_id: str | None = None,
    ) -> tuple[asyncio.Future[Reply], str]:
        """Write one request now (outside any transaction); return the future of its reply and its id."""
        topic = self.channel
        name = reply_to_name(reply_to) if reply_to is not None else reply_topic_name(replies.app)
        cid = correlation_id or str(uuid.uuid4())
        if not topic.declared:
            await topic.declare()
        if not topic.prepared:
            await topic.prepare()
        record = topic.record(key, value, partition, timestamp, request_headers(headers, name, cid, replies.token))
        future = await replies.expect(name, cid)
        try:
            await replies.send(record)
        except BaseException:
            replies.forget(cid)
            raise
        return future, cid

    def _result(self, reply: Reply) -> Any:
        if reply.error is not None:
            raise RemoteAgentError(self.name, *reply.error)
        return reply.value



def _forget(replies: Replies, requests: list[asyncio.Task[tuple[asyncio.Future[Reply], str]]]) -> None:
    """Stop waiting for the replies of ``requests`` (done or given up); cancel those still being sent."""
    for request in requests:
        if not request.done():
            request.cancel()
        elif not request.cancelled() and request.exception() is None:
            replies.forget(request.result()[1])


async def _aiter(items: Iterable[Any] | AsyncIterable[Any]) -> AsyncIterator[Any]:
    """An async iterator over a plain or async iterable."""
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
