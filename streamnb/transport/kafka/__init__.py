"""``kafka://HOST:PORT[,HOST:PORT...]`` -- Apache Kafka through aiokafka.

The modules, from the facade down:

* :mod:`~streamnb.transport.kafka.transport` -- :class:`KafkaTransport`, the
  :class:`~streamnb.transport.base.Transport` seam (producer, admin client, reader);
* :mod:`~streamnb.transport.kafka.consumer` -- :class:`KafkaConsumer`, one consumer-group member;
* :mod:`~streamnb.transport.kafka.transactions` -- exactly-once: a transactional producer per input partition;
* :mod:`~streamnb.transport.kafka.admin` -- topics (never auto-created) and committed offsets;
* :mod:`~streamnb.transport.kafka.reader` -- the group-less reader behind ``read`` (table recovery, ``%peek``);
* :mod:`~streamnb.transport.kafka.clients` -- errors, options, URLs and metadata shared by the others.

Importing this package imports aiokafka; :mod:`streamnb.transport.schemes`
imports it only for a ``kafka://`` broker.

Example::

    >>> from streamnb.transport.kafka import KafkaTransport, parse_kafka_url
    >>> parse_kafka_url("kafka://127.0.0.1")
    ['127.0.0.1:9092']
"""

from __future__ import annotations

from .clients import parse_kafka_url
from .consumer import KafkaConsumer
from .transport import KafkaTransport

__all__ = ["KafkaConsumer", "KafkaTransport", "parse_kafka_url"]
