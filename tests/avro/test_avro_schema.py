"""Avro schemas derived from Records, and explicit schemas (streamnb/avro/schema.py)."""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, date, datetime, time
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional
from uuid import UUID

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from streamnb import ConfigurationError, Record
from streamnb.avro import AvroDecimal, avro_schema, load_schema


class Item(Record):
    sku: str
    qty: int = 1


class Order(Record, namespace="shop.Order"):
    id: str
    placed: datetime
    price: Decimal
    items: list[Item]
    tags: dict[str, str]
    note: Optional[str] = None  # noqa: UP045 - Optional spelled the Faust way on purpose
    paid: bool = False
    ratio: float = 0.5
    blob: bytes = b"\x00\xff"
    gift: Item | None = None
    day: date = date(2024, 1, 2)
    at: time = time(12, 30)
    ref: UUID = UUID(int=7)


def fields(schema: dict[str, Any]) -> dict[str, Any]:
    return {f["name"]: f for f in schema["fields"]}


def test_every_annotation_has_its_avro_form() -> None:
    schema = avro_schema(Order)
    assert schema["name"] == "Order" and schema["namespace"] == "shop"
    f = fields(schema)
    assert f["id"]["type"] == "string" and "default" not in f["id"]
    assert f["placed"]["type"] == {"type": "long", "logicalType": "timestamp-millis"}
    assert f["price"]["type"] == {"type": "bytes", "logicalType": "decimal", "precision": 38, "scale": 9}
    assert f["items"]["type"]["type"] == "array" and f["items"]["type"]["items"]["name"] == "Item"
    assert f["tags"]["type"] == {"type": "map", "values": "string"}
    assert f["note"] == {"name": "note", "type": ["null", "string"], "default": None}
    assert f["paid"] == {"name": "paid", "type": "boolean", "default": False}
    assert f["ratio"]["type"] == "double"
    assert f["gift"]["type"] == ["null", "Item"]  # the second use of a record names it
    assert f["day"]["type"] == {"type": "int", "logicalType": "date"}
    assert f["at"]["type"] == {"type": "long", "logicalType": "time-micros"}
    assert f["ref"]["type"] == {"type": "string", "logicalType": "uuid"}
    parse_schema(schema)  # valid Avro


def test_scalars_and_containers() -> None:
    assert [avro_schema(t) for t in (str, int, float, bool, bytes)] == ["string", "long", "double", "boolean", "bytes"]
    assert avro_schema(list[int]) == {"type": "array", "items": "long"}
    assert avro_schema(set[str]) == {"type": "array", "items": "string"}
    assert avro_schema(tuple[float, ...]) == {"type": "array", "items": "double"}
    assert avro_schema(int | str) == ["long", "string"]
    assert avro_schema(Optional[int]) == ["null", "long"]  # noqa: UP045


def test_a_union_lists_the_type_of_a_non_null_default_first() -> None:
    class Counter(Record):
        n: int | None = 5

    assert fields(avro_schema(Counter))["n"] == {"name": "n", "type": ["long", "null"], "default": 5}


def test_decimal_precision_and_scale_are_set_with_annotated() -> None:
    class Price(Record):
        amount: Annotated[Decimal, AvroDecimal(10, 2)]
        default_one: Decimal = Decimal("1.5")

    f = fields(avro_schema(Price))
    assert f["amount"]["type"] == {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}
    # 1.5 at scale 9 is the unscaled 1_500_000_000, as big-endian two's complement bytes in a latin-1 str
    assert f["default_one"]["default"].encode("latin-1") == (1_500_000_000).to_bytes(4, "big", signed=True)
    with pytest.raises(ConfigurationError, match="scale <= precision"):
        avro_schema(Annotated[Decimal, AvroDecimal(2, 5)])
    with pytest.raises(ConfigurationError, match="annotates Decimal"):
        avro_schema(Annotated[int, AvroDecimal(10, 2)])


def test_defaults_are_what_a_newer_reader_gets_for_messages_written_without_the_field() -> None:
    class V1(Record):
        id: str

    class V2(Record):
        id: str
        qty: int = 3
        items: list[Item] = [Item(sku="a", qty=2)]  # noqa: RUF012
        tags: dict[str, int] = {"x": 1}  # noqa: RUF012
        note: str | None = None
        done: bool = True

    writer = parse_schema({**avro_schema(V1), "name": "V2"})
    buf = io.BytesIO()
    schemaless_writer(buf, writer, {"id": "1"})
    buf.seek(0)
    read = schemaless_reader(buf, writer, parse_schema(avro_schema(V2)))
    assert V2.from_data(read) == V2(id="1", qty=3, items=[Item(sku="a", qty=2)], tags={"x": 1}, note=None, done=True)


def test_logical_and_bytes_defaults_are_written_in_avro_s_json_form() -> None:
    class Later(Record):
        placed: datetime = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
        day: date = date(1970, 1, 11)
        blob: bytes = b"\x00\xfe"

    f = fields(avro_schema(Later))
    assert f["placed"]["default"] == 1714979289000  # milliseconds since the epoch
    assert f["day"]["default"] == 10
    assert f["blob"]["default"] == "\x00\xfe"  # bytes as a latin-1 str, as the Avro spec says


