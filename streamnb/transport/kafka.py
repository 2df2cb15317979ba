"""``kafka://HOST:PORT[,HOST:PORT...]`` -- Apache Kafka through aiokafka.

One :class:`KafkaTransport` holds three aiokafka clients, all opened by
``await transport.start()`` on the running loop (never in the constructor):

* an idempotent ``AIOKafkaProducer`` (``acks=all``) for :meth:`~KafkaTransport.send`
  and for the records of :meth:`KafkaConsumer.commit`;
* an ``AIOKafkaAdminClient`` for topics and committed offsets;
* a group-less ``AIOKafkaConsumer`` with manual assignment for
  :meth:`~KafkaTransport.read` (table recovery, ``%peek``) and offsets.

Each :meth:`~KafkaTransport.consumer` is its own ``AIOKafkaConsumer`` in the
group, so Kafka's group protocol spreads the partitions (``member`` and
``members`` are ignored). Partitions are assigned with the *range* strategy,
so members subscribed to co-partitioned topics get the same partition
numbers of each. Commits write the records first, then the offsets: Kafka is
at-least-once here (``exactly_once`` is ``False``).

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
import contextlib
import inspect
import logging
import ssl
import time
from collections.abc import Awaitable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import (
    CommitFailedError,
    CoordinatorLoadInProgressError,
    CoordinatorNotAvailableError,
    IllegalStateError,
    KafkaError,
    NotCoordinatorError,
    for_code,
)
from aiokafka.helpers import create_ssl_context
from aiokafka.protocol.metadata import MetadataRequest

from ..errors import BrokerError, BrokerUnavailableError, ConfigurationError
from .base import TP, Consumer, Message, ProducerRecord, RebalanceListener, TopicSpec, Transport

__all__ = ["KafkaConsumer", "KafkaTransport", "parse_kafka_url"]

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_PORT = 9092
_RETRIABLE_COORDINATOR = (CoordinatorLoadInProgressError, CoordinatorNotAvailableError, NotCoordinatorError)
_TOPIC_ALREADY_EXISTS = 36
_UNKNOWN_TOPIC = 3
_LEADER_NOT_AVAILABLE = 5
_NO_HEADERS: list[tuple[str, bytes]] = []  # shared, never mutated
_HOW_TO_START = (
    "Is Kafka running there? In a streamnb checkout start one with `bash scripts/kafka.sh up`; "
    "otherwise check the address, or use broker='local://PATH' to run without Kafka."
)


def parse_kafka_url(url: str) -> list[str]:
    """Bootstrap ``host:port`` strings of a ``kafka://`` URL.

    Example::

        >>> parse_kafka_url("kafka://127.0.0.1:9092,127.0.0.1")
        ['127.0.0.1:9092', '127.0.0.1:9092']
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme != "kafka":
        raise ConfigurationError(f"{url!r} is not a Kafka URL: write kafka://HOST:PORT[,HOST:PORT...]")
    rest = rest.split("/", 1)[0].split("?", 1)[0]
    servers = []
    for part in rest.split(","):
        part = part.strip()
        if not part:
            continue
        host, colon, port = part.rpartition(":")
        if not colon or not port.isdigit() or "]" in port:
            host, port = part, str(DEFAULT_PORT)
        if not host:
            raise ConfigurationError(f"{url!r}: missing host in {part!r}; write kafka://HOST:PORT")
        servers.append(f"{host}:{port}")
    if not servers:
        raise ConfigurationError(f"{url!r} names no broker: write kafka://HOST:PORT[,HOST:PORT...]")
    return servers


@contextlib.contextmanager
def _broker_errors(what: str) -> Iterator[None]:
    """Re-raise aiokafka's errors as :class:`~streamnb.errors.BrokerError` (one error root)."""
    try:
        yield
    except KafkaError as exc:
        raise BrokerError(f"Kafka could not {what}: {exc!r}. Check the broker's log; retrying may help.") from exc


