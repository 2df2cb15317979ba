"""The transport seam: what every broker backend implements.

streamnb talks to a broker only through :class:`Transport` and the
:class:`Consumer` it hands out. Three backends implement it:

* ``memory://``  -- :mod:`streamnb.transport.memory`, in-process and volatile;
* ``local://PATH`` -- the :mod:`streamnb.transport.local` package, sqlite3 (WAL) in a folder;
* ``kafka://HOST:PORT`` -- the :mod:`streamnb.transport.kafka` package, aiokafka.

:mod:`streamnb.transport.schemes` maps each URL scheme to its class; each
class declares the constructor options it takes (:attr:`Transport.options`)
and the processing guarantees it can give (:attr:`Transport.guarantees`).

Data flows one way: ``Consumer.getmany`` -> stream -> agent -> table writes and
sink sends are buffered -> ``Consumer.commit(offsets, records)`` writes the
buffered records and the consumer offsets together: in one sqlite transaction
on ``local://`` (exactly-once); on Kafka records first, then offsets
(at-least-once), or -- for a consumer made with a ``transactional_id`` -- one
Kafka transaction per input partition holding that partition's offset and
every record its events caused (exactly-once). Such a consumer is
:attr:`Consumer.transactional` and takes the records grouped by the input
partition that caused them (``commit(offsets, per_partition=...)``).

Keys and values cross the seam as ``bytes`` (or ``None``); timestamps are
epoch seconds as ``float``; headers are a tuple of ``(str, bytes)`` pairs.
"""

from __future__ import annotations

import abc
import difflib
import operator
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, NamedTuple, Protocol

from ..errors import ConfigurationError

__all__ = [
    "AT_LEAST_ONCE",
    "EXACTLY_ONCE",
    "TP",
    "Consumer",
    "Headers",
    "LocalState",
    "Message",
    "ProducerRecord",
    "RebalanceListener",
    "TopicSpec",
    "TransactionalId",
    "Transport",
    "head_within",
    "message_size",
    "within_bytes",
]

Headers = tuple[tuple[str, bytes], ...]

AT_LEAST_ONCE = "at_least_once"
"""Every message is processed; after a crash some may be processed again."""
EXACTLY_ONCE = "exactly_once"
"""A commit stores a batch's outputs, table writes and offsets together, or none of them."""


class TP(NamedTuple):
    """A topic partition."""

    topic: str
    """Topic name."""
    partition: int
    """Partition number, from 0."""


class Message(NamedTuple):
    """One stored message, as a consumer receives it (raw bytes)."""

    topic: str
    """Topic the message was read from."""
    partition: int
    """Partition the message was read from."""
    offset: int
    """Position in the partition, from 0, increasing by one per message."""
    timestamp: float
    """Event time in epoch seconds (the producer's, or the broker's at append)."""
    key: bytes | None
    """Encoded key, or ``None``."""
    value: bytes | None
    """Encoded value, or ``None`` (a tombstone on compacted topics)."""
    headers: Headers
    """``(name, value)`` pairs."""


class ProducerRecord(NamedTuple):
    """One message to append; ``partition`` is already chosen by the caller."""

    topic: str
    """Destination topic."""
    partition: int
    """Destination partition."""
    key: bytes | None
    """Encoded key, or ``None``."""
    value: bytes | None
    """Encoded value, or ``None``."""
    timestamp: float
    """Event time in epoch seconds."""
    headers: Headers = ()
    """``(name, value)`` pairs."""


class TopicSpec(NamedTuple):
    """What a topic should look like when streamnb creates it."""

    name: str
    """Topic name."""
    partitions: int
    """Number of partitions."""
    compacted: bool = False
    """Keep only the newest value per key (``cleanup.policy=compact``)."""
    retention: float | None = None
    """Delete messages older than this many seconds (by their timestamp); ``math.inf`` keeps them
    forever; ``None``: the broker's default (Kafka's ``log.retention.*``; memory and local keep them)."""


OnPartitions = Callable[[set[TP]], Awaitable[None]]
TransactionalId = Callable[[TP], str]
"""Names the Kafka transaction of one input partition (see :func:`streamnb.naming.transactional_id`)."""


