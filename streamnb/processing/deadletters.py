"""Dead letters: where a source sends the messages it cannot process, with the reason.

A message that cannot be decoded, whose ``group_by`` key cannot be
computed, whose timestamp is no event time, or that crashed its agent too
often goes to the agent's dead-letter topic ``<app id>-<agent>-dlq`` (raw bytes, the reason and its
origin in headers), inside the agent's transaction: it is written with the
offsets that mark it done, so nothing is lost and nothing is retried for
ever. It is counted and logged once that commit landed: a dead letter
rolled back with its transaction (the agent crashed on a later event) is
sent again when its message comes again, and counted once.

Example::

    letters = DeadLetters(app, "count", agent, lambda: txn.records)
    await letters.declare()
    letters.send(msg, ValueError("not a page view"))
    sent = letters.take()          # at a commit
    letters.committed(sent)        # once it landed: counted and logged
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

from ..errors import EventTimeError
from ..events import divert
from ..runtime import Runtime
from ..topics import Topic
from ..transport.base import Headers, Message, ProducerRecord
from .supervision import Supervisor

__all__ = ["DeadLetters"]

logger = logging.getLogger("streamnb")


class DeadLetters:
    """The dead-letter topic of one agent (or stream) and how messages go there."""

    def __init__(
        self, app: Runtime, owner: str, agent: Supervisor | None, records: Callable[[], list[ProducerRecord]]
    ) -> None:
        self.app = app
        self.topic: Topic[Any, Any] = app.dead_letter_topic(owner)
        self.agent = agent
        self.records = records
        """Where the current transaction's records go (per input partition on Kafka exactly-once)."""
        self.pending: list[tuple[Message, str]] = []
        """Messages dead-lettered in the current transaction, with their reasons."""

    def __repr__(self) -> str:
        return f"<DeadLetters {self.topic.name!r}>"

    async def declare(self) -> None:
        """Create the topic if it is missing."""
        await self.topic.declare()

    def send(self, msg: Message, exc: BaseException) -> None:
        """Send ``msg`` to the dead-letter topic with ``exc`` as the reason (``streamnb-error`` header).

        A message dead-lettered for its timestamp (:class:`~streamnb.errors.EventTimeError`)
        is written at the app's time instead, its own timestamp kept in the
        ``streamnb-timestamp`` header (nan, inf or a far-future time may not be storable).
        """
        reason = f"{type(exc).__name__}: {exc}"
        error: Headers = (("streamnb-error", reason.encode("utf-8", "replace")[:4000]),)
        timestamp = None
        if isinstance(exc, EventTimeError):
            now = self.app.now()
            timestamp = now if math.isfinite(now) else time.time()
            error += (("streamnb-timestamp", repr(msg.timestamp).encode()),)
        self.records().append(divert(msg, self.topic.name, self.topic.partition_count, error, timestamp))
        self.pending.append((msg, reason))

    def take(self) -> list[tuple[Message, str]]:
        """A commit takes the current transaction's dead letters (see :meth:`committed`)."""
        taken, self.pending = self.pending, []
        return taken

    def discard(self) -> None:
        """The current transaction was rolled back: its dead letters were not sent."""
        self.pending = []

    def committed(self, letters: list[tuple[Message, str]]) -> None:
        """A commit holding ``letters`` landed: count and log them."""
        for msg, reason in letters:
            if self.agent is not None:
                self.agent.record_dead_letter(msg, reason)
            else:
                logger.warning("dead-lettered %s[%d]@%d: %s", msg.topic, msg.partition, msg.offset, reason)
