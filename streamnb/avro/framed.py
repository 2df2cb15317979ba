"""Confluent's framing with a schema registry: one topic's keys or values.

A framed payload is a zero byte (:data:`MAGIC`), the writer schema's 4-byte
big-endian id, then the Avro body. :class:`Framed` registers (or looks up)
the topic's writer schema, learns each reader once per writer id, and
builds the topic's :class:`~streamnb.codecs._serde.Serde`.

>>> MAGIC
0
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from io import BytesIO
from typing import Any

from ..codecs._serde import Decode, Encode, Serde, label, record_from_data
from ..codecs._typerules import short
from ..errors import ConfigurationError, SerializationError, ValidationError
from ._flat import FlatReader, flat_field_reader, flat_reader
from .datum import FromJson, Typed, write_problem
from .registry import SchemaRegistry
from .schema import check, full_name

__all__ = ["MAGIC", "Framed", "body_reader", "canonical_form", "field_names", "mismatch"]

MAGIC = 0
"""The first byte of every framed payload."""

_UNSET: Any = object()


class Framed:
    """One topic's keys or values in Confluent's framing: the writer's id, and one reader per writer id.

    ``codec`` is the :class:`~streamnb.avro.AvroCodec` (its ``subject_name_strategy``
    and ``auto_register``).
    """

    def __init__(
        self, codec: Any, registry: SchemaRegistry, type_: Any, role: str, topic: str | None, schema: Any
    ) -> None:
        self.codec, self.registry, self.typed = codec, registry, Typed(type_, role, topic)
        self.topic = topic
        self.schema = schema  # the topic's own schema: writer, and reader of every writer id (None: untyped)
        self.parsed = None if schema is None else check(schema)
        self.canonical = None if schema is None else canonical_form(schema)
        self.subject = self._subject(codec.subject_name_strategy or "topic", role, topic, schema)
        self.prefix: bytes | None = None  # magic byte + writer id, once known
        self.writer: Any = self.parsed  # what encode writes with (untyped: the subject's latest schema)
        self.writer_schema = schema
        self.from_json: Callable[[Any], Any] | None = None  # untyped: JSON data -> the latest schema's data
        self.readers: dict[bytes, Callable[[bytes], Any]] = {}  # 4-byte id -> how to read a payload's body
        self.unreadable: dict[bytes, str] = {}  # 4-byte id -> why its messages cannot be read
        self.writer_schemas: dict[bytes, Any] = {}  # 4-byte id -> writer schema read without resolution

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
            self.from_json = FromJson(schema)
        self.prefix = bytes([MAGIC]) + schema_id.to_bytes(4, "big")

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
        if self.parsed is None or canonical_form(schema) == self.canonical:
            reader = None  # the topic's own schema (or none): nothing to resolve
        else:
            # Fields the writer did not have: a Record reader fills in its own defaults (fastavro gives
            # defaults in their JSON form, e.g. a timestamp as an int), so they are left out of the dict.
            reader = self.parsed
            absent = tuple(sorted(field_names(self.schema) - field_names(schema))) if self.typed.record else ()
        self.readers[key] = body_reader(writer, reader, absent, flat_reader(schema, 5) if reader is None else None)
        if reader is None:
            self.writer_schemas[key] = schema
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
        wanted = {p[1:5] for p in payloads if p and p[0] == MAGIC}  # not the "ids" of other payloads
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
        if len(data) < 5 or data[0] != MAGIC:
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
        """The topic's :class:`~streamnb.codecs._serde.Serde`: framed encode, and decode through :attr:`readers`."""
        typed = self.typed
        decode_fields = _fields_decoder(self.readers, self.entry, typed.where)
        serde = Serde(
            self.codec, typed.type, self._encoder(), self._decoder(decode_fields), role=typed.role, topic=self.topic,
            prepare=self.prepare, prefetch=self.prefetch, decode_fields=decode_fields if typed.record else None,
        )
        if typed.record:
            serde.field_reader = lambda name: self.field_reader(name, decode_fields)
        return serde

    def _encoder(self) -> Encode:
        """``value -> framed payload``: the writer id (registered on first use), then the body."""
        from fastavro import schemaless_writer

        datum, where = self.typed.datum(), self.typed.where
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
                raise SerializationError(f"{where}: {write_problem(exc, self.writer_schema, data)}") from exc
            return buf.getvalue()

        return encode

    def _decoder(self, decode_fields: Decode) -> Decode:
        """``payload -> value`` for the declared type: the data as read, a Record, or a checked plain value."""
        typed = self.typed
        result = typed.result()
        if result is None:
            return decode_fields
        if typed.record:
            return _record_decoder(self.readers, self.entry, record_from_data(typed.type), typed.where)
        return _converting_decoder(decode_fields, result)

    def field_reader(self, name: str, whole: Callable[[bytes | None], Any]) -> Callable[[bytes | None], Any]:
        """``payload -> {name: value}`` reading only up to field ``name`` where the writer schema is flat.

        ``whole`` reads the whole record otherwise (a nested schema, a resolved one, an unknown id).
        """
        fast: dict[bytes, Callable[[bytes], Any] | None] = {}
        writers = self.writer_schemas

        def read(data: bytes | None) -> Any:
            if data is None or data[0] != MAGIC:
                return whole(data)
            key = data[1:5]
            fn = fast.get(key, _UNSET)
            if fn is _UNSET:
                schema = writers.get(key)
                if schema is None:
                    return whole(data)  # not known yet (or resolved against the topic's schema)
                fn = fast[key] = flat_field_reader(schema, 5, name)
            if fn is None:
                return whole(data)
            try:
                return fn(data)
            except Exception:  # noqa: BLE001 - the whole reader says what is wrong with the payload
                return whole(data)

        return read


