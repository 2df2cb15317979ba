"""Glue between aiokafka's clients and streamnb, shared by the ``kafka://`` modules.

aiokafka's errors as :class:`~streamnb.errors.BrokerError` (one error root),
the check of extra ``AIOKafkaConsumer`` options, a port probe for error
messages, and closing clients without hiding the error being handled.

Example::

    >>> check_consumer_options({"session_timeout_ms": 6000})
    {'session_timeout_ms': 6000}
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Iterator, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from ..errors import BrokerError, ConfigurationError

__all__ = [
    "DEFAULT_PORT",
    "HOW_TO_START",
    "RESERVED_CONSUMER_OPTIONS",
    "any_port_open",
    "broker_errors",
    "check_consumer_options",
    "close_quietly",
    "log",
    "parse_kafka_url",
]

log = logging.getLogger("streamnb.transport.kafka")
"""The logger of every ``kafka://`` module (one name for users to configure)."""

HOW_TO_START = (
    "Is Kafka running there? In a streamnb checkout start one with `bash scripts/kafka.sh up`; "
    "otherwise check the address, or use broker='local://PATH' to run without Kafka."
)

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


def check_consumer_options(options: dict[str, Any]) -> dict[str, Any]:
    """Validate extra ``AIOKafkaConsumer`` arguments (raise on unknown or reserved names)."""
    known = set(inspect.signature(AIOKafkaConsumer.__init__).parameters) - {"self", "topics"}
    for name in options:
        if name in RESERVED_CONSUMER_OPTIONS:
            raise ConfigurationError(f"kafka option {name}=... is set by streamnb itself and cannot be changed")
        if name not in known:
            raise ConfigurationError(
                f"unknown kafka option {name!r}: extra App/KafkaTransport keyword arguments go to "
                "aiokafka's AIOKafkaConsumer (e.g. session_timeout_ms, heartbeat_interval_ms)"
            )
    return dict(options)


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