async def _any_port_open(servers: Sequence[str], timeout: float = 0.5) -> bool:
    """Whether a TCP connection to any ``host:port`` succeeds (for error messages)."""
    for server in servers:
        host, _, port = server.rpartition(":")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host.strip("[]"), int(port)), timeout)
        except (OSError, TimeoutError, ValueError):
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    return False


# Consumer arguments the transport sets itself (group membership, commits,
# co-partitioned assignment, connection and security).
_RESERVED_CONSUMER_OPTIONS = frozenset({
    "bootstrap_servers", "client_id", "group_id", "enable_auto_commit", "auto_commit_interval_ms",
    "partition_assignment_strategy", "key_deserializer", "value_deserializer", "isolation_level",
    "security_protocol", "ssl_context", "sasl_mechanism", "sasl_plain_username", "sasl_plain_password",
    "loop", "api_version",
})


def _check_consumer_options(options: dict[str, Any]) -> dict[str, Any]:
    """Validate extra ``AIOKafkaConsumer`` arguments (raise on unknown or reserved names)."""
    known = set(inspect.signature(AIOKafkaConsumer.__init__).parameters) - {"self", "topics"}
    for name in options:
        if name in _RESERVED_CONSUMER_OPTIONS:
            raise ConfigurationError(f"kafka option {name}=... is set by streamnb itself and cannot be changed")
        if name not in known:
            raise ConfigurationError(
                f"unknown kafka option {name!r}: extra App/KafkaTransport keyword arguments go to "
                "aiokafka's AIOKafkaConsumer (e.g. session_timeout_ms, heartbeat_interval_ms)"
            )
    return dict(options)


def _log_end(reader: AIOKafkaConsumer, tp: TopicPartition) -> int | None:
    """End of ``tp``'s readable log as of the reader's latest fetch, when known."""
    last = reader.last_stable_offset(tp)
    return reader.highwater(tp) if last is None else last


