"""Which worker owns which partitions, by web URL: the ``<app id>-web-workers`` topic.

Workers of an app on Kafka answer web requests for the keys they own and
forward the others (:mod:`streamnb.worker.web`). To know where to, each worker
records its URL and the partition numbers it owns in a compacted
one-partition topic whenever they change, and a tombstone when it stops::

    key: "http://127.0.0.1:6066"   value: {"url": "http://127.0.0.1:6066", "partitions": [0, 2]}

The owner of a partition is the worker whose latest record lists it; while
a rebalance is under way two records may list it, and the newer one wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any, Protocol

from .. import naming
from ..errors import StreamnbError
from ..topics import Topic
from ..transport.base import TP, Transport

__all__ = ["DirectoryHost", "WorkerDirectory"]

logger = logging.getLogger("streamnb")


class DirectoryHost(Protocol):
    """What the directory needs from the app (:class:`~streamnb.app.App` implements it)."""

    id: str
    transport: Transport | None

    def owned_partitions(self) -> set[int]:
        """Partition numbers this worker's consumers hold (its table partitions)."""
        ...

    def internal_topic(self, name: str, **options: Any) -> Topic[Any, Any]:
        """Define a topic streamnb itself needs."""
        ...

    def spawn(self, coro: Any, what: str) -> asyncio.Task[Any] | None:
        """Run ``coro`` in the background."""
        ...


class WorkerDirectory:
    """The workers of one app and their partitions, as recorded in ``<app id>-web-workers``.

    >>> from streamnb import App
    >>> app = App("demo", broker="memory://")
    >>> WorkerDirectory(app, "http://127.0.0.1:6066").topic.name
    'demo-web-workers'
    """

    def __init__(self, app: DirectoryHost, url: str) -> None:
        self.app = app
        self.url = url
        self.topic = app.internal_topic(
            naming.web_workers_topic(app.id), partitions=1, compacting=True,
            key_serializer="raw", value_serializer="json",
        )
        self.changed = asyncio.Event()
        self.claims: dict[str, tuple[int, set[int]]] = {}
        """URL -> (offset of its latest record, partitions it listed)."""
        self.position = 0
        self._publisher: asyncio.Task[Any] | None = None
        self._reading = asyncio.Lock()

    async def start(self) -> None:
        """Declare the topic, publish this worker's partitions, keep publishing them as they change."""
        await self.topic.declare()
        await self.publish()
        self._publisher = self.app.spawn(self._publish_changes(), f"publish {self.url}'s partitions")

    async def stop(self) -> None:
        """Stop publishing; record that this worker is gone."""
        if self._publisher is not None:
            self._publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._publisher
            self._publisher = None
        with contextlib.suppress(StreamnbError):
            await self.topic.send(key=self.url, value=None)

    async def publish(self) -> None:
        """Record the partitions this worker owns now."""
        owned = sorted(self.app.owned_partitions())
        await self.topic.send(key=self.url, value={"url": self.url, "partitions": owned})

    async def _publish_changes(self) -> None:
        while True:
            await self.changed.wait()
            self.changed.clear()
            try:
                await self.publish()
            except StreamnbError:
                logger.exception("could not record the partitions of %s; trying at the next change", self.url)

    async def refresh(self) -> None:
        """Read the records written since the last read."""
        transport = self.app.transport
        if transport is None:
            return
        async with self._reading:
            tp = TP(self.topic.name, 0)
            end = (await transport.end_offsets([tp]))[tp]
            while self.position < end:
                msgs = await transport.read(tp, self.position, end, 10_000)
                if not msgs:
                    break
                for msg in msgs:
                    url = (msg.key or b"").decode()
                    if msg.value is None:
                        self.claims.pop(url, None)
                    else:
                        self.claims[url] = (msg.offset, set(json.loads(msg.value).get("partitions", ())))
                self.position = msgs[-1].offset + 1

    async def owner_of(self, partition: int) -> str | None:
        """The URL of the worker owning ``partition`` (None when no worker lists it)."""
        await self.refresh()
        holders = [(offset, url) for url, (offset, parts) in self.claims.items() if partition in parts]
        return max(holders)[1] if holders else None

    def workers(self) -> dict[str, set[int]]:
        """Partitions per worker URL, as last read."""
        return {url: set(parts) for url, (_offset, parts) in self.claims.items()}
