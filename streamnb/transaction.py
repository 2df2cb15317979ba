"""The processing transaction: what one agent instance wrote since its last commit.

While an agent processes events, its table writes and its sends are not
written at once: they collect here and go to the broker together with the
consumer offsets in one ``Consumer.commit`` call. On ``local://`` and
``memory://`` that call is atomic, so every input event counts exactly once
even across ``kill -9``. When an agent crashes, :meth:`Transaction.abort`
restores the tables to what they were at the last commit.

Code running inside an agent finds its transaction through
:func:`current_transaction`; a table write outside any agent is an error.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, Protocol

from .transport.base import Message, ProducerRecord

__all__ = ["MISSING", "CommitParticipant", "Transaction", "current_transaction"]

MISSING: Any = object()
"""Marks a key that was absent from a table before the transaction wrote it."""

_current: ContextVar[Transaction | None] = ContextVar("streamnb_transaction", default=None)


current_transaction: Callable[[], Transaction | None] = _current.get
"""The transaction of the agent running in this task, or ``None`` outside agents.

(The context variable's own ``get``: tables call it for every write.)

>>> current_transaction() is None
True
"""


class CommitParticipant(Protocol):
    """Something an agent writes to that commits with it: a table.

    A participant records what it changed in ``txn.dirty[participant]`` (its
    own shape of bookkeeping), and the commit calls it back in this order:
    :meth:`before_commit` (e.g. windows that close now), then
    :meth:`changelog_records` (what goes to the broker with the offsets),
    then :meth:`after_commit` once that is durable -- or :meth:`restore`
    when the commit failed or the agent crashed.
    """

    def before_commit(self, txn: Transaction) -> None:
        """Last changes before the transaction's records are collected."""
        ...

    def changelog_records(self, dirty: Any, timestamp: float) -> list[ProducerRecord]:
        """The records that make ``dirty`` (this participant's bookkeeping) durable."""
        ...

    def restore(self, dirty: Any) -> None:
        """Undo the changes described by ``dirty``."""
        ...

    def after_commit(self, dirty: Any) -> None:
        """The changes described by ``dirty`` are durable."""
        ...


class Transaction:
    """Pending writes of one agent instance since its last commit."""

    __slots__ = ("records", "dirty", "message", "value", "_token")

    def __init__(self) -> None:
        self.records: list[ProducerRecord] = []
        """Messages sent by the agent (sinks, ``topic.send``), in order."""
        self.dirty: dict[CommitParticipant, Any] = {}
        """Per table: key -> [changelog partition, value before the transaction]
        (windowed tables: key -> {window start: [partition, value before]})."""
        self.message: Message | None = None
        """The raw message being processed (its partition is the changelog partition)."""
        self.value: Any = None
        """The decoded value being processed."""
        self._token: Any = None

    def activate(self) -> None:
        """Make this the current transaction of the running task."""
        self._token = _current.set(self)

    def deactivate(self) -> None:
        """Undo :meth:`activate`."""
        if self._token is not None:
            try:
                _current.reset(self._token)
            except ValueError:  # reset from another context (task ended)
                _current.set(None)
            self._token = None

    def __len__(self) -> int:
        return len(self.records) + sum(len(d) for d in self.dirty.values())

    def collect(self, timestamp: float) -> list[ProducerRecord]:
        """Sent records followed by one changelog record per written key."""
        out = self.records
        for participant, dirty in self.dirty.items():
            out.extend(participant.changelog_records(dirty, timestamp))
        return out

    def clear(self) -> None:
        """Forget everything (after a successful commit)."""
        self.records = []
        self.dirty = {}

    def abort(self) -> None:
        """Restore every written table key to its value before the transaction."""
        for participant, dirty in self.dirty.items():
            participant.restore(dirty)
        self.clear()
