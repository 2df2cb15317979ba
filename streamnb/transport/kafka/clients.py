"""Glue between aiokafka's clients and streamnb, shared by the ``kafka://`` modules.

aiokafka's errors as :class:`~streamnb.errors.BrokerError` (one error root),
the names of the options a ``kafka://`` transport takes, a metadata request
that never auto-creates a topic (the one place that reaches into an aiokafka
client's private attribute), a port probe for error messages, and closing
clients without hiding the error being handled.

Example::

    >>> "session_timeout_ms" in consumer_option_names()
    True
    >>> check_security_protocol("ssl")
    'SSL'
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Iterator, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.protocol.metadata import MetadataRequest

from ...errors import BrokerError, ConfigurationError
from ..base import ProducerRecord

__all__ = [
    "DEFAULT_PORT",
    "HOW_TO_START",
    "RESERVED_CONSUMER_OPTIONS",
    "SECURITY_PROTOCOLS",
    "TRANSPORT_OPTIONS",
    "any_port_open",
    "broker_errors",
    "check_security_protocol",
    "close_quietly",
    "consumer_option_names",
    "log",
    "metadata_without_auto_create",
    "parse_kafka_url",
    "send_batches",
]

log = logging.getLogger("streamnb.transport.kafka")
"""The logger of every ``kafka://`` module (one name for users to configure)."""

HOW_TO_START = (
    "Is Kafka running there? In a streamnb checkout start one with `bash scripts/kafka.sh up`; "
    "otherwise check the address, or use broker='local://PATH' to run without Kafka."
)

TRANSPORT_OPTIONS = frozenset({
    "client_id", "request_timeout", "security_protocol", "sasl_mechanism", "sasl_plain_username",
    "sasl_plain_password", "ssl_context",
})
"""The keyword arguments of ``KafkaTransport`` itself (the others go to ``AIOKafkaConsumer``)."""

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
"""The values ``security_protocol`` takes (any case)."""

# Consumer arguments the transport sets itself (group membership, commits,
# co-partitioned assignment, connection and security).
RESERVED_CONSUMER_OPTIONS = frozenset({
    "bootstrap_servers", "client_id", "group_id", "enable_auto_commit", "auto_commit_interval_ms",
    "partition_assignment_strategy", "key_deserializer", "value_deserializer", "isolation_level",
    "security_protocol", "ssl_context", "sasl_mechanism", "sasl_plain_username", "sasl_plain_password",
    "loop", "api_version",
})


@contextlib.contextmanager
def broker_errors(what: str) -> Iterator[None]:
    """Re-raise aiokafka's errors as :class:`~streamnb.errors.BrokerError` (one error root)."""
    try:
        yield
    except KafkaError as exc:
        raise BrokerError(f"Kafka could not {what}: {exc!r}. Check the broker's log; retrying may help.") from exc


async def any_port_open(servers: Sequence[str], timeout: float = 0.5) -> bool:
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


def consumer_option_names() -> frozenset[str]:
    """``AIOKafkaConsumer`` arguments a user may set (its signature, less the reserved ones)."""
    known = set(inspect.signature(AIOKafkaConsumer.__init__).parameters) - {"self", "topics"}
    return frozenset(known - RESERVED_CONSUMER_OPTIONS)


def check_security_protocol(value: object) -> str:
    """``value`` upper-cased when it names a security protocol aiokafka speaks; else raise."""
    if not isinstance(value, str) or value.upper() not in SECURITY_PROTOCOLS:
        choices = f"{', '.join(SECURITY_PROTOCOLS[:-1])} or {SECURITY_PROTOCOLS[-1]}"
        raise ConfigurationError(f"security_protocol={value!r}: use {choices}")
    return value.upper()


async def metadata_without_auto_create(admin: AIOKafkaAdminClient, topics: list[str]) -> dict[str, Any]:
    """The broker's metadata of ``topics`` (``MetadataResponse.to_object()``), never creating one.

    aiokafka's public metadata calls (``describe_topics`` and the clients'
    own refreshes) send ``allow_auto_topic_creation=True``, so asking a
    broker with ``auto.create.topics.enable`` about a topic would create it.
    No public call takes that flag, so this sends the request through the
    admin client's connection pool, ``admin._client`` (an ``AIOKafkaClient``).
    aiokafka is pinned below the next minor version in pyproject.toml, and
    ``tests/transport/test_kafka_private_api.py`` fails when that attribute,
    its ``send``/``get_random_node`` or ``MetadataRequest``'s flag moves.
    """
    client = admin._client  # noqa: SLF001 - no public metadata request without auto-create; see above
    request = MetadataRequest(topics, allow_auto_topic_creation=False)
    response = await client.send(client.get_random_node(), request)
    found: dict[str, Any] = response.to_object()
    return found


_NO_HEADERS: list[tuple[str, bytes]] = []  # shared, never mutated


async def send_batches(producer: AIOKafkaProducer, records: Sequence[ProducerRecord]) -> None:
    """Append ``records`` through ``producer`` and wait until all are stored (raises aiokafka's errors).

    One batch per partition (in order) instead of one ``send()`` per record:
    several times faster, and the order within a partition is kept. Inside a
    transaction the records are stored but invisible to ``read_committed``
    readers until it commits.
    """
    by_partition: dict[tuple[str, int], list[ProducerRecord]] = {}
    for rec in records:
        by_partition.setdefault((rec.topic, rec.partition), []).append(rec)
    deliveries = []
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


async def close_quietly(*closing: Awaitable[Any] | None) -> None:
    """Await each close step, logging instead of raising (used on error paths)."""
    for step in closing:
        if step is None:
            continue
        try:
            await step
        except Exception as exc:  # noqa: BLE001 - closing must not hide the real error
            log.debug("ignored while closing a Kafka client: %r", exc)


DEFAULT_PORT = 9092


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