class LocalState(Protocol):
    """What a group member says about the table state it keeps, and hears back (Kafka's standby replicas).

    A Kafka member sends :meth:`offsets` to its group when it joins; the
    group's leader gives each partition to a member that already keeps its
    state where it can (:mod:`streamnb.transport.kafka.assignor`) and
    names :attr:`replicas` other members per partition that follow its
    changelogs as standbys; :meth:`standbys` hears which. The embedded
    brokers (one process) do not use it.
    """

    worker: str
    """Names the process (the same for all its consumers), so every group orders the workers alike."""
    replicas: int
    """Standby replicas wanted per partition (``table_standby_replicas``)."""

    def offsets(self) -> Mapping[int, int]:
        """``{partition number: how far its local state read its changelogs}`` (a sum of offsets)."""
        ...

    def standbys(self, partitions: set[int]) -> None:
        """The group's leader named the partitions this member keeps standby replicas of."""
        ...


class RebalanceListener(NamedTuple):
    """Callbacks a consumer awaits when its assignment changes.

    ``on_assigned`` is awaited before any message of the new partitions is
    returned by ``getmany`` (tables recover there); ``on_revoked`` is awaited
    before the partitions go away (pending work is committed there).
    """

    on_assigned: OnPartitions
    """Awaited with the newly assigned partitions."""
    on_revoked: OnPartitions
    """Awaited with the partitions about to be taken away."""
    local_state: LocalState | None = None
    """Kafka: the member's table state, for an assignment that prefers where it is (and standby replicas)."""


_key_of = operator.itemgetter(4)
_value_of = operator.itemgetter(5)
_headers_of = operator.itemgetter(6)


def message_size(msg: Message) -> int:
    """Bytes of a message's key, value and headers (what ``max_bytes`` bounds).

    >>> message_size(Message("t", 0, 0, 0.0, b"key", b"value", (("h", b"1"),)))
    10
    """
    key, value, headers = msg[4], msg[5], msg[6]
    size = (len(key) if key else 0) + (len(value) if value else 0)
    if headers:
        size += sum(len(name) + len(data) for name, data in headers)
    return size


def within_bytes(messages: list[Message], max_bytes: int | None) -> list[Message]:
    """The longest head of ``messages`` taking at most ``max_bytes`` (at least one message).

    >>> msgs = [Message("t", 0, i, 0.0, None, b"x" * 10, ()) for i in range(5)]
    >>> len(within_bytes(msgs, 25)), len(within_bytes(msgs, 5)), len(within_bytes(msgs, None))
    (2, 1, 5)
    """
    if max_bytes is None or not messages:
        return messages
    return head_within(messages, max_bytes)[0]


def head_within(messages: list[Message], max_bytes: int) -> tuple[list[Message], int]:
    """:func:`within_bytes` and the bytes the head takes.

    >>> head_within([Message("t", 0, 0, 0.0, b"k", b"v" * 10, ())], 4)[1]
    11
    """
    # One pass in C for the usual case (no headers, everything fits).
    if any(map(_headers_of, messages)):
        total = sum(map(message_size, messages))
    else:
        total = sum(map(len, filter(None, map(_value_of, messages))))
        total += sum(map(len, filter(None, map(_key_of, messages))))
    if total <= max_bytes:
        return messages, total
    total = 0
    for i, msg in enumerate(messages):
        size = message_size(msg)
        if total + size > max_bytes:
            return (messages[:i], total) if i else (messages[:1], size)
        total += size
    return messages, total


