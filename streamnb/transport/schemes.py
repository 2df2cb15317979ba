"""The registry of broker schemes: one place that maps a broker URL to its transport.

Each entry names the URL form, a one-line description and where the
:class:`~streamnb.transport.base.Transport` class lives; the class is
imported only when a URL of its scheme is used, so ``memory://`` never
imports aiokafka. :func:`check_broker` validates a URL and the options meant
for its transport without connecting (the App calls it in its constructor);
:func:`open_transport` checks the same and builds the transport.

Example::

    >>> transport_class("memory://").__name__
    'MemoryTransport'
    >>> check_broker("local://d", {"security_protocol": "SSL"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    streamnb.errors.ConfigurationError: security_protocol=... applies only to kafka:// brokers, not to 'local://d': ...
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from ..errors import ConfigurationError
from .base import Transport

__all__ = ["SCHEMES", "Scheme", "check_broker", "open_transport", "transport_class"]


class Scheme(NamedTuple):
    """One broker backend in the registry."""

    name: str
    """The URL scheme, without ``://``."""
    form: str
    """The URL's form, for error messages and docs."""
    description: str
    """One line: what this backend is."""
    module: str
    """The module that defines the transport class (imported on first use)."""
    cls: str
    """The transport class's name in ``module``."""

    def load(self) -> type[Transport]:
        """The transport class (importing its module now if needed).

        Example::

            >>> SCHEMES["memory"].load().scheme
            'memory'
        """
        found: type[Transport] = getattr(importlib.import_module(self.module), self.cls)
        return found


SCHEMES: Mapping[str, Scheme] = {
    entry.name: entry
    for entry in (
        Scheme(
            "memory", "memory://[NAME]", "in-process and volatile; exactly-once; for tests",
            "streamnb.transport.memory", "MemoryTransport",
        ),
        Scheme(
            "local", "local://PATH[?sync=full]", "durable embedded broker, sqlite3 in a folder; exactly-once",
            "streamnb.transport.local", "LocalTransport",
        ),
        Scheme(
            "kafka", "kafka://HOST:PORT[,HOST:PORT...]", "Apache Kafka through aiokafka; at-least-once",
            "streamnb.transport.kafka", "KafkaTransport",
        ),
    )
}
"""Scheme name -> :class:`Scheme`, in the order error messages list them."""


def _forms() -> str:
    return ", ".join(entry.form for entry in SCHEMES.values())


def _scheme(url: str) -> Scheme:
    if not isinstance(url, str):
        raise ConfigurationError(f"broker must be a URL string, got {url!r}; use one of: {_forms()}")
    name, sep, _rest = url.partition("://")
    if not sep:
        raise ConfigurationError(f"broker {url!r} has no scheme; use one of: {_forms()}")
    entry = SCHEMES.get(name)
    if entry is None:
        raise ConfigurationError(f"unknown broker scheme {name + '://'!r} in {url!r}; use one of: {_forms()}")
    return entry


def transport_class(url: str) -> type[Transport]:
    """The :class:`~streamnb.transport.base.Transport` class for a broker URL's scheme.

    Raises :class:`~streamnb.errors.ConfigurationError`, listing the valid
    forms, when the URL has no scheme or an unknown one.

    Example::

        >>> transport_class("kafka://127.0.0.1:9092").__name__
        'KafkaTransport'
        >>> transport_class("redis://127.0.0.1")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        streamnb.errors.ConfigurationError: unknown broker scheme 'redis://' in 'redis://127.0.0.1'; use one of: ...
    """
    return _scheme(url).load()


def _applies_elsewhere(name: str, here: Scheme) -> list[Scheme]:
    """The other schemes whose transport takes option ``name`` (imports them: error path only)."""
    found = []
    for entry in SCHEMES.values():
        if entry.name == here.name:
            continue
        try:
            cls = entry.load()
        except ImportError:  # a backend whose library is missing cannot take it either
            continue
        if name in cls.options:
            found.append(entry)
    return found


def check_broker(url: str, options: Mapping[str, Any]) -> type[Transport]:
    """Validate a broker URL and its transport's options without connecting; return the transport class.

    Raises :class:`~streamnb.errors.ConfigurationError` for a missing or
    unknown scheme, a malformed URL, an option that applies only to another
    backend (naming it), an unknown option (naming the closest valid one) or
    a value the backend rejects.

    Example::

        >>> check_broker("memory://", {"client_id": "orders"}).__name__
        'MemoryTransport'
        >>> check_broker("kafka://127.0.0.1", {"sesion_timeout_ms": 6000})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        streamnb.errors.ConfigurationError: unknown option 'sesion_timeout_ms' for kafka:// ...; did you mean ...
    """
    entry = _scheme(url)
    cls = entry.load()
    cls.check_url(url)
    for name in options:
        if name in cls.options:
            continue
        elsewhere = _applies_elsewhere(name, entry)
        if elsewhere:
            where = " and ".join(f"{e.name}://" for e in elsewhere)
            forms = " or ".join(e.form for e in elsewhere)
            raise ConfigurationError(
                f"{name}=... applies only to {where} brokers, not to {url!r}: remove it, or use a {forms} broker"
            )
    cls.check_options(options)
    return cls


def open_transport(url: str, **options: Any) -> Transport:
    """The transport for a broker URL, built after :func:`check_broker` (not connected yet).

    ``options`` are the transport's keyword arguments: ``client_id`` for
    every backend; on ``kafka://`` also ``request_timeout``, the security
    options and ``AIOKafkaConsumer`` arguments.

    Example::

        >>> open_transport("memory://", client_id="orders").scheme
        'memory'
    """
    factory: Callable[..., Transport] = check_broker(url, options)
    return factory(url, **options)
