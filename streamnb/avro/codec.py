"""The ``avro`` codec: Avro values in Confluent's wire format with a schema registry, or schemaless.

With a schema registry (``App(..., schema_registry="http://HOST:PORT")``)
every message is framed as Confluent's serializers frame it: a zero byte,
the writer schema's 4-byte big-endian id, then the Avro body. Writing
registers the topic's schema (derived from its ``value_type`` Record, or
given with ``AvroCodec(schema=...)``) under the subject ``<topic>-value`` or
``<topic>-key`` (TopicNameStrategy; ``subject_name_strategy="record"`` uses
the record's full name, ``"topic_record"`` both) and caches its id. Reading
fetches each writer schema by id once and resolves it against the topic's
own schema, so a reader sees Avro schema evolution: fields added with a
default get the default, removed fields are dropped. A topic without a
declared type or schema reads values with their writer's schema (as dicts)
and writes with the subject's latest schema.

Without a registry, an explicit schema writes schemaless Avro: the bare
body, no framing, read back with the same schema (both sides must agree on
it; there is no evolution).

The network is never touched per message: ``Topic.send`` awaits
:attr:`Serde.prepare` before the first encode, and an agent's consumer
awaits :attr:`Serde.prefetch` on each batch before decoding it, waiting out a
registry outage with backoff (nothing is dropped or dead-lettered for it).
Outside those paths (``topic.decode(...)`` by hand) a missing schema is
fetched with a blocking request.

Payloads that cannot be read raise :class:`~streamnb.errors.SerializationError`
(an agent dead-letters them with the reason): a first byte other than the
magic 0, a schema id the registry does not know, a body that does not match
its writer schema (or has bytes left over).

>>> codec = AvroCodec(schema={"type": "record", "name": "Point", "fields": [{"name": "x", "type": "long"}]})
>>> codec.dumps({"x": 3}), codec.loads(b"\\x06")
(b'\\x06', {'x': 3})
"""

from __future__ import annotations

import copy
from io import BytesIO
from typing import Any

from ..codecs._serde import Serde, label
from ..codecs._typerules import type_label
from ..errors import ConfigurationError, SerializationError
from .datum import Typed, avro_ready, read_whole, write_problem
from .framed import Framed
from .registry import SchemaRegistry
from .schema import avro_schema, check, full_name, load_schema

__all__ = ["STRATEGIES", "AvroCodec"]

STRATEGIES = ("topic", "record", "topic_record")
"""Subject name strategies: ``<topic>-<key|value>``, ``<record full name>``, ``<topic>-<record full name>``."""



