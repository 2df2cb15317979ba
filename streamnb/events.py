"""Events: a decoded message as an agent sees it.

Example::

    async for event in stream.events():
        print(event.key, event.value, event.partition, event.offset, event.timestamp)
"""

from __future__ import annotations

from typing import Generic, TypeVar

from .transport.base import TP, Headers, Message, ProducerRecord

__all__ = ["Event", "divert"]

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


def divert(msg: Message, topic: str, partitions: int, headers: Headers) -> ProducerRecord:
    """``msg`` copied to ``topic`` (dead letters, late events): same key, value and timestamp,
    its ``headers`` then ``headers`` and its origin (``streamnb-topic``/``-partition``/``-offset``).

    >>> record = divert(Message("views", 3, 7, 1.5, b"k", b"v", ()), "views-dlq", 2, (("streamnb-error", b"bad"),))
    >>> record.partition, [name for name, _ in record.headers]
    (1, ['streamnb-error', 'streamnb-topic', 'streamnb-partition', 'streamnb-offset'])
    """
    origin = (
        ("streamnb-topic", msg.topic.encode()),
        ("streamnb-partition", str(msg.partition).encode()),
        ("streamnb-offset", str(msg.offset).encode()),
    )
    headers = tuple(msg.headers) + tuple(headers) + origin
    return ProducerRecord(topic, msg.partition % partitions, msg.key, msg.value, msg.timestamp, headers)
