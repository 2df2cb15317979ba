"""A stream–stream join's results as an agent takes them: the pairs one record made, as events only when asked.

A record that joins ``n`` kept records of the other side makes ``n`` pairs.
``async for left, right in stream.join(...)`` hands each pair over as a
plain tuple; its :class:`~streamnb.events.Event` (the key, the pair's
timestamp ``max(left.ts, right.ts)``, the message) is built only when the
agent asks for it (``stream.current_event``) or iterates events
(``stream.join(...).events()``, an operation after the join). Building an
event per pair cost more than the matching itself.

>>> from streamnb.transport.base import Message
>>> from streamnb.processing.joins.windowed import LEFT, RIGHT, JoinWindow, WindowJoin
>>> rule = WindowJoin(JoinWindow.of(within=5), "inner")
>>> _ = rule.match(RIGHT, "k", 4000, (b"k", b"4", 4))
>>> cause = Message("orders", 0, 7, 3.0, b"k", b"3", ())
>>> pairs = Pairs(LEFT, "k", 3000, 3, cause, rule.match(LEFT, "k", 3000, (b"k", b"3", 3)))
>>> [(e.key, e.value, e.timestamp, e.offset) for e in pairs.events()]
[('k', (3, 4), 4.0, 7)]
"""

from __future__ import annotations

from typing import Any

from ...events import Event
from ...transport.base import Message
from .windowed import LEFT, Kept, Result

__all__ = ["Pairs", "as_events", "result_events"]

_new_event = object.__new__
_new_tuple = tuple.__new__


class Pairs:
    """The pairs a record of ``side`` at ``ts`` (ms) made with ``others`` (kept records of the other side).

    ``cause`` is the message that caused them. :attr:`other` is the pair
    being handed over; :meth:`current` is its event (what
    ``stream.current_event`` gives while the agent holds it).
    """

    __slots__ = ("cause", "key", "made", "other", "others", "side", "ts", "value")

    def __init__(self, side: int, key: Any, ts: int, value: Any, cause: Message, others: list[Kept]) -> None:
        self.side = side
        self.key = key
        self.ts = ts
        self.value = value
        self.cause = cause
        self.others = others
        self.other = others[0]
        self.made: tuple[Kept, Event[Any, Any]] | None = None

    def __len__(self) -> int:
        return len(self.others)

    def event(self, other: Kept) -> Event[Any, Any]:
        """The pair with ``other`` as an event of the cause: its message unless the pair's time or key bytes differ.

        The pair's timestamp is the later record's; its key bytes the left
        record's (the cause's message itself when both are its own).
        """
        cause, ts, t = self.cause, self.ts, other.ts
        event = _new_event(Event)  # Event(key, pair, msg) without the cost of calling __init__ (all slots set)
        event.key = self.key
        if self.side == LEFT:
            event.value = (self.value, other.value[2])
            if t <= ts:
                event.message = cause
            else:
                event.message = _new_tuple(Message, (cause[0], cause[1], cause[2], t / 1000, cause[4], cause[5],
                                                     cause[6]))
        else:
            left = other.value
            event.value = (left[2], self.value)
            if t <= ts and left[0] == cause[4]:
                event.message = cause
            else:
                event.message = _new_tuple(Message, (cause[0], cause[1], cause[2], (t if t > ts else ts) / 1000,
                                                     left[0], cause[5], cause[6]))
        return event

    def current(self) -> Event[Any, Any]:
        """The event of the pair being handed over (:attr:`other`); the same object when asked again."""
        other, made = self.other, self.made
        if made is not None and made[0] is other:
            return made[1]
        event = self.event(other)
        self.made = (other, event)
        return event

    def events(self) -> list[Event[Any, Any]]:
        """Every pair as an event, in the order of :attr:`others`."""
        return [self.event(other) for other in self.others]


def as_events(items: list[Any]) -> list[Event[Any, Any]]:
    """Results as events: each :class:`Pairs` as its pairs' events, events as they are."""
    out: list[Event[Any, Any]] = []
    for item in items:
        if type(item) is Pairs:
            out += item.events()
        else:
            out.append(item)
    return out


def result_events(results: list[Result], cause: Message, out: list[Any]) -> None:
    """Each result (a record that closed unmatched) as an event of ``cause``, with the result's timestamp and key."""
    cause_ms = round(cause[3] * 1000)
    for key, ts, left, right in results:
        key_bytes = left[0] if left is not None else right[0]
        if ts == cause_ms and key_bytes == cause[4]:
            msg = cause
        else:
            msg = _new_tuple(Message, (cause[0], cause[1], cause[2], ts / 1000, key_bytes, cause[5], cause[6]))
        out.append(Event(key, (None if left is None else left[2], None if right is None else right[2]), msg))
