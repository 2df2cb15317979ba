"""Errors raised by streamnb.

Every error derives from one root, so ``except streamnb.StreamnbError``
catches them all, and every message says what to do next::

    StreamnbError
     ├── ConfigurationError        bad App/topic/table arguments (unknown broker scheme, ...)
     │    ├── WindowError          a window that cannot exist (step > size), a WindowSet used as a number
     │    └── SchemaRegistryError  the schema registry refused a request (an incompatible schema, bad credentials)
     ├── BrokerError               the broker cannot be reached or used
     │    ├── BrokerUnavailableError   nothing answers at the address (bounded wait)
     │    ├── BrokerLockedError        another process owns a local:// folder
     │    └── CorruptStoreError        a local:// folder's bytes changed on disk (checksum, sqlite, lost WAL)
     ├── PartitionMismatchError    a table is not co-partitioned with its source
     ├── StoreLockedError          another process holds a table's store (store="rocksdb://")
     ├── StoreWriteError           a table's store cannot be written (a full disk): logged, written at the next commit
     ├── SchemaRegistryUnavailableError  nothing answers at the schema registry's address
     ├── SerializationError        bytes that cannot be decoded/encoded
     │    └── ValidationError      a Record field is missing or has the wrong type
     │         └── EventTimeError  a timestamp that is no time (nan, inf, negative, text) or too far ahead
     ├── TableWriteError           a table written outside an agent
     ├── HistoryUnavailableError   a table's past that its changelog no longer (or never) held
     ├── AppNotRunningError        an operation that needs ``await app.start()`` first
     └── AgentError                an agent crashed (raised by ``agent.raise_if_crashed()``)
          └── RemoteAgentError     an agent asked with ``agent.ask()`` raised on the request (its type and message)

Example::

    >>> import streamnb
    >>> try:
    ...     streamnb.App("demo", broker="ftp://nowhere")
    ... except streamnb.StreamnbError as exc:
    ...     print(type(exc).__name__)
    ConfigurationError
"""

from __future__ import annotations

__all__ = [
    "AgentError",
    "AppNotRunningError",
    "BrokerError",
    "BrokerLockedError",
    "BrokerUnavailableError",
    "ConfigurationError",
    "CorruptStoreError",
    "EventTimeError",
    "HistoryUnavailableError",
    "PartitionMismatchError",
    "RemoteAgentError",
    "SchemaRegistryError",
    "SchemaRegistryUnavailableError",
    "SerializationError",
    "StoreLockedError",
    "StoreWriteError",
    "StreamnbError",
    "TableWriteError",
    "ValidationError",
    "WindowError",
]


class StreamnbError(Exception):
    """Root of every error streamnb raises."""


class ConfigurationError(StreamnbError, ValueError):
    """An App, topic, agent or table was given arguments that cannot work."""


class WindowError(ConfigurationError):
    """A window definition that cannot exist (for example ``step > size``), or a windowed value used as a number."""


class BrokerError(StreamnbError):
    """The broker cannot be reached or used."""


class BrokerUnavailableError(BrokerError, ConnectionError):
    """Nothing answered at the broker address within the allowed time."""


class BrokerLockedError(BrokerError):
    """Another process already owns this ``local://`` folder."""


class CorruptStoreError(BrokerError):
    """What a ``local://`` folder holds is damaged: its bytes changed on disk, or committed data is missing.

    Raised when a stored batch's checksum does not match its bytes, when a
    partition's batches leave a gap, when sqlite reports the database
    malformed, or when messages acknowledged before a ``kill -9`` are gone
    (the ``-wal`` file was deleted). Damaged data is never decoded: nothing of
    it is dead-lettered as bad input or counted in a table, and an agent that
    reads it stops. The message names the folder and, when known, the topic,
    partition and offsets, and says what to do: ``streamnb check
    local://PATH`` lists every damaged part, ``streamnb salvage local://PATH
    --to local://NEW`` copies the intact ones into a new folder.

    Example::

        >>> error = CorruptStoreError("damaged", folder="/data", topic="clicks", partition=3, offsets=(0, 99))
        >>> error.topic, error.partition, error.offsets
        ('clicks', 3, (0, 99))
    """

    def __init__(
        self,
        message: str,
        *,
        folder: str,
        topic: str | None = None,
        partition: int | None = None,
        offsets: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(message)
        self.folder = folder
        self.topic = topic
        self.partition = partition
        self.offsets = offsets


class StoreLockedError(StreamnbError):
    """Another process holds the RocksDB folder of a table (``store="rocksdb://"``)."""


class StoreWriteError(StreamnbError):
    """A table's RocksDB store could not be written (a full disk).

    The changelog holds the commit: the error is logged, the rows stay in
    memory and the next commit writes them to the store.
    """


class PartitionMismatchError(StreamnbError):
    """A table's changelog and its source topic have different partition counts."""


class SchemaRegistryError(ConfigurationError):
    """The schema registry refused a request: an incompatible schema, bad credentials, an unknown subject.

    ``subject`` names the subject concerned (``None`` when there is none);
    the message carries the registry's own words and what to change.
    """

    def __init__(self, message: str, *, subject: str | None = None) -> None:
        super().__init__(message)
        self.subject = subject


class SchemaRegistryUnavailableError(StreamnbError, ConnectionError):
    """Nothing answers at the schema registry's address, or it answers with a server error.

    Agents wait for it with backoff (their messages are neither dropped nor
    dead-lettered); a call outside an agent raises this at once.
    """


class SerializationError(StreamnbError, ValueError):
    """A key or value could not be encoded or decoded."""


class ValidationError(SerializationError):
    """A Record field is missing or has a value of the wrong type.

    ``field`` names the offending field (``None`` when the whole payload is wrong).
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class EventTimeError(ValidationError):
    """A timestamp (or event-time field) that cannot place an event in time.

    Not a finite number of epoch seconds >= 0 (``nan``, ``inf``, a negative
    number, text), or further ahead of the clock than the app's
    ``max_event_time_skew``. ``send()`` raises it; an agent dead-letters a
    stored event whose time is such, with the reason, and goes on.
    """


class TableWriteError(StreamnbError, RuntimeError):
    """A table was written outside an agent, where no changelog partition is known."""


class HistoryUnavailableError(StreamnbError):
    """``table.at()``/``table.history()`` asked for a past the changelog does not hold.

    Either the table does not keep every change (an app made without
    ``history=True``), or compaction or retention removed part of it.
    """


class AppNotRunningError(StreamnbError, RuntimeError):
    """The operation needs a started app: ``await app.start()`` first."""


class AgentError(StreamnbError, RuntimeError):
    """An agent crashed; ``__cause__`` holds the original exception."""


class RemoteAgentError(AgentError):
    """The agent an ``ask``/``map``/``join`` went to raised on that request, here or on another worker.

    >>> error = RemoteAgentError("double", "ValueError", "odd number")
    >>> error.remote_type, error.remote_message
    ('ValueError', 'odd number')
    >>> str(error)
    "agent 'double' raised ValueError: odd number on this request"
    """

    def __init__(self, agent: str, remote_type: str, remote_message: str) -> None:
        super().__init__(f"agent {agent!r} raised {remote_type}: {remote_message} on this request")
        self.agent = agent
        """The name of the agent that raised."""
        self.remote_type = remote_type
        """The name of the exception's type on the answering side (``ValueError``)."""
        self.remote_message = remote_message
        """``str()`` of the exception on the answering side."""
