"""Events: a decoded message as an agent sees it.

Example::

    async for event in stream.events():
        print(event.key, event.value, event.partition, event.offset, event.timestamp)
"""

from __future__ import annotations

from typing import Generic, TypeVar

from .transport.base import TP, Headers, Message

__all__ = ["Event"]

K = TypeVar("K")
V = TypeVar("V")


class Event(Generic[K, V]):
    """A decoded key and value together with the message they came from.

    >>> from streamnb.transport.base import Message
    >>> event = Event("alice", {"page": "/"}, Message("views", 0, 7, 1.5, b"alice", b"{}", ()))
    >>> event.key, event.offset, event.timestamp
    ('alice', 7, 1.5)
    """

    __slots__ = ("key", "value", "message")

    def __init__(self, key: K, value: V, message: Message) -> None:
        self.key = key
        """Decoded key (``None`` when the message had none)."""
        self.value = value
        """Decoded value (a Record when the topic has a ``value_type``)."""
        self.message = message
        """The raw :class:`~streamnb.transport.base.Message`."""

    @property
    def topic(self) -> str:
        """Topic the event was read from."""
        return self.message.topic

    @property
    def partition(self) -> int:
        """Partition the event was read from."""
        return self.message.partition

    @property
    def offset(self) -> int:
        """Offset of the event in its partition."""
        return self.message.offset

    @property
    def timestamp(self) -> float:
        """Event time, epoch seconds."""
        return self.message.timestamp

    @property
    def headers(self) -> Headers:
        """``(name, bytes)`` header pairs."""
        return self.message.headers

    @property
    def tp(self) -> TP:
        """The event's topic partition."""
        return TP(self.message.topic, self.message.partition)

    def __repr__(self) -> str:
        m = self.message
        return f"<Event {m.topic}[{m.partition}]@{m.offset} key={self.key!r} value={self.value!r}>"