def _message(record: Any) -> Message:
    """An aiokafka ``ConsumerRecord`` as a streamnb :class:`Message`."""
    headers = record.headers
    return Message(
        record.topic,
        record.partition,
        record.offset,
        record.timestamp / 1000.0,
        record.key,
        record.value,
        headers if type(headers) is tuple else tuple(headers or ()),
    )


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
        >>> transport.scheme, transport.exactly_once
        ('kafka', False)
    """

    scheme = "kafka"
    exactly_once = False
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
        self.consumer_options = _check_consumer_options(consumer_options)
        self.bootstrap_servers = parse_kafka_url(url)
        self.client_id = client_id
        self.request_timeout = request_timeout
        protocol = security_protocol.upper()
        if protocol not in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"):
            raise ConfigurationError(
                f"security_protocol={security_protocol!r}: use PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
            )
        self.security_protocol = protocol
        self._ssl_context = ssl_context
        self._sasl = {
            "sasl_mechanism": sasl_mechanism or "PLAIN",
            "sasl_plain_username": sasl_plain_username,
            "sasl_plain_password": sasl_plain_password,
        }
        self._producer: AIOKafkaProducer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._reader: AIOKafkaConsumer | None = None
        self._read_lock: asyncio.Lock | None = None
        self._reader_tp: TopicPartition | None = None
        self._reader_next: int | None = None  # the reader's position when known
        self._partitions: dict[str, int] = {}  # topics known to exist
        self._brokers = 1

    def __repr__(self) -> str:
        return f"<KafkaTransport {self.url!r} client_id={self.client_id!r}>"

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
            listening = await asyncio.wait_for(_any_port_open(self.bootstrap_servers), 0.5)
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
            hint = _HOW_TO_START
        return BrokerUnavailableError(f"{what} {hint}")

    async def _bounded(self, what: Awaitable[T]) -> T:
        """Await a connection step, turning failures into :class:`BrokerUnavailableError`."""
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
            cluster = await self._bounded(connect())
        except BaseException:
            await _close_quietly(producer.stop(), admin.close(), reader.stop())
            raise
        self._brokers = max(1, len(cluster.get("brokers", ())))
        self._producer, self._admin, self._reader = producer, admin, reader
        self._read_lock = asyncio.Lock()
        self._reader_tp = self._reader_next = None

    async def stop(self) -> None:
        """Flush pending sends and close every client (idempotent)."""
        producer, admin, reader = self._producer, self._admin, self._reader
        self._producer = self._admin = self._reader = None
        if producer is None:
            return
        try:
            await producer.flush()
        finally:
            await _close_quietly(producer.stop(), admin.close() if admin else None, reader.stop() if reader else None)

    def _clients(self) -> tuple[AIOKafkaProducer, AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._producer is None or self._admin is None or self._reader is None:
            raise BrokerError(f"{self!r} is not connected: `await transport.start()` first.")
        return self._producer, self._admin, self._reader

    # -- topics -----------------------------------------------------------

    async def _metadata(self, topics: list[str]) -> dict[str, int | None]:
        """Partition counts of ``topics`` (``None`` when missing), never creating one."""
        return {name: count for name, (count, _ready) in (await self._describe(topics)).items()}

    async def _describe(self, topics: list[str]) -> dict[str, tuple[int | None, bool]]:
        """``(partition count or None, every partition has a leader)`` per topic.

        aiokafka's own metadata calls let the broker auto-create topics; this
        request asks it not to.
        """
        _, admin, _ = self._clients()
        client = admin._client  # the admin's AIOKafkaClient: no public metadata call without auto-create
        request = MetadataRequest(topics, allow_auto_topic_creation=False)
        with _broker_errors(f"describe topics {topics}"):
            response = await client.send(client.get_random_node(), request)
        found: dict[str, tuple[int | None, bool]] = {}
        for topic in response.to_object()["topics"]:
            name, code, partitions = topic["topic"], topic["error_code"], topic["partitions"]
            if code == _UNKNOWN_TOPIC or (code == _LEADER_NOT_AVAILABLE and not partitions):
                found[name] = (None, False)
            elif code and code != _LEADER_NOT_AVAILABLE:  # that one: just created, no leader yet
                raise BrokerError(f"Kafka could not describe topic {name!r}: {for_code(code).__name__}")
            else:
                self._partitions[name] = len(partitions)
                ready = code == 0 and all(p["error_code"] == 0 and p["leader"] >= 0 for p in partitions)
                found[name] = (len(partitions), ready)
        return found

    async def create_topic(self, spec: TopicSpec) -> int:
        """Create the topic unless it exists; return its actual partition count.

        Example (on a running loop)::

            count = await transport.create_topic(TopicSpec("orders", 8))
        """
        _, admin, _ = self._clients()
        configs: dict[str, str] = {}
        if spec.compacted:
            configs["cleanup.policy"] = "compact"
        if spec.retention is not None:
            configs["retention.ms"] = str(int(spec.retention * 1000))
        new = NewTopic(spec.name, spec.partitions, min(3, self._brokers), topic_configs=configs)
        with _broker_errors(f"create topic {spec.name!r}"):
            response = await admin.create_topics([new])
        for entry in response.topic_errors:
            name, code = entry[0], entry[1]
            message = entry[2] if len(entry) > 2 else None
            if code == 0:
                self._partitions[name] = spec.partitions
                await self._wait_visible(spec)
                return spec.partitions
            if code != _TOPIC_ALREADY_EXISTS:
                raise BrokerError(
                    f"Kafka refused to create topic {name!r} ({spec.partitions} partitions): "
                    f"{for_code(code).__name__}: {message or 'no details'}"
                )
        # It existed already (maybe being created right now): ask for its size.
        deadline = time.monotonic() + self.request_timeout
        while True:
            count = (await self._metadata([spec.name])).get(spec.name)
            if count is not None:
                return count
            if time.monotonic() > deadline:
                raise BrokerError(f"Kafka says topic {spec.name!r} exists but does not describe it; try again.")
            await asyncio.sleep(0.1)

    async def _wait_visible(self, spec: TopicSpec) -> None:
        """Wait (bounded) until the new topic's partitions have leaders.

        The controller answers before the brokers' metadata shows the topic;
        a consumer subscribing in between would get no partitions.
        """
        deadline = time.monotonic() + self.request_timeout
        while time.monotonic() < deadline:
            count, ready = (await self._describe([spec.name])).get(spec.name, (None, False))
            if ready and count == spec.partitions:
                return
            await asyncio.sleep(0.02)
        log.warning("topic %r was created but its partitions have no leader yet", spec.name)

    async def partition_count(self, topic: str) -> int | None:
        """Partition count of ``topic``, or ``None`` when it does not exist (never creates it)."""
        return (await self._metadata([topic])).get(topic)

    async def _existing(self, tps: Iterable[TP]) -> tuple[list[TP], list[TP]]:
        """Split ``tps`` into (partitions that exist, partitions that do not)."""
        tps = list(tps)
        known = self._partitions
        unknown = sorted({tp.topic for tp in tps if tp.partition >= known.get(tp.topic, 0)})
        if unknown:
            await self._metadata(unknown)
        have: list[TP] = []
        missing: list[TP] = []
        for tp in tps:
            (have if tp.partition < self._partitions.get(tp.topic, 0) else missing).append(tp)
        return have, missing

    # -- producing --------------------------------------------------------

    async def send(self, records: Sequence[ProducerRecord]) -> None:
        """Append ``records`` to their partitions and wait until all are stored.

        Example (on a running loop)::

            await transport.send([ProducerRecord("orders", 0, b"k", b"v", time.time())])
        """
        producer, _, _ = self._clients()
        if not records:
            return
        # One batch per partition (in order) instead of one send() per record:
        # several times faster, and the order within a partition is kept.
        by_partition: dict[tuple[str, int], list[ProducerRecord]] = {}
        for rec in records:
            by_partition.setdefault((rec.topic, rec.partition), []).append(rec)
        deliveries = []
        try:
            for (topic, partition), group in by_partition.items():
                batch = producer.create_batch()
                for rec in group:
                    timestamp = int(rec.timestamp * 1000)
                    headers = list(rec.headers) if rec.headers else _NO_HEADERS  # aiokafka wants a list
                    if batch.append(key=rec.key, value=rec.value, timestamp=timestamp, headers=headers) is None:
                        deliveries.append(await producer.send_batch(batch, topic, partition=partition))
                        batch = producer.create_batch()  # the first record always fits
                        batch.append(key=rec.key, value=rec.value, timestamp=timestamp, headers=headers)
                batch.close()
                deliveries.append(await producer.send_batch(batch, topic, partition=partition))
            await asyncio.gather(*deliveries)
        except KafkaError as exc:
            raise BrokerError(
                f"Kafka did not store {len(records)} record(s) (first to {records[0].topic!r}): {exc!r}"
            ) from exc

    # -- offsets ----------------------------------------------------------

    async def committed(self, group: str, tps: Iterable[TP]) -> dict[TP, int]:
        """The group's committed offsets; partitions with none are left out."""
        _, admin, _ = self._clients()
        tps = list(tps)
        if not tps:
            return {}
        deadline = time.monotonic() + self.request_timeout
        while True:
            try:
                with _broker_errors(f"read the offsets of group {group!r}"):
                    found = await admin.list_consumer_group_offsets(
                        group, partitions=[TopicPartition(tp.topic, tp.partition) for tp in tps]
                    )
                break
            except BrokerError as exc:
                # The group coordinator may still be loading (just after the broker started).
                if not isinstance(exc.__cause__, _RETRIABLE_COORDINATOR) or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        wanted = set(tps)
        out: dict[TP, int] = {}
        for atp, meta in found.items():
            tp = TP(atp.topic, atp.partition)
            if tp in wanted and meta.offset >= 0:
                out[tp] = meta.offset
        return out

    async def end_offsets(self, tps: Iterable[TP]) -> dict[TP, int]:
        """Offset the next message of each partition gets (0 for missing partitions)."""
        return await self._offsets(tps, end=True)

    async def beginning_offsets(self, tps: Iterable[TP]) -> dict[TP, int]:
        """Oldest offset still stored in each partition (0 for missing partitions)."""
        return await self._offsets(tps, end=False)

    async def _offsets(self, tps: Iterable[TP], *, end: bool) -> dict[TP, int]:
        _, _, reader = self._clients()
        have, missing = await self._existing(tps)
        out = {tp: 0 for tp in missing}
        if have:
            ask = [TopicPartition(tp.topic, tp.partition) for tp in have]
            with _broker_errors("list offsets"):
                found = await (reader.end_offsets(ask) if end else reader.beginning_offsets(ask))
            out.update({TP(atp.topic, atp.partition): offset for atp, offset in found.items()})
        return out

    # -- reading ----------------------------------------------------------

    async def read(self, tp: TP, start: int, stop: int, max_records: int = 10_000) -> list[Message]:
        """Messages of ``tp`` with ``start <= offset < stop`` (at most ``max_records``).

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
        _, _, reader = self._clients()
        if start >= stop or max_records <= 0:
            return []
        have, _ = await self._existing([tp])
        if not have:
            return []
        assert self._read_lock is not None
        async with self._read_lock:
            with _broker_errors(f"read {tp.topic}[{tp.partition}] from offset {start}"):
                return await self._read_locked(reader, TopicPartition(tp.topic, tp.partition), start, stop, max_records)

    async def _read_locked(
        self, reader: AIOKafkaConsumer, atp: TopicPartition, start: int, stop: int, max_records: int
    ) -> list[Message]:
        """The body of :meth:`read`, holding the reader lock."""
        if self._reader_tp != atp:
            reader.assign([atp])
            self._reader_tp, self._reader_next = atp, None
        if self._reader_next != start:
            reader.seek(atp, start)
        reader.resume(atp)
        self._reader_next = None
        out: list[Message] = []
        overshoot = False
        deadline = time.monotonic() + self.request_timeout
        while len(out) < max_records:
            position = await reader.position(atp)
            if position >= stop:
                break
            batch = (await reader.getmany(atp, timeout_ms=100, max_records=max_records - len(out))).get(atp)
            if batch:
                for record in batch:
                    if record.offset >= stop:
                        overshoot = True
                        break
                    if record.offset >= start:
                        out.append(_message(record))
                if overshoot:
                    break
                last = _log_end(reader, atp)  # as of the latest fetch: may be stale, so
                if out and last is not None and await reader.position(atp) >= last:
                    break  # only trusted when returning something (the caller asks again)
                deadline = time.monotonic() + self.request_timeout
                continue
            # Nothing fetched: ask where the log ends now (gaps, aborted
            # transactions and markers hold offsets but no records).
            if await reader.position(atp) >= (await reader.end_offsets([atp]))[atp]:
                break
            if time.monotonic() > deadline:
                break
        if overshoot:
            return out
        self._reader_next = await reader.position(atp)
        last = _log_end(reader, atp)
        if last is not None and self._reader_next >= last:
            reader.pause(atp)  # at the end of the log: no idle fetching until the next read
        return out

    # -- consuming --------------------------------------------------------

    def consumer(
        self,
        group: str,
        topics: Sequence[str],
        listener: RebalanceListener,
        *,
        member: int = 0,
        members: int = 1,
    ) -> KafkaConsumer:
        """A member of consumer group ``group`` reading ``topics``.

        ``member``/``members`` are ignored: Kafka's group protocol spreads the
        partitions among all members, in this process or others.

        Example (on a running loop)::

            consumer = transport.consumer("orders-app", ["orders"], listener)
            await consumer.start()
            batch = await consumer.getmany(timeout=1.0, max_records=1000)
        """
        return KafkaConsumer(self, group, topics, listener)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Forwards aiokafka's rebalance callbacks to a :class:`KafkaConsumer`."""

    def __init__(self, owner: KafkaConsumer) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.owner._revoked({TP(tp.topic, tp.partition) for tp in revoked})

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self.owner._assigned_now({TP(tp.topic, tp.partition) for tp in assigned})


