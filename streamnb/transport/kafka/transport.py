"""``kafka://HOST:PORT[,HOST:PORT...]`` -- Apache Kafka through aiokafka.

One :class:`KafkaTransport` holds three aiokafka clients, all opened by
``await transport.start()`` on the running loop (never in the constructor):

* an idempotent ``AIOKafkaProducer`` (``acks=all``) for :meth:`~KafkaTransport.send`
  and for the records of an at-least-once :meth:`KafkaConsumer.commit`;
* an ``AIOKafkaAdminClient`` for topics and committed offsets (wrapped in
  :class:`~streamnb.transport.kafka.admin.TopicAdmin`);
* a group-less ``AIOKafkaConsumer`` with manual assignment (wrapped in
  :class:`~streamnb.transport.kafka.reader.PartitionReader`) for
  :meth:`~KafkaTransport.read` (table recovery, ``%peek``) and offsets.

Each :meth:`~KafkaTransport.consumer` is its own ``AIOKafkaConsumer`` in the
group, so Kafka's group protocol spreads the partitions (``member`` and
``members`` are ignored). Partitions are assigned with the *range* strategy,
so members subscribed to co-partitioned topics get the same partition
numbers of each. An at-least-once consumer's commit writes the records
first, then the offsets (a crash between repeats a batch); a consumer made
with a ``transactional_id`` commits exactly once, through one transactional
producer per input partition
(:mod:`~streamnb.transport.kafka.transactions`). Every reader uses
``isolation_level="read_committed"``: aborted transactions are never read.

Example::

    >>> from streamnb.transport.kafka import KafkaTransport
    >>> transport = KafkaTransport("kafka://127.0.0.1:9092", client_id="demo")
    >>> transport.bootstrap_servers
    ['127.0.0.1:9092']

Then, on a running loop: ``await transport.start()``. A broker for trying it
out starts with ``bash scripts/kafka.sh up`` in a streamnb checkout.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.helpers import create_ssl_context

from ...errors import BrokerError, BrokerUnavailableError, ConfigurationError
from ..base import (
    AT_LEAST_ONCE,
    EXACTLY_ONCE,
    TP,
    Message,
    ProducerRecord,
    RebalanceListener,
    TopicSpec,
    TransactionalId,
    Transport,
)
from .admin import TopicAdmin
from .clients import (
    HOW_TO_START,
    RESERVED_CONSUMER_OPTIONS,
    TRANSPORT_OPTIONS,
    any_port_open,
    broker_errors,
    check_security_protocol,
    close_quietly,
    consumer_option_names,
    parse_kafka_url,
    send_batches,
)
from .consumer import KafkaConsumer
from .reader import PartitionReader

__all__ = ["KafkaTransport"]

T = TypeVar("T")


class KafkaTransport(Transport):
    """The ``kafka://`` backend, built on aiokafka.

    Args:
        url: ``kafka://HOST:PORT[,HOST:PORT...]``; the port defaults to 9092.
        client_id: Shown in the broker's logs and metrics (streamnb uses the App id).
        security_protocol: ``PLAINTEXT``, ``SSL``, ``SASL_PLAINTEXT`` or ``SASL_SSL``.
        sasl_mechanism: ``PLAIN``, ``SCRAM-SHA-256``, ``SCRAM-SHA-512``, ... (``PLAIN`` when ``None``).
        sasl_plain_username: SASL user name.
        sasl_plain_password: SASL password.
        ssl_context: TLS settings for ``SSL``/``SASL_SSL``; a default context
            (system CAs, host name checked) is made when ``None``.
        request_timeout: Seconds to wait for a broker answer, and the bound on
            :meth:`start` before :class:`~streamnb.errors.BrokerUnavailableError`.
        **consumer_options: Further ``AIOKafkaConsumer`` arguments for the
            consumer-group members, e.g. ``session_timeout_ms`` and
            ``heartbeat_interval_ms`` (how fast the group notices a dead
            worker; defaults 10000 and 1000) or ``max_poll_records``.

    Example::

        >>> transport = KafkaTransport("kafka://127.0.0.1:9092", client_id="orders")
        >>> transport.scheme, sorted(transport.guarantees)
        ('kafka', ['at_least_once', 'exactly_once'])
    """

    scheme = "kafka"
    # at-least-once: records first, then offsets; exactly-once: a transaction per input partition
    guarantees = frozenset({AT_LEAST_ONCE, EXACTLY_ONCE})
    options = TRANSPORT_OPTIONS | consumer_option_names()
    options_help = (
        "client_id, request_timeout, the security options (security_protocol, sasl_*, ssl_context) and "
        "aiokafka's AIOKafkaConsumer arguments (e.g. session_timeout_ms, heartbeat_interval_ms)"
    )
    distributed = True

    def __init__(
        self,
        url: str,
        *,
        client_id: str,
        security_protocol: str = "PLAINTEXT",
        sasl_mechanism: str | None = None,
        sasl_plain_username: str | None = None,
        sasl_plain_password: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        request_timeout: float = 15.0,
        **consumer_options: Any,
    ) -> None:
        self.url = url
        self.check_options(consumer_options)
        self.consumer_options = dict(consumer_options)
        self.bootstrap_servers = parse_kafka_url(url)
        self.client_id = client_id
        self.request_timeout = request_timeout
        self.security_protocol = check_security_protocol(security_protocol)
        self._ssl_context = ssl_context
        self._sasl = {
            "sasl_mechanism": sasl_mechanism or "PLAIN",
            "sasl_plain_username": sasl_plain_username,
            "sasl_plain_password": sasl_plain_password,
        }
        self._producer: AIOKafkaProducer | None = None
        self._admin: TopicAdmin | None = None  # topics and committed offsets
        self._reader: PartitionReader | None = None  # the group-less consumer behind read()

    def __repr__(self) -> str:
        return f"<KafkaTransport {self.url!r} client_id={self.client_id!r}>"

    @classmethod
    def check_url(cls, url: str) -> None:
        """Raise :class:`~streamnb.errors.ConfigurationError` for a malformed ``kafka://`` URL."""
        parse_kafka_url(url)

    @classmethod
    def check_options(cls, options: Mapping[str, Any]) -> None:
        """Raise :class:`~streamnb.errors.ConfigurationError` for an option streamnb sets, a typo or a bad value.

        Example::

            >>> KafkaTransport.check_options({"session_timeout_ms": 6000, "security_protocol": "SSL"})
            >>> KafkaTransport.check_options({"group_id": "mine"})  # doctest: +ELLIPSIS
            Traceback (most recent call last):
            ...
            streamnb.errors.ConfigurationError: kafka option group_id=... is set by streamnb itself and ...
        """
        for name in options:
            if name in RESERVED_CONSUMER_OPTIONS and name not in TRANSPORT_OPTIONS:
                raise ConfigurationError(f"kafka option {name}=... is set by streamnb itself and cannot be changed")
        super().check_options(options)
        if "security_protocol" in options:
            check_security_protocol(options["security_protocol"])

    # -- connection -------------------------------------------------------

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments shared by every aiokafka client of this transport."""
        context = self._ssl_context
        if context is None and self.security_protocol in ("SSL", "SASL_SSL"):
            context = self._ssl_context = create_ssl_context()
        return {
            "bootstrap_servers": self.bootstrap_servers,
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
            "ssl_context": context,
            **self._sasl,
        }

    async def _unavailable(self, exc: BaseException | None) -> BrokerUnavailableError:
        where = f"Kafka at {','.join(self.bootstrap_servers)} ({self.security_protocol})"
        if exc is None or isinstance(exc, TimeoutError):
            what = f"{where} did not answer within {self.request_timeout:g} s."
        else:
            what = f"{where} could not be reached: {exc}."
        try:
            listening = await asyncio.wait_for(any_port_open(self.bootstrap_servers), 0.5)
        except TimeoutError:
            listening = False
        if listening:
            # Something listens: the TLS handshake, the SASL login or the protocol failed.
            hint = (
                "A server listens there, but the Kafka handshake failed: check that security_protocol, "
                "ssl_context and the SASL mechanism, user and password match that listener "
                "(aiokafka's log names the cause)."
            )
        else:
            hint = HOW_TO_START
        return BrokerUnavailableError(f"{what} {hint}")

    async def bounded(self, what: Awaitable[T]) -> T:
        """Await a connection step within ``request_timeout``, failures as :class:`BrokerUnavailableError`.

        Example (on a running loop)::

            await transport.bounded(aiokafka_client.start())
        """
        try:
            return await asyncio.wait_for(what, self.request_timeout)
        except (TimeoutError, KafkaError, OSError) as exc:
            raise await self._unavailable(exc) from exc

    async def start(self) -> None:
        """Connect the producer, the admin client and the reader.

        Raises :class:`~streamnb.errors.BrokerUnavailableError` within
        ``request_timeout`` seconds when no broker answers.
        """
        if self._producer is not None:
            return
        options = self.client_options()
        timeout_ms = int(self.request_timeout * 1000)
        producer = AIOKafkaProducer(
            **options,
            acks="all",
            enable_idempotence=True,
            linger_ms=2,
            max_batch_size=256 * 1024,
            request_timeout_ms=max(timeout_ms, 30_000),
        )
        admin = AIOKafkaAdminClient(**options, request_timeout_ms=timeout_ms)
        reader = AIOKafkaConsumer(
            **options,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
            # A fetch waiting at the end of the log holds the connection, and a
            # seek or a switch to another partition waits behind it: keep it short.
            fetch_max_wait_ms=20,
            request_timeout_ms=max(timeout_ms, 30_000),
        )

        async def connect() -> dict[str, Any]:
            await producer.start()
            await admin.start()
            await reader.start()
            cluster: dict[str, Any] = await admin.describe_cluster()
            return cluster

        try:
            cluster = await self.bounded(connect())
        except BaseException:
            await close_quietly(producer.stop(), admin.close(), reader.stop())
            raise
        self._producer = producer
        self._admin = TopicAdmin(admin, self.request_timeout, brokers=max(1, len(cluster.get("brokers", ()))))
        self._reader = PartitionReader(reader, self.request_timeout)

    async def stop(self) -> None:
        """Flush pending sends and close every client (idempotent)."""
        producer, admin, reader = self._producer, self._admin, self._reader
        self._producer = self._admin = self._reader = None
        if producer is None:
            return
        try:
            await producer.flush()
        finally:
            await close_quietly(
                producer.stop(), admin.client.close() if admin else None, reader.consumer.stop() if reader else None
            )

    def _clients(self) -> tuple[AIOKafkaProducer, TopicAdmin, PartitionReader]:
        if self._producer is None or self._admin is None or self._reader is None:
            raise BrokerError(f"{self!r} is not connected: `await transport.start()` first.")
        return self._producer, self._admin, self._reader

    def transactional_producer(self, transactional_id: str) -> AIOKafkaProducer:
        """A new (not started) transactional producer for one input partition of an exactly-once consumer.

        Example (on a running loop)::

            producer = transport.transactional_producer("shop-count-orders-3")
            await producer.start()  # fences the previous producer with this id
        """
        timeout_ms = int(self.request_timeout * 1000)
        return AIOKafkaProducer(
            **self.client_options(),
            transactional_id=transactional_id,
            # The broker aborts a transaction left open this long (a worker killed
            # mid-commit whose partitions nobody took over): keep it short.
            transaction_timeout_ms=max(10_000, timeout_ms),
            acks="all",
            linger_ms=2,
            max_batch_size=256 * 1024,
            request_timeout_ms=timeout_ms,
        )

    # -- topics -----------------------------------------------------------

    async def create_topic(self, spec: TopicSpec) -> int:
        """Create the topic unless it exists; return its actual partition count.

        Example (on a running loop)::

            count = await transport.create_topic(TopicSpec("orders", 8))
        """
        _, admin, _ = self._clients()
        return await admin.create_topic(spec)

    async def partition_count(self, topic: str) -> int | None:
        """Partition count of ``topic``, or ``None`` when it does not exist (never creates it)."""
        _, admin, _ = self._clients()
        return await admin.partition_count(topic)

    # -- producing --------------------------------------------------------

    async def send(self, records: Sequence[ProducerRecord]) -> None:
        """Append ``records`` to their partitions and wait until all are stored.

        Example (on a running loop)::

            await transport.send([ProducerRecord("orders", 0, b"k", b"v", time.time())])
        """
        producer, _, _ = self._clients()
        if not records:
            return
        try:
            await send_batches(producer, records)
        except KafkaError as exc:
            raise BrokerError(
                f"Kafka did not store {len(records)} record(s) (first to {records[0].topic!r}): {exc!r}"
            ) from exc

    # -- offsets ----------------------------------------------------------

    async def committed(self, group: str, tps: Iterable[TP]) -> dict[TP, int]:
        """The group's committed offsets; partitions with none are left out."""
        _, admin, _ = self._clients()
        return await admin.committed(group, tps)

    async def purge(self, offsets: Mapping[TP, int]) -> None:
        """Delete the records before ``offsets`` (consumed repartition records): Kafka's ``DeleteRecords``."""
        _, admin, _ = self._clients()
        await admin.delete_records(offsets)

    async def end_offsets(self, tps: Iterable[TP]) -> dict[TP, int]:
        """Offset the next message of each partition gets (0 for missing partitions)."""
        return await self._offsets(tps, end=True)

    async def beginning_offsets(self, tps: Iterable[TP]) -> dict[TP, int]:
        """Oldest offset still stored in each partition (0 for missing partitions)."""
        return await self._offsets(tps, end=False)

    async def _offsets(self, tps: Iterable[TP], *, end: bool) -> dict[TP, int]:
        _, admin, reader = self._clients()
        have, missing = await admin.existing(tps)
        out = {tp: 0 for tp in missing}
        if have:
            ask = [TopicPartition(tp.topic, tp.partition) for tp in have]
            # One request at a time on the reader's consumer (with reads too): aiokafka's offset lookups
            # running side by side (a restore and the metrics sampler) stalled on stale metadata for 30 s.
            async with reader.lock:
                with broker_errors("list offsets"):
                    found = await (reader.consumer.end_offsets(ask) if end else reader.consumer.beginning_offsets(ask))
            out.update({TP(atp.topic, atp.partition): offset for atp, offset in found.items()})
        return out

    # -- reading ----------------------------------------------------------

    async def read(
        self, tp: TP, start: int, stop: int, max_records: int = 10_000, max_bytes: int | None = None
    ) -> list[Message]:
        """Messages of ``tp`` with ``start <= offset < stop`` (at most ``max_records``, and ``max_bytes``).

        Reading on from where the previous call stopped keeps the reader's
        prefetched data, so a loop of ``read(tp, pos, end)`` streams a whole
        changelog partition without re-fetching.

        Example (on a running loop)::

            end = (await transport.end_offsets([tp]))[tp]
            pos, rows = 0, []
            while pos < end:
                batch = await transport.read(tp, pos, end)
                if not batch:
                    break
                rows += batch
                pos = batch[-1].offset + 1
        """
        _, admin, reader = self._clients()
        if start >= stop or max_records <= 0:
            return []
        have, _ = await admin.existing([tp])
        if not have:
            return []
        with broker_errors(f"read {tp.topic}[{tp.partition}] from offset {start}"):
            return await reader.read(TopicPartition(tp.topic, tp.partition), start, stop, max_records, max_bytes)

    # -- consuming --------------------------------------------------------

    def consumer(
        self,
        group: str,
        topics: Sequence[str],
        listener: RebalanceListener,
        *,
        member: int = 0,
        members: int = 1,
        transactional_id: TransactionalId | None = None,
    ) -> KafkaConsumer:
        """A member of consumer group ``group`` reading ``topics``.

        ``member``/``members`` are ignored: Kafka's group protocol spreads the
        partitions among all members, in this process or others. With
        ``transactional_id`` (a function naming an input partition's
        transaction) the member commits exactly once: one Kafka transaction
        per input partition (:class:`KafkaConsumer` explains how).

        Example (on a running loop)::

            consumer = transport.consumer("orders-app", ["orders"], listener)
            await consumer.start()
            batch = await consumer.getmany(timeout=1.0, max_records=1000)
        """
        return KafkaConsumer(self, group, topics, listener, transactional_id=transactional_id)
