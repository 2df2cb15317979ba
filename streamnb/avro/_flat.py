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

# The kinds of field a flat record has. Up to _TIMESTAMP a field starts with a zigzag varint (the
# length of a string or bytes, or the number itself); the others have a fixed width.
_STRING, _BYTES, _LONG, _TIMESTAMP, _BOOLEAN, _DOUBLE, _FLOAT, _NULL = range(8)
_KINDS = {"string": _STRING, "bytes": _BYTES, "long": _LONG, "int": _LONG, "boolean": _BOOLEAN,
          "double": _DOUBLE, "float": _FLOAT, "null": _NULL}  # fmt: skip
_WIDTHS = (0, 0, 0, 0, 1, 8, 4, 0)  # kind -> bytes a fixed-width field takes (0: a varint kind)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_Unpack = Callable[[bytes, int], tuple[Any, ...]]
"""``unpack(data, pos) -> (value,)``: how a double, float or null field is read (``struct``'s ``unpack_from``)."""


def _read_null(data: bytes, pos: int) -> tuple[None]:
    """A ``null`` field: no bytes, the value None."""
    return (None,)


_UNPACK: tuple[_Unpack | None, ...] = (None, None, None, None, None, Struct("<d").unpack_from,
                                       Struct("<f").unpack_from, _read_null)  # kind -> its unpack, if fixed

_VALUE_BRANCH = (2, 0)  # null_at -> the branch byte (zigzag of the index) that announces a value

_Field = tuple[str, int, int]
"""One field of a flat record as the schema has it: ``(name, kind, null_at)``, the union's null index (-1: none)."""

_Step = tuple[str, int, int]
"""One field as :class:`_RecordReader` reads it: ``(name, kind, value_branch)``, the union byte announcing a value."""


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


def _flat_field(field: Any) -> _Field | None:
    """One field's ``(name, kind, null_at)``, or None if the field is not flat.

    A union is flat when it is ``null`` and one flat type, in either order.
    """
    ftype = field.get("type")
    null_at = -1
    if isinstance(ftype, list):
        if len(ftype) != 2 or "null" not in ftype:
            return None
        null_at = ftype.index("null")
        ftype = ftype[1 - null_at]
    kind = _kind(ftype)
    return None if kind is None else (str(field["name"]), kind, null_at)


def _flat_fields(schema: Any) -> tuple[_Field, ...] | None:
    """The fields of a flat record schema, in order, or None if ``schema`` is not a flat record."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return None
    fields = []
    for field in schema.get("fields", ()):
        flat = _flat_field(field)
        if flat is None:
            return None
        fields.append(flat)
    return tuple(fields)


def flat_reader(schema: Any, start: int = 0) -> FlatReader | None:
    """A reader of ``schema``'s bodies from byte ``start`` on, ``read(data) -> record``, or None if it is not flat.

    The body must end where ``data`` ends; anything wrong raises ValueError (or
    IndexError, UnicodeDecodeError, struct.error).
    """
    fields = _flat_fields(schema)
    if fields is None:
        return None
    steps = tuple((name, kind, -1 if null_at < 0 else _VALUE_BRANCH[null_at]) for name, kind, null_at in fields)
    return _RecordReader(steps, start).read


class _RecordReader:
    """Reads a flat record in one pass over its fields: ``_RecordReader(steps, start).read`` is a :data:`FlatReader`.

    ``steps`` holds each field's ``(name, kind, value_branch)``: ``value_branch``
    is the byte that announces a value in a union with null (-1: not a union).
    :meth:`read` is the hot path of every flat Avro topic, so it is one loop with
    the varint's one-byte case inlined, not a call per field; a bound method
    costs no more to call than a closure.
    """

    __slots__ = ("start", "steps")

    def __init__(self, steps: tuple[_Step, ...], start: int) -> None:
        self.steps, self.start = steps, start

    def read(self, data: bytes) -> dict[str, Any]:
        """The record in ``data`` from byte ``start`` on, which must end where ``data`` ends."""
        pos = self.start
        out: dict[str, Any] = {}
        size = len(data)
        for name, kind, value_branch in self.steps:
            if value_branch >= 0:  # a union with null: its branch index first
                branch = data[pos]
                pos += 1
                if branch != value_branch:
                    if branch != 2 - value_branch:  # nor null's (zigzag 0 and 1 are the bytes 0 and 2)
                        raise ValueError(f"union index {branch} out of range for field {name!r}")
                    out[name] = None
                    continue
            if kind <= _BYTES:  # the common case first: a length, then the text or bytes
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
            elif kind <= _TIMESTAMP:  # a number: the varint itself
                n = data[pos]
                if n < 0x80:
                    pos += 1
                    n = (n >> 1) ^ -(n & 1)
                else:
                    n, pos = varint(data, pos)
                out[name] = n if kind == _LONG else _EPOCH + timedelta(microseconds=n * 1000)
            elif kind == _BOOLEAN:
                out[name] = data[pos] != 0
                pos += 1
            else:  # a double, a float or a null: unpack reads it
                out[name] = _UNPACK[kind](data, pos)[0]  # type: ignore[misc]
                pos += _WIDTHS[kind]
        if pos != size:
            raise ValueError(f"the body ends {pos - size} bytes early" if pos > size else
                             f"{size - pos} bytes are left over after reading it")
        return out


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
    fields = _flat_fields(schema)
    names = [name for name, _, _ in fields or ()]
    if fields is None or wanted not in names:
        return None
    at = names.index(wanted)
    _, kind, null_at = fields[at]
    if kind > _BYTES or null_at >= 0:
        return None  # routing keys are strings or bytes; anything else reads the whole record
    skips = tuple((kind, null_at, _WIDTHS[kind]) for _, kind, null_at in fields[:at])
    return _FieldReader(skips, start, wanted, kind == _STRING).read


class _FieldReader:
    """Reads one string or bytes field: ``_FieldReader(skips, start, wanted, text).read`` is a :data:`FlatReader`.

    ``skips`` holds the ``(kind, null_at, width)`` of the fields before ``wanted``,
    which :meth:`read` steps over without building their values; ``text``: the
    field is a string (else bytes).
    """

    __slots__ = ("skips", "start", "text", "wanted")

    def __init__(self, skips: tuple[tuple[int, int, int], ...], start: int, wanted: str, text: bool) -> None:
        self.skips, self.start, self.wanted, self.text = skips, start, wanted, text

    def read(self, data: bytes) -> dict[str, Any]:
        """``{wanted: value}`` from the record in ``data`` (the bytes after the field are not looked at)."""
        pos = self.start
        for kind, null_at, width in self.skips:
            if null_at >= 0:
                branch = data[pos]
                pos += 1
                if branch >> 1 == null_at:
                    continue
            if kind <= _TIMESTAMP:  # a length, or a number: a varint
                n = data[pos]
                if n < 0x80:
                    pos += 1
                    n = (n >> 1) ^ -(n & 1)
                else:
                    n, pos = varint(data, pos)
                if kind <= _BYTES:
                    pos += n
            else:
                pos += width
        n = data[pos]
        if n < 0x80:
            pos += 1
            n = (n >> 1) ^ -(n & 1)
        else:
            n, pos = varint(data, pos)
        end = pos + n
        if n < 0 or end > len(data):
            raise ValueError(f"field {self.wanted!r}: length {n} does not fit the {len(data) - pos} bytes left")
        value = data[pos:end]
        return {self.wanted: value.decode() if self.text else value}
