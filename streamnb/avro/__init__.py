"""Avro with a schema registry: the ``avro`` codec, schema derivation, and the registry client.

``value_serializer="avro"`` (or ``key_serializer="avro"``) on a topic of an
App made with ``schema_registry="http://HOST:PORT"`` reads and writes Avro in
Confluent's wire format, which is what most production Kafka topics carry::

    app = streamnb.App("shop", broker="kafka://127.0.0.1:9092", schema_registry="http://127.0.0.1:8081")
    orders = app.topic("orders", value_type=Order, value_serializer="avro")
    legacy = app.topic("legacy", value_serializer=AvroCodec(schema="legacy.avsc"))

* :mod:`~streamnb.avro.schema` -- a Record's Avro schema from its annotations
  (:func:`avro_schema`), explicit schemas (:func:`load_schema`), :class:`AvroDecimal`;
* :mod:`~streamnb.avro.registry` -- :class:`SchemaRegistry`, a small client of the
  registry's REST API with basic auth, TLS and caches both ways;
* :mod:`~streamnb.avro.codec` -- :class:`AvroCodec`: framing, schema ids,
  reader/writer schema resolution, schemaless Avro without a registry.

Importing this package registers the codec as ``"avro"``:

>>> from streamnb.codecs import get_codec
>>> get_codec("avro")
AvroCodec()
"""

from __future__ import annotations

from ..codecs.base import register
from .codec import STRATEGIES, AvroCodec
from .registry import Registered, SchemaRegistry, registry_from_options
from .schema import DEFAULT_DECIMAL, AvroDecimal, avro_schema, load_schema

__all__ = [
    "DEFAULT_DECIMAL",
    "STRATEGIES",
    "AvroCodec",
    "AvroDecimal",
    "Registered",
    "SchemaRegistry",
    "avro_schema",
    "load_schema",
    "registry_from_options",
]

register("avro", AvroCodec())