def _fields_decoder(readers: dict[bytes, Callable[[bytes], Any]], entry: Callable[[bytes], Callable[[bytes], Any]],
                    where: str) -> Decode:
    """``payload -> data as read`` (before a Record is built), through the reader of its writer id."""

    def decode_fields(data: bytes | None) -> Any:
        if data is None:
            return None
        read = readers.get(data[1:5])
        if read is None or data[0]:
            read = entry(data)
        try:
            return read(data)
        except Exception as exc:
            raise mismatch(where, data, exc) from exc

    return decode_fields


def _record_decoder(readers: dict[bytes, Callable[[bytes], Any]], entry: Callable[[bytes], Callable[[bytes], Any]],
                    from_data: Callable[[Any], Any], where: str) -> Decode:
    """``payload -> Record``: the hot path, one dict lookup, the body reader, the Record's from_data."""

    def decode(data: bytes | None) -> Any:
        if data is None:
            return None
        read = readers.get(data[1:5])
        if read is None or data[0]:
            read = entry(data)
        try:
            obj = read(data)
        except Exception as exc:
            raise mismatch(where, data, exc) from exc
        try:
            return from_data(obj)
        except ValidationError as exc:
            raise ValidationError(f"{where}: {exc}", field=exc.field) from exc

    return decode


def _converting_decoder(decode_fields: Decode, convert: Callable[[Any], Any]) -> Decode:
    """``payload -> plain value``: the data as read, checked against the declared type by ``convert``."""

    def decode(data: bytes | None) -> Any:
        return None if data is None else convert(decode_fields(data))

    return decode


def body_reader(writer: Any, reader: Any, absent: tuple[str, ...], flat: FlatReader | None) -> Callable[[bytes], Any]:
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


def mismatch(where: str, data: bytes, exc: Exception) -> SerializationError:
    """The error for a body that does not match its writer schema."""
    schema_id = int.from_bytes(data[1:5], "big")
    return SerializationError(
        f"{where}: the Avro body does not match its writer schema (id {schema_id}) or cannot be read as the "
        f"topic's schema ({type(exc).__name__}: {exc}): {short(data)}"
    )


def field_names(schema: Any) -> set[str]:
    """The field names of a record schema (empty for other schemas)."""
    if isinstance(schema, dict) and schema.get("type") == "record":
        return {str(f["name"]) for f in schema.get("fields", ())}
    return set()


def canonical_form(schema: Any) -> str:
    """Avro's parsing canonical form of ``schema`` (to compare schemas)."""
    from fastavro.schema import to_parsing_canonical_form

    return str(to_parsing_canonical_form(schema))