class Consumer(abc.ABC):
    """Reads a set of topics as one member of a consumer group.

    The consumer starts each assigned partition at the group's committed
    offset, or at the start of the log when nothing was committed.
    """

    group: str
    transactional: bool = False
    """True when :meth:`commit` writes one transaction per input partition (Kafka
    exactly-once): the caller then passes the records grouped by the input
    partition whose events caused them, as ``per_partition``."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Join the group, receive an assignment and await ``on_assigned``."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Leave the group. Does not commit: call :meth:`commit` first."""

    @abc.abstractmethod
    def assignment(self) -> set[TP]:
        """Partitions currently assigned to this member."""

    @abc.abstractmethod
    async def getmany(self, timeout: float, max_records: int, max_bytes: int | None = None) -> list[Message]:
        """Return up to ``max_records`` messages, waiting at most ``timeout`` s.

        Messages of one partition come in offset order. With ``max_bytes``,
        their keys, values and headers take at most that many bytes
        (:func:`message_size`), except that one larger message comes alone.
        """

    @abc.abstractmethod
    def seek(self, tp: TP, offset: int) -> None:
        """Make the next ``getmany`` read ``tp`` from ``offset``."""

    @abc.abstractmethod
    async def commit(
        self,
        offsets: Mapping[TP, int],
        records: Sequence[ProducerRecord] = (),
        *,
        per_partition: Mapping[TP, Sequence[ProducerRecord]] | None = None,
        stored: Callable[[], None] | None = None,
    ) -> None:
        """Append ``records`` and commit ``offsets`` (next offset to read) together.

        ``per_partition`` holds further records by the input partition whose
        events caused them: a :attr:`transactional` consumer writes each input
        partition's records and offset in that partition's transaction (and
        ``records``, caused by no event, with any of them); the others append
        them with ``records``. Raises :class:`~streamnb.errors.BrokerError`
        when the broker did not store the commit (a transactional consumer:
        when any partition's transaction failed).

        ``stored`` is called once the records are stored and readable
        (``read_committed``), before the call returns: on an at-least-once
        Kafka consumer before the offsets are committed, else once the whole
        commit landed; never when it failed. Agent RPC hands a reply to an
        asker in this process then (:mod:`streamnb.processing.handover`).
        """

    def transaction_outcomes(self) -> dict[str, int] | None:
        """Transactions this member ended so far, by outcome (``committed``, ``aborted``, ``fenced``).

        ``None`` when each :meth:`commit` is one transaction that either
        lands or raises (the embedded brokers), so the caller counts them.
        """
        return None

    @staticmethod
    def flatten(
        records: Sequence[ProducerRecord], per_partition: Mapping[TP, Sequence[ProducerRecord]] | None
    ) -> Sequence[ProducerRecord]:
        """``records`` followed by every record of ``per_partition`` (for backends that commit atomically).

        >>> rec = ProducerRecord("out", 0, None, b"v", 0.0)
        >>> Consumer.flatten([rec], {TP("in", 1): [rec]}) == [rec, rec]
        True
        """
        if not per_partition:
            return records
        out = list(records)
        for group in per_partition.values():
            out.extend(group)
        return out


