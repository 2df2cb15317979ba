"""Field types: compiling annotations into check/coerce/rebuild functions, and encoding to JSON."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time
from decimal import Decimal
from enum import Enum
from typing import Any, Literal, NewType, Optional, TypeVar
from uuid import UUID

import pytest

from streamnb.models import Record
from streamnb.models._fieldtypes import CONVERT_ERRORS, short_repr, spec_for, to_json, type_name


class Item(Record):
    sku: str
    qty: int = 1


class Color(Enum):
    RED = "red"


UserId = NewType("UserId", int)
T = TypeVar("T")
ID = UUID("12345678-1234-5678-1234-567812345678")


@pytest.mark.parametrize(
    ("tp", "value", "expected"),
    [
        (str, 3, "3"),
        (str, b"x", "x"),
        (str, date(2024, 1, 2), "2024-01-02"),
        (int, "3", 3),
        (int, 2.0, 2),
        (float, "1.5", 1.5),
        (bool, "Yes", True),
        (bool, "off", False),
        (bool, 1, True),
        (bytes, "aGk=", b"hi"),
        (datetime, 0, datetime(1970, 1, 1, tzinfo=UTC)),
        (datetime, "2024-01-02T03:04:05", datetime(2024, 1, 2, 3, 4, 5)),
        (date, datetime(2024, 1, 2, 3, 4), date(2024, 1, 2)),
        (time, "03:04", time(3, 4)),
        (Decimal, 1.5, Decimal("1.5")),
        (UUID, str(ID), ID),
        (UserId, "7", 7),
        (Color, "red", Color.RED),
        (Optional[int], None, None),  # noqa: UP045 - typing.Optional is a different runtime object than int | None
        (int | None, "3", 3),
        (date | int, "7", 7),  # members are tried in order
        (tuple[int, str], ["1", 2], (1, "2")),
        (set[int], ["1", "1"], {1}),
        (dict[int, Decimal], {"1": "2.5"}, {1: Decimal("2.5")}),
        (Item, {"sku": "a"}, Item(sku="a")),
    ],
)
def test_coerce(tp: Any, value: Any, expected: Any) -> None:
    spec = spec_for(tp)
    assert spec.coerce(value) == expected
    assert spec.check(spec.coerce(value))


@pytest.mark.parametrize(
    ("tp", "value"),
    [(int, 2.5), (int, True), (float, True), (bool, 2), (bool, "maybe"), (str, [1]), (bytes, "not base64!"),
     (list[int], "12"), (tuple[int, int], [1]), (Literal["a", "b"], "c"), (Item, 1), (int | date, "x")],
)
def test_coerce_failures_raise_convert_errors(tp: Any, value: Any) -> None:
    with pytest.raises(CONVERT_ERRORS):
        spec_for(tp).coerce(value)


def rebuild(tp: Any, value: Any) -> Any:
    convert = spec_for(tp).rebuild
    assert convert is not None, f"{tp} has no rebuild"
    return convert(value)


def test_rebuild_restores_what_json_cannot_carry_and_keeps_the_rest() -> None:
    assert rebuild(datetime, "2024-01-02T00:00:00") == datetime(2024, 1, 2)
    assert rebuild(datetime, 5) == 5  # not what JSON makes of a datetime: left as is
    assert rebuild(Decimal, 3) == Decimal(3)
    assert rebuild(frozenset[str], ["a"]) == frozenset({"a"})
    assert rebuild(tuple[int, date], [1, "2024-01-02"]) == (1, date(2024, 1, 2))
    assert rebuild(dict[int, list[Item]], {"1": [{"sku": "a"}]}) == {1: [Item(sku="a")]}
    assert rebuild(Optional[Color], None) is None  # noqa: UP045 - covers the typing.Union form
    assert rebuild(int | date, "2024-01-02") == date(2024, 1, 2)


@pytest.mark.parametrize("tp", [str, int, float, bool, None, list[int], dict[str, int | None], Literal["a"]])
def test_json_types_need_no_rebuild_or_encoding(tp: Any) -> None:
    spec = spec_for(tp)
    assert spec.rebuild is None
    assert spec.plain


def test_unknown_constructs_act_as_any() -> None:
    spec = spec_for(T)
    assert spec.name == "~T"
    assert spec.check(object()) and spec.coerce(1) == 1 and spec.rebuild is None and not spec.plain
    assert spec_for(list).name == "list[Any]"


def test_more_annotations_compile_by_their_origin() -> None:
    from collections import deque
    from typing import ClassVar

    assert spec_for(tuple[int, ...]).coerce(["1", 2]) == (1, 2)  # a variable-length tuple is a sequence
    assert spec_for(deque[int]).name == "deque"  # another generic class: its origin, as a class
    assert spec_for(deque[int]).coerce([1]) == deque([1])
    assert spec_for(ClassVar[int]).name == "ClassVar[int]"  # an origin that is not a class: Any, named as written
    assert spec_for([int]).name == "[<class 'int'>]" and spec_for([int]).check(1)  # unhashable: Any


def test_a_union_of_several_types_keeps_values_that_fit_and_rebuilds_with_the_first_member_that_checks() -> None:
    spec = spec_for(int | datetime | None)
    assert spec.coerce(5) == 5 and spec.coerce(None) is None  # already one of the members
    union_rebuild = spec.rebuild
    assert union_rebuild is not None
    assert union_rebuild(5) == 5  # fits as it is
    assert union_rebuild("2024-01-02T00:00:00") == datetime(2024, 1, 2)
    assert union_rebuild("not a date") == "not a date"  # no member's rebuild takes it: kept, for validation
    assert rebuild(Decimal | date, "2024-01-02") == date(2024, 1, 2)  # Decimal's rebuild raises: the next one
    assert rebuild(Decimal | datetime, [1]) == [1]  # rebuilt by none


def test_to_json_makes_json_data() -> None:
    value = {
        "item": Item(sku="a"),
        "when": [datetime(2024, 1, 2), date(2024, 1, 2), time(3, 4)],
        "money": (Decimal("1.50"), ID, Color.RED),
        "raw": b"hi",
        "tags": frozenset({"x"}),
        1: None,
        ID: 2,
    }
    data = to_json(value)
    assert data == {
        "item": {"sku": "a", "qty": 1},
        "when": ["2024-01-02T00:00:00", "2024-01-02", "03:04:00"],
        "money": ["1.50", str(ID), "red"],
        "raw": "aGk=",
        "tags": ["x"],
        1: None,
        str(ID): 2,
    }
    json.dumps(data)


def test_names_for_messages() -> None:
    assert spec_for(dict[str, list[int | None]]).name == "dict[str, list[int | None]]"
    assert type_name(Optional[int]) == "Optional[int]"  # noqa: UP045 - typing.Optional is named differently
    assert type_name(Item) == "Item"
    assert short_repr("x" * 100, limit=10) == "'xxxxxx..."
    assert short_repr("short") == "'short'"
