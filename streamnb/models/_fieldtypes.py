"""Field types: how a Record checks, coerces, rebuilds and encodes one annotated type.

:func:`spec_for` compiles a field annotation (``int``, ``datetime``,
``list[Item]``, ``dict[int, Decimal]``, ``X | None``, ``Literal[...]``,
``tuple[int, str]``, Enums, NewTypes, nested Records, any other class) into a
:class:`Spec`: plain functions that :mod:`streamnb.models` wires into a Record
class once, when its annotations are resolved, so no annotation is inspected
per message. Unknown typing constructs act as ``Any``.

>>> spec = spec_for(dict[int, list[Decimal]])
>>> spec.name, spec.check({1: [Decimal(2)]}), spec.coerce({"1": ["2.5"]})
('dict[int, list[Decimal]]', True, {1: [Decimal('2.5')]})
>>> spec.rebuild({"1": ["2.5"]})  # from JSON data: object keys are strings, Decimals str
{1: [Decimal('2.5')]}

:func:`to_json` goes the other way, for ``Record.to_representation``.

Nested Records are what ties this module to :mod:`streamnb.models`: that
module registers its ``Record`` class here (:func:`register_record_base`)
right after defining it, so this module never imports it.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Mapping, MutableSequence, Sequence, Set
from datetime import UTC, date, datetime, time
from decimal import Decimal
from enum import Enum
from types import NoneType, UnionType
from typing import Any, Literal, NamedTuple, Union, get_args, get_origin
from uuid import UUID

from ..errors import ValidationError

__all__ = [
    "CONVERT_ERRORS", "Converter", "Spec", "register_record_base", "short_repr", "spec_for", "to_json", "type_name"
]


class _NoRecordYet:
    """Stands for ``Record`` until :mod:`streamnb.models` registers it."""


_record_base: type = _NoRecordYet


def register_record_base(base: type) -> None:
    """Make ``base`` (``streamnb.models.Record``) the class whose subclasses are nested Records."""
    global _record_base
    _record_base = base

Converter = Callable[[Any], Any]
CONVERT_ERRORS = (TypeError, ValueError, ArithmeticError)  # what a failing Spec.coerce raises (or ValidationError)


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Spec(NamedTuple):
    """One annotated type, compiled: what :func:`spec_for` returns."""

    name: str  # readable type name for messages
    check: Callable[[Any], bool]  # is the value already of this type (deeply)?
    coerce: Converter  # convert to this type, or raise TypeError/ValueError
    rebuild: Converter | None  # JSON data -> value without coercion; None: JSON data is fine as is
    plain: bool  # values are JSON data already (to_representation leaves them alone)


def _always(value: Any) -> bool:
    return True


def _identity(value: Any) -> Any:
    return value


_ANY = Spec("Any", _always, _identity, None, False)


def _wrong(expected: str, value: Any) -> TypeError:
    return TypeError(f"expected {expected}, got {type(value).__name__}")


def _coerce_str(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, (date, time)):
        return v.isoformat()
    if isinstance(v, (int, float, Decimal, UUID)):
        return str(v)
    raise _wrong("str", v)


def _coerce_int(v: Any) -> int:
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, (str, bytes)):
        return int(v)
    if isinstance(v, (float, Decimal)) and not isinstance(v, bool) and v == int(v):
        return int(v)
    raise _wrong("an int (or an integral float / numeric string)", v)


def _coerce_float(v: Any) -> float:
    if isinstance(v, (int, float, Decimal, str)) and not isinstance(v, bool):
        return float(v)
    raise _wrong("a number or numeric string", v)


_TRUE, _FALSE = frozenset({"true", "1", "yes", "y", "on", "t"}), frozenset({"false", "0", "no", "n", "off", "f", ""})


def _coerce_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in _TRUE | _FALSE:
        return v.strip().lower() in _TRUE
    raise ValueError(f"{short_repr(v)} is not a boolean (use true/false, 1/0, yes/no)")


def _coerce_bytes(v: Any) -> bytes:
    if isinstance(v, bytes):
        return v
    if isinstance(v, str):
        return base64.b64decode(v, validate=True)
    if isinstance(v, (bytearray, memoryview)):
        return bytes(v)
    raise _wrong("bytes or a base64 str", v)


def _coerce_datetime(v: Any) -> datetime:
    if isinstance(v, datetime):
        return v
    if isinstance(v, str):
        return datetime.fromisoformat(v)
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return datetime.fromtimestamp(v, UTC)
    raise _wrong("a datetime, an ISO-8601 str or a POSIX timestamp", v)


def _coerce_date(v: Any) -> date:
    if isinstance(v, datetime):
        return v.date()
    if isinstance(v, date):
        return v
    if isinstance(v, str):
        return date.fromisoformat(v)
    raise _wrong("a date or an ISO-8601 str", v)


def _coerce_time(v: Any) -> time:
    if isinstance(v, time):
        return v
    if isinstance(v, str):
        return time.fromisoformat(v)
    raise _wrong("a time or an ISO-8601 str", v)


def _coerce_decimal(v: Any) -> Decimal:
    if isinstance(v, Decimal):
        return v
    if isinstance(v, (str, int)) and not isinstance(v, bool):
        return Decimal(v)
    if isinstance(v, float):
        return Decimal(repr(v))  # 1.5 -> Decimal("1.5"), not the binary expansion
    raise _wrong("a Decimal, a number or a numeric str", v)


def _coerce_uuid(v: Any) -> UUID:
    return v if isinstance(v, UUID) else UUID(v)


def _rebuilder(coerce: Converter, *json_types: type) -> Converter:
    """Rebuild from JSON data only when it has one of ``json_types`` (else keep it as given)."""

    def rebuild(v: Any) -> Any:
        return coerce(v) if isinstance(v, json_types) else v

    return rebuild


def _scalar(name: str, check: Callable[[Any], bool], coerce: Converter, *json_types: type) -> Spec:
    return Spec(name, check, coerce, _rebuilder(coerce, *json_types) if json_types else None, not json_types)


_SCALARS: dict[Any, Spec] = {
    str: _scalar("str", lambda v: isinstance(v, str), _coerce_str),
    int: _scalar("int", lambda v: isinstance(v, int) and not isinstance(v, bool), _coerce_int),
    float: _scalar("float", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), _coerce_float),
    bool: _scalar("bool", lambda v: isinstance(v, bool), _coerce_bool),
    bytes: _scalar("bytes", lambda v: isinstance(v, bytes), _coerce_bytes, str),
    datetime: _scalar("datetime", lambda v: isinstance(v, datetime), _coerce_datetime, str),
    date: _scalar("date", lambda v: isinstance(v, date), _coerce_date, str),
    time: _scalar("time", lambda v: isinstance(v, time), _coerce_time, str),
    Decimal: _scalar("Decimal", lambda v: isinstance(v, Decimal), _coerce_decimal, str, int, float),
    UUID: _scalar("UUID", lambda v: isinstance(v, UUID), _coerce_uuid, str),
    NoneType: Spec("None", lambda v: v is None, lambda v: v if v is None else _wrong("None", v), None, True),
}
_SCALARS[None] = _SCALARS[NoneType]
_BARE = {list: list[Any], set: set[Any], frozenset: frozenset[Any], tuple: tuple[Any, ...], dict: dict[Any, Any]}
_SEQUENCES = {list: list, Sequence: list, MutableSequence: list, set: set, Set: frozenset, frozenset: frozenset}


def spec_for(tp: Any) -> Spec:
    """Compile an annotation into a :class:`Spec` (unknown typing constructs act as ``Any``)."""
    if tp is Any or tp is object:
        return _ANY
    known = _known_spec(tp)
    if known is not None:
        return known
    if hasattr(tp, "__supertype__"):  # typing.NewType
        return spec_for(tp.__supertype__)
    origin = get_origin(tp)
    if origin is None:
        return _unparametrised_spec(tp)
    return _parametrised_spec(tp, origin, get_args(tp))


def _known_spec(tp: Any) -> Spec | None:
    """A scalar's spec, or a bare container's (``list`` is ``list[Any]``); None for any other annotation."""
    try:
        scalar, bare = _SCALARS.get(tp), _BARE.get(tp)
    except TypeError:  # an unhashable annotation
        return None
    if scalar is not None:
        return scalar
    return None if bare is None else spec_for(bare)


def _unparametrised_spec(tp: Any) -> Spec:
    """An annotation without parameters: a nested Record, an Enum or another class, or an unknown construct."""
    if not isinstance(tp, type):
        return _ANY._replace(name=type_name(tp))
    if issubclass(tp, _record_base):
        return _record_spec(tp)
    return _class_spec(tp, rebuild=issubclass(tp, Enum))


def _parametrised_spec(tp: Any, origin: Any, args: tuple[Any, ...]) -> Spec:
    """``X | Y``, ``Literal[...]``, ``tuple[...]``, ``list[X]`` and other sequences, ``dict[K, V]``; else by origin."""
    if origin in (Union, UnionType):
        return _union_spec(args)
    if origin is Literal:
        return _literal_spec(type_name(tp), args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return _sequence_spec(tuple, spec_for(args[0]))
        return _tuple_spec([spec_for(a) for a in args])
    if origin in _SEQUENCES:
        return _sequence_spec(_SEQUENCES[origin], spec_for(args[0] if args else Any))
    if origin in (dict, Mapping) or (isinstance(origin, type) and issubclass(origin, Mapping)):
        key, value = (args if len(args) == 2 else (Any, Any))
        return _dict_spec(spec_for(key), spec_for(value))
    return spec_for(origin) if isinstance(origin, type) else _ANY._replace(name=type_name(tp))


def _literal_spec(name: str, values: tuple[Any, ...]) -> Spec:
    """``Literal[...]``: one of ``values``, as it is (nothing to convert)."""
    return Spec(name, lambda v: v in values, lambda v: v if v in values else _raise(_wrong(name, v)), None, True)


def _raise(exc: Exception) -> Any:
    raise exc


def type_name(tp: Any) -> str:
    """An annotation as written in messages: ``int``, ``list[str]``, ``Optional[int]``."""
    return tp.__name__ if isinstance(tp, type) else repr(tp).replace("typing.", "")


def _class_spec(tp: Any, rebuild: bool) -> Spec:
    """Any other class: instances pass, other values go through ``tp(value)`` (Enums by value)."""

    def coerce(v: Any) -> Any:
        return v if isinstance(v, tp) else tp(v)

    rebuilt = _rebuilder(coerce, object) if rebuild else None
    return Spec(tp.__name__, lambda v: isinstance(v, tp), coerce, rebuilt, False)


def _record_spec(tp: Any) -> Spec:
    def coerce(v: Any) -> Any:
        if isinstance(v, tp):
            return v
        if isinstance(v, Mapping):
            return tp.from_data(v)
        raise _wrong(f"{tp.__name__} or a mapping", v)

    def rebuild(v: Any) -> Any:
        return tp.from_data(v) if isinstance(v, Mapping) else v

    return Spec(tp.__name__, lambda v: isinstance(v, tp), coerce, rebuild, False)


def _sequence_spec(kind: Any, item: Spec) -> Spec:
    name, check_item, coerce_item, rebuild_item = f"{kind.__name__}[{item.name}]", item.check, item.coerce, item.rebuild

    def check(v: Any) -> bool:
        return isinstance(v, kind) and (item is _ANY or all(map(check_item, v)))

    def coerce(v: Any) -> Any:
        if isinstance(v, (str, bytes, Mapping)) or not isinstance(v, Iterable):
            raise _wrong(f"a sequence for {name}", v)
        return kind(map(coerce_item, v))

    rebuild: Converter | None = None
    if rebuild_item is not None:
        rebuild = _rebuilder(lambda v: kind(map(rebuild_item, v)), list, tuple)
    elif kind is not list:
        rebuild = _rebuilder(kind, list)
    return Spec(name, check, coerce, rebuild, kind in (list, tuple) and item.plain)


def _tuple_spec(items: list[Spec]) -> Spec:
    name = f"tuple[{', '.join(i.name for i in items)}]"

    def check(v: Any) -> bool:
        return isinstance(v, tuple) and len(v) == len(items) and all(i.check(x) for i, x in zip(items, v))

    def coerce(v: Any) -> Any:
        if not isinstance(v, (list, tuple)) or len(v) != len(items):
            raise _wrong(f"{len(items)} items for {name}", v)
        return tuple(i.coerce(x) for i, x in zip(items, v))

    def rebuild(v: Any) -> Any:
        if not isinstance(v, (list, tuple)) or len(v) != len(items):
            return v
        return tuple(x if i.rebuild is None else i.rebuild(x) for i, x in zip(items, v))

    return Spec(name, check, coerce, rebuild, all(i.plain for i in items))


def _dict_spec(key: Spec, value: Spec) -> Spec:
    name = f"dict[{key.name}, {value.name}]"
    # JSON object keys are always strings: rebuild non-str keys (dict[int, X]) by coercion.
    rebuild_key = None if key is _SCALARS[str] or key is _ANY else key.coerce
    rebuild_value = value.rebuild

    def check(v: Any) -> bool:
        return isinstance(v, Mapping) and all(key.check(k) and value.check(x) for k, x in v.items())

    def coerce(v: Any) -> Any:
        if not isinstance(v, Mapping):
            raise _wrong(f"a mapping for {name}", v)
        return {key.coerce(k): value.coerce(x) for k, x in v.items()}

    def rebuild(v: Any) -> Any:
        if not isinstance(v, Mapping):
            return v
        rk, rv = rebuild_key or _identity, rebuild_value or _identity
        return {rk(k) if isinstance(k, str) else k: rv(x) for k, x in v.items()}

    needed = rebuild_key is not None or rebuild_value is not None
    return Spec(name, check, coerce, rebuild if needed else None, key.name == "str" and value.plain)


def _union_spec(args: tuple[Any, ...]) -> Spec:
    """``X | Y | ...``: ``Optional[X]`` (the common case, kept cheap), or a union of several types."""
    members = [spec_for(a) for a in args if a is not NoneType]
    if len(members) == 1:
        return _optional_spec(members[0])
    return _any_of_spec(members, optional=NoneType in args)


def _optional_spec(inner: Spec) -> Spec:
    """``X | None``: None, or what ``inner`` checks, coerces and rebuilds."""
    inner_check, inner_coerce, inner_rebuild = inner.check, inner.coerce, inner.rebuild
    return Spec(
        f"{inner.name} | None",
        lambda v: v is None or inner_check(v),
        lambda v: None if v is None else inner_coerce(v),
        None if inner_rebuild is None else (lambda v: None if v is None else inner_rebuild(v)),
        inner.plain,
    )


def _any_of_spec(members: list[Spec], optional: bool) -> Spec:
    """A union of several types (and None if ``optional``): the first member that accepts a value wins."""
    name = " | ".join([m.name for m in members] + (["None"] if optional else []))

    def check(v: Any) -> bool:
        return (optional and v is None) or any(m.check(v) for m in members)

    def coerce(v: Any) -> Any:
        if check(v):
            return v
        for member in members:  # first member that converts wins
            try:
                return member.coerce(v)
            except (*CONVERT_ERRORS, ValidationError):
                continue
        raise _wrong(name, v)

    rebuilders = [m for m in members if m.rebuild is not None]
    rebuild = _first_rebuild(check, rebuilders) if rebuilders else None
    return Spec(name, check, coerce, rebuild, all(m.plain for m in members))


def _first_rebuild(check: Callable[[Any], bool], members: list[Spec]) -> Converter:
    """A union's rebuild from JSON data: the value if it checks, else the first member's rebuild that checks."""

    def rebuild(v: Any) -> Any:
        if check(v):
            return v
        for member in members:
            try:
                rebuilt = member.rebuild(v)  # type: ignore[misc]
            except (*CONVERT_ERRORS, ValidationError):
                continue
            if member.check(rebuilt):
                return rebuilt
        return v

    return rebuild


def to_json(value: Any) -> Any:
    """Python value -> JSON data (Records as dicts, datetimes ISO-8601, Decimals str...)."""
    if value is None or isinstance(value, (str, int, float)):
        return value
    if isinstance(value, _record_base):
        return value.to_representation()  # type: ignore[attr-defined]
    if isinstance(value, (date, time)):
        return value.isoformat()
    if isinstance(value, (Decimal, UUID)):
        return str(value)
    if isinstance(value, Enum):
        return to_json(value.value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, Mapping):
        return {_json_key(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_json(v) for v in value]
    return value  # left to the codec


def _json_key(key: Any) -> Any:
    if key is None or isinstance(key, (str, int, float)):
        return key  # json writes these itself
    return str(to_json(key))
