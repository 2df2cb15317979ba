"""Agent RPC's in-process fast path: a reply handed to an asker in this process as soon as it is stored.

An ask (:mod:`streamnb.processing.rpc`) marks its request with the header
``streamnb-asker``: the token of the app instance that waits for it (a
fresh uuid per :class:`~streamnb.processing.replies.Replies`, so per app
object: a restarted kernel or another worker has another). When the agent
answering the request runs in that same app instance, the reply still goes
to the reply topic with the agent's commit, exactly as for any other asker,
and the asker's future is also resolved in memory the moment that commit
has *stored* the reply: it does not wait for the reply topic to be read
back. The reply consumer then skips the copy it reads back (counted in
:attr:`HandedOver.read_back`), so no reply is delivered twice.

When is it safe? Only once the reply is readable in the reply topic, i.e.
when the asker could have read it from there:

* at-least-once on Kafka: once the commit's records are stored
  (``acks=all``), before its offsets are committed (as a reply read from
  the topic could be);
* exactly-once on Kafka: once the agent's transaction committed (an
  aborted transaction's reply is never read by the ``read_committed`` reply
  consumer, and never handed over either);
* ``memory://`` and ``local://``: once the commit landed (records and
  offsets are written together).

A reply is never handed over at ``yield`` time: the commit could still fail
(a table value that no longer encodes, a broker gone, a fenced
transaction), and the asker would hold a reply the log never has. When the
commit fails, nothing is handed over: the request is processed again and
answered then, through the topic or in memory. Every other case (the asker
in another process, an ask from before a restart, an error reply to a
request the agent gave up on) goes through the reply topic as before.

The request itself still travels through the agent's topic and is fetched
back by the agent's consumer: it must be durable before it is processed
(a crash after processing must find it again), processed at its offset in
its partition's order, by whichever worker owns that partition, and its
offset committed with the reply. Handing it to the agent in memory would
have to reproduce all of that (and a rebalance can move the partition
between the send and the hand-in); the fetch costs little next to the two
stores, since the fetch answers as soon as the request is stored.

Example (what :func:`~streamnb.processing.replies.answer` does)::

    handover = replies.handover                   # one per app instance
    txn.records.append(reply_record)              # written with the agent's commit, as always
    handover.add(txn, envelope)                   # and handed over once that commit stored it
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..transaction import Transaction
from ..transport.base import Headers, ProducerRecord

__all__ = ["ASKER_HEADER", "HandedOver", "Handover", "asker_of"]

ASKER_HEADER = "streamnb-asker"
"""The header naming the app instance that waits for a request's reply (its :attr:`Replies.token`)."""

LIMIT = 100_000
"""Correlation ids remembered until their copy is read back (the oldest are forgotten beyond)."""


def asker_of(headers: Headers | Sequence[tuple[str, bytes]] | None) -> str | None:
    """The asker token of a request's headers, ``None`` when it has none.

    >>> asker_of([("streamnb-asker", b"3f2a")])
    '3f2a'
    >>> asker_of(None) is None
    True
    """
    for name, value in headers or ():
        if name == ASKER_HEADER:
            return value.decode()
    return None


class HandedOver:
    """Correlation ids whose reply was handed over in memory, until the reply topic gives back its copy.

    >>> handed = HandedOver()
    >>> handed.add("c-1")
    >>> handed.copy_read("c-1"), handed.copy_read("c-1")
    (True, False)
    >>> handed.count, handed.read_back
    (1, 1)
    """

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self.count = 0
        """Replies handed over in memory."""
        self.read_back = 0
        """Copies of those read back from the reply topic (and skipped)."""

    def add(self, correlation_id: str) -> None:
        """The reply to ``correlation_id`` was handed over: its copy in the topic is to be skipped."""
        self.count += 1
        self._ids[correlation_id] = self._ids.get(correlation_id, 0) + 1
        if len(self._ids) > LIMIT:  # (copies never read back: the reply topic was deleted, say)
            del self._ids[next(iter(self._ids))]

    def copy_read(self, correlation_id: str) -> bool:
        """True (once per hand-over) when a reply read from the topic is the copy of one handed over."""
        left = self._ids.get(correlation_id)
        if not left:
            return False
        if left == 1:
            del self._ids[correlation_id]
        else:
            self._ids[correlation_id] = left - 1
        self.read_back += 1
        return True

    def __len__(self) -> int:
        return len(self._ids)


class Handover:
    """Replies to hand over once their commit stored them: a commit participant of the agent's transaction.

    Its bookkeeping in ``txn.dirty`` is the list of reply envelopes the
    transaction holds for asks waiting in this app instance; ``deliver``
    resolves the ask of one envelope (returns False when nobody waits any
    more). :meth:`records_stored` is called by the commit once its records
    are stored (see ``stored=`` of :meth:`~streamnb.transport.base.Consumer.commit`).
    """

    def __init__(self, deliver: Callable[[bytes], bool]) -> None:
        self.deliver = deliver

    def add(self, txn: Transaction, envelope: bytes) -> None:
        """Hand ``envelope`` over once ``txn``'s commit stored it."""
        envelopes: list[bytes] | None = txn.dirty.get(self)
        if envelopes is None:
            envelopes = txn.dirty[self] = []
        envelopes.append(envelope)

    def records_stored(self, envelopes: list[bytes]) -> None:
        """The commit's records are readable: hand every reply over."""
        for envelope in envelopes:
            self.deliver(envelope)
        envelopes.clear()

    # -- the rest of a commit participant ------------------------------------------------------

    def before_commit(self, txn: Transaction) -> None:
        """Nothing to add."""

    def changelog_records(self, envelopes: list[bytes], timestamp: float) -> list[ProducerRecord]:
        """None: the replies are in the transaction's records already."""
        return []

    def restore(self, envelopes: list[bytes]) -> None:
        """The commit failed or the agent crashed: hand nothing over (the request is processed again)."""
        envelopes.clear()

    def drop_partitions(self, partitions: set[int]) -> None:
        """Nothing kept per partition."""

    def after_commit(self, envelopes: list[bytes]) -> None:
        """The commit landed: hand over what :meth:`records_stored` did not (normally nothing)."""
        self.records_stored(envelopes)
