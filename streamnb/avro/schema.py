"""Avro schemas: derived from a Record's annotations, or loaded from a dict or an ``.avsc`` file.

:func:`avro_schema` maps each annotated type to its Avro form:

=================================  ===============================================================
annotation                         Avro
=================================  ===============================================================
``str`` / ``int`` / ``float``      ``"string"`` / ``"long"`` / ``"double"``
``bool`` / ``bytes``               ``"boolean"`` / ``"bytes"``
``datetime``                       ``long`` with logical type ``timestamp-millis`` (UTC)
``date`` / ``time`` / ``UUID``     ``date`` / ``time-micros`` / ``uuid`` logical types
``Decimal``                        ``bytes`` with logical type ``decimal``, precision 38, scale 9
                                   by default; ``Annotated[Decimal, AvroDecimal(10, 2)]`` sets them
``X | None`` (``Optional[X]``)     ``["null", X]`` (``[X, "null"]`` when the default is not None)
``A | B``                          ``[A, B]``
``list[X]``, ``set[X]``, ...       ``{"type": "array", "items": X}``
``dict[str, X]``                   ``{"type": "map", "values": X}`` (Avro map keys are strings)
a nested Record                    a nested ``record`` (by name when it appears again)
=================================  ===============================================================

Field defaults become Avro defaults, which is what lets a reader with a
newer Record read messages written before a field was added. A Record's
Avro name is its class name, or its ``namespace`` option (Faust's name for
the model's full name): ``class Order(Record, namespace="shop.Order")`` is
the record ``Order`` in the Avro namespace ``shop``; two classes with the
same ``namespace`` are versions of one record. Any other annotation (``Any``, ``Enum``,
``Literal``, ``dict[int, X]``, ...) is a :class:`ConfigurationError`: give
the schema explicitly then.

>>> from streamnb import Record
>>> class PageView(Record):
...     user: str
...     page: str = "/"
>>> avro_schema(PageView)
{'type': 'record', 'name': 'PageView', 'fields': [{'name': 'user', 'type': 'string'}, \
{'name': 'page', 'type': 'string', 'default': '/'}]}
"""

from __future__ import annotations

import json
import typing
from collections.abc import Callable, Mapping, MutableSequence, Sequence, Set
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, NamedTuple, Union, get_args, get_origin
from uuid import UUID

from ..codecs._typerules import is_record
from ..errors import ConfigurationError

__all__ = ["DEFAULT_DECIMAL", "AvroDecimal", "avro_schema", "full_name", "load_schema"]

Schema = Any  # an Avro schema as JSON data: a dict, a list (a union) or a str (a type name)

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


class AvroDecimal(NamedTuple):
    """Precision and scale of a ``Decimal`` field in Avro: ``Annotated[Decimal, AvroDecimal(10, 2)]``.

    Without it a ``Decimal`` is written with :data:`DEFAULT_DECIMAL`
    (precision 38, scale 9: up to 29 digits before the point and 9 after);
    a value with more decimal places than the scale cannot be written.

    >>> from typing import Annotated
    >>> avro_schema(Annotated[Decimal, AvroDecimal(10, 2)])
    {'type': 'bytes', 'logicalType': 'decimal', 'precision': 10, 'scale': 2}
    """

    precision: int = 38
    scale: int = 9


DEFAULT_DECIMAL = AvroDecimal()
"""What a ``Decimal`` field is without an :class:`AvroDecimal` annotation: precision 38, scale 9."""

_SCALARS: dict[Any, Schema] = {
    str: "string",
    int: "long",
    float: "double",
    bool: "boolean",
    bytes: "bytes",
    NoneType: "null",
    datetime: {"type": "long", "logicalType": "timestamp-millis"},
    date: {"type": "int", "logicalType": "date"},
    time: {"type": "long", "logicalType": "time-micros"},
    UUID: {"type": "string", "logicalType": "uuid"},
}
_ARRAYS = (list, set, frozenset, Sequence, MutableSequence, Set)


def avro_schema(type_: Any) -> Schema:
    """The Avro schema of a Record class or of an annotation (see the table above).

    >>> from datetime import datetime
    >>> avro_schema(datetime | None)
    ['null', {'type': 'long', 'logicalType': 'timestamp-millis'}]
    >>> avro_schema(dict[str, list[int]])
    {'type': 'map', 'values': {'type': 'array', 'items': 'long'}}
    """
    return _Deriver().schema(type_, type_label(type_))


