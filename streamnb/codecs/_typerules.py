"""The declared key/value types the built-in codecs know: one :class:`Rule` each.

A rule says which values ``send`` accepts for the type, how such a value is
written as JSON data or as text, and how a JSON payload or a text payload is
read back (raising TypeError/ValueError/ArithmeticError when it does not fit).
:mod:`streamnb.codecs` shows them as a table; :mod:`streamnb.codecs._serde` builds
encoders and decoders from them.

>>> rule = RULES[int]
>>> rule.from_json(42), rule.from_text(b"42"), rule.to_text(42), rule.accepts(True)
(42, 42, b'42', False)
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

__all__ = ["FAIL", "JSON_NAMES", "RULES", "Convert", "Rule", "identity", "is_record", "short", "type_label", "wrong"]

Convert = Callable[[Any], Any]
FAIL = (TypeError, ValueError, ArithmeticError)  # what a failing conversion raises


def short(data: Any, limit: int = 60) -> str:
    """``repr(data)`` cut to ``limit`` characters, for messages."""
    text = repr(data)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def type_label(type_: Any) -> str:
    """``int``, ``PageView``, ``None``: a declared type as messages show it."""
    return "None" if type_ is None else getattr(type_, "__name__", None) or repr(type_)


def is_record(type_: Any) -> bool:
    """Is ``type_`` a Record class (a class with ``from_data``)?"""
    return isinstance(type_, type) and callable(getattr(type_, "from_data", None))


class Rule(NamedTuple):
    """One declared type: what encode accepts, and its JSON and text forms."""

    name: str
    accepts: Callable[[Any], bool]  # encode: is this value one of the type's?
    json_form: str  # what a JSON payload must hold, for messages
    from_json: Convert  # JSON data -> value; raises TypeError/ValueError when it does not fit
    to_json: Convert  # accepted value -> JSON data
    text_form: str | None  # what a text payload must hold; None: the type has no text form
    from_text: Callable[[bytes], Any] | None  # payload -> value; raises ValueError when it does not fit
    to_text: Callable[[Any], bytes] | None  # accepted value -> payload


def identity(value: Any) -> Any:
    return value


def wrong(value: Any) -> TypeError:
    return TypeError(type(value).__name__)


def _json_str(v: Any) -> str:
    if type(v) is str:
        return v
    raise wrong(v)


def _json_int(v: Any) -> int:
    if type(v) is int:
        return v
    raise wrong(v)


def _json_float(v: Any) -> float:
    kind = type(v)
    if kind is float:
        return v  # type: ignore[no-any-return]
    if kind is int:
        return float(v)
    raise wrong(v)


def _json_bool(v: Any) -> bool:
    if type(v) is bool:
        return v
    raise wrong(v)


def _json_bytes(v: Any) -> bytes:
    if type(v) is str:
        return base64.b64decode(v, validate=True)
    raise wrong(v)


def _json_decimal(v: Any) -> Decimal:
    kind = type(v)
    if kind is Decimal:
        return v  # type: ignore[no-any-return]
    if kind is str or kind is int:
        return Decimal(v)
    if kind is float:
        return Decimal(repr(v))  # 1.5 -> Decimal("1.5"), not the binary expansion
    raise wrong(v)


def _json_datetime(v: Any) -> datetime:
    if type(v) is str:
        return datetime.fromisoformat(v)
    if isinstance(v, datetime):
        return v
    raise wrong(v)


def _json_dict(v: Any) -> Any:
    if type(v) is dict or isinstance(v, Mapping):
        return v
    raise wrong(v)


def _json_list(v: Any) -> Any:
    if type(v) is list:
        return v
    raise wrong(v)


def _text_bool(data: bytes) -> bool:
    word = data.strip().lower()
    if word in (b"true", b"1"):
        return True
    if word in (b"false", b"0"):
        return False
    raise ValueError("not a boolean")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_decimal(v: Any) -> bool:
    return isinstance(v, (Decimal, int, float)) and not isinstance(v, bool)


RULES: dict[Any, Rule] = {
    str: Rule(
        "str", lambda v: isinstance(v, str),
        "a JSON string", _json_str, identity,
        "UTF-8 text", bytes.decode, str.encode,
    ),
    int: Rule(
        "int", _is_int,
        "a JSON integer (not a float or a bool)", _json_int, identity,
        "an integer as text, e.g. b'42'", int, lambda v: b"%d" % v,
    ),
    float: Rule(
        "float", _is_number,
        "a JSON number", _json_float, identity,
        "a number as text, e.g. b'3.14'", float, lambda v: repr(float(v)).encode(),
    ),
    bool: Rule(
        "bool", lambda v: isinstance(v, bool),
        "JSON true or false", _json_bool, identity,
        "b'true' or b'false' (or b'1'/b'0')", _text_bool, lambda v: b"true" if v else b"false",
    ),
    bytes: Rule(
        "bytes", lambda v: isinstance(v, (bytes, bytearray, memoryview)),
        "a base64 JSON string", _json_bytes, lambda v: base64.b64encode(v).decode("ascii"),
        "bytes", bytes, bytes,
    ),
    Decimal: Rule(
        "Decimal", _is_decimal,
        "a JSON number or a numeric JSON string", _json_decimal, lambda v: str(v) if isinstance(v, Decimal) else v,
        "a decimal number as text, e.g. b'3.14'", lambda b: Decimal(b.decode()), lambda v: str(v).encode(),
    ),
    datetime: Rule(
        "datetime", lambda v: isinstance(v, datetime),
        "an ISO-8601 JSON string", _json_datetime, datetime.isoformat,
        "ISO-8601 text, e.g. b'2024-05-06T07:08:09+00:00'",
        lambda b: datetime.fromisoformat(b.decode()), lambda v: v.isoformat().encode(),
    ),
    dict: Rule("dict", lambda v: isinstance(v, Mapping), "a JSON object", _json_dict, identity, None, None, None),
    list: Rule("list", lambda v: isinstance(v, (list, tuple)), "a JSON array", _json_list, identity, None, None, None),
}

JSON_NAMES = {
    dict: "a JSON object", list: "a JSON array", str: "a JSON string", bool: "a JSON boolean",
    int: "a JSON integer", float: "a JSON number", type(None): "JSON null",
}

