"""Broker backends behind one seam (see :mod:`streamnb.transport.base`).

:func:`open_transport` picks the backend from a broker URL.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigurationError
from .base import TP, Consumer, Message, ProducerRecord, RebalanceListener, TopicSpec, Transport

__all__ = [
    "Consumer",
    "Message",
    "ProducerRecord",
    "RebalanceListener",
    "SCHEMES",
    "TP",
    "TopicSpec",
    "Transport",
    "open_transport",
]

SCHEMES = ("memory://", "local://PATH", "kafka://HOST:PORT[,HOST:PORT...]")


def open_transport(url: str, **options: Any) -> Transport:
    """The transport for a broker URL; ``options`` (client id, security) go to Kafka only.

    >>> open_transport("memory://").scheme
    'memory'
    """
    scheme, sep, _rest = url.partition("://")
    if not sep:
        raise ConfigurationError(f"broker {url!r} has no scheme; use one of: {', '.join(SCHEMES)}")
    if scheme == "memory":
        from .memory import MemoryTransport

        return MemoryTransport(url)
    if scheme == "local":
        from .local import LocalTransport

        return LocalTransport(url)
    if scheme == "kafka":
        from .kafka import KafkaTransport

        return KafkaTransport(url, **options)
    raise ConfigurationError(f"unknown broker scheme {scheme + '://'!r} in {url!r}; use one of: {', '.join(SCHEMES)}")
