"""FromJson (streamnb/avro/datum.py): JSON data -> what fastavro writes, case by case of the schema."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from streamnb.avro.datum import FromJson

MONEY = {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}
STAMP = {"type": "long", "logicalType": "timestamp-millis"}
DAY = {"type": "int", "logicalType": "date"}
ITEM = {"type": "record", "name": "Item", "namespace": "shop", "fields": [{"name": "price", "type": MONEY}]}
ORDER = {
    "type": "record",
    "name": "Order",
    "namespace": "shop",
    "fields": [
        {"name": "at", "type": STAMP},
        {"name": "day", "type": ["null", DAY]},
        {"name": "blob", "type": "bytes"},
        {"name": "items", "type": {"type": "array", "items": ITEM}},
        {"name": "by_name", "type": {"type": "map", "values": "shop.Item"}},  # a named type, by full name
        {"name": "again", "type": ["null", "Item"]},  # and by its short name
        {"name": "wrapped", "type": {"type": "bytes"}},  # a primitive given as an object
        {"name": "note", "type": ["null", "long", "string"]},
    ],
}


def test_json_data_becomes_what_fastavro_writes_for_every_kind_of_schema() -> None:
    data = {
        "at": "2024-01-02T03:04:05+00:00",
        "day": "2024-01-02",
        "blob": "\u00ff\u0000",
        "items": [{"price": "1.50"}, {"price": 2}],
        "by_name": {"a": {"price": 0.25}},
        "again": {"price": "3"},
        "wrapped": "ab",
        "note": "12",
        "extra": "kept",  # keys the schema does not know pass as they are
    }
    out = FromJson(ORDER)(data)
    assert out == {
        "at": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        "day": date(2024, 1, 2),
        "blob": b"\xff\x00",
        "items": [{"price": Decimal("1.50")}, {"price": Decimal(2)}],
        "by_name": {"a": {"price": Decimal("0.25")}},
        "again": {"price": Decimal(3)},
        "wrapped": b"ab",
        "note": "12",  # no branch changes it (long does not read text): kept
        "extra": "kept",
    }
    del out["extra"]
    buf = io.BytesIO()
    schemaless_writer(buf, parse_schema(ORDER), out)  # fastavro writes it
    buf.seek(0)
    assert schemaless_reader(buf, parse_schema(ORDER), None)["items"] == [{"price": Decimal("1.50")},
                                                                          {"price": Decimal("2.00")}]


@pytest.mark.parametrize(
    "schema, value, expected",
    [
        (["null", DAY, "string"], "not a date", "not a date"),  # a branch that fails is skipped
        (["null", MONEY], True, True),  # a bool is not a number for a decimal
        (MONEY, 1.1, Decimal("1.1")),  # a float by its repr, not its binary expansion
        (STAMP, 5, 5),  # already what fastavro writes
        ({"type": "enum", "name": "E", "symbols": ["A"]}, "A", "A"),
        ({"type": "array", "items": "bytes"}, "not a list", "not a list"),
        ({"type": "map", "values": "bytes"}, ["not", "a", "map"], ["not", "a", "map"]),
        ("long", None, None),
        ({"type": ["null", "bytes"]}, "ab", b"ab"),  # a union given as an object
        ("Unknown", {"x": 1}, {"x": 1}),  # a name no schema defines
    ],
)
def test_values_that_are_right_already_or_cannot_be_converted_pass_as_they_are(
    schema: Any, value: Any, expected: Any
) -> None:
    assert FromJson(schema)(value) == expected
