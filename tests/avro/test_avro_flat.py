"""The flat-record reader (streamnb/avro/_flat.py) gives what fastavro gives, and refuses what fastavro refuses."""

from __future__ import annotations

import io
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.utils import generate_many

from streamnb.avro._flat import flat_reader

FLAT = {
    "type": "record",
    "name": "Flat",
    "fields": [
        {"name": "s", "type": "string"},
        {"name": "b", "type": "bytes"},
        {"name": "l", "type": "long"},
        {"name": "i", "type": "int"},
        {"name": "t", "type": "boolean"},
        {"name": "d", "type": "double"},
        {"name": "f", "type": "float"},
        {"name": "n", "type": "null"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "maybe", "type": ["null", "string"]},
        {"name": "either", "type": ["long", "null"]},
    ],
}


def written(schema: Any, record: Any) -> bytes:
    buf = io.BytesIO()
    schemaless_writer(buf, parse_schema(schema), record)
    return buf.getvalue()


def test_the_flat_reader_reads_what_fastavro_reads() -> None:
    read = flat_reader(FLAT)
    assert read is not None
    parsed = parse_schema(FLAT)
    extremes = {"s": "é" * 200, "b": b"\x00" * 300, "l": -(2**63), "i": 2**31 - 1, "t": True, "d": -1.5,
                "f": 0.25, "n": None, "ts": 0, "maybe": None, "either": 2**63 - 1}  # fmt: skip
    for record in [extremes, *generate_many(FLAT, 300)]:
        data = written(FLAT, record)
        assert read(data) == schemaless_reader(io.BytesIO(data), parsed, None)


def test_the_flat_reader_reads_after_a_prefix() -> None:
    read = flat_reader({"type": "record", "name": "P", "fields": [{"name": "x", "type": "long"}]}, 5)
    assert read is not None and read(b"\x00\x00\x00\x00\x07" + written("long", 12345)) == {"x": 12345}


@pytest.mark.parametrize(
    "data, problem",
    [
        (b"\x06ab", "length 3 does not fit"),  # a string cut short
        (b"\x04ab\x00", "left over"),
        (b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", "longer than 10 bytes"),
    ],
)
def test_bodies_that_do_not_match_raise(data: bytes, problem: str) -> None:
    schema = {"type": "record", "name": "S", "fields": [{"name": "s", "type": "string"}]}
    if problem.startswith("longer"):
        schema = {"type": "record", "name": "L", "fields": [{"name": "l", "type": "long"}]}
    read = flat_reader(schema)
    assert read is not None
    with pytest.raises(ValueError, match=problem):
        read(data)


def test_other_failures_raise_too() -> None:
    union = flat_reader({"type": "record", "name": "U", "fields": [{"name": "u", "type": ["null", "long"]}]})
    assert union is not None
    with pytest.raises(ValueError, match="union index"):
        union(b"\x04\x02")
    text = flat_reader({"type": "record", "name": "T", "fields": [{"name": "t", "type": "string"}]})
    assert text is not None
    with pytest.raises(UnicodeDecodeError):
        text(b"\x02\xff")
    number = flat_reader({"type": "record", "name": "D", "fields": [{"name": "d", "type": "double"}]})
    assert number is not None
    with pytest.raises(Exception, match="unpack_from requires"):
        number(b"\x00\x00")


@pytest.mark.parametrize(
    "schema",
    [
        "string",
        {"type": "record", "name": "N", "fields": [{"name": "inner", "type": FLAT}]},
        {"type": "record", "name": "A", "fields": [{"name": "xs", "type": {"type": "array", "items": "long"}}]},
        {"type": "record", "name": "U", "fields": [{"name": "u", "type": ["long", "string"]}]},
        {"type": "record", "name": "D", "fields": [
            {"name": "d", "type": {"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 2}}]},
    ],
)
def test_schemas_that_are_not_flat_are_left_to_fastavro(schema: Any) -> None:
    assert flat_reader(schema) is None


def test_the_field_reader_reads_one_field_as_the_whole_reader_does() -> None:
    from streamnb.avro._flat import flat_field_reader

    schema = {**FLAT, "fields": [*FLAT["fields"], {"name": "key", "type": "string"}]}
    whole = flat_reader(schema)
    assert whole is not None
    for name in ("s", "b", "key"):
        read = flat_field_reader(schema, 0, name)
        assert read is not None
        for record in generate_many(schema, 200):
            data = written(schema, record)
            assert read(data) == {name: whole(data)[name]}
    assert flat_field_reader(schema, 0, "l") is None  # routing keys are strings or bytes
    assert flat_field_reader(schema, 0, "maybe") is None  # an optional field: read the whole record
    assert flat_field_reader(schema, 0, "missing") is None
