"""Codecs: how keys and values become bytes and back.

A codec is any object with ``dumps(obj) -> bytes`` and ``loads(bytes) -> obj``
(the :class:`Codec` protocol). Topics and Records name codecs by string;
these are registered:

``"json"``
    Compact JSON. Objects with a ``to_representation()`` method (Records)
    are encoded through it; datetimes/dates/times become ISO-8601 strings,
    Decimals and UUIDs strings, Enums their value, sets lists. ``loads``
    returns plain JSON data (dicts, lists, str, int, float, bool, None).
``"raw"``
    Bytes pass through; ``str`` is encoded as UTF-8. ``loads`` returns bytes.
``"str"`` (alias ``"utf-8"``)
    Text: ``dumps`` encodes a str as UTF-8, ``loads`` decodes to str.

No pickle codec is registered: unpickling runs code chosen by whoever wrote
the bytes. If you trust every producer, register one yourself::

    >>> import pickle
    >>> class PickleCodec:
    ...     def dumps(self, obj): return pickle.dumps(obj)
    ...     def loads(self, data): return pickle.loads(data)
    >>> register("pickle", PickleCodec())
    >>> get_codec("pickle").loads(get_codec("pickle").dumps({1, 2}))
    {1, 2}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date, datetime, time
from decimal import Decimal
from enum import Enum
from typing import Any, Protocol, runtime_checkable
from uuid import UUID

from .errors import ConfigurationError, SerializationError

__all__ = [
    "Codec",
    "JsonCodec",
    "RawCodec",
    "StrCodec",
    "decode_value",
    "encode_value",
    "get_codec",
    "register",
    "register_codec",
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


def _short(data: Any, limit: int = 60) -> str:
    text = repr(data)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
            "bytes cannot be JSON-encoded: decode them to str first, or use serializer='raw' for bytes values"
        )
    raise TypeError(
        f"{type(obj).__name__} is not JSON serializable: give it a to_representation() method, "
        "convert it to dict/list/str first, or register a codec with streamnb.codecs.register()"
    )


_encode = json.JSONEncoder(separators=(",", ":"), default=_json_default).encode
_raw_decode = json.JSONDecoder().raw_decode
_JSON_SPACE = " \t\n\r"


def _json_loads_checked(data: bytes) -> Any:
    """The careful path: any encoding json accepts, errors turned into SerializationError."""
    try:
        return json.loads(data)
    except (ValueError, TypeError) as exc:
        raise SerializationError(
            f"cannot decode JSON ({exc}) from {_short(data)}: the producer did not write JSON; "
            "fix the producer, or use value_serializer='raw' (bytes) or 'str' for this topic"
        ) from exc


class JsonCodec:
    """Compact JSON (``separators=(",", ":")``); ``loads`` returns plain JSON data.

    >>> JsonCodec().dumps({"page": "/", "n": 1})
    b'{"page":"/","n":1}'
    >>> JsonCodec().loads(b'{"page":"/"}')
    {'page': '/'}
    """

    def dumps(self, obj: Any) -> bytes:
        """Encode ``obj`` as UTF-8 JSON (Records through ``to_representation()``)."""
        try:
            return _encode(obj).encode()
        except (TypeError, ValueError) as exc:
            raise SerializationError(f"cannot encode {_short(obj)} as JSON: {exc}") from exc

    def loads(self, data: bytes) -> Any:
        """Decode UTF-8 JSON bytes; raises :class:`SerializationError` on bad input."""
        # Fast path: UTF-8 text straight into the C scanner (json.loads on bytes
        # first sniffs the encoding in Python, which costs more than the parse).
        try:
            text = data.decode()
            obj, end = _raw_decode(text)
        except (ValueError, AttributeError, TypeError):
            return _json_loads_checked(data)
        if end != len(text) and text[end:].strip(_JSON_SPACE):
            return _json_loads_checked(data)  # trailing garbage: raises
        return obj

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
            "encode it yourself, or use serializer='json'"
        )

    def loads(self, data: bytes) -> Any:
        """Return the bytes unchanged."""
        return data if isinstance(data, bytes) else bytes(data)

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
            "convert it with str(), or use serializer='json'"
        )

    def loads(self, data: bytes) -> Any:
        """Decode UTF-8 bytes to str."""
        try:
            return data.decode()
        except UnicodeDecodeError as exc:
            raise SerializationError(
                f"cannot decode {_short(data)} as UTF-8 ({exc}): use serializer='raw' to receive bytes"
            ) from exc

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


# -- helpers used by topics -----------------------------------------------------------------


def encode_value(codec: Codec | str, obj: Any) -> bytes | None:
    """Encode ``obj`` with ``codec`` (``None`` stays ``None``: a tombstone).

    Records (objects with ``to_representation()``) reach the codec as that
    JSON-ready dict, as in Faust, so custom codecs need not know Records.

    >>> encode_value("json", {"n": 1}), encode_value("json", None)
    (b'{"n":1}', None)
    """
    if obj is None:
        return None
    if isinstance(codec, str):
        codec = get_codec(codec)
    to_representation = getattr(obj, "to_representation", None)
    if to_representation is not None:
        obj = to_representation()
    try:
        return codec.dumps(obj)
    except SerializationError:
        raise
    except Exception as exc:
        raise SerializationError(f"cannot encode {_short(obj)} with {codec!r}: {exc}") from exc


def decode_value(codec: Codec | str, value_type: Any, data: bytes | None) -> Any:
    """Decode ``data`` with ``codec`` into a ``value_type`` instance.

    ``value_type`` is a Record class (built with ``from_data``), a plain type
    such as ``str``/``int``/``float``/``bytes``, or ``None`` for whatever the
    codec returns. ``None`` data (a tombstone) decodes to ``None``. Raises
    :class:`SerializationError` for bytes that cannot be decoded, and lets a
    Record's :class:`ValidationError` through.

    >>> decode_value("json", int, b"42"), decode_value("raw", str, b"hi")
    (42, 'hi')
    """
    if data is None:
        return None
    if isinstance(codec, str):
        codec = get_codec(codec)
    obj = codec.loads(data)
    if value_type is None or type(obj) is value_type:
        return obj
    from_data = getattr(value_type, "from_data", None)
    if from_data is not None:
        if isinstance(obj, value_type):
            return obj
        if isinstance(obj, Mapping):
            return from_data(obj)
        raise SerializationError(
            f"expected a JSON object for {value_type.__name__}, got {type(obj).__name__} {_short(obj)}: "
            "check what the producer sends, or change the topic's value_type"
        )
    return _to_plain(value_type, obj)


def _to_plain(value_type: Any, obj: Any) -> Any:
    """Scalar conversions for plain value types (``b"42"`` -> ``42`` with the raw codec)."""
    if isinstance(obj, bytes):
        if value_type is str or value_type in _NUMBERS:
            obj = StrCodec().loads(obj)
            if value_type is str:
                return obj
    elif value_type is bytes and isinstance(obj, str):
        return obj.encode()
    if isinstance(obj, value_type):
        return obj
    if isinstance(obj, (str, int, float)):
        try:
            return value_type(obj)
        except (TypeError, ValueError, ArithmeticError) as exc:
            reason = f"{exc}"
    else:
        reason = "not a scalar"
    raise SerializationError(
        f"cannot make {getattr(value_type, '__name__', value_type)} from {type(obj).__name__} {_short(obj)} "
        f"({reason}): check what the producer sends, or change the topic's value_type"
    )


_NUMBERS = (int, float, Decimal)