class KafkaConsumer(Consumer):
    """One member of a Kafka consumer group (made by :meth:`KafkaTransport.consumer`).

    Kafka's rebalances are *eager*: every rebalance first revokes all
    partitions of the member (``on_revoked``), then assigns the new set
    (``on_assigned``), and the consumer restarts each assigned partition at
    the group's committed offset (or where ``on_assigned`` seeks it).
    ``getmany`` returns nothing while a rebalance is in progress, and new
    partitions stay paused until their ``on_assigned`` finished. An exception
    raised by a listener is re-raised by the next ``getmany``.
    """

    join_timeout: float = 60.0
    """Seconds :meth:`start` waits for the first assignment."""

    def __init__(
        self, transport: KafkaTransport, group: str, topics: Sequence[str], listener: RebalanceListener
    ) -> None:
        self.transport = transport
        self.group = group
        self.topics = list(topics)
        self.listener = listener
        self._consumer: AIOKafkaConsumer | None = None
        self._assigned: set[TP] = set()
        self._settled = asyncio.Event()
        self._joined = asyncio.Event()
        self._error: BaseException | None = None
        self._stopping = False

    def __repr__(self) -> str:
        return f"<KafkaConsumer group={self.group!r} topics={self.topics!r}>"

    async def _revoked(self, tps: set[TP]) -> None:
        log.debug("%r: partitions revoked: %s", self, sorted(tps))
        self._settled.clear()
        if self._stopping or not tps:
            return
        try:
            await self.listener.on_revoked(tps)
        except Exception as exc:  # re-raised by the next getmany, not logged by aiokafka
            self._error = self._error or exc
        finally:
            self._assigned -= tps

    async def _assigned_now(self, tps: set[TP]) -> None:
        log.debug("%r: partitions assigned: %s", self, sorted(tps))
        if self._stopping:
            return
        self._assigned = set(tps)
        consumer = self._consumer
        # Paused partitions return nothing, not even records fetched already,
        # so no message of a new partition passes before on_assigned is done.
        paused = [TopicPartition(tp.topic, tp.partition) for tp in tps]
        if consumer is not None and paused:
            consumer.pause(*paused)
        try:
            await self.listener.on_assigned(set(tps))
        except Exception as exc:  # re-raised by the next getmany (or start)
            self._error = self._error or exc
        finally:
            if consumer is not None and paused and not self._stopping:
                consumer.resume(*paused)
            self._settled.set()
            self._joined.set()

    async def start(self) -> None:
        """Join the group and wait for the first assignment (``on_assigned`` awaited)."""
        if self._consumer is not None:
            return
        transport = self.transport
        consumer = AIOKafkaConsumer(
            **transport.client_options(),
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            partition_assignment_strategy=(RangePartitionAssignor,),
            # getmany drains one partition's fetched chunk before the next: 1 MB
            # chunks (about 10k small events) keep partitions interleaved, so the
            # event time of windowed tables does not leap ahead of other partitions
            # (4 MB chunks of a 1M-event backlog made events "late"), at the same rate.
            max_partition_fetch_bytes=1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
            **{
                "max_poll_records": 10_000,
                "heartbeat_interval_ms": 1000,
                "session_timeout_ms": 10_000,
                **transport.consumer_options,
            },
        )
        try:
            await transport._bounded(consumer.start())
        except BaseException:
            await _close_quietly(consumer.stop())
            raise
        self._consumer = consumer
        self._stopping = False
        consumer.subscribe(self.topics, listener=_Listener(self))
        try:
            await asyncio.wait_for(self._joined.wait(), self.join_timeout)
        except TimeoutError:
            await self.stop()
            raise BrokerError(
                f"{self!r} got no partitions from Kafka within {self.join_timeout:g} s; "
                "check the broker's log (is the __consumer_offsets topic available?)."
            ) from None
        if self._error is not None:  # on_assigned failed: leave without on_revoked
            self._stopping = True
            await self.stop()
            self._raise_listener_error()

    async def stop(self) -> None:
        """Await ``on_revoked`` for the current partitions, then leave the group."""
        consumer = self._consumer
        if consumer is None:
            return
        try:
            if self._assigned and not self._stopping:
                assigned, self._assigned = set(self._assigned), set()
                self._stopping = True
                await self.listener.on_revoked(assigned)
        finally:
            self._stopping = True
            self._consumer = None
            self._assigned = set()
            self._joined.clear()
            await _close_quietly(consumer.stop())

    def assignment(self) -> set[TP]:
        """Partitions currently assigned to this member."""
        return set(self._assigned)

    def _raise_listener_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    async def getmany(self, timeout: float, max_records: int) -> list[Message]:
        """Up to ``max_records`` messages of the assigned partitions, waiting at most ``timeout`` s."""
        consumer = self._consumer
        if consumer is None:
            raise BrokerError(f"{self!r} is not started: `await consumer.start()` first.")
        self._raise_listener_error()
        deadline = time.monotonic() + max(timeout, 0.0)
        if not self._settled.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._settled.wait(), max(timeout, 0.0))
            self._raise_listener_error()
            if not self._settled.is_set():
                return []
        remaining = max(0.0, deadline - time.monotonic())
        try:
            fetched = await consumer.getmany(timeout_ms=int(remaining * 1000), max_records=max(1, max_records))
        except KafkaError as exc:
            raise BrokerError(f"{self!r} could not fetch: {exc!r}") from exc
        self._raise_listener_error()
        out: list[Message] = []
        new = tuple.__new__
        for atp, records in fetched.items():
            # _message(), inlined: half the cost per record (every event passes here).
            topic, partition = atp.topic, atp.partition
            out.extend([
                new(Message, (topic, partition, r.offset, r.timestamp / 1000.0, r.key, r.value,
                              tuple(r.headers) if r.headers else ()))
                for r in records
            ])
        return out

    def seek(self, tp: TP, offset: int) -> None:
        """Make the next ``getmany`` read ``tp`` from ``offset``."""
        if self._consumer is None:
            raise BrokerError(f"{self!r} is not started: `await consumer.start()` first.")
        try:
            self._consumer.seek(TopicPartition(tp.topic, tp.partition), offset)
        except IllegalStateError:
            raise BrokerError(f"{self!r} cannot seek {tp}: it is not assigned to this member.") from None

    async def commit(self, offsets: Mapping[TP, int], records: Sequence[ProducerRecord] = ()) -> None:
        """Store ``records``, then commit ``offsets`` (at-least-once).

        Offsets of partitions this member no longer owns are skipped with a
        warning: their new owner re-reads from the last committed offset.
        """
        consumer = self._consumer
        if consumer is None:
            raise BrokerError(f"{self!r} is not started: `await consumer.start()` first.")
        if records:
            await self.transport.send(records)
        if not offsets:
            return
        owned = {TopicPartition(a.topic, a.partition) for a in consumer.assignment()}
        commit = {}
        for tp, offset in offsets.items():
            atp = TopicPartition(tp.topic, tp.partition)
            if atp in owned:
                commit[atp] = offset
            else:
                log.warning("%r: not committing %s@%d: the partition was reassigned", self, tp, offset)
        if not commit:
            return
        try:
            await consumer.commit(commit)
        except (CommitFailedError, IllegalStateError) as exc:
            log.warning("%r: commit skipped during a rebalance (%s); the messages will be re-read", self, exc)
        except KafkaError as exc:
            raise BrokerError(f"{self!r} could not commit offsets: {exc!r}") from exc


async def _close_quietly(*closing: Awaitable[Any] | None) -> None:
    """Await each close step, logging instead of raising (used on error paths)."""
    for step in closing:
        if step is None:
            continue
        try:
            await step
        except Exception as exc:  # noqa: BLE001 - closing must not hide the real error
            log.debug("ignored while closing a Kafka client: %r", exc)
