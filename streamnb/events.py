"""Events: a decoded message as an agent sees it, and what makes a time an event time.

Example::

    async for event in stream.events():
        print(event.key, event.value, event.partition, event.offset, event.timestamp)

An event time is epoch seconds, a finite number >= 0 (Kafka's producer
refuses negative timestamps too; -1 is its "no timestamp"). :func:`event_time`
checks one given by a user (``send(timestamp=...)``, a Record field);
:func:`time_problem` says what is wrong with one already stored.

    >>> event_time(12.5), time_problem(float("nan"))
    (12.5, 'its timestamp is nan, not a number of epoch seconds')
"""

from __future__ import annotations

import math
import numbers
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from .errors import EventTimeError
from .transport.base import TP, Headers, Message, ProducerRecord

__all__ = ["Event", "divert", "event_time", "time_problem"]

_SEND = (
    "send epoch seconds as a finite number >= 0 (e.g. time.time()) or a datetime, or leave the timestamp "
    "out to use the app's clock"
)


def event_time(value: Any, what: str = "timestamp") -> float:
    """``value`` as epoch seconds: a finite number >= 0 or a datetime; else :class:`EventTimeError`.

    >>> event_time(datetime(2024, 1, 1, tzinfo=UTC))
    1704067200.0
    >>> event_time(float("inf"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    streamnb.errors.EventTimeError: timestamp=inf is not a time: send epoch seconds as a finite number >= 0 ...
    """
    if type(value) is float or type(value) is int or (isinstance(value, numbers.Real) and not isinstance(value, bool)):
        seconds = float(value)
    elif callable(getattr(value, "timestamp", None)):  # datetime, pandas.Timestamp
        seconds = float(value.timestamp())
    else:
        raise EventTimeError(f"{what}={value!r} is not a time: {_SEND}")
    if not math.isfinite(seconds) or seconds < 0:
        raise EventTimeError(f"{what}={value!r} is not a time: {_SEND}")
    return seconds


def time_problem(ts: float, clock: float = math.inf, skew: float = math.inf) -> str | None:
    """Why a stored message's timestamp cannot be its event time (``None``: it can).

    With ``clock`` and ``skew`` (the app's ``max_event_time_skew``), a time
    more than ``skew`` seconds ahead of ``clock`` is refused too.

    >>> time_problem(-5.0)
    'its timestamp is negative (-5.0 s, before 1970): event times are epoch seconds >= 0'
    >>> time_problem(4102444800.0, clock=1704067200.0, skew=3600)  # doctest: +ELLIPSIS
    'its timestamp 2100-01-01T00:00:00+00:00 is 76.0 years ahead of the clock (2024-01-01T00:00:00+00:00)...'
    """
    if ts != ts or math.isinf(ts):
        return f"its timestamp is {ts!r}, not a number of epoch seconds"
    if ts < 0:
        if ts == -0.001:
            return "it has no timestamp (Kafka's -1)"
        return f"its timestamp is negative ({ts!r} s, before 1970): event times are epoch seconds >= 0"
    if ts > clock + skew:
        return (
            f"its timestamp {_iso(ts)} is {_span(ts - clock)} ahead of the clock ({_iso(clock)}), more than "
            f"max_event_time_skew ({skew:g} s): it would move stream time there for good"
        )
    return None


def _span(seconds: float) -> str:
    for unit, size in (("years", 365.25 * 86400), ("days", 86400.0), ("hours", 3600.0), ("minutes", 60.0)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.1f} s"


def _iso(ts: float) -> str:
    try:
        return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")
    except (OverflowError, ValueError, OSError):
        return f"{ts!r} s"

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


def divert(
    msg: Message, topic: str, partitions: int, headers: Headers, timestamp: float | None = None
) -> ProducerRecord:
    """``msg`` copied to ``topic`` (dead letters, late events): same key, value and timestamp,
    its ``headers`` then ``headers`` and its origin (``streamnb-topic``/``-partition``/``-offset``).
    ``timestamp`` replaces one that cannot be stored (a dead letter for its timestamp).

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
    when = msg.timestamp if timestamp is None else timestamp
    return ProducerRecord(topic, msg.partition % partitions, msg.key, msg.value, when, headers)