class Transport(abc.ABC):
    """A broker connection. One per App; opened by ``start``, closed by ``stop``.

    A backend declares, as class variables, what :func:`~streamnb.transport.schemes.check_broker`
    checks before anything connects: the keyword ``options`` its constructor
    takes and the processing ``guarantees`` it can give.

    Example::

        >>> from streamnb.transport.memory import MemoryTransport
        >>> sorted(MemoryTransport.guarantees), sorted(MemoryTransport.options)
        (['at_least_once', 'exactly_once'], ['client_id'])
        >>> MemoryTransport.check_options({"client_id": "orders"})
    """

    scheme: ClassVar[str]
    guarantees: ClassVar[frozenset[str]] = frozenset({AT_LEAST_ONCE})
    """Processing guarantees this backend gives (:data:`AT_LEAST_ONCE`, :data:`EXACTLY_ONCE`)."""
    exactly_once: ClassVar[bool] = False
    """True when the backend can process exactly once (its commits are atomic, or,
    on Kafka, transactional); derived from :attr:`guarantees`, never set by hand."""
    options: ClassVar[frozenset[str]] = frozenset({"client_id"})
    """Keyword arguments the constructor takes besides the URL (every backend takes ``client_id``)."""
    options_help: ClassVar[str] = ""
    """How error messages describe :attr:`options` (when listing them all would be too long)."""
    distributed: ClassVar[bool] = False
    """True when other processes may own some partitions (Kafka): tables then
    recover partitions as they are assigned instead of all at start."""

    url: str

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.exactly_once = EXACTLY_ONCE in cls.guarantees

    @classmethod
    def check_url(cls, url: str) -> None:
        """Raise :class:`~streamnb.errors.ConfigurationError` when ``url`` is malformed (never connects).

        This checks the scheme; backends whose URLs carry more (a path, hosts) extend it.
        """
        if url.partition("://")[0] != cls.scheme or "://" not in url:
            raise ConfigurationError(f"{url!r} is not a {cls.scheme}:// URL")

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        """Raise :class:`~streamnb.errors.ConfigurationError` for an option this backend does not take.

        The message names the closest option it does take. Backends with
        options whose values can be checked without connecting extend this.
        """
        for name in options:
            if name not in cls.options:
                close = difflib.get_close_matches(name, sorted(cls.options), n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise ConfigurationError(
                    f"unknown option {name!r} for {cls.scheme}:// brokers; {hint}"
                    f"{cls.scheme}:// takes {cls.options_help or ', '.join(sorted(cls.options))}"
                )

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect (or open the store). Raises :class:`BrokerError` subclasses."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Flush and close."""

    @abc.abstractmethod
    async def create_topic(self, spec: TopicSpec) -> int:
        """Create the topic if missing; return its actual partition count."""

    @abc.abstractmethod
    async def partition_count(self, topic: str) -> int | None:
        """Partition count of an existing topic, or ``None`` when it does not exist."""

    @abc.abstractmethod
    async def send(self, records: Sequence[ProducerRecord]) -> None:
        """Append records now (outside any processing commit)."""

    @abc.abstractmethod
    async def committed(self, group: str, tps: Iterable[TP]) -> dict[TP, int]:
        """The group's committed offsets; partitions with none are left out."""

    @abc.abstractmethod
    async def end_offsets(self, tps: Iterable[TP]) -> dict[TP, int]:
        """Offset the next appended message of each partition will get."""

    @abc.abstractmethod
    async def beginning_offsets(self, tps: Iterable[TP]) -> dict[TP, int]:
        """Oldest offset still stored in each partition."""

    @abc.abstractmethod
    async def read(
        self, tp: TP, start: int, stop: int, max_records: int = 10_000, max_bytes: int | None = None
    ) -> list[Message]:
        """Messages of ``tp`` with ``start <= offset < stop`` (at most ``max_records``).

        With ``max_bytes``, at most that many bytes of them (one larger
        message comes alone), as :meth:`Consumer.getmany`. Used to recover
        tables from changelogs and by ``%peek``; does not belong to any
        consumer group.
        """

    async def list_topics(self) -> list[str]:
        """Names of every topic on the broker, sorted.

        Implemented by the embedded brokers (replays use it); other backends
        raise :class:`~streamnb.errors.ConfigurationError`.
        """
        raise ConfigurationError(f"{self.scheme}:// brokers cannot list topics from streamnb")

    async def delete_topics(self, names: Iterable[str]) -> None:
        """Delete these topics, their messages and every group's offsets in them (missing ones are skipped).

        What a replay does to start from scratch (:mod:`streamnb.playback.replay`);
        the embedded brokers implement it, other backends raise
        :class:`~streamnb.errors.ConfigurationError`.
        """
        raise ConfigurationError(
            f"{self.scheme}:// brokers cannot delete topics from streamnb; replays run on memory:// or local://"
        )

    async def purge(self, offsets: Mapping[TP, int]) -> None:
        """Delete the records before ``offsets`` (what every reader of a repartition topic consumed).

        Kafka deletes them (``DeleteRecords``, as Kafka Streams purges its
        repartition topics, which it keeps whatever their timestamps); the
        embedded brokers keep them (this default does nothing).
        """
        return None

    async def delete_groups(self, groups: Iterable[str]) -> None:
        """Forget the committed offsets of these consumer groups (their next member starts at the log start).

        Implemented by the embedded brokers; other backends raise
        :class:`~streamnb.errors.ConfigurationError`.
        """
        raise ConfigurationError(
            f"{self.scheme}:// brokers cannot delete consumer groups from streamnb; "
            "replays run on memory:// or local://"
        )

    @abc.abstractmethod
    def consumer(
        self,
        group: str,
        topics: Sequence[str],
        listener: RebalanceListener,
        *,
        member: int = 0,
        members: int = 1,
        transactional_id: TransactionalId | None = None,
    ) -> Consumer:
        """A group member reading ``topics``.

        ``member``/``members`` let one process run several members of a group
        (agent ``concurrency``); the embedded brokers split partitions among
        them statically, Kafka through its group protocol.
        ``transactional_id`` asks for exactly-once commits on a backend whose
        commits are not atomic by themselves (Kafka: one transaction per input
        partition, named by it); backends that always commit atomically
        (:attr:`exactly_once` without it) ignore it.
        """