class AvroCodec:
    """Avro keys or values: ``value_serializer="avro"``, or an instance to set options.

    Args:
        schema: the Avro schema (a dict, a path to an ``.avsc`` file, or JSON
            text); by default it is derived from the topic's declared type.
        subject_name_strategy: ``"topic"`` (default: ``<topic>-value``),
            ``"record"`` (the record's full name) or ``"topic_record"``.
        auto_register: register the schema on first write (default); with
            False it must be registered already (it is looked up).
        schemaless: write bare Avro bodies without the registry's framing,
            even when the app has a registry.
        registry: a :class:`SchemaRegistry` (or URL) for this codec alone;
            by default the app's ``schema_registry``.

    >>> orders_codec = AvroCodec(subject_name_strategy="record")
    >>> orders_codec
    AvroCodec(subject_name_strategy='record')
    """

    def __init__(
        self,
        schema: Any = None,
        *,
        subject_name_strategy: str | None = None,
        auto_register: bool = True,
        schemaless: bool = False,
        registry: SchemaRegistry | str | None = None,
    ) -> None:
        if subject_name_strategy is not None and subject_name_strategy not in STRATEGIES:
            raise ConfigurationError(
                f"subject_name_strategy must be one of {', '.join(map(repr, STRATEGIES))}, "
                f"got {subject_name_strategy!r}"
            )
        if schemaless and (registry is not None or subject_name_strategy is not None or not auto_register):
            raise ConfigurationError(
                "AvroCodec(schemaless=True) writes no schema id, so registry=, subject_name_strategy= and "
                "auto_register= do not apply: remove them, or drop schemaless=True"
            )
        self.schema = None if schema is None else load_schema(schema)
        self.subject_name_strategy = subject_name_strategy
        self.auto_register = auto_register
        self.schemaless = schemaless
        self.registry = SchemaRegistry(registry) if isinstance(registry, str) else registry
        self._parsed: Any = None

    # -- the Codec protocol (schemaless, with the explicit schema) ---------------------------------

    def dumps(self, obj: Any) -> bytes:
        """Schemaless Avro of ``obj`` with this codec's explicit schema (no framing, no registry)."""
        parsed = self._explicit("dumps")
        from fastavro import schemaless_writer

        buf = BytesIO()
        try:
            schemaless_writer(buf, parsed, avro_ready(obj))
        except Exception as exc:
            raise SerializationError(write_problem(exc, self.schema, obj)) from exc
        return buf.getvalue()

    def loads(self, data: bytes) -> Any:
        """Read schemaless Avro written with this codec's explicit schema."""
        parsed = self._explicit("loads")
        return read_whole(data, parsed, None, "payload", "the codec's schema")

    def _explicit(self, what: str) -> Any:
        if self.schema is None:
            raise SerializationError(
                f"AvroCodec() has no schema of its own, so {what}() cannot run alone: use it as a topic's "
                "serializer (the schema comes from the topic's type or the registry), or give AvroCodec(schema=...)"
            )
        if self._parsed is None:
            self._parsed = check(self.schema)
        return self._parsed

    # -- binding to an app ------------------------------------------------------------------------

    def for_app(self, app: Any) -> AvroCodec:
        """This codec with the app's ``schema_registry`` when it has none of its own (topics call it).

        >>> class App: schema_registry = SchemaRegistry("http://127.0.0.1:8081")
        >>> AvroCodec().for_app(App()).registry
        <SchemaRegistry http://127.0.0.1:8081>
        """
        registry = getattr(app, "schema_registry", None)
        if self.registry is not None or self.schemaless or registry is None:
            return self
        bound = copy.copy(self)
        bound.registry = registry
        return bound

    # -- the Serde hook -----------------------------------------------------------------------------

    def serde_for(self, type_: Any, *, role: str = "value", topic: str | None = None) -> Serde:
        """The encoder and decoder of a topic's keys or values (see the module docstring)."""
        where = label(role, topic)
        if self.schema is not None:
            schema = self.schema
        elif type_ is not None:
            try:
                schema = avro_schema(type_)
            except ConfigurationError as exc:
                raise ConfigurationError(f"{where}: {exc}") from None
        else:
            schema = None
        if self.registry is None or self.schemaless:
            if self.subject_name_strategy is not None:
                raise ConfigurationError(
                    f"{where}: subject_name_strategy= applies only with a schema registry: add "
                    "App(..., schema_registry='http://HOST:PORT'), or remove it"
                )
            if not self.schemaless and self.schema is None:
                kind = f"{role}_type={type_label(type_)}" if type_ is not None else "no declared type"
                raise ConfigurationError(
                    f"{where}: {role}_serializer='avro' needs a schema registry: App(..., schema_registry="
                    f"'http://HOST:PORT'). Without one, give the schema for schemaless Avro: "
                    f"{role}_serializer=AvroCodec(schema=...) (with {kind}, AvroCodec(schemaless=True) writes "
                    "the derived schema; readers must use the same)"
                )
            if schema is None:
                raise ConfigurationError(
                    f"{where}: schemaless Avro needs a schema: declare the topic's {role}_type or give "
                    "AvroCodec(schema=...)"
                )
            return _Schemaless(self, type_, role, topic, schema).serde()
        return Framed(self, self.registry, type_, role, topic, schema).serde()

    def __repr__(self) -> str:
        options = []
        if self.schema is not None:
            options.append(f"schema={full_name(self.schema) or self.schema!r}")
        if self.subject_name_strategy is not None:
            options.append(f"subject_name_strategy={self.subject_name_strategy!r}")
        if not self.auto_register:
            options.append("auto_register=False")
        if self.schemaless:
            options.append("schemaless=True")
        if self.registry is not None:
            options.append(f"registry={self.registry.url!r}")
        return f"AvroCodec({', '.join(options)})"


# -- values <-> Avro data -----------------------------------------------------------------------

class _Schemaless:
    def __init__(self, codec: AvroCodec, type_: Any, role: str, topic: str | None, schema: Any) -> None:
        self.codec, self.typed, self.schema, self.topic = codec, Typed(type_, role, topic), schema, topic
        self.parsed = check(schema)

    def serde(self) -> Serde:
        from fastavro import schemaless_writer

        datum, result, parsed, schema = self.typed.datum(), self.typed.result(), self.parsed, self.schema
        where = self.typed.where

        def encode(value: Any) -> bytes | None:
            if value is None:
                return None
            data = datum(value)
            buf = BytesIO()
            try:
                schemaless_writer(buf, parsed, data)
            except Exception as exc:
                raise SerializationError(f"{where}: {write_problem(exc, schema, data)}") from exc
            return buf.getvalue()

        def decode(data: bytes | None) -> Any:
            if data is None:
                return None
            obj = read_whole(data, parsed, None, where, "the topic's Avro schema (schemaless)")
            return obj if result is None else result(obj)

        return Serde(self.codec, self.typed.type, encode, decode, role=self.typed.role, topic=self.topic)
