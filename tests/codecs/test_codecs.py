"""Codecs: the registry, json/raw/str, and serde(): the one path from (codec, type) to encode/decode.

Agent-level tests run on every backend: a payload that does not fit the
declared type is dead-lettered with the reason and the agent keeps going.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

import streamnb as faust
from streamnb import codecs
from streamnb.codecs import (
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
from streamnb.codecs import base as codec_base
from streamnb.errors import ConfigurationError, SerializationError, ValidationError
from streamnb.models import Record
from streamnb.testing import settle, test_app, wait_until
from streamnb.transport.base import TP, Message


class PageView(Record):
    id: str
    user: str
    page: str = "/"


class Forward(Record):
    child: Later  # defined below: Forward compiles its from_data on first use


class Later(Record):
    x: int


class Reversing:
    """A custom codec: JSON, stored back to front."""

    def dumps(self, obj: Any) -> bytes:
        return json.dumps(obj).encode()[::-1]

    def loads(self, data: bytes) -> Any:
        return json.loads(data[::-1])

    def __repr__(self) -> str:
        return "Reversing()"


@pytest.fixture
def registry() -> Any:
    """Restore the registry after tests that register codecs."""
    saved = dict(codec_base._REGISTRY)
    yield codec_base._REGISTRY
    codec_base._REGISTRY.clear()
    codec_base._REGISTRY.update(saved)


def test_all_is_sorted() -> None:
    assert codecs.__all__ == sorted(codecs.__all__)


# -- registry -------------------------------------------------------------------------------


def test_builtin_codecs_by_name() -> None:
    assert isinstance(get_codec("json"), JsonCodec)
    assert isinstance(get_codec("raw"), RawCodec)
    assert isinstance(get_codec("str"), StrCodec)
    assert get_codec("utf-8") is get_codec("str")
    assert "pickle" not in codec_base._REGISTRY, "pickle runs producer-chosen code: never registered by default"


def test_get_codec_accepts_a_codec_object() -> None:
    codec = Reversing()
    assert get_codec(codec) is codec
    assert isinstance(codec, Codec)


def test_custom_codec_registered_and_used(registry: Any) -> None:
    register("reversing", Reversing())
    assert get_codec("reversing").dumps({"a": 1}) == b'}1 :"a"{'
    assert encode_value("reversing", [1, 2]) == b"]2 ,1["
    assert decode_value("reversing", PageView, b'}"u" :"resu" ,"1" :"di"{') == PageView(id="1", user="u")

    class Tagged(Record, serializer="reversing"):
        tag: str

    assert Tagged(tag="x").dumps() == b'}"x" :"gat"{'
    assert Tagged.loads(b'}"x" :"gat"{') == Tagged(tag="x")
    # topics encode through encode_value: the codec sees the Record's dict
    assert encode_value("reversing", Tagged(tag="y")) == b'}"y" :"gat"{'


def test_register_replaces_and_alias_works(registry: Any) -> None:
    register_codec("twice", Reversing())
    replacement = Reversing()
    register("twice", replacement)
    assert get_codec("twice") is replacement


def test_unknown_codec_name_lists_registered_names_and_how_to_register() -> None:
    with pytest.raises(ConfigurationError) as info:
        get_codec("protobuf")
    message = str(info.value)
    assert "'protobuf'" in message and "'avro'" in message
    assert "'json'" in message and "'raw'" in message and "'str'" in message
    assert "register(" in message


@pytest.mark.parametrize("bad", [None, 3, object()])
def test_get_codec_rejects_non_codecs(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="dumps/loads"):
        get_codec(bad)


def test_register_rejects_objects_without_dumps_and_loads(registry: Any) -> None:
    with pytest.raises(ConfigurationError, match="dumps"):
        register("broken", object())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="non-empty"):
        register("", Reversing())


# -- json -----------------------------------------------------------------------------------


def test_json_is_compact_and_handles_records_datetimes_decimals() -> None:
    codec = get_codec("json")
    when = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    encoded = codec.dumps({"view": PageView(id="1", user="u"), "at": when, "price": Decimal("9.99"), "s": {1}})
    assert encoded == (
        b'{"view":{"id":"1","user":"u","page":"/"},"at":"2024-05-06T07:08:09+00:00","price":"9.99","s":[1]}'
    )
    assert codec.loads(encoded)["view"] == {"id": "1", "user": "u", "page": "/"}


def test_json_loads_accepts_whitespace_and_other_encodings() -> None:
    codec = get_codec("json")
    assert codec.loads(b'  {"a": [1, 2]}\n') == {"a": [1, 2]}
    assert codec.loads('{"a":"é"}'.encode("utf-16")) == {"a": "é"}


@pytest.mark.parametrize("data", [b"{not json", b'{"a":1} trailing', b"\xff\xfe\xfa", b"", b"[1,"])
def test_json_loads_bad_bytes_is_serialization_error(data: bytes) -> None:
    with pytest.raises(SerializationError) as info:
        get_codec("json").loads(data)
    assert "cannot decode JSON" in str(info.value)
    assert "value_serializer='raw'" in str(info.value)


def test_json_dumps_unencodable_is_serialization_error() -> None:
    with pytest.raises(SerializationError, match="not JSON serializable"):
        get_codec("json").dumps({"x": object()})
    with pytest.raises(SerializationError, match="serializer='raw'"):
        get_codec("json").dumps(b"bytes")


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
        max_leaves=10,
    )
)
def test_json_round_trips_plain_data(value: Any) -> None:
    codec = get_codec("json")
    assert codec.loads(codec.dumps(value)) == value


# -- raw and str ----------------------------------------------------------------------------


def test_raw_codec_passes_bytes_and_encodes_str() -> None:
    raw = get_codec("raw")
    assert raw.dumps(b"\x00\xff") == b"\x00\xff"
    assert raw.dumps("hé") == "hé".encode()
    assert raw.dumps(bytearray(b"ab")) == b"ab"
    assert raw.loads(b"\x00\xff") == b"\x00\xff"
    with pytest.raises(SerializationError, match="bytes or str"):
        raw.dumps(12)


def test_str_codec() -> None:
    text = get_codec("str")
    assert text.loads(text.dumps("hé")) == "hé"
    with pytest.raises(SerializationError, match="UTF-8"):
        text.loads(b"\xff")
    with pytest.raises(SerializationError, match="str codec"):
        text.dumps(1.5)


# -- serde: the one path topics use ---------------------------------------------------------
# Each row: codec, declared type, payload, and the value it decodes to, or the error:
# ValidationError when the payload does not fit the type, SerializationError when the
# codec itself cannot read the bytes.

WHEN = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
VIEW = PageView(id="1", user="u")

DECODE_TABLE: list[tuple[str, Any, bytes, Any]] = [
    # json: JSON types must match the declared type
    ("json", None, b'{"a":1}', {"a": 1}),
    ("json", None, b"not json", SerializationError),
    ("json", str, b'"hi"', "hi"),
    ("json", str, b'{"a":1}', ValidationError),
    ("json", str, b'["a"]', ValidationError),
    ("json", str, b"42", ValidationError),
    ("json", str, b"null", ValidationError),
    ("json", int, b"42", 42),
    ("json", int, b'"42"', ValidationError),
    ("json", int, b"true", ValidationError),
    ("json", int, b"4.0", ValidationError),
    ("json", float, b"1", 1.0),
    ("json", float, b"2.5", 2.5),
    ("json", float, b'"2.5"', ValidationError),
    ("json", float, b"false", ValidationError),
    ("json", bool, b"true", True),
    ("json", bool, b"1", ValidationError),
    ("json", bool, b'"true"', ValidationError),
    ("json", bytes, b'"AAE="', b"\x00\x01"),
    ("json", bytes, b'"not base64!"', ValidationError),
    ("json", bytes, b"[1]", ValidationError),
    ("json", Decimal, b"0.1", Decimal("0.1")),
    ("json", Decimal, b"0.1000000000000000055511151231257827", Decimal("0.1000000000000000055511151231257827")),
    ("json", Decimal, b'"3.14"', Decimal("3.14")),
    ("json", Decimal, b"7", Decimal(7)),
    ("json", Decimal, b'"abc"', ValidationError),
    ("json", Decimal, b"true", ValidationError),
    ("json", datetime, b'"2024-05-06T07:08:09+00:00"', WHEN),
    ("json", datetime, b'"2024-05-06T07:08:09Z"', WHEN),
    ("json", datetime, b"1714979289", ValidationError),
    ("json", datetime, b'"yesterday"', ValidationError),
    ("json", dict, b'{"a":[1]}', {"a": [1]}),
    ("json", dict, b"[1]", ValidationError),
    ("json", list, b"[1]", [1]),
    ("json", list, b'{"a":1}', ValidationError),
    ("json", PageView, b'{"id":"1","user":"u"}', VIEW),
    ("json", PageView, b' {"id":"1","user":"u"}\n', VIEW),  # off the fast path: whitespace
    ("json", PageView, '{"id":"1","user":"u"}'.encode("utf-16"), VIEW),  # and another encoding
    ("json", PageView, b'{"id":"1","user":"u"} {}', SerializationError),
    ("json", PageView, b"[1,2]", ValidationError),
    ("json", PageView, b'"u"', ValidationError),
    ("json", PageView, b'{"id":"1"}', ValidationError),
    ("json", PageView, b"{garbage", SerializationError),
    # raw: the payload is the value written as text; bytes stay bytes
    ("raw", None, b"\xff", b"\xff"),
    ("raw", str, b"h\xc3\xa9", "hé"),
    ("raw", str, b"\xff", ValidationError),
    ("raw", int, b"42", 42),
    ("raw", int, b" -42\n", -42),
    ("raw", int, b"4.2", ValidationError),
    ("raw", int, b"forty", ValidationError),
    ("raw", float, b"3.5", 3.5),
    ("raw", float, b"x", ValidationError),
    ("raw", bool, b"true", True),
    ("raw", bool, b"FALSE", False),
    ("raw", bool, b"0", False),
    ("raw", bool, b"yes", ValidationError),
    ("raw", bytes, b"\x00\xff", b"\x00\xff"),
    ("raw", Decimal, b"3.14", Decimal("3.14")),
    ("raw", Decimal, b"abc", ValidationError),
    ("raw", datetime, b"2024-05-06T07:08:09+00:00", WHEN),
    ("raw", datetime, b"\xff", ValidationError),
    # str: the same as raw, on UTF-8 text
    ("str", None, b"h\xc3\xa9", "hé"),
    ("str", None, b"\xff", SerializationError),
    ("str", str, b"hi", "hi"),
    ("str", int, b"42", 42),
    ("str", int, b'"42"', ValidationError),
    ("str", bytes, b"ok", b"ok"),
    ("str", bytes, b"\xff", ValidationError),
    ("str", Decimal, b"2.50", Decimal("2.50")),
]


def _name(value: Any) -> str:
    return getattr(value, "__name__", None) or repr(value)


def _table_id(row: tuple[Any, ...]) -> str:
    # (no memory addresses in ids: pytest-xdist's workers must collect the same names)
    text = "-".join(_name(part) if not isinstance(part, bytes) else repr(part)[:24] for part in row[:3])
    return re.sub(r" at 0x[0-9a-f]+", "", text)


def _is_error(expected: Any) -> bool:
    return isinstance(expected, type) and issubclass(expected, Exception)


@pytest.mark.parametrize("via", ["serde", "topic"])
@pytest.mark.parametrize(("codec", "type_", "payload", "expected"), DECODE_TABLE, ids=map(_table_id, DECODE_TABLE))
def test_decode_table(via: str, codec: str, type_: Any, payload: bytes, expected: Any) -> None:
    if via == "serde":
        decode = serde(codec, type_, topic="t").decode
    else:  # what an agent's stream calls
        decode = test_app().topic("t", value_type=type_, value_serializer=codec).decode_value
    assert decode(None) is None  # a tombstone, for every type
    if not _is_error(expected):
        value = decode(payload)
        assert value == expected
        assert type(value) is type(expected)
        return
    with pytest.raises(expected) as info:
        decode(payload)
    assert type(info.value) is expected
    message = str(info.value)
    assert message.startswith("topic 't' value: "), message
    if expected is ValidationError and "missing" not in message:
        assert f"for value_type={_name(type_)}, got" in message
        assert "check what the producer sends, or change the topic's value_type or value_serializer" in message


def test_decode_messages_say_what_was_expected_and_what_came() -> None:
    with pytest.raises(ValidationError) as info:
        serde("json", str, topic="names").decode(b'{"first":"Ada"}')
    assert str(info.value) == (
        "topic 'names' value: expected a JSON string for value_type=str, got a JSON object {'first': 'Ada'}: "
        "check what the producer sends, or change the topic's value_type or value_serializer"
    )
    with pytest.raises(ValidationError, match=r"expected an integer as text, e.g. b'42' for value_type=int, got b'x'"):
        serde("raw", int).decode(b"x")
    with pytest.raises(ValidationError) as missing:
        serde("json", PageView, topic="views").decode(b'{"id":"1"}')
    assert missing.value.field == "user"
    assert str(missing.value).startswith("topic 'views' value: PageView.user: required field missing")


ENCODE_TABLE: list[tuple[str, Any, Any, Any]] = [
    ("json", None, {"n": 1}, b'{"n":1}'),
    ("json", None, VIEW, b'{"id":"1","user":"u","page":"/"}'),
    ("json", None, b"bytes", SerializationError),
    ("json", str, "hi", b'"hi"'),
    ("json", str, {"a": 1}, ValidationError),
    ("json", str, 42, ValidationError),
    ("json", int, 42, b"42"),
    ("json", int, True, ValidationError),
    ("json", int, "42", ValidationError),
    ("json", float, 3, b"3"),
    ("json", float, 2.5, b"2.5"),
    ("json", float, "3", ValidationError),
    ("json", bool, False, b"false"),
    ("json", bool, 0, ValidationError),
    ("json", bytes, b"\x00\x01", b'"AAE="'),
    ("json", bytes, "AAE=", ValidationError),
    ("json", Decimal, Decimal("0.10"), b'"0.10"'),
    ("json", Decimal, 2.5, b"2.5"),
    ("json", Decimal, "2.5", ValidationError),
    ("json", datetime, WHEN, b'"2024-05-06T07:08:09+00:00"'),
    ("json", datetime, "2024-05-06", ValidationError),
    ("json", dict, {"a": [1]}, b'{"a":[1]}'),
    ("json", dict, {"a": object()}, SerializationError),
    ("json", list, (1, 2), b"[1,2]"),
    ("json", PageView, VIEW, b'{"id":"1","user":"u","page":"/"}'),
    ("json", PageView, {"id": "1"}, ValidationError),  # a mapping missing fields is refused when sent
    ("json", PageView, {"id": "1", "user": "u", "page": "/", "x": 2}, b'{"id":"1","user":"u","page":"/","x":2}'),
    ("json", PageView, "u", ValidationError),
    ("json", PageView, Later(x=1), ValidationError),  # another Record class
    ("raw", None, "hé", "hé".encode()),
    ("raw", None, 12, SerializationError),
    ("raw", str, "hé", "hé".encode()),
    ("raw", str, b"x", ValidationError),
    ("raw", int, 42, b"42"),
    ("raw", int, "42", ValidationError),
    ("raw", float, 0.1, b"0.1"),
    ("raw", float, 3, b"3.0"),
    ("raw", bool, True, b"true"),
    ("raw", bytes, bytearray(b"ab"), b"ab"),
    ("raw", Decimal, Decimal("3.14"), b"3.14"),
    ("raw", datetime, WHEN, b"2024-05-06T07:08:09+00:00"),
    ("str", None, "hé", "hé".encode()),
    ("str", None, 1.5, SerializationError),
    ("str", int, 7, b"7"),
    ("str", bool, False, b"false"),
]


@pytest.mark.parametrize("via", ["serde", "topic"])
@pytest.mark.parametrize(("codec", "type_", "value", "expected"), ENCODE_TABLE, ids=map(_table_id, ENCODE_TABLE))
def test_encode_table(via: str, codec: str, type_: Any, value: Any, expected: Any) -> None:
    if via == "serde":
        encode = serde(codec, type_, topic="t").encode
    else:  # what Topic.send calls
        encode = test_app().topic("t", value_type=type_, value_serializer=codec).encode_value
    assert encode(None) is None  # a tombstone, for every type
    if not _is_error(expected):
        assert encode(value) == expected
        return
    with pytest.raises(expected) as info:
        encode(value)
    assert type(info.value) is expected
    message = str(info.value)
    if expected is ValidationError:
        assert message.startswith(f"topic 't' value: value_type is {_name(type_)}, got {type(value).__name__} ")
        assert message.endswith(f"send a value of type {_name(type_)}, or change the topic's value_type")
    else:
        assert message.startswith(f"topic 't': cannot encode value {value!r}"[:40]), message


def test_keys_follow_the_same_rules_and_messages_name_key_options() -> None:
    topic = test_app().topic("t", key_type=int, key_serializer="raw")
    assert topic.encode_key(7) == b"7" and topic.decode_key(b"7") == 7
    with pytest.raises(ValidationError) as bad:
        topic.decode_key(b"seven")
    assert str(bad.value).startswith("topic 't' key: expected an integer as text")
    assert "change the topic's key_type or key_serializer" in str(bad.value)
    with pytest.raises(ValidationError, match="topic 't' key: key_type is int, got str '7'"):
        topic.encode_key("7")
    untyped = test_app().topic("u", key_serializer="raw")
    with pytest.raises(SerializationError) as info:
        untyped.encode_key(3.5)
    assert str(info.value).startswith("topic 'u': cannot encode key 3.5 with RawCodec(): ")
    assert "key_serializer='json'" in str(info.value) and "value_serializer" not in str(info.value)


def test_json_decimal_keeps_every_digit() -> None:
    precise = serde("json", Decimal).decode(b"0.30000000000000000001")
    assert precise == Decimal("0.30000000000000000001")
    assert serde("json", float).decode(b"0.30000000000000000001") == 0.3


@pytest.mark.parametrize(
    ("codec", "type_", "match"),
    [
        ("raw", PageView, "value_type=PageView is a Record, which needs a codec that reads objects"),
        ("str", PageView, "set value_serializer='json'"),
        ("raw", dict, "value_type=dict needs a codec that reads a JSON object, such as 'json'"),
        ("str", list, "value_type=list needs a codec that reads a JSON array"),
        ("json", set, "value_type=set is not supported by JsonCodec()"),
        ("json", UUID, "declare one of None, a Record, str, int, float, bool, bytes, Decimal, datetime, dict, list"),
        ("raw", complex, "value_type=complex is not supported by RawCodec()"),
    ],
)
def test_types_a_codec_cannot_carry_are_configuration_errors(codec: str, type_: Any, match: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(match)):
        serde(codec, type_)
    with pytest.raises(ConfigurationError, match=re.escape(match)) as info:
        test_app().topic("bad", value_type=type_, value_serializer=codec)  # at definition, not per message
    assert str(info.value).startswith("topic 'bad' value: ")


def test_the_docstring_table_lists_every_declared_type_the_rules_know() -> None:
    from streamnb.codecs._typerules import RULES

    doc = codecs.__doc__ or ""
    for rule in RULES.values():
        assert f"\n{rule.name} " in doc, rule.name
    assert "\na Record " in doc and "\nNone, Any " in doc


def test_serde_arguments() -> None:
    with pytest.raises(ConfigurationError, match="role must be 'key' or 'value'"):
        serde("json", int, "values")
    with pytest.raises(ConfigurationError, match="no codec named 'nope'"):
        serde("nope", int)
    assert serde("json", Any).decode(b"[1]") == [1]  # Any and object declare nothing
    assert serde("raw", object).decode(b"x") == b"x"
    assert repr(serde("json", int, "key", topic="t")) == "<Serde JsonCodec() int for the topic 't' key>"


def test_encode_value_and_decode_value_are_thin_wrappers() -> None:
    assert encode_value("json", None) is None
    assert encode_value(get_codec("json"), VIEW) == b'{"id":"1","user":"u","page":"/"}'
    assert encode_value("raw", Decimal("1.5"), Decimal) == b"1.5"
    with pytest.raises(ValidationError, match="value_type is int"):
        encode_value("json", "1", int)
    assert decode_value("json", PageView, b'{"id":"1","user":"u"}') == VIEW
    assert decode_value("raw", Decimal, b"3.14") == Decimal("3.14")
    with pytest.raises(ValidationError, match="expected a JSON string"):
        decode_value("json", str, b'{"a":1}')


# -- other codecs: the generic rules, and the serde_for hook ----------------------------------


def test_a_custom_codec_gets_json_ready_data_and_its_output_is_checked() -> None:
    codec = Reversing()
    assert serde(codec, PageView).decode(b'}"u" :"resu" ,"1" :"di"{') == VIEW
    assert serde(codec, Decimal).encode(Decimal("1.5")) == b'"5.1"'  # the codec got the str "1.5"
    assert serde(codec, bytes).encode(b"\x00\x01") == b'"=EAA"'  # and base64 for bytes
    assert serde(codec, int).decode(b"24") == 42
    assert serde(codec, int).decode(b'"24"') == 42  # a str the codec returns is read as text
    with pytest.raises(ValidationError, match="expected a JSON integer .*, or an integer as text"):
        serde(codec, int, topic="t").decode(b"]1[")
    with pytest.raises(SerializationError, match=r"topic 't' value: Reversing\(\) cannot decode it \(JSONDecodeError"):
        serde(codec, int, topic="t").decode(b"{{")
    with pytest.raises(SerializationError, match="topic 't': cannot encode value"):
        serde(codec, None, topic="t").encode(object())


def test_a_custom_codec_with_its_own_type_accepts_its_instances_only() -> None:
    class Point:
        def __init__(self, x: int) -> None:
            self.x = x

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Point) and other.x == self.x

    class PointCodec:
        def dumps(self, obj: Any) -> bytes:
            return b"%d" % obj.x

        def loads(self, data: bytes) -> Any:
            return Point(int(data)) if data != b"-" else "dash"

    s = serde(PointCodec(), Point)
    assert s.decode(s.encode(Point(3))) == Point(3)
    with pytest.raises(ValidationError, match="value_type is Point, got int 3"):
        s.encode(3)
    with pytest.raises(ValidationError, match="expected a Point for value_type=Point, got a JSON string 'dash'"):
        s.decode(b"-")
    with pytest.raises(ConfigurationError, match=re.escape("topic 't' key: key_type must be a class or None, got")):
        serde(PointCodec(), list[int], "key", topic="t")  # no rule, and not a class: nothing to check instances with


class Base64Json(JsonCodec):
    """A JSON codec that takes over ``bytes`` values through the serde_for hook."""

    def serde_for(self, type_: Any, *, role: str = "value", topic: str | None = None) -> Serde | None:
        if type_ is not bytes:
            return None  # the usual rules for everything else

        def encode(value: Any) -> bytes | None:
            return None if value is None else b"b64:" + base64.b64encode(value)

        def decode(data: bytes | None) -> Any:
            return None if data is None else base64.b64decode(data[4:])

        return Serde(self, type_, encode, decode, role=role, topic=topic)


def test_a_codec_can_specialise_itself_for_a_type(registry: Any) -> None:
    register("b64json", Base64Json())
    topic = test_app().topic("t", value_type=bytes, value_serializer="b64json")
    assert topic.encode_value(b"\x00") == b"b64:AA=="
    assert topic.decode_value(b"b64:AA==") == b"\x00"
    assert topic.value_serde.codec is get_codec("b64json")
    # None from the hook: the generic rules apply (checked like any other codec)
    ints = test_app().topic("i", value_type=int, value_serializer="b64json")
    assert ints.decode_value(b"5") == 5
    with pytest.raises(ValidationError):
        ints.decode_value(b'"5x"')


def test_a_hook_must_return_a_serde_or_none() -> None:
    class Broken(JsonCodec):
        def serde_for(self, type_: Any, *, role: str = "value", topic: str | None = None) -> Any:
            return "nope"

    with pytest.raises(ConfigurationError, match=r"serde_for\(\) must return a Serde"):
        serde(Broken(), int)


def test_a_json_subclass_overriding_loads_is_still_used() -> None:
    class Lenient(JsonCodec):
        def loads(self, data: bytes) -> Any:
            return super().loads(data.strip(b"\x00"))

    assert serde(Lenient(), int).decode(b"42\x00") == 42
    assert serde(Lenient(), Decimal).decode(b"1.5\x00") == Decimal("1.5")
    assert serde(Lenient(), PageView).decode(b'{"id":"1","user":"u"}\x00') == VIEW


def test_a_record_with_a_forward_reference_decodes() -> None:
    assert getattr(Forward.from_data, "__self__", None) is Forward  # not compiled yet: the lazy classmethod
    decode = serde("json", Forward).decode
    first = decode(b'{"child":{"x":1}}')
    second = decode(b'{"child":{"x":2}}')
    assert first.child == Later(x=1) and second.child == Later(x=2)
    assert getattr(Forward.from_data, "__self__", None) is None  # compiled on first use, and used since


# -- round trips: what a topic encodes, it decodes to the same value -------------------------

_json_data = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=10,
)
_datetimes = st.datetimes(timezones=st.none() | st.just(UTC))
_views = st.builds(PageView, id=st.text(), user=st.text(), page=st.text())
ROUND_TRIPS: list[tuple[Any, Any, Any]] = [
    *[(codec, str, st.text()) for codec in ("json", "raw", "str")],
    *[(codec, int, st.integers()) for codec in ("json", "raw", "str")],
    *[(codec, float, st.floats(allow_nan=False)) for codec in ("json", "raw", "str")],
    *[(codec, bool, st.booleans()) for codec in ("json", "raw", "str")],
    *[(codec, Decimal, st.decimals(allow_nan=False)) for codec in ("json", "raw", "str")],
    *[(codec, datetime, _datetimes) for codec in ("json", "raw", "str")],
    ("json", bytes, st.binary()),
    ("raw", bytes, st.binary()),
    ("str", bytes, st.text().map(str.encode)),
    ("json", dict, st.dictionaries(st.text(), _json_data)),
    ("json", list, st.lists(_json_data)),
    ("json", PageView, _views),
    ("json", None, _json_data.filter(lambda v: v is not None)),
    ("raw", None, st.binary()),
    ("str", None, st.text()),
    *[(Reversing(), tp, values) for tp, values in [(int, st.integers()), (Decimal, st.decimals(allow_nan=False)),
                                                   (bytes, st.binary()), (PageView, _views), (datetime, _datetimes)]],
]


@pytest.mark.parametrize(
    ("codec", "type_", "values"), ROUND_TRIPS, ids=[f"{_name(c)}-{_name(t)}" for c, t, _ in ROUND_TRIPS]
)
@given(data=st.data())
def test_round_trip(codec: Any, type_: Any, values: Any, data: st.DataObject) -> None:
    s = serde(codec, type_)
    value = data.draw(values)
    back = s.decode(s.encode(value))
    assert back == value
    if type_ is not None:
        assert type(back) is type(value)
    if type_ is Decimal:
        assert str(back) == str(value)  # every digit and the exponent kept


# -- through an app: what does not fit is dead-lettered, the agent keeps going ----------------


async def read_all(app: faust.App, topic: str) -> list[Message]:
    transport = app.transport
    assert transport is not None
    out: list[Message] = []
    for p in range(await transport.partition_count(topic) or 0):
        tp = TP(topic, p)
        end = (await transport.end_offsets([tp]))[tp]
        out += await transport.read(tp, 0, end)
    return out


@pytest.mark.parametrize(
    ("type_", "good", "bad", "reason"),
    [
        (str, ["ada", "grace"], [b'{"first":"Ada"}', b'["x"]', b"42"], "expected a JSON string for value_type=str"),
        (int, [7, -1], [b'"7"', b"true", b"7.5"], "expected a JSON integer (not a float or a bool) for value_type=int"),
    ],
    ids=["str", "int"],
)
async def test_payloads_that_do_not_fit_are_dead_lettered_and_the_agent_keeps_going(
    broker: str, app_id: str, type_: Any, good: list[Any], bad: list[bytes], reason: str
) -> None:
    app = faust.App(app_id, broker=broker, topic_partitions=1)
    typed = app.topic(f"{app_id}-in", value_type=type_)
    raw = app.topic(f"{app_id}-in", value_serializer="raw")  # the same topic, written by a careless producer
    app.topics[typed.name] = typed
    seen: list[Any] = []

    @app.agent(typed)
    async def collect(stream):
        async for value in stream:
            seen.append(value)

    async with app:
        await typed.send(value=good[0])
        for payload in [*bad, b"{not json"]:
            await raw.send(value=payload)
        await typed.send(value=good[1])
        await wait_until(lambda: len(seen) == 2, timeout=60)
        await settle(app, timeout=60)
        assert seen == good and [type(v) for v in seen] == [type_, type_]  # never stringified
        assert collect.dead_lettered == len(bad) + 1
        dlq = await read_all(app, f"{app_id}-collect-dlq")
        assert [m.value for m in dlq] == [*bad, b"{not json"]
        reasons = [dict(m.headers)["streamnb-error"].decode() for m in dlq]
        for header in reasons[:-1]:
            assert header.startswith(f"ValidationError: topic '{app_id}-in' value: {reason}, got "), header
            assert header.endswith("or change the topic's value_type or value_serializer")
        assert reasons[-1].startswith(f"SerializationError: topic '{app_id}-in' value: cannot decode JSON")
        assert all(dict(m.headers)["streamnb-topic"] == f"{app_id}-in".encode() for m in dlq)
        with pytest.raises(ValidationError):  # and the producer side refuses what the reader would refuse
            await typed.send(value={"a": 1})


async def test_decimal_values_with_the_raw_codec_decode(broker: str, app_id: str) -> None:
    app = faust.App(app_id, broker=broker, topic_partitions=1)
    prices = app.topic(f"{app_id}-prices", value_type=Decimal, value_serializer="raw")
    raw = app.topic(f"{app_id}-prices", value_serializer="raw")  # another producer's bytes, unchecked
    app.topics[prices.name] = prices
    seen: list[Decimal] = []

    @app.agent(prices)
    async def collect(stream):
        async for price in stream:
            seen.append(price)

    async with app:
        await prices.send(value=Decimal("0.10"))
        await raw.send(value=b"3.14")
        await raw.send(value=b"three")
        await raw.send(value=b" 1E+3\n")
        await wait_until(lambda: len(seen) == 3, timeout=60)
        await settle(app, timeout=60)
        assert [str(p) for p in seen] == ["0.10", "3.14", "1E+3"]
        assert collect.dead_lettered == 1
        (dead,) = await read_all(app, f"{app_id}-collect-dlq")
        assert dead.value == b"three"
        assert dict(dead.headers)["streamnb-error"].startswith(
            b"ValidationError: topic '" + prices.name.encode() + b"' value: expected a decimal number as text"
        )
