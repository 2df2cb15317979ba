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
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from enum import Enum
from io import BytesIO
from typing import Any

from .._fieldtypes import spec_for
from .._serde import Serde, label
from .._typerules import RULES, is_record, short, type_label
from ..errors import ConfigurationError, SerializationError, ValidationError
from ._flat import FlatReader, flat_reader
from .registry import SchemaRegistry
from .schema import avro_schema, check, full_name, load_schema

__all__ = ["STRATEGIES", "AvroCodec"]

STRATEGIES = ("topic", "record", "topic_record")
"""Subject name strategies: ``<topic>-<key|value>``, ``<record full name>``, ``<topic>-<record full name>``."""

_MAGIC = 0


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
            schemaless_writer(buf, parsed, _avro_ready(obj))
        except Exception as exc:
            raise SerializationError(_write_problem(exc, self.schema, obj)) from exc
        return buf.getvalue()

    def loads(self, data: bytes) -> Any:
        """Read schemaless Avro written with this codec's explicit schema."""
        parsed = self._explicit("loads")
        return _read_whole(data, parsed, None, "payload", "the codec's schema")

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
        return _Framed(self, self.registry, type_, role, topic, schema).serde()

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


def _avro_ready(value: Any) -> Any:
    """What fastavro writes: Records as dicts (datetimes, Decimals, bytes kept), sequences as lists."""
    if value is None or isinstance(value, (str, int, float, bytes)):
        return value
    asdict = getattr(value, "asdict", None)
    if asdict is not None and hasattr(value, "compiled_schema"):
        return {k: _avro_ready(v) for k, v in asdict().items()}
    if isinstance(value, Mapping):
        return {k: _avro_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_avro_ready(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    return value


class _FromJson:
    """JSON data -> what fastavro writes for ``schema``: ISO-8601 text to datetimes and dates, numbers and
    numeric text to Decimals, text to bytes (latin-1, Avro's JSON form); values already right pass as they are.

    What an untyped topic's ``send`` (and ``%%produce``) applies, so JSON lines encode with the topic's schema.
    """

    def __init__(self, schema: Any) -> None:
        self.named: dict[str, Any] = {}
        self._collect(schema, None)
        self.schema = schema

    def _collect(self, schema: Any, namespace: str | None) -> None:
        if isinstance(schema, list):
            for branch in schema:
                self._collect(branch, namespace)
        elif isinstance(schema, dict):
            kind = schema.get("type")
            if kind in ("record", "enum", "fixed"):
                name = str(schema.get("name", ""))
                space = schema.get("namespace", namespace)
                full = name if "." in name or not space else f"{space}.{name}"
                self.named[full] = self.named[name] = schema
                namespace = full.rpartition(".")[0] or None
                for field in schema.get("fields", ()):
                    self._collect(field.get("type"), namespace)
            elif kind == "array":
                self._collect(schema.get("items"), namespace)
            elif kind == "map":
                self._collect(schema.get("values"), namespace)
            elif isinstance(kind, (dict, list)):
                self._collect(kind, namespace)

    def __call__(self, value: Any) -> Any:
        return self.convert(self.schema, value)

    def convert(self, schema: Any, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(schema, list):
            for branch in schema:
                if branch == "null":
                    continue
                try:
                    converted = self.convert(branch, value)
                except (TypeError, ValueError, ArithmeticError):
                    continue
                if converted is not value:
                    return converted
            return value
        if isinstance(schema, str):
            if schema == "bytes" and isinstance(value, str):
                return value.encode("latin-1")
            found = self.named.get(schema)
            return value if found is None else self.convert(found, value)
        kind = schema.get("type")
        logical = schema.get("logicalType")
        if logical in ("timestamp-millis", "timestamp-micros") and isinstance(value, str):
            from datetime import datetime

            return datetime.fromisoformat(value)
        if logical == "date" and isinstance(value, str):
            from datetime import date

            return date.fromisoformat(value)
        if logical == "decimal" and isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        if kind == "record" and isinstance(value, Mapping):
            out = dict(value)
            for field in schema.get("fields", ()):
                name = field["name"]
                if name in out:
                    out[name] = self.convert(field["type"], out[name])
            return out
        if kind == "array" and isinstance(value, list):
            return [self.convert(schema["items"], v) for v in value]
        if kind == "map" and isinstance(value, Mapping):
            return {k: self.convert(schema["values"], v) for k, v in value.items()}
        if isinstance(kind, (str, list)) and kind not in ("record", "array", "map", "enum", "fixed"):
            return self.convert(kind, value)
        return value


def _write_problem(exc: Exception, schema: Any, datum: Any) -> str:
    """Why fastavro could not write ``datum``: its validator's words when it has them."""
    from fastavro.validation import ValidationError as AvroValidationError
    from fastavro.validation import validate

    try:
        validate(datum, schema, raise_errors=True)
    except AvroValidationError as invalid:
        problems = "; ".join(str(e) for e in getattr(invalid, "errors", ()) or (invalid,))
        return f"{short(datum)} does not fit the Avro schema: {problems}"
    except Exception:
        pass
    return f"cannot write {short(datum)} as Avro ({type(exc).__name__}: {exc})"


def _read_whole(data: Any, writer: Any, reader: Any, where: str, which: str) -> Any:
    """Read one schemaless body that must fill ``data`` exactly."""
    from fastavro import schemaless_reader

    bio = BytesIO(data)
    try:
        obj = schemaless_reader(bio, writer, reader)
    except Exception as exc:
        raise SerializationError(
            f"{where}: the Avro body does not match {which} ({type(exc).__name__}: {exc}): {short(data)}; "
            "check what the producer writes"
        ) from exc
    if bio.tell() != len(data):
        raise SerializationError(
            f"{where}: the Avro body does not match {which}: {len(data) - bio.tell()} bytes are left over "
            f"after reading it: {short(data)}; check what the producer writes"
        )
    return obj


class _Typed:
    """What the declared type adds on both sides: which values encode accepts, what decode returns."""

    def __init__(self, type_: Any, role: str, topic: str | None) -> None:
        self.type = type_
        self.role = role
        self.where = label(role, topic)
        self.record = is_record(type_)
        self.plain = False
        if self.record:
            try:
                self.plain = not type_.compiled_schema().json_fields  # fields fastavro writes as they are
            except ConfigurationError:
                self.plain = False

    def datum(self) -> Callable[[Any], Any]:
        """``value -> Avro data``, refusing values of another type."""
        type_, where, role = self.type, self.where, self.role
        name = type_label(type_)

        def wrong(value: Any) -> ValidationError:
            return ValidationError(
                f"{where}: {role}_type is {name}, got {type(value).__name__} {short(value)}: "
                f"send a value of type {name}, or change the topic's {role}_type"
            )

        if type_ is None:
            return _avro_ready
        if self.record:
            plain = self.plain

            def record_datum(value: Any) -> Any:
                if isinstance(value, type_):
                    return vars(value) if plain else _avro_ready(value)
                if isinstance(value, Mapping):
                    return _avro_ready(value)
                raise wrong(value)

            return record_datum
        rule = RULES.get(type_)
        accepts = rule.accepts if rule is not None else (lambda v: isinstance(v, type_))

        def scalar_datum(value: Any) -> Any:
            if not accepts(value):
                raise wrong(value)
            if type_ is Decimal and not isinstance(value, Decimal):
                return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
            if type_ is float:
                return float(value)
            return _avro_ready(value)

        return scalar_datum

    def result(self) -> Callable[[Any], Any] | None:
        """``Avro data -> value`` (None: the data as read)."""
        type_, where = self.type, self.where
        if type_ is None:
            return None
        if self.record:

            def to_record(obj: Any) -> Any:
                try:
                    return type_.from_data(obj)
                except ValidationError as exc:
                    raise ValidationError(f"{where}: {exc}", field=exc.field) from exc

            return to_record
        check_value = spec_for(type_).check
        name = type_label(type_)

        def checked(obj: Any) -> Any:
            if not check_value(obj):
                raise ValidationError(
                    f"{where}: the Avro value {short(obj)} is not a {name}: the schema and the {self.role}_type "
                    "disagree; change one of them"
                )
            return obj

        return checked


# -- schemaless ---------------------------------------------------------------------------------


class _Schemaless:
    def __init__(self, codec: AvroCodec, type_: Any, role: str, topic: str | None, schema: Any) -> None:
        self.codec, self.typed, self.schema, self.topic = codec, _Typed(type_, role, topic), schema, topic
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
                raise SerializationError(f"{where}: {_write_problem(exc, schema, data)}") from exc
            return buf.getvalue()

        def decode(data: bytes | None) -> Any:
            if data is None:
                return None
            obj = _read_whole(data, parsed, None, where, "the topic's Avro schema (schemaless)")
            return obj if result is None else result(obj)

        return Serde(self.codec, self.typed.type, encode, decode, role=self.typed.role, topic=self.topic)


# -- framed, with a registry ----------------------------------------------------------------------


class _Framed:
    """One topic's keys or values in Confluent's framing: the writer's id, and one reader per writer id."""

    def __init__(
        self, codec: AvroCodec, registry: SchemaRegistry, type_: Any, role: str, topic: str | None, schema: Any
    ) -> None:
        self.codec, self.registry, self.typed = codec, registry, _Typed(type_, role, topic)
        self.topic = topic
        self.schema = schema  # the topic's own schema: writer, and reader of every writer id (None: untyped)
        self.parsed = None if schema is None else check(schema)
        self.canonical = None if schema is None else _canonical(schema)
        self.subject = self._subject(codec.subject_name_strategy or "topic", role, topic, schema)
        self.prefix: bytes | None = None  # magic byte + writer id, once known
        self.writer: Any = self.parsed  # what encode writes with (untyped: the subject's latest schema)
        self.writer_schema = schema
        self.from_json: Callable[[Any], Any] | None = None  # untyped: JSON data -> the latest schema's data
        self.readers: dict[bytes, Callable[[bytes], Any]] = {}  # 4-byte id -> how to read a payload's body
        self.unreadable: dict[bytes, str] = {}  # 4-byte id -> why its messages cannot be read

    @staticmethod
    def _subject(strategy: str, role: str, topic: str | None, schema: Any) -> str | None:
        name = full_name(schema) if schema is not None else None
        if strategy == "topic":
            return None if topic is None else f"{topic}-{role}"
        if name is None:
            if schema is None:
                return None
            raise ConfigurationError(
                f"{label(role, topic)}: subject_name_strategy={strategy!r} names the subject after the record, "
                "but the schema is not a record: use the default 'topic' strategy"
            )
        if strategy == "record":
            return name
        return None if topic is None else f"{topic}-{name}"

    # -- writer side --------------------------------------------------------------------------------

    def _no_subject(self) -> ConfigurationError:
        return ConfigurationError(
            f"{self.typed.where}: no subject to register the Avro schema under (the codec is not used by a "
            "topic, or the schema is not a record for the 'record' strategy); use it as a topic's serializer"
        )

    def _writer_known(self, schema_id: int, schema: Any) -> None:
        if self.schema is None:
            self.writer, self.writer_schema = check(schema), schema
            self.from_json = _FromJson(schema)
        self.prefix = bytes([_MAGIC]) + schema_id.to_bytes(4, "big")

    async def prepare(self) -> None:
        """Register (or look up) the writer schema and keep its id; untyped: the subject's latest schema."""
        if self.prefix is not None:
            return
        if self.subject is None:
            raise self._no_subject()
        if self.schema is None:
            latest = await self.registry.latest(self.subject)
            self._writer_known(latest.id, latest.schema)
        elif self.codec.auto_register:
            self._writer_known(await self.registry.register(self.subject, self.schema), self.schema)
        else:
            self._writer_known(await self.registry.lookup(self.subject, self.schema), self.schema)

    def prepare_sync(self) -> bytes:
        """:meth:`prepare` with blocking requests (an encode before any ``prepare``)."""
        if self.prefix is None:
            if self.subject is None:
                raise self._no_subject()
            if self.schema is None:
                latest = self.registry.latest_sync(self.subject)
                self._writer_known(latest.id, latest.schema)
            elif self.codec.auto_register:
                self._writer_known(self.registry.register_sync(self.subject, self.schema), self.schema)
            else:
                self._writer_known(self.registry.lookup_sync(self.subject, self.schema), self.schema)
        assert self.prefix is not None
        return self.prefix

    # -- reader side --------------------------------------------------------------------------------

    def _learn(self, key: bytes, schema: Any) -> None:
        """Remember how to read messages written with the schema of id ``key``."""
        schema_id = int.from_bytes(key, "big")
        try:
            writer = check(schema)
        except ConfigurationError as exc:
            self.unreadable[key] = f"the writer schema (id {schema_id}) is not valid Avro: {exc}"
            return
        absent: tuple[str, ...] = ()
        if self.parsed is None or _canonical(schema) == self.canonical:
            reader = None  # the topic's own schema (or none): nothing to resolve
        else:
            # Fields the writer did not have: a Record reader fills in its own defaults (fastavro gives
            # defaults in their JSON form, e.g. a timestamp as an int), so they are left out of the dict.
            reader = self.parsed
            absent = tuple(sorted(_field_names(self.schema) - _field_names(schema))) if self.typed.record else ()
        self.readers[key] = _body_reader(writer, reader, absent, flat_reader(schema, 5) if reader is None else None)
        self.unreadable.pop(key, None)

    def _unknown(self, key: bytes) -> str:
        return (
            f"unknown schema id {int.from_bytes(key, 'big')}: the schema registry at {self.registry.url} has no "
            "schema with this id (the producer used another registry, or the schema was deleted)"
        )

    async def prefetch(self, payloads: Sequence[bytes | None]) -> None:
        """Fetch the writer schemas of ``payloads`` not seen yet (raises SchemaRegistryUnavailableError)."""
        readers = self.readers
        missing = {p[1:5] for p in payloads if p}.difference(readers)
        if not missing:
            return  # the common case: every writer schema of the batch is known
        wanted = {p[1:5] for p in payloads if p and p[0] == _MAGIC}  # not the "ids" of other payloads
        for key in missing & wanted:
            if len(key) < 4:
                continue
            try:
                schema = await self.registry.schema(int.from_bytes(key, "big"))
            except SerializationError as exc:
                self.unreadable[key] = str(exc)
                continue
            if schema is None:
                self.unreadable[key] = self._unknown(key)
            else:
                self._learn(key, schema)

    def entry(self, data: bytes) -> Callable[[bytes], Any]:
        """How to read ``data``'s body, or the reason it cannot be read (raised)."""
        where = self.typed.where
        if len(data) < 5 or data[0] != _MAGIC:
            raise SerializationError(
                f"{where}: not Avro in Confluent's framing: expected the magic byte 0 and a 4-byte schema id, "
                f"got {short(bytes(data[:5]))} ({len(data)} bytes); the producer wrote something else "
                f"(JSON? schemaless Avro?): fix the producer, or read the topic with another "
                f"{self.typed.role}_serializer"
            )
        key = bytes(data[1:5])
        found = self.readers.get(key)
        if found is not None:
            return found
        if key not in self.unreadable:  # not prefetched (a decode outside an agent): ask now, blocking
            schema = self.registry.schema_sync(int.from_bytes(key, "big"))
            if schema is None:
                self.unreadable[key] = self._unknown(key)
            else:
                self._learn(key, schema)
                if key in self.readers:
                    return self.readers[key]
        raise SerializationError(f"{where}: {self.unreadable[key]}")

    def serde(self) -> Serde:
        from fastavro import schemaless_writer

        typed = self.typed
        datum, result = typed.datum(), typed.result()
        where, readers, entry = typed.where, self.readers, self.entry
        new_buffer = BytesIO

        def encode(value: Any) -> bytes | None:
            if value is None:
                return None
            data = datum(value)
            prefix = self.prefix or self.prepare_sync()
            if self.from_json is not None:
                data = self.from_json(data)
            buf = new_buffer()
            buf.write(prefix)
            try:
                schemaless_writer(buf, self.writer, data)
            except Exception as exc:
                raise SerializationError(f"{where}: {_write_problem(exc, self.writer_schema, data)}") from exc
            return buf.getvalue()

        def decode_fields(data: bytes | None) -> Any:
            """The payload's data as read (before a Record is built)."""
            if data is None:
                return None
            read = readers.get(data[1:5])
            if read is None or data[0]:
                read = entry(data)
            try:
                return read(data)
            except Exception as exc:
                raise _mismatch(where, data, exc) from exc

        if result is None:
            decode = decode_fields
        elif typed.record:
            type_ = typed.type
            from_data = type_.from_data
            if getattr(from_data, "__self__", None) is not None:
                # Not compiled yet (a forward reference): Record replaces from_data on first use.
                def from_data(obj: Any) -> Any:
                    return type_.from_data(obj)

            def decode(data: bytes | None) -> Any:
                """The hot path: one dict lookup, the body reader, the Record's from_data."""
                if data is None:
                    return None
                read = readers.get(data[1:5])
                if read is None or data[0]:
                    read = entry(data)
                try:
                    obj = read(data)
                except Exception as exc:
                    raise _mismatch(where, data, exc) from exc
                try:
                    return from_data(obj)
                except ValidationError as exc:
                    raise ValidationError(f"{where}: {exc}", field=exc.field) from exc

        else:
            convert = result

            def decode(data: bytes | None) -> Any:
                return None if data is None else convert(decode_fields(data))

        return Serde(
            self.codec, typed.type, encode, decode, role=typed.role, topic=self.topic,
            prepare=self.prepare, prefetch=self.prefetch, decode_fields=decode_fields if typed.record else None,
        )


def _body_reader(writer: Any, reader: Any, absent: tuple[str, ...], flat: FlatReader | None) -> Callable[[bytes], Any]:
    """``payload -> data`` for payloads written with one writer schema; raises whatever the reading raises."""
    if flat is not None:
        return flat
    from fastavro import schemaless_reader

    new_buffer = BytesIO

    def read(data: bytes) -> Any:
        bio = new_buffer(data)
        bio.seek(5)
        obj = schemaless_reader(bio, writer, reader)
        if bio.tell() != len(data):
            raise ValueError(f"{len(data) - bio.tell()} bytes are left over after reading it")
        if absent and type(obj) is dict:
            for name in absent:
                del obj[name]
        return obj

    return read


def _mismatch(where: str, data: bytes, exc: Exception) -> SerializationError:
    schema_id = int.from_bytes(data[1:5], "big")
    return SerializationError(
        f"{where}: the Avro body does not match its writer schema (id {schema_id}) or cannot be read as the "
        f"topic's schema ({type(exc).__name__}: {exc}): {short(data)}"
    )


def _field_names(schema: Any) -> set[str]:
    """The field names of a record schema (empty for other schemas)."""
    if isinstance(schema, dict) and schema.get("type") == "record":
        return {str(f["name"]) for f in schema.get("fields", ())}
    return set()


def _canonical(schema: Any) -> str:
    from fastavro.schema import to_parsing_canonical_form

    return str(to_parsing_canonical_form(schema))
