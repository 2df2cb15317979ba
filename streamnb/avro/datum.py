"""Between Python values and Avro datums: Records and JSON-ready data in, the declared type out.

:class:`Typed` knows a topic's declared type (a Record class, a plain type
or none) and gives the functions that turn values into what fastavro
writes (:func:`avro_ready`: Records as dicts, Enums by value) and datums
back into that type; :class:`FromJson` turns JSON lines (``%%produce``)
into datums of a schema.

>>> avro_ready({"n": 1, "tags": ("a",)})
{'n': 1, 'tags': ['a']}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from io import BytesIO
from typing import Any

from ..codecs._serde import label
from ..codecs._typerules import RULES, is_record, short, type_label
from ..errors import ConfigurationError, SerializationError, ValidationError
from ..models._fieldtypes import spec_for

__all__ = ["FromJson", "Typed", "avro_ready", "read_whole", "write_problem"]


def avro_ready(value: Any) -> Any:
    """What fastavro writes: Records as dicts (datetimes, Decimals, bytes kept), sequences as lists."""
    if value is None or isinstance(value, (str, int, float, bytes)):
        return value
    asdict = getattr(value, "asdict", None)
    if asdict is not None and hasattr(value, "compiled_schema"):
        return {k: avro_ready(v) for k, v in asdict().items()}
    if isinstance(value, Mapping):
        return {k: avro_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [avro_ready(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    return value


class FromJson:
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
        """``value`` as fastavro writes it for ``schema`` (as it is when it is right already, or cannot be)."""
        if value is None:
            return None
        if isinstance(schema, list):
            return self._union(schema, value)
        if isinstance(schema, str):
            return self._by_name(schema, value)
        return self._by_object(schema, value)

    def _union(self, branches: list[Any], value: Any) -> Any:
        """The first branch other than null that turns ``value`` into something else."""
        for branch in branches:
            if branch == "null":
                continue
            try:
                converted = self.convert(branch, value)
            except (TypeError, ValueError, ArithmeticError):
                continue
            if converted is not value:
                return converted
        return value

    def _by_name(self, name: str, value: Any) -> Any:
        """A type given by name: ``bytes`` from text, or a named record, enum or fixed defined before."""
        if name == "bytes" and isinstance(value, str):
            return value.encode("latin-1")
        found = self.named.get(name)
        return value if found is None else self.convert(found, value)

    def _by_object(self, schema: Mapping[str, Any], value: Any) -> Any:
        """A type given as an object: a logical type, a record, an array, a map, or a type it wraps."""
        converted = _logical_from_json(schema.get("logicalType"), value)
        if converted is not _NOT_LOGICAL:
            return converted
        kind = schema.get("type")
        if kind == "record" and isinstance(value, Mapping):
            return self._record(schema, value)
        if kind == "array" and isinstance(value, list):
            return [self.convert(schema["items"], v) for v in value]
        if kind == "map" and isinstance(value, Mapping):
            return {k: self.convert(schema["values"], v) for k, v in value.items()}
        if isinstance(kind, (str, list)) and kind not in ("record", "array", "map", "enum", "fixed"):
            return self.convert(kind, value)  # {"type": "string"}, {"type": [...]}: the type inside
        return value

    def _record(self, schema: Mapping[str, Any], value: Mapping[str, Any]) -> dict[str, Any]:
        """A record's fields converted by their types; keys the schema does not know are kept as they are."""
        out = dict(value)
        for field in schema.get("fields", ()):
            name = field["name"]
            if name in out:
                out[name] = self.convert(field["type"], out[name])
        return out


_NOT_LOGICAL: Any = object()


def _logical_from_json(logical: Any, value: Any) -> Any:
    """A logical type's value from its JSON form (ISO-8601 text, a number or numeric text), else _NOT_LOGICAL."""
    if logical in ("timestamp-millis", "timestamp-micros") and isinstance(value, str):
        return datetime.fromisoformat(value)
    if logical == "date" and isinstance(value, str):
        return date.fromisoformat(value)
    if logical == "decimal" and isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    return _NOT_LOGICAL


def write_problem(exc: Exception, schema: Any, datum: Any) -> str:
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


def read_whole(data: Any, writer: Any, reader: Any, where: str, which: str) -> Any:
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


class Typed:
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
            return avro_ready
        if self.record:
            plain = self.plain

            def record_datum(value: Any) -> Any:
                if isinstance(value, type_):
                    return vars(value) if plain else avro_ready(value)
                if isinstance(value, Mapping):
                    return avro_ready(value)
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
            return avro_ready(value)

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
