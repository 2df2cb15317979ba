"""Codecs by name (json, raw, str and registered ones) and the serde of a declared type.

What a payload must look like per type and serializer: the table in :mod:`streamnb.codecs`.

>>> get_codec("json").dumps([1, 2])
b'[1,2]'
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime, time
from decimal import Decimal
from enum import Enum
from typing import Any, Protocol, runtime_checkable
from uuid import UUID

from ..errors import ConfigurationError, SerializationError
from ._serde import Serde, generic_pair, json_pair, text_pair
from ._typerules import short

__all__ = [
    "Codec",
    "JsonCodec",
    "RawCodec",
    "Serde",
    "StrCodec",
    "decode_value",
    "encode_value",
    "get_codec",
    "register",
    "register_codec",
    "serde",
]


@runtime_checkable
class Codec(Protocol):
    """Turns objects into bytes and back; register one with :func:`register`.

    >>> isinstance(get_codec("json"), Codec)
    True
    """

    def dumps(self, obj: Any) -> bytes:
        """Encode ``obj`` to bytes."""
        ...

    def loads(self, data: bytes) -> Any:
        """Decode bytes produced by :meth:`dumps` (or by another producer)."""
        ...


_short = short


# -- json ---------------------------------------------------------------------------------


def _json_default(obj: Any) -> Any:
    """``json`` hook for what JSON cannot hold natively."""
    to_representation = getattr(obj, "to_representation", None)
    if to_representation is not None:
        return to_representation()
    if isinstance(obj, (datetime, date, time)):
        return obj.isoformat()
    if isinstance(obj, (Decimal, UUID)):
        return str(obj)
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        raise TypeError(
            "bytes cannot be JSON-encoded: decode them to str first, or use value_serializer='raw' for bytes values"
        )
    raise TypeError(
        f"{type(obj).__name__} is not JSON serializable: give it a to_representation() method, "
        "convert it to dict/list/str first, or register a codec with streamnb.codecs.register()"
    )


_encode = json.JSONEncoder(separators=(",", ":"), default=_json_default).encode
_JSON_SPACE = " \t\n\r"


def _json_loader(**options: Any) -> Callable[[bytes], Any]:
    """A JSON ``loads`` for bytes: UTF-8 straight into the C scanner, other encodings the careful way."""
    raw_decode = json.JSONDecoder(**options).raw_decode

    def checked(data: bytes) -> Any:
        """The careful path: any encoding json accepts, errors turned into SerializationError."""
        try:
            return json.loads(data, **options)
        except (ValueError, TypeError) as exc:
            raise SerializationError(
                f"cannot decode JSON ({exc}) from {_short(data)}: the producer did not write JSON; "
                "fix the producer, or use value_serializer='raw' (bytes) or 'str' for this topic"
            ) from exc

    def loads(data: bytes) -> Any:
        """Decode UTF-8 JSON bytes; raises :class:`SerializationError` on bad input."""
        # json.loads on bytes first sniffs the encoding in Python, which costs more than the parse.
        try:
            text = data.decode()
            obj, end = raw_decode(text)
        except (ValueError, AttributeError, TypeError):
            return checked(data)
        if end != len(text) and text[end:].strip(_JSON_SPACE):
            return checked(data)  # trailing garbage: raises
        return obj

    return loads


_json_loads = _json_loader()
_raw_decode = json.JSONDecoder().raw_decode  # what _json_loads runs on UTF-8 text


def _json_dumps(obj: Any) -> bytes:
    """Encode ``obj`` as UTF-8 JSON (Records through ``to_representation()``)."""
    try:
        return _encode(obj).encode()
    except (TypeError, ValueError) as exc:
        raise SerializationError(f"cannot encode {_short(obj)} as JSON: {exc}") from exc

_json_loads_decimal = _json_loader(parse_float=Decimal)  # value_type=Decimal: 0.1 stays exactly 0.1


class JsonCodec:
    """Compact JSON (``separators=(",", ":")``); ``loads`` returns plain JSON data.

    >>> JsonCodec().dumps({"page": "/", "n": 1})
    b'{"page":"/","n":1}'
    >>> JsonCodec().loads(b'{"page":"/"}')
    {'page': '/'}
    """

    # Plain functions, not methods: one call per message on the hot paths.
    dumps = staticmethod(_json_dumps)
    loads = staticmethod(_json_loads)

    def serde_for(self, type_: Any, *, role: str = "value", topic: str | None = None) -> Serde:
        """The JSON column of the rules table, for ``type_``.

        >>> JsonCodec().serde_for(float).decode(b"1")
        1.0
        """
        loads, builtin = self.loads, type(self).loads is JsonCodec.loads  # not overridden by a subclass
        if type_ is Decimal and builtin:
            loads = _json_loads_decimal
        encode, decode = json_pair(
            self, type_, role, topic, dumps=self.dumps, loads=loads,
            records=type(self).dumps is not JsonCodec.dumps,  # the built-in dumps encodes Records itself
            raw_decode=_raw_decode if builtin else None,
        )
        return Serde(self, type_, encode, decode, role=role, topic=topic)

    def __repr__(self) -> str:
        return "JsonCodec()"


# -- raw and str --------------------------------------------------------------------------


class RawCodec:
    """Bytes as they are: ``dumps`` accepts bytes-like objects and str (UTF-8).

    >>> RawCodec().dumps("hé"), RawCodec().loads(b"x")
    (b'h\\xc3\\xa9', b'x')
    """

    def dumps(self, obj: Any) -> bytes:
        """Return bytes unchanged, encode str as UTF-8."""
        if isinstance(obj, bytes):
            return obj
        if isinstance(obj, str):
            return obj.encode()
        if isinstance(obj, (bytearray, memoryview)):
            return bytes(obj)
        raise SerializationError(
            f"the raw codec takes bytes or str, got {type(obj).__name__} {_short(obj)}: "
            "encode it yourself, or use value_serializer='json'"
        )

    def loads(self, data: bytes) -> Any:
        """Return the bytes unchanged."""
        return data if isinstance(data, bytes) else bytes(data)

    def serde_for(self, type_: Any, *, role: str = "value", topic: str | None = None) -> Serde:
        """The raw column of the rules table: the payload is ``type_`` written as text (bytes stay bytes).

        >>> RawCodec().serde_for(int).decode(b"42")
        42
        """
        encode, decode = text_pair(self, type_, role, topic, utf8=False)
        return Serde(self, type_, encode, decode, role=role, topic=topic)

    def __repr__(self) -> str:
        return "RawCodec()"


class StrCodec:
    """UTF-8 text: ``dumps`` takes str (bytes pass through), ``loads`` returns str.

    >>> StrCodec().loads(StrCodec().dumps("hé"))
    'hé'
    """

    def dumps(self, obj: Any) -> bytes:
        """Encode a str as UTF-8 (bytes are returned unchanged)."""
        if isinstance(obj, str):
            return obj.encode()
        if isinstance(obj, bytes):
            return obj
        raise SerializationError(
            f"the str codec takes str, got {type(obj).__name__} {_short(obj)}: "
            "convert it with str(), or use value_serializer='json'"
        )

    def loads(self, data: bytes) -> Any:
        """Decode UTF-8 bytes to str."""
        try:
            return data.decode()
        except UnicodeDecodeError as exc:
            raise SerializationError(
                f"cannot decode {_short(data)} as UTF-8 ({exc}): use value_serializer='raw' to receive bytes"
            ) from exc

    def serde_for(self, type_: Any, *, role: str = "value", topic: str | None = None) -> Serde:
        """The str column of the rules table: the payload is ``type_`` written as UTF-8 text.

        >>> StrCodec().serde_for(bool).decode(b"true")
        True
        """
        encode, decode = text_pair(self, type_, role, topic, utf8=True)
        return Serde(self, type_, encode, decode, role=role, topic=topic)

    def __repr__(self) -> str:
        return "StrCodec()"


# -- registry -----------------------------------------------------------------------------

_str_codec = StrCodec()
_REGISTRY: dict[str, Codec] = {
    "json": JsonCodec(),
    "raw": RawCodec(),
    "str": _str_codec,
    "utf-8": _str_codec,
}


def register(name: str, codec: Codec) -> None:
    """Make ``codec`` available by ``name`` (for ``serializer=`` / ``value_serializer=``).

    Registering a name again replaces the codec, so a notebook cell can be
    re-run.

    >>> class Upper:
    ...     def dumps(self, obj): return str(obj).upper().encode()
    ...     def loads(self, data): return data.decode()
    >>> register("upper", Upper())
    >>> get_codec("upper").dumps("hi")
    b'HI'
    """
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"a codec name must be a non-empty str, got {name!r}")
    if not _is_codec(codec):
        raise ConfigurationError(
            f"codec {name!r} must have dumps(obj) -> bytes and loads(bytes) -> obj methods, got {codec!r}"
        )
    _REGISTRY[name] = codec


register_codec = register
"""Alias of :func:`register`, exported at the top level as ``streamnb.register_codec``."""


def get_codec(name_or_codec: str | Codec) -> Codec:
    """The codec registered as ``name_or_codec``, or the codec object itself.

    >>> get_codec("raw").loads(b"abc")
    b'abc'
    >>> codec = get_codec("json"); get_codec(codec) is codec
    True
    """
    if isinstance(name_or_codec, str):
        codec = _REGISTRY.get(name_or_codec)
        if codec is not None:
            return codec
        names = ", ".join(repr(n) for n in sorted(_REGISTRY))
        raise ConfigurationError(
            f"no codec named {name_or_codec!r}; registered codecs: {names}. "
            "Add one with streamnb.codecs.register(name, codec), where codec has "
            "dumps(obj) -> bytes and loads(bytes) -> obj"
        )
    if _is_codec(name_or_codec):
        return name_or_codec
    raise ConfigurationError(
        f"expected a codec name (one of {', '.join(sorted(_REGISTRY))}) or an object with "
        f"dumps/loads methods, got {name_or_codec!r}"
    )


def _is_codec(obj: Any) -> bool:
    return callable(getattr(obj, "dumps", None)) and callable(getattr(obj, "loads", None))


# -- the one path from (codec, declared type) to encode/decode ------------------------------------

_ROLES = ("key", "value")


def serde(codec: Codec | str, type_: Any = None, role: str = "value", *, topic: str | None = None) -> Serde:
    """The encoder and decoder of a topic's keys or values: ``codec`` applied to ``type_``.

    This is where every topic turns its (serializer, key/value type) pair
    into functions, following the table in this module's docstring. A codec
    with a ``serde_for(type_, *, role, topic)`` method builds its own
    :class:`Serde` (returning ``None`` falls back to the generic rules).
    ``role`` (``"key"`` or ``"value"``) and ``topic`` name the payload in
    error messages.

    >>> s = serde("json", int, topic="counts")
    >>> s.encode(3), s.decode(b"3"), s.decode(None)
    (b'3', 3, None)
    >>> from streamnb.errors import ValidationError
    >>> try:
    ...     s.decode(b'"3"')
    ... except ValidationError as exc:
    ...     print(str(exc)[:73])
    topic 'counts' value: expected a JSON integer (not a float or a bool) for
    >>> serde("raw", Decimal).decode(b"3.14")
    Decimal('3.14')
    """
    if role not in _ROLES:
        raise ConfigurationError(f"role must be 'key' or 'value', got {role!r}")
    codec = get_codec(codec)
    if type_ is Any or type_ is object:
        type_ = None
    hook = getattr(codec, "serde_for", None)
    if hook is not None:
        made = hook(type_, role=role, topic=topic)
        if made is not None:
            if not (callable(getattr(made, "encode", None)) and callable(getattr(made, "decode", None))):
                raise ConfigurationError(
                    f"{codec!r}.serde_for() must return a Serde (streamnb.codecs.Serde) or None, got {made!r}"
                )
            return made  # type: ignore[no-any-return]
    encode, decode = generic_pair(codec, type_, role, topic)
    return Serde(codec, type_, encode, decode, role=role, topic=topic)


def encode_value(codec: Codec | str, obj: Any, value_type: Any = None) -> bytes | None:
    """Encode ``obj`` as a topic with ``codec`` and ``value_type`` would (``None`` stays ``None``: a tombstone).

    A thin wrapper over :func:`serde`; build the :class:`Serde` once to encode many values.

    >>> encode_value("json", {"n": 1}), encode_value("json", None), encode_value("raw", 42, int)
    (b'{"n":1}', None, b'42')
    """
    return serde(codec, value_type).encode(obj)


def decode_value(codec: Codec | str, value_type: Any, data: bytes | None) -> Any:
    """Decode ``data`` as a topic with ``codec`` and ``value_type`` would.

    A thin wrapper over :func:`serde`; build the :class:`Serde` once to decode many values.
    Raises :class:`ValidationError` when the payload does not fit ``value_type``.

    >>> decode_value("json", int, b"42"), decode_value("raw", str, b"hi"), decode_value("json", None, None)
    (42, 'hi', None)
    """
    return serde(codec, value_type).decode(data)
