"""Codecs: the registry, json/raw/str, and the topic helpers encode_value/decode_value."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamnb import codecs
from streamnb.codecs import (
    Codec,
    JsonCodec,
    RawCodec,
    StrCodec,
    decode_value,
    encode_value,
    get_codec,
    register,
    register_codec,
)
from streamnb.errors import ConfigurationError, SerializationError, ValidationError
from streamnb.models import Record


class PageView(Record):
    id: str
    user: str
    page: str = "/"


class Reversing:
    """A custom codec: JSON, stored back to front."""

    def dumps(self, obj: Any) -> bytes:
        return json.dumps(obj).encode()[::-1]

    def loads(self, data: bytes) -> Any:
        return json.loads(data[::-1])


@pytest.fixture
def registry() -> Any:
    """Restore the registry after tests that register codecs."""
    saved = dict(codecs._REGISTRY)
    yield codecs._REGISTRY
    codecs._REGISTRY.clear()
    codecs._REGISTRY.update(saved)


def test_all_is_sorted() -> None:
    assert codecs.__all__ == sorted(codecs.__all__)


# -- registry -------------------------------------------------------------------------------


def test_builtin_codecs_by_name() -> None:
    assert isinstance(get_codec("json"), JsonCodec)
    assert isinstance(get_codec("raw"), RawCodec)
    assert isinstance(get_codec("str"), StrCodec)
    assert get_codec("utf-8") is get_codec("str")
    assert "pickle" not in codecs._REGISTRY, "pickle runs producer-chosen code: never registered by default"


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
        get_codec("avro")
    message = str(info.value)
    assert "'avro'" in message
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


# -- encode_value / decode_value ------------------------------------------------------------


def test_encode_value_none_is_a_tombstone_and_errors_are_serialization_errors() -> None:
    assert encode_value("json", None) is None
    assert encode_value(get_codec("json"), PageView(id="1", user="u")) == b'{"id":"1","user":"u","page":"/"}'
    with pytest.raises(SerializationError):
        encode_value("raw", 1.5)


def test_decode_value_into_records_and_plain_types() -> None:
    json_codec = get_codec("json")
    assert decode_value(json_codec, PageView, b'{"id":"1","user":"u"}') == PageView(id="1", user="u")
    assert decode_value(json_codec, None, b'{"a":1}') == {"a": 1}
    assert decode_value(json_codec, int, b"42") == 42
    assert decode_value(json_codec, float, b"1") == 1.0
    assert decode_value(json_codec, str, b'"hi"') == "hi"
    assert decode_value("raw", bytes, b"\x00") == b"\x00"
    assert decode_value("raw", str, b"text") == "text"
    assert decode_value("raw", int, b"7") == 7
    assert decode_value(json_codec, PageView, None) is None


def test_decode_value_errors() -> None:
    with pytest.raises(SerializationError, match="cannot decode JSON"):
        decode_value("json", PageView, b"garbage")
    with pytest.raises(SerializationError, match="expected a JSON object for PageView"):
        decode_value("json", PageView, b"[1,2]")
    with pytest.raises(ValidationError) as info:
        decode_value("json", PageView, b'{"id":"1"}')
    assert info.value.field == "user"
    with pytest.raises(SerializationError, match="cannot make int"):
        decode_value("json", int, b'"forty"')
    with pytest.raises(SerializationError, match="not a scalar"):
        decode_value("json", str, b'{"a":1}')