def test_every_kind_of_default_has_its_avro_json_form() -> None:
    class Defaults(Record):
        first: Item = Item(sku="a")  # the record written out: a record default
        second: Item = Item(sku="b", qty=2)  # the record named again: its fields as JSON
        items: list[Item] = [Item(sku="c")]  # noqa: RUF012
        counts: dict[str, int] = {"x": 1}  # noqa: RUF012
        at: time = time(1, 2, 3, 4)
        ref: UUID = UUID(int=7)
        naive: datetime = datetime(1970, 1, 1, 0, 0, 1)  # a naive datetime is UTC
        ratio: float = 2
        flag: bool = 1  # type: ignore[assignment]
        count: int = 3.0  # type: ignore[assignment]
        text: str = 5  # type: ignore[assignment]
        price: Decimal = Decimal("-1")

    f = {name: field["default"] for name, field in fields(avro_schema(Defaults)).items()}
    assert f["first"] == {"sku": "a", "qty": 1} and f["second"] == {"sku": "b", "qty": 2}
    assert f["items"] == [{"sku": "c", "qty": 1}] and f["counts"] == {"x": 1}
    assert f["at"] == 3_723_000_004 and f["ref"] == str(UUID(int=7)) and f["naive"] == 1000
    assert (f["ratio"], f["flag"], f["count"], f["text"]) == (2.0, True, 3, "5")
    assert f["price"].encode("latin-1") == (-(10**9)).to_bytes(4, "big", signed=True)
    parse_schema(avro_schema(Defaults))  # fastavro takes every default


@pytest.mark.parametrize(
    "annotation, default, problem",
    [
        (int, True, "the default True has no Avro form for \"long\" (unexpected default for long)"),
        (int, None, "(None needs a null type first)"),
        (type(None), 5, "(unexpected default for null)"),
        (datetime, "2024-01-02", "the default '2024-01-02' has no Avro form"),
    ],
)
def test_a_default_without_an_avro_form_names_the_field(annotation: Any, default: Any, problem: str) -> None:
    Odd = type("Odd", (Record,), {"__annotations__": {"x": annotation}, "x": default})
    with pytest.raises(ConfigurationError, match=re.escape(problem)) as info:
        avro_schema(Odd)
    assert str(info.value).startswith(f"Odd.x: the default {default!r} has no Avro form")


def test_annotated_extras_and_newtypes_are_their_base_type() -> None:
    from typing import NewType

    assert avro_schema(Annotated[int, "a note"]) == "long"
    assert avro_schema(NewType("UserId", str)) == "string"
    with pytest.raises(ConfigurationError, match="explicitly"):
        avro_schema([int])  # not an annotation (unhashable): no Avro form


def test_a_record_round_trips_through_its_derived_schema() -> None:
    order = Order(
        id="o1", placed=datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC), price=Decimal("19.990000000"),
        items=[Item(sku="pen", qty=3)], tags={"channel": "web"}, gift=Item(sku="card"),
    )
    schema = parse_schema(avro_schema(Order))
    buf = io.BytesIO()
    data = {**order.asdict(), "items": [i.asdict() for i in order.items], "gift": order.gift.asdict()}  # type: ignore[union-attr]
    schemaless_writer(buf, schema, data)
    buf.seek(0)
    assert Order.from_data(schemaless_reader(buf, schema, None)) == order


class Color(Enum):
    RED = "red"


@pytest.mark.parametrize("annotation", [Any, Color, dict[int, str], list])
def test_annotations_without_an_avro_form_say_what_to_do(annotation: Any) -> None:
    with pytest.raises(ConfigurationError, match="explicitly"):
        avro_schema(annotation)


def test_a_record_with_an_unsupported_field_names_the_field() -> None:
    class Paint(Record):
        color: Color

    with pytest.raises(ConfigurationError, match=r"Paint\.color: Color has no Avro form"):
        avro_schema(Paint)


def test_explicit_schemas_from_a_dict_a_file_or_json_text(tmp_path: Path) -> None:
    schema = {"type": "record", "name": "Point", "fields": [{"name": "x", "type": "long"}]}
    path = tmp_path / "point.avsc"
    path.write_text(json.dumps(schema))
    assert load_schema(schema) == load_schema(str(path)) == load_schema(path) == load_schema(json.dumps(schema))
    assert load_schema("string") == "string"


def test_bad_explicit_schemas_are_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no such file"):
        load_schema(str(tmp_path / "missing.avsc"))
    with pytest.raises(ConfigurationError, match="invalid Avro schema"):
        load_schema({"type": "record", "name": "P", "fields": [{"name": "x", "type": "nope"}]})
    with pytest.raises(ConfigurationError, match="not valid JSON"):
        load_schema("{not json")
    with pytest.raises(ConfigurationError, match="must be a dict"):
        load_schema(42)