def full_name(schema: Schema) -> str | None:
    """The full name (``namespace.Name``) of a named schema, or ``None`` for other schemas.

    >>> full_name({"type": "record", "name": "Order", "namespace": "shop", "fields": []})
    'shop.Order'
    >>> full_name("string") is None
    True
    """
    if not isinstance(schema, dict) or schema.get("type") not in ("record", "enum", "fixed"):
        return None
    name = str(schema.get("name", ""))
    namespace = schema.get("namespace")
    return name if "." in name or not namespace else f"{namespace}.{name}"


def load_schema(schema: Any) -> Schema:
    """An explicit Avro schema: a dict (or list), a path to an ``.avsc`` file, or JSON text.

    The schema is checked with fastavro; a bad one is a :class:`ConfigurationError`.

    >>> load_schema('{"type": "array", "items": "string"}')
    {'type': 'array', 'items': 'string'}
    >>> load_schema("long")
    'long'
    """
    if isinstance(schema, Path):
        schema = str(schema)
    if isinstance(schema, str):
        text = schema.strip()
        if text in PRIMITIVES:
            loaded: Schema = text
        elif text[:1] in ("{", "[", '"'):
            try:
                loaded = json.loads(text)
            except ValueError as exc:
                raise ConfigurationError(f"the Avro schema is not valid JSON ({exc}): {text[:60]!r}") from exc
        else:
            path = Path(text).expanduser()
            if not path.is_file():
                raise ConfigurationError(
                    f"Avro schema {text!r}: no such file; give a path to an .avsc file, the schema as a dict, "
                    "or its JSON text"
                )
            try:
                loaded = json.loads(path.read_text(encoding="utf-8"))
            except ValueError as exc:
                raise ConfigurationError(f"Avro schema file {str(path)!r} is not valid JSON: {exc}") from exc
    elif isinstance(schema, (dict, list)):
        loaded = schema
    else:
        raise ConfigurationError(
            f"an Avro schema must be a dict, a list (a union), a path to an .avsc file or JSON text; got {schema!r}"
        )
    check(loaded)
    return loaded


