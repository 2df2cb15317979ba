"""A fast reader for flat Avro records: the common case of a record whose fields are primitives.

fastavro's ``schemaless_reader`` sets up a decoder for every call, which
costs more than reading a small record itself; a topic reads millions of
them. For a record whose fields are ``string``, ``bytes``, ``long``,
``int``, ``boolean``, ``double``, ``float``, ``null``, ``timestamp-millis``
longs, or a union of ``null`` with one of those, :func:`flat_reader` returns a
plain loop over the fields that reads the body straight from the bytes; it
gives exactly what fastavro gives (``tests/avro/test_avro_flat.py`` checks
both on generated records). Any other schema (nested records, arrays, maps,
decimals, enums, resolution against a reader schema) gets ``None``: fastavro
reads those.

>>> read = flat_reader({"type": "record", "name": "P", "fields": [{"name": "page", "type": "string"}]}, 5)
>>> read(b"\\x00\\x00\\x00\\x00\\x01\\x04/a")
{'page': '/a'}
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from struct import Struct
from typing import Any

__all__ = ["FlatReader", "flat_field_reader", "flat_reader", "varint"]

FlatReader = Callable[[bytes], dict[str, Any]]

_STRING, _BYTES, _LONG, _BOOLEAN, _DOUBLE, _FLOAT, _NULL, _TIMESTAMP = range(8)
_KINDS = {"string": _STRING, "bytes": _BYTES, "long": _LONG, "int": _LONG, "boolean": _BOOLEAN,
          "double": _DOUBLE, "float": _FLOAT, "null": _NULL}  # fmt: skip
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def varint(data: bytes, pos: int) -> tuple[int, int]:
    """The zigzag varint (an Avro int or long) at ``pos``: ``(value, position after it)``.

    >>> varint(b"\\x00\\xac\\x02", 1)
    (150, 3)
    """
    result = shift = 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7
        if shift > 63:
            raise ValueError("a varint longer than 10 bytes")


def _kind(schema: Any) -> int | None:
    if isinstance(schema, str):
        return _KINDS.get(schema)
    if isinstance(schema, dict):
        logical = schema.get("logicalType")
        if logical is None:
            return _kind(schema.get("type"))
        if logical == "timestamp-millis" and schema.get("type") == "long":
            return _TIMESTAMP
    return None


def flat_reader(schema: Any, start: int = 0) -> FlatReader | None:
    """A reader of ``schema``'s bodies from byte ``start`` on, ``read(data) -> record``, or None if it is not flat.

    The body must end where ``data`` ends; anything wrong raises ValueError (or
    IndexError, UnicodeDecodeError, struct.error).
    """
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return None
    fields: list[tuple[str, int, int]] = []  # (name, kind, which union index is null: -1 none)
    for field in schema.get("fields", ()):
        ftype = field.get("type")
        null_at = -1
        if isinstance(ftype, list):
            if len(ftype) != 2 or "null" not in ftype:
                return None
            null_at = ftype.index("null")
            ftype = ftype[1 - null_at]
        kind = _kind(ftype)
        if kind is None:
            return None
        fields.append((str(field["name"]), kind, null_at))
    spec = tuple(fields)
    double, single = Struct("<d").unpack_from, Struct("<f").unpack_from
    epoch, micros = _EPOCH, timedelta

    def read(data: bytes) -> dict[str, Any]:
        pos = start
        out: dict[str, Any] = {}
        size = len(data)
        for name, kind, null_at in spec:
            if null_at >= 0:
                branch = data[pos]
                pos += 1
                if branch not in (0, 2):  # zigzag 0 and 1
                    raise ValueError(f"union index {branch} out of range for field {name!r}")
                if branch >> 1 == null_at:
                    out[name] = None
                    continue
            if kind <= _BYTES:
                n = data[pos]
                if n < 0x80:
                    pos += 1
                    n = (n >> 1) ^ -(n & 1)
                else:
                    n, pos = varint(data, pos)
                end = pos + n
                if n < 0 or end > size:
                    raise ValueError(f"field {name!r}: length {n} does not fit the {size - pos} bytes left")
                out[name] = data[pos:end].decode() if kind == _STRING else data[pos:end]
                pos = end
            elif kind == _LONG or kind == _TIMESTAMP:
                n = data[pos]
                if n < 0x80:
                    pos += 1
                    n = (n >> 1) ^ -(n & 1)
                else:
                    n, pos = varint(data, pos)
                out[name] = n if kind == _LONG else epoch + micros(microseconds=n * 1000)
            elif kind == _BOOLEAN:
                out[name] = data[pos] != 0
                pos += 1
            elif kind == _DOUBLE:
                out[name] = double(data, pos)[0]
                pos += 8
            elif kind == _FLOAT:
                out[name] = single(data, pos)[0]
                pos += 4
            else:
                out[name] = None
        if pos != size:
            raise ValueError(f"the body ends {pos - size} bytes early" if pos > size else
                             f"{size - pos} bytes are left over after reading it")
        return out

    return read


def flat_field_reader(schema: Any, start: int, wanted: str) -> FlatReader | None:
    """A reader of one field of ``schema``'s bodies: ``read(data) -> {wanted: value}`` (None if not flat).

    It skips the fields before ``wanted`` and stops after it: routing by a
    field (``group_by(Record.field)``) needs nothing else, and the message is
    read whole, and checked, where it is processed.

    >>> schema = {"type": "record", "name": "P", "fields": [
    ...     {"name": "id", "type": "string"}, {"name": "page", "type": "string"}, {"name": "n", "type": "long"}]}
    >>> flat_field_reader(schema, 0, "page")(b"\x021\x04/a\x02")
    {'page': '/a'}
    """
    full = flat_reader(schema, start)
    if full is None:
        return None
    plan: list[tuple[int, int]] = []  # (kind, null_at) of the fields up to the wanted one
    for field in schema["fields"]:
        ftype = field["type"]
        null_at = -1
        if isinstance(ftype, list):
            null_at = ftype.index("null")
            ftype = ftype[1 - null_at]
        kind = _kind(ftype)
        assert kind is not None  # flat_reader accepted the schema
        plan.append((kind, null_at))
        if field["name"] == wanted:
            break
    else:
        return None
    *skip, (last_kind, last_null) = plan
    if last_kind > _BYTES or last_null >= 0:
        return None  # routing keys are strings or bytes; anything else reads the whole record
    widths = {_BOOLEAN: 1, _DOUBLE: 8, _FLOAT: 4, _NULL: 0}

    def read(data: bytes) -> dict[str, Any]:
        pos = start
        for kind, null_at in skip:
            if null_at >= 0:
                branch = data[pos]
                pos += 1
                if branch >> 1 == null_at:
                    continue
            if kind <= _LONG or kind == _TIMESTAMP:  # a length, or a number: a varint
                n = data[pos]
                if n < 0x80:
                    pos += 1
                    n = (n >> 1) ^ -(n & 1)
                else:
                    n, pos = varint(data, pos)
                if kind <= _BYTES:
                    pos += n
            else:
                pos += widths[kind]
        n = data[pos]
        if n < 0x80:
            pos += 1
            n = (n >> 1) ^ -(n & 1)
        else:
            n, pos = varint(data, pos)
        end = pos + n
        if n < 0 or end > len(data):
            raise ValueError(f"field {wanted!r}: length {n} does not fit the {len(data) - pos} bytes left")
        value = data[pos:end]
        return {wanted: value.decode() if last_kind == _STRING else value}

    return read
