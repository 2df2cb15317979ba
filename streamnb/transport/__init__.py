"""Broker backends behind one seam (see :mod:`streamnb.transport.base`).

:mod:`streamnb.transport.schemes` is the registry of broker URL schemes:
:func:`open_transport` picks the backend from a broker URL and
:func:`check_broker` validates a URL and its options without connecting.
The backends: :mod:`~streamnb.transport.memory`, the
:mod:`~streamnb.transport.local` package and the :mod:`~streamnb.transport.kafka`
package (imported only when a URL of their scheme is used).

Example::

    >>> open_transport("memory://").scheme
    'memory'
    >>> sorted(transport_class("local://data").guarantees)
    ['at_least_once', 'exactly_once']
"""

from __future__ import annotations

from .base import TP, Consumer, Message, ProducerRecord, RebalanceListener, TopicSpec, Transport
from .schemes import SCHEMES, Scheme, check_broker, open_transport, transport_class

__all__ = [
    "SCHEMES",
    "TP",
    "Consumer",
    "Message",
    "ProducerRecord",
    "RebalanceListener",
    "Scheme",
    "TopicSpec",
    "Transport",
    "check_broker",
    "open_transport",
    "transport_class",
]
