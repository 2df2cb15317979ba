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
``"avro"``
    Avro with a schema registry (Confluent's wire format), or schemaless with
    an explicit schema: :mod:`streamnb.avro` (registered when it is imported,
    which ``import streamnb`` does).

Declared types
--------------

A topic turns its serializer and its ``key_type``/``value_type`` into an
encoder and a decoder in one place, :func:`serde`. The declared type is
honoured both ways and nothing is turned into a str behind your back:
``send`` refuses a value of another type, and a payload that does not fit
raises :class:`~streamnb.errors.ValidationError` (a SerializationError),
which an agent's stream sends to its dead-letter topic with the reason.
``None`` (a tombstone) stays ``None`` for every type.

=============  ===============================  =======================================  ======================
declared type  ``json`` payload must be         ``raw`` / ``str`` payload must be        ``send`` accepts
=============  ===============================  =======================================  ======================
None, Any      any JSON; you get JSON data      anything; you get bytes / str            what the codec takes
a Record       a JSON object (``from_data``)    (ConfigurationError)                     an instance, a mapping
str            a JSON string                    UTF-8 text                               str
int            a JSON integer (not 1.0, true)   an integer as text: ``b"42"``            int (not bool)
float          a JSON number (integers too)     a number as text: ``b"3.14"``            int, float
bool           ``true`` / ``false``             ``b"true"``, ``b"false"``, ``1``, ``0``  bool
bytes          a base64 JSON string             any bytes (str: valid UTF-8)             bytes-like
Decimal        a JSON number or numeric string  a decimal as text: ``b"3.14"``           Decimal, int, float
datetime       an ISO-8601 JSON string          ISO-8601 text                            datetime
dict           a JSON object                    (ConfigurationError)                     a mapping
list           a JSON array                     (ConfigurationError)                     list, tuple
=============  ===============================  =======================================  ======================

With no declared type, raw gives bytes and str gives str. A Record, dict or
list with raw/str is a ConfigurationError when the topic is defined (they
need json). Written forms: json writes a Decimal as a string (``"3.14"``,
exact), a datetime as ISO-8601, bytes as base64; raw/str write the value as
text (``b"42"``, ``b"3.14"``, ``b"true"``, ISO-8601). Text is parsed as
Python's ``int``/``float``/``Decimal`` read it (surrounding whitespace
allowed). Any other declared type is a ConfigurationError with the
built-in codecs.

Other codecs get JSON-ready data to ``dumps`` (a Record's dict, a Decimal
as str, ...), and what their ``loads`` returns is checked with the json
column's rules; bytes or str it returns are also read as text (the raw
column). A type the rules do not know accepts its own instances only.
A codec can take over for some types by offering
``serde_for(type_, *, role, topic)`` that returns a :class:`Serde` (or
``None`` for the rules above); this is how a schema-aware codec plugs in.

A payload that does not fit names the topic, what was expected and what
to do::

    >>> serde("json", str, topic="names").decode(b'{"first": "Ada"}')
    Traceback (most recent call last):
    ...
    streamnb.errors.ValidationError: topic 'names' value: expected a JSON string for value_type=str, \
got a JSON object {'first': 'Ada'}: check what the producer sends, or change the topic's value_type \
or value_serializer

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
from collections.abc import Callable
from datetime import date, datetime, time
from decimal import Decimal
from enum import Enum
from typing import Any, Protocol, runtime_checkable
from uuid import UUID

from ._serde import Serde, generic_pair, json_pair, text_pair
from ._typerules import short
from .errors import ConfigurationError, SerializationError

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
