"""What a :class:`~streamnb.processing.source.Source` needs from the agent and the stream it serves.

Two small protocols: :class:`Supervisor` (implemented by
:class:`~streamnb.processing.agents.Agent`: its counters, pause and stop, dead-letter
bookkeeping) and :class:`SourceConfig` (implemented by
:class:`~streamnb.processing.streams.Stream`: the app, the topic, the ``group_by``
forwarding, the offsets operators hold back). A source reaches nothing else
of them, so either side can change behind these.

Example (a test double needs only these members)::

    class FakeAgent:
        name, events_received, events_processed, poison = "count", 0, 0, {}
        stopping = paused = False
        async def wait_resumed(self): ...
        def attach(self, source): ...
        def detach(self, source): ...
        def record_dead_letter(self, msg, reason): ...
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

from ..runtime import Runtime
from ..topics import Topic
from ..transport.base import TP, Message

__all__ = ["Hop", "SourceConfig", "Supervisor"]


class Hop(NamedTuple):
    """One re-keying before a stream's topic: ``group_by`` (a key function) or ``through`` (none).

    The source reads :attr:`topic` and forwards each message into the next
    hop's topic (the last hop forwards into the stream's own topic).
    """

    topic: Topic[Any, Any]
    """The topic read and forwarded."""
    keyfn: Callable[[Any], Any] | None
    """The new key of a value (``group_by``), or ``None`` to keep the key (``through``)."""


class Supervisor(Protocol):
    """What a source needs from the agent that iterates it (:class:`~streamnb.processing.agents.Agent`)."""

    name: str
    events_received: int
    """Messages fetched for the agent."""
    events_processed: int
    """Messages the agent finished (dead-lettered ones included)."""
    poison: dict[tuple[str, int, int], BaseException]
    """``(topic, partition, offset)`` of events that crashed the agent too often: dead-letter them."""

    @property
    def stopping(self) -> bool:
        """True once the agent was asked to stop."""
        ...

    @property
    def paused(self) -> bool:
        """True while the agent is paused."""
        ...

    async def wait_resumed(self) -> None:
        """Return once the agent is not paused."""
        ...

    def attach(self, source: Any) -> None:
        """A source (:class:`~streamnb.processing.source.Source`) of this agent started."""
        ...

    def detach(self, source: Any) -> None:
        """A source of this agent closed."""
        ...

    def record_dead_letter(self, msg: Message, reason: str) -> None:
        """``msg`` went to the dead-letter topic for ``reason``."""
        ...


class SourceConfig(Protocol):
    """What a source reads from the stream it serves (:class:`~streamnb.processing.streams.Stream`)."""

    app: Runtime
    channel: Topic[Any, Any] | None
    agent: Supervisor | None
    member: int
    members: int
    hops: tuple[Hop, ...]
    """``group_by``/``through`` re-keyings before :attr:`channel`, first one first."""
    stage: str
    """What the stream reads, for logs (``input``, ``group_by(user)``)."""
    holds: list[Callable[[], dict[TP, int]]]
    """Offsets buffered by operators such as ``take``: commits stay before them."""
    tick_interval: float | None
    """Seconds after which an idle poll yields a tick (``take(within=)``), or None."""
