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
the bytes. If you trust every producer, register one yourself, under a name that says so::

    >>> import pickle
    >>> class PickleCodec:
    ...     def dumps(self, obj): return pickle.dumps(obj)
    ...     def loads(self, data): return pickle.loads(data)
    >>> register("trusted-pickle", PickleCodec())
    >>> get_codec("trusted-pickle").loads(get_codec("trusted-pickle").dumps({1, 2}))
    {1, 2}
"""

from .base import (
    Codec,
    JsonCodec,
    RawCodec,
    Serde,
    StrCodec,
    decode_value,
    encode_value,
    get_codec,
    register,
    register_codec,
    serde,
)

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