def check(schema: Schema) -> Any:
    """Parse ``schema`` with fastavro (returns the parsed form); a bad schema is a ConfigurationError."""
    from fastavro import parse_schema
    from fastavro.schema import SchemaParseException, UnknownType

    try:
        return parse_schema(schema)
    except (SchemaParseException, UnknownType, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ConfigurationError(
            f"invalid Avro schema ({type(exc).__name__}: {exc}): {json.dumps(schema)[:120]}"
        ) from exc


def type_label(type_: Any) -> str:
    return getattr(type_, "__name__", None) or repr(type_).replace("typing.", "")


# -- derivation ---------------------------------------------------------------------------------


class _Deriver:
    """One schema derivation: remembers the records already written, to name them the second time."""

    def __init__(self) -> None:
        self.named: set[str] = set()

    def schema(self, tp: Any, where: str) -> Schema:
        """The Avro schema of annotation ``tp``; ``where`` (``Record.field``) names it in errors."""
        if get_origin(tp) is typing.Annotated:
            return self._annotated(tp, where)
        if hasattr(tp, "__supertype__"):  # typing.NewType
            return self.schema(tp.__supertype__, where)
        scalar = _scalar_schema(tp, where)
        if scalar is not None:
            return scalar
        if is_record(tp):
            return self.record(tp)
        return self._generic(tp, where)

    def _annotated(self, tp: Any, where: str) -> Schema:
        """``Annotated[X, ...]``: X's schema, or a decimal with the precision and scale of an ``AvroDecimal``."""
        base, *extras = get_args(tp)
        for extra in extras:
            if isinstance(extra, AvroDecimal):
                if base is not Decimal:
                    raise ConfigurationError(f"{where}: AvroDecimal(...) annotates Decimal, not {type_label(base)}")
                return _decimal(extra, where)
        return self.schema(base, where)

    def _generic(self, tp: Any, where: str) -> Schema:
        """A parametrised annotation: a union, ``list[X]`` (other sequences, ``tuple[X, ...]``), ``dict[str, X]``."""
        origin, args = get_origin(tp), get_args(tp)
        if origin in (Union, UnionType):
            return [self.schema(a, where) for a in _union_order(args, None)]
        if (origin is tuple and len(args) == 2 and args[1] is Ellipsis) or (origin in _ARRAYS and args):
            return {"type": "array", "items": self.schema(args[0], where)}
        is_mapping = origin in (dict, Mapping) or (isinstance(origin, type) and issubclass(origin, Mapping))
        if is_mapping and len(args) == 2:
            if args[0] is not str:
                raise ConfigurationError(
                    f"{where}: Avro maps have string keys, so {type_label(tp)} has no Avro form; "
                    f"use dict[str, ...], or give the schema explicitly"
                )
            return {"type": "map", "values": self.schema(args[1], where)}
        raise ConfigurationError(
            f"{where}: {type_label(tp)} has no Avro form derived by streamnb (it knows str, int, float, bool, "
            "bytes, datetime, date, time, UUID, Decimal, Optional/unions, list[X], set[X], dict[str, X] and "
            "Records); change the annotation, or give the Avro schema explicitly: AvroCodec(schema=...)"
        )

    def record(self, cls: Any) -> Schema:
        options = getattr(cls, "_options", None) or {}
        given = options.get("namespace") if isinstance(options, Mapping) else None
        full = str(given or cls.__name__)
        namespace, _, name = full.rpartition(".")
        if full in self.named:
            return full
        self.named.add(full)
        types = _annotations(cls)
        fields = []
        for field, tp in types.items():
            where = f"{name}.{field}"
            descriptor = getattr(cls, field, None)
            required = getattr(descriptor, "required", True)
            default = None if required else descriptor.default  # type: ignore[union-attr]
            origin = get_origin(tp)
            if origin in (Union, UnionType) and not required:
                schema: Schema = [self.schema(a, where) for a in _union_order(get_args(tp), default)]
            else:
                schema = self.schema(tp, where)
            entry: dict[str, Any] = {"name": field, "type": schema}
            if not required:
                entry["default"] = _default(schema, default, where)
            fields.append(entry)
        out: dict[str, Any] = {"type": "record", "name": name}
        if namespace:
            out["namespace"] = namespace
        out["fields"] = fields
        return out


def _scalar_schema(tp: Any, where: str) -> Schema | None:
    """The schema of a type Avro has a primitive or logical type for (None if ``tp`` is not one)."""
    if tp is None or tp is NoneType:
        return "null"
    try:
        known = _SCALARS.get(tp)
    except TypeError:  # an unhashable annotation
        known = None
    if known is not None:
        return dict(known) if isinstance(known, dict) else known
    if tp is Decimal:
        return _decimal(DEFAULT_DECIMAL, where)
    return None


def _annotations(cls: Any) -> dict[str, Any]:
    """The Record's field annotations, with ``Annotated`` extras kept when they can be resolved."""
    types: dict[str, Any] = dict(cls.compiled_schema().types)
    try:
        hints = typing.get_type_hints(cls, localns={cls.__name__: cls}, include_extras=True)
    except Exception:  # a local class named in an annotation: the resolved types, without extras
        return types
    return {name: hints.get(name, tp) for name, tp in types.items()}


def _union_order(args: tuple[Any, ...], default: Any) -> list[Any]:
    """Union members in Avro order: the default's type first (null first for Optional without another default)."""
    members = list(args)
    if NoneType in members and default is None:
        members.remove(NoneType)
        return [NoneType, *members]
    if default is not None:
        for member in members:
            base = get_args(member)[0] if get_origin(member) is typing.Annotated else member
            if isinstance(base, type) and isinstance(default, base) and not (base is int and isinstance(default, bool)):
                members.remove(member)
                return [member, *members]
    return members


def _decimal(spec: AvroDecimal, where: str) -> Schema:
    if not (isinstance(spec.precision, int) and isinstance(spec.scale, int) and 0 <= spec.scale <= spec.precision):
        raise ConfigurationError(
            f"{where}: AvroDecimal needs 0 <= scale <= precision (ints), got precision={spec.precision!r}, "
            f"scale={spec.scale!r}"
        )
    return {"type": "bytes", "logicalType": "decimal", "precision": spec.precision, "scale": spec.scale}


def _default(schema: Schema, value: Any, where: str) -> Any:
    """``value`` as an Avro default for ``schema`` (for a union: its first member)."""
    if isinstance(schema, list):
        schema = schema[0]
    try:
        return _json_default(schema, value)
    except (TypeError, ValueError, ArithmeticError, AttributeError) as exc:
        raise ConfigurationError(
            f"{where}: the default {value!r} has no Avro form for {json.dumps(schema)} ({exc}); "
            "change the default, or give the schema explicitly"
        ) from exc


def _json_default(schema: Schema, value: Any) -> Any:
    """``value`` as the JSON an Avro default of ``schema`` is written in (raises for a value it cannot be)."""
    if isinstance(schema, str) and schema not in PRIMITIVES:  # a named record written before
        return _record_default(value)
    kind = _type_of(schema)
    logical = schema.get("logicalType") if isinstance(schema, dict) else None
    if value is None:
        if kind != "null":
            raise ValueError("None needs a null type first")
        return None
    to_json = _LOGICAL_DEFAULTS.get(logical) or _TYPE_DEFAULTS.get(kind)  # derived schemas: str names
    if to_json is None:
        raise TypeError(f"unexpected default for {kind}")
    return to_json(schema, value)


def _type_of(schema: Schema) -> Any:
    """The ``type`` of a schema: its name, or the ``type`` of a schema given as an object."""
    return schema if isinstance(schema, str) else schema.get("type")


def _timestamp_default(schema: Schema, value: datetime) -> int:
    """Milliseconds since the epoch (a naive datetime is UTC)."""
    stamp = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return int(stamp.timestamp() * 1000)


def _time_default(schema: Schema, value: time) -> int:
    """Microseconds since midnight."""
    return ((value.hour * 60 + value.minute) * 60 + value.second) * 1_000_000 + value.microsecond


def _decimal_default(schema: Schema, value: Any) -> str:
    """The unscaled value's big-endian two's complement bytes, as latin-1 text (Avro's JSON for bytes)."""
    unscaled = int(Decimal(value).scaleb(schema["scale"]).to_integral_exact())
    size = max(1, (unscaled.bit_length() + 8) // 8)
    return unscaled.to_bytes(size, "big", signed=True).decode("latin-1")


def _integer_default(schema: Schema, value: Any) -> int:
    """An int or long; a bool is not one (Python's ``True`` is an int, Avro's is not)."""
    if isinstance(value, bool):
        raise TypeError(f"unexpected default for {_type_of(schema)}")
    return int(value)


_DefaultToJson = Callable[[Schema, Any], Any]

_LOGICAL_DEFAULTS: dict[str | None, _DefaultToJson] = {  # logicalType -> the default as JSON (checked first)
    "timestamp-millis": _timestamp_default,
    "date": lambda schema, value: (value - date(1970, 1, 1)).days,
    "time-micros": _time_default,
    "uuid": lambda schema, value: str(value),
    "decimal": _decimal_default,
}

_TYPE_DEFAULTS: dict[Any, _DefaultToJson] = {  # type -> the default as JSON
    "bytes": lambda schema, value: bytes(value).decode("latin-1"),
    "array": lambda schema, value: [_json_default(schema["items"], v) for v in value],
    "map": lambda schema, value: {str(k): _json_default(schema["values"], v) for k, v in value.items()},
    "record": lambda schema, value: _record_default(value, schema),
    "long": _integer_default,
    "int": _integer_default,
    "double": lambda schema, value: float(value),
    "float": lambda schema, value: float(value),
    "boolean": lambda schema, value: bool(value),
    "string": lambda schema, value: str(value),
}


def _record_default(value: Any, schema: Schema = None) -> Any:
    data = value.asdict() if hasattr(value, "asdict") else dict(value)
    if schema is None:
        return json.loads(json.dumps(data, default=str))
    return {f["name"]: _json_default(f["type"] if not isinstance(f["type"], list) else f["type"][0],
                                     data[f["name"]]) for f in schema["fields"] if f["name"] in data}
