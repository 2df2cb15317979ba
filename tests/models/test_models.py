"""Records: fields, defaults, decoding, coercion, validation, descriptors."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, ClassVar, Optional
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamnb.errors import ConfigurationError, SerializationError, ValidationError
from streamnb.models import FieldDescriptor, Record


class PageView(Record):
    id: str
    user: str
    page: str = "/"
    ts: float | None = None


class Item(Record):
    sku: str
    qty: int = 1


class Order(Record):
    id: str
    items: list[Item]
    by_sku: dict[str, Item] = {}
    note: Optional[Item] = None  # noqa: UP045 - Records must also accept typing.Optional annotations
    tags: list[str] = []


class Stamped(Record):
    at: datetime
    day: date
    price: Decimal
    ref: UUID | None = None


class Strict(Record, validation=True):
    name: str
    count: int = 0
    ratio: float = 1.0


class Coerced(Record, coerce=True):
    n: int
    at: datetime | None = None
    price: Decimal = Decimal(0)
    flag: bool = False
    pair: tuple[int, str] = (0, "")


class Color(Enum):
    RED = "red"
    BLUE = "blue"


class Everything(Record):
    """One field of each supported kind, for the round-trip property."""

    text: str
    number: int
    real: float
    flag: bool
    maybe: int | None
    when: datetime
    money: Decimal
    color: Color
    raw: bytes
    items: list[Item]
    lookup: dict[str, int]
    counts: dict[int, str]
    pair: tuple[int, str]
    anything: Any = None


# -- fields and defaults --------------------------------------------------------------------


def test_fields_defaults_and_repr() -> None:
    view = PageView(id="1", user="alice")
    assert (view.id, view.user, view.page, view.ts) == ("1", "alice", "/", None)
    assert repr(view) == "PageView(id='1', user='alice', page='/', ts=None)"
    assert PageView._field_names == ("id", "user", "page", "ts")


def test_positional_arguments_follow_field_order() -> None:
    assert PageView("1", "bob", "/x") == PageView(id="1", user="bob", page="/x")
    with pytest.raises(ValidationError, match="at most 4"):
        PageView("1", "2", "3", 4.0, "extra")
    with pytest.raises(ValidationError, match="by position and by keyword"):
        PageView("1", id="2", user="x")


def test_missing_field_in_constructor_names_the_field() -> None:
    with pytest.raises(ValidationError) as info:
        PageView(id="1")
    assert info.value.field == "user"
    assert "PageView.user" in str(info.value)


def test_unknown_keyword_in_constructor_is_an_error() -> None:
    with pytest.raises(ValidationError, match="unexpected field.*'color'") as info:
        PageView(id="1", user="a", color="red")
    assert info.value.field == "color"
    with pytest.raises(ValidationError, match="'color'"):
        PageView(id="1", user="a", page="/", ts=1.0, color="red")  # all fields given, plus one


def test_equality_and_hash_are_by_type_and_fields() -> None:
    a, b = PageView(id="1", user="a"), PageView(id="1", user="a")
    assert a == b and hash(a) == hash(b)
    assert a != PageView(id="1", user="b")
    assert {a: 1}[b] == 1

    class Other(Record):
        id: str
        user: str
        page: str = "/"
        ts: float | None = None

    assert a != Other(id="1", user="a")


def test_inheritance_keeps_field_order_defaults_and_options() -> None:
    class Base(Record, validation=True):
        id: str
        kind: str = "base"

    class Child(Base):
        extra: int = 0
        kind = "child"  # default overridden without annotation

    child = Child(id="x")
    assert Child._field_names == ("id", "kind", "extra")
    assert (child.kind, child.extra) == ("child", 0)
    assert _field(Child.kind).model is Child and _field(Base.kind).model is Base
    with pytest.raises(ValidationError, match="Child.extra: expected int"):
        Child(id="x", extra="nope")


def test_class_variables_and_re_annotated_fields() -> None:
    import typing

    class Base(Record):
        id: str
        kind: str = "base"
        registry: ClassVar[dict[str, int]] = {}  # a class variable, not a field

    class Child(Base):
        kind: str  # annotated again without a default: now required, in its inherited place
        label: typing.ClassVar[str] = "child"
        extra: int = 0

    assert Base._field_names == ("id", "kind") and Child._field_names == ("id", "kind", "extra")
    assert Child._defaults == {"extra": 0} and Base.registry == {} and Child.label == "child"
    with pytest.raises(ValidationError, match="Child.kind: required field missing"):
        Child(id="x")


def test_mutable_defaults_are_copied_per_instance() -> None:
    first = Order(id="1", items=[])
    first.tags.append("x")
    first.by_sku["a"] = Item(sku="a")
    second = Order(id="2", items=[])
    assert second.tags == [] and second.by_sku == {}
    third = Order.from_data({"id": "3", "items": []})
    assert third.tags == [] and third.tags is not first.tags


def test_reserved_field_names_are_rejected() -> None:
    with pytest.raises(ConfigurationError, match="dumps"):

        class Bad(Record):
            dumps: str  # type: ignore[assignment]


def test_unknown_class_option_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="coerse"):

        class Typo(Record, coerse=True):  # type: ignore[call-arg]
            x: int


def test_faust_options_are_accepted() -> None:
    class Faustish(Record, isodates=True, include_metadata=False, namespace="x.y"):
        at: datetime

    assert Faustish.from_data({"at": "2024-01-01T00:00:00"}).at == datetime(2024, 1, 1)


# -- decoding -------------------------------------------------------------------------------


def test_from_data_fast_path_and_defaults() -> None:
    data = {"id": "1", "user": "u", "page": "/a", "ts": 2.5}
    view = PageView.from_data(data)
    assert view == PageView(id="1", user="u", page="/a", ts=2.5)
    view.page = "/changed"
    assert data["page"] == "/a", "the instance must not share the caller's dict"
    assert PageView.from_data({"id": "1", "user": "u"}).page == "/"


def test_unknown_keys_and_faust_metadata_are_ignored_on_decode() -> None:
    view = PageView.from_data({"id": "1", "user": "u", "referrer": "x", "__faust": {"ns": "app.PageView"}})
    assert view.asdict() == {"id": "1", "user": "u", "page": "/", "ts": None}
    assert not hasattr(view, "referrer")
    loaded = PageView.loads(b'{"__faust":{"ns":"a.PageView"},"id":"1","user":"u","page":"/","ts":null}')
    assert loaded == PageView(id="1", user="u")


def test_missing_field_on_decode_names_the_field() -> None:
    with pytest.raises(ValidationError) as info:
        PageView.from_data({"id": "1"})
    assert info.value.field == "user"
    assert "'id'" in str(info.value)  # shows the keys that did arrive
    with pytest.raises(ValidationError):
        PageView.loads(b'{"user": "u"}')


def test_from_data_rejects_non_mappings() -> None:
    with pytest.raises(ValidationError, match="expected a mapping"):
        PageView.from_data(["id", "user", "page", "ts"])  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="expected a mapping"):
        PageView.loads(b"[1, 2]")


def test_loads_bad_json_is_a_serialization_error() -> None:
    with pytest.raises(SerializationError, match="cannot decode JSON"):
        PageView.loads(b"{not json")


def test_nested_records_in_lists_dicts_and_optionals_are_rebuilt() -> None:
    data = {"id": "o1", "items": [{"sku": "a", "qty": 2}, {"sku": "b"}], "by_sku": {"a": {"sku": "a"}}}
    order = Order.from_data({**data, "note": {"sku": "n"}})
    assert order.items == [Item(sku="a", qty=2), Item(sku="b")]
    assert order.by_sku == {"a": Item(sku="a")}
    assert order.note == Item(sku="n")
    assert Order.loads(order.dumps()) == order
    assert order.to_representation()["items"] == [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 1}]
    with pytest.raises(ValidationError, match="Order.items: Item.sku") as info:
        Order.from_data({"id": "o1", "items": [{"qty": 2}]})
    assert info.value.field == "items"


def test_datetime_decimal_uuid_round_trip_through_json() -> None:
    ref = UUID(int=7)
    at = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    stamped = Stamped(at=at, day=date(2024, 1, 2), price=Decimal("1.10"), ref=ref)
    wire = json.loads(stamped.dumps())
    assert wire == {"at": "2024-01-02T03:04:05+00:00", "day": "2024-01-02", "price": "1.10", "ref": str(ref)}
    back = Stamped.loads(stamped.dumps())
    assert back == stamped
    assert isinstance(back.price, Decimal) and back.price == Decimal("1.10")
    assert Stamped.from_data({"at": "2024-01-01T00:00:00Z", "day": "2024-01-01", "price": 3}).price == Decimal(3)


def test_bad_datetime_on_decode_names_the_field() -> None:
    with pytest.raises(ValidationError, match="Stamped.at: cannot convert str 'yesterday'") as info:
        Stamped.from_data({"at": "yesterday", "day": "2024-01-01", "price": "1"})
    assert info.value.field == "at"


# -- coerce ---------------------------------------------------------------------------------


def test_without_coerce_values_are_stored_as_given() -> None:
    item = Item(sku="a", qty="3")  # type: ignore[arg-type]
    assert item.qty == "3"
    assert Item.from_data({"sku": "a", "qty": "3"}).qty == "3"


def test_coerce_converts_in_constructor_and_decode() -> None:
    made = Coerced(n="3", at="2024-01-01T00:00:00", price=1.5, flag="yes", pair=["1", 2])
    assert made.n == 3
    assert made.at == datetime(2024, 1, 1)
    assert made.price == Decimal("1.5") and isinstance(made.price, Decimal)
    assert Coerced(n=1, price=0.1).price == Decimal("0.1"), "floats convert by their repr, not binary expansion"
    assert made.flag is True
    assert made.pair == (1, "2")
    decoded = Coerced.from_data({"n": "4", "at": 0, "price": "2.25"})
    assert decoded.n == 4 and decoded.price == Decimal("2.25")
    assert decoded.at == datetime(1970, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("field", "value"),
    [("n", "three"), ("n", 1.5), ("at", "not a date"), ("price", "1,5"), ("flag", "maybe"), ("pair", [1])],
)
def test_coerce_failure_names_the_field(field: str, value: Any) -> None:
    data = {"n": 1, field: value}
    for build in (lambda: Coerced(**data), lambda: Coerced.from_data(data)):
        with pytest.raises(ValidationError) as info:
            build()
        assert info.value.field == field
        assert f"Coerced.{field}" in str(info.value)


def test_coerce_builds_nested_records_in_constructor() -> None:
    class Cart(Record, coerce=True):
        items: list[Item]

    assert Cart(items=[{"sku": "a"}]).items == [Item(sku="a")]  # type: ignore[list-item]


# -- validation -----------------------------------------------------------------------------


def test_validation_error_names_field_and_says_what_to_do() -> None:
    with pytest.raises(ValidationError) as info:
        Strict(name=3)
    message = str(info.value)
    assert info.value.field == "name"
    assert message.startswith("Strict.name: expected str, got int 3")
    assert "coerce=True" in message


def test_validation_runs_on_decode_and_accepts_ints_for_floats() -> None:
    assert Strict.from_data({"name": "x", "ratio": 2}).ratio == 2
    with pytest.raises(ValidationError) as info:
        Strict.from_data({"name": "x", "count": True})
    assert info.value.field == "count"


def test_validate_method_lists_problems_without_raising() -> None:
    item = Item(sku=1, qty="2")  # type: ignore[arg-type]
    assert [error.field for error in item.validate()] == ["sku", "qty"]
    assert Item(sku="a").validate() == []


# -- descriptors ----------------------------------------------------------------------------


def _field(descriptor: Any) -> FieldDescriptor:
    """``Model.field`` as the descriptor it is at run time (type checkers see the field's type)."""
    assert isinstance(descriptor, FieldDescriptor)
    return descriptor


def test_class_attribute_is_a_field_descriptor() -> None:
    descriptor = _field(PageView.page)
    assert descriptor.field == "page" and descriptor.model is PageView
    assert descriptor.type is str
    assert _field(PageView.ts).type == float | None
    assert not descriptor.required and _field(PageView.id).required
    assert repr(descriptor) == "<FieldDescriptor PageView.page: str>"
    assert {descriptor: 1}[_field(PageView.page)] == 1


def test_descriptor_reads_instances_and_mappings() -> None:
    view = PageView(id="1", user="u", page="/p")
    assert view.page == "/p"
    page = _field(PageView.page)
    assert page(view) == "/p"
    assert page.getattr(view) == "/p"
    assert page.getattr({"page": "/m"}) == "/m"
    assert "page" in vars(view), "values live in the instance dict (the descriptor is non-data)"


# -- forward references and hooks -------------------------------------------------------------


class Tree(Record):
    name: str
    children: list[Tree] = []
    later: Later | None = None


class Later(Record):
    x: int


def test_self_and_forward_references_resolve() -> None:
    tree = Tree.from_data({"name": "root", "children": [{"name": "leaf"}], "later": {"x": 1}})
    assert tree.children == [Tree(name="leaf")]
    assert tree.later == Later(x=1)
    assert Tree.loads(tree.dumps()) == tree


def test_annotations_may_name_classes_local_to_a_function() -> None:
    class Point(Record):
        x: int

    class Segment(Record):
        start: Point
        end: Point | None = None

    segment = Segment.from_data({"start": {"x": 1}, "end": {"x": 2}})
    assert segment == Segment(start=Point(x=1), end=Point(x=2))
    assert _field(Segment.start).type is Point


def test_unresolvable_annotation_is_a_configuration_error_on_first_use() -> None:
    class Dangling(Record):
        x: NoSuchType  # type: ignore[name-defined]  # noqa: F821

    with pytest.raises(ConfigurationError, match="NoSuchType"):
        Dangling.from_data({"x": 1})


def test_faust_metadata_keyword_is_ignored_by_the_constructor() -> None:
    view = PageView(**{"id": "1", "user": "u", "__faust": {"ns": "app.PageView"}})
    assert view == PageView(id="1", user="u")


def test_post_init_runs_after_construction_and_decode() -> None:
    class Upper(Record):
        name: str

        def __post_init__(self) -> None:
            self.name = self.name.upper()

    assert Upper(name="a").name == "A"
    assert Upper.from_data({"name": "b"}).name == "B"


def test_serializer_option_is_used_by_dumps() -> None:
    class Shouty(Record, serializer="str"):
        text: str

    with pytest.raises(SerializationError, match="str codec"):
        Shouty(text="x").dumps()
    assert Shouty(text="x").dumps(serializer="json") == b'{"text":"x"}'
    assert Shouty._options["serializer"] == "str"


# -- round-trip property ----------------------------------------------------------------------

_items = st.builds(Item, sku=st.text(max_size=5), qty=st.integers())
_everything = st.builds(
    Everything,
    text=st.text(),
    number=st.integers(),
    real=st.floats(allow_nan=False),
    flag=st.booleans(),
    maybe=st.none() | st.integers(),
    when=st.datetimes(timezones=st.none() | st.just(UTC)),
    money=st.decimals(allow_nan=False, allow_infinity=False),
    color=st.sampled_from(Color),
    raw=st.binary(max_size=20),
    items=st.lists(_items, max_size=3),
    lookup=st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    counts=st.dictionaries(st.integers(), st.text(max_size=5), max_size=3),
    pair=st.tuples(st.integers(), st.text(max_size=5)),
    anything=st.none() | st.integers() | st.text() | st.lists(st.integers(), max_size=3),
)


@given(_everything)
def test_dumps_loads_round_trip(record: Everything) -> None:
    assert Everything.loads(record.dumps()) == record

