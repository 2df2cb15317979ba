"""Records: typed message models with Faust's API.

Fields are the class annotations (inherited ones first), with defaults::

    >>> class PageView(Record):
    ...     id: str
    ...     user: str
    ...     page: str = "/"
    >>> view = PageView.from_data({"id": "1", "user": "alice"})
    >>> view
    PageView(id='1', user='alice', page='/')
    >>> PageView.loads(view.dumps()) == view
    True
    >>> PageView.page.field
    'page'

Class options, inherited by subclasses: ``coerce=True`` converts values to
the annotated types (``"3"`` -> ``3``) in the constructor and when decoding;
``validation=True`` checks them; ``serializer`` names the codec used by
:meth:`Record.dumps` and by topics whose ``value_type`` is the class. Faust's
``isodates``, ``decimals``, ``include_metadata``, ``abstract``,
``allow_blessed_key`` and ``polymorphic_fields`` are accepted and ignored;
``namespace`` (the model's full name) names the record in Avro schemas.

Without ``coerce`` values are stored as given, but decoding still rebuilds
what JSON cannot carry: nested Records (also inside lists, dicts and
Optionals), ``datetime``/``date`` (ISO-8601 strings), ``Decimal`` and
``UUID`` (strings), ``tuple``/``set``/``frozenset`` (arrays), Enums (their
value) and ``bytes`` (base64). Unknown keys, including Faust's ``"__faust"``
metadata, are ignored when decoding; a missing required field raises
:class:`~streamnb.errors.ValidationError`.

Records are hashable over their field values, as in Faust, so they can be
table keys; do not mutate a Record that is used as a key.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from datetime import date, time
from decimal import Decimal
from enum import Enum
from types import MappingProxyType, NoneType
from typing import Any, ClassVar, TypeVar, get_origin
from uuid import UUID

from ..codecs.base import Codec, get_codec
from ..errors import ConfigurationError, ValidationError
from ._fieldtypes import register_record_base, short_repr, to_json, type_name
from ._schema import Schema, fill, not_mapping, resolve

__all__ = ["FieldDescriptor", "Record"]

R = TypeVar("R", bound="Record")
_MISSING: Any = object()
_FAUST_OPTIONS = frozenset(
    {"isodates", "decimals", "include_metadata", "namespace", "abstract", "allow_blessed_key", "polymorphic_fields"}
)
_IMMUTABLE = (str, int, float, bytes, tuple, frozenset, NoneType, Decimal, date, time, UUID, Enum)


# -- public API -----------------------------------------------------------------------------


class FieldDescriptor:
    """A Record field read from the class: ``PageView.page``.

    Use it where Faust takes a field: ``stream.group_by(PageView.page)``,
    ``table.relative_to_field(PageView.ts)``. Reading the attribute from an
    instance never goes through the descriptor (it is a non-data
    descriptor), so ``view.page`` costs a plain dict lookup.

    >>> class PageView(Record):
    ...     page: str = "/"
    >>> PageView.page
    <FieldDescriptor PageView.page: str>
    >>> PageView.page(PageView(page="/a")), PageView.page.getattr({"page": "/b"})
    ('/a', '/b')
    """

    __slots__ = ("default", "field", "model")

    def __init__(self, model: type[Record], field: str, default: Any = _MISSING) -> None:
        self.model = model
        self.field = field
        self.default = default

    @property
    def type(self) -> Any:
        """The resolved annotation of the field."""
        return self.model.compiled_schema().types[self.field]

    @property
    def required(self) -> bool:
        """Whether the field has no default."""
        return self.default is _MISSING

    def getattr(self, obj: Any) -> Any:
        """The field's value in ``obj`` (a Record, or a mapping such as decoded JSON)."""
        if isinstance(obj, Mapping):
            return obj[self.field]
        return getattr(obj, self.field)

    __call__ = getattr

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        if instance is None:
            return self
        raise AttributeError(f"{type(instance).__name__!r} object has no field value for {self.field!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FieldDescriptor):
            return NotImplemented
        return self.model is other.model and self.field == other.field

    def __hash__(self) -> int:
        return hash((self.model, self.field))

    def __repr__(self) -> str:
        try:
            kind = type_name(self.type).replace("NoneType", "None")
        except ConfigurationError:
            kind = "?"
        return f"<FieldDescriptor {self.model.__name__}.{self.field}: {kind}>"


class Record:
    """A typed message: subclass it and annotate the fields.

    >>> class Order(Record, coerce=True):
    ...     item: str
    ...     qty: int = 1
    >>> Order("book", "3")
    Order(item='book', qty=3)
    >>> Order.from_data({"item": "pen", "__faust": {"ns": "x.Order"}}).asdict()
    {'item': 'pen', 'qty': 1}
    """

    _options: ClassVar[Mapping[str, Any]] = MappingProxyType({"coerce": False, "validation": False, "serializer": None})
    _field_names: ClassVar[tuple[str, ...]] = ()
    _defaults: ClassVar[dict[str, Any]] = {}
    _mutable: ClassVar[frozenset[str]] = frozenset()
    _schema: ClassVar[Schema | None] = None
    _localns: ClassVar[dict[str, Any] | None] = None

    def __init_subclass__(
        cls,
        *,
        coerce: bool | None = None,
        validation: bool | None = None,
        serializer: str | Codec | None = None,
        **faust_options: Any,
    ) -> None:
        super().__init_subclass__()
        unknown = set(faust_options) - _FAUST_OPTIONS
        if unknown:
            raise ConfigurationError(
                f"{cls.__name__}: unknown Record option(s) {', '.join(sorted(unknown))}; "
                "use coerce=, validation= or serializer="
            )
        options = dict(cls._options)
        options.update({k: v for k, v in (("coerce", coerce), ("validation", validation)) if v is not None})
        if serializer is not None:
            options["serializer"] = serializer
        options.update(faust_options)
        cls._options = MappingProxyType(options)
        _collect_fields(cls)
        cls._schema = None
        for attempt in range(2):
            try:
                resolve(cls)
                break
            except ConfigurationError as exc:
                if not isinstance(exc.__cause__, NameError):
                    raise
                if attempt == 0:  # maybe a class local to the enclosing function
                    cls._localns = _caller_locals()
        else:  # a forward reference (e.g. to a class defined later): resolve on first use
            cls.from_data = _LAZY_FROM_DATA  # type: ignore[method-assign]

    @classmethod
    def compiled_schema(cls) -> Schema:
        """The class's compiled field schema (types, converters), resolved on first use.

        >>> class Point(Record):
        ...     x: int
        >>> Point.compiled_schema().types
        {'x': <class 'int'>}
        """
        return cls._schema or resolve(cls)

    def __init__(self, *args: Any, **fields: Any) -> None:
        cls = type(self)
        schema = cls._schema or resolve(cls)
        if args:
            names = cls._field_names
            if len(args) > len(names):
                raise ValidationError(
                    f"{cls.__name__}() takes at most {len(names)} positional values ({', '.join(names)}), "
                    f"got {len(args)}"
                )
            for name, value in zip(names, args):
                if name in fields:
                    raise ValidationError(f"{cls.__name__}() got {name!r} by position and by keyword", field=name)
                fields[name] = value
        if len(fields) == len(schema.name_set) and schema.name_set.issuperset(fields):
            values = fields  # every field given by keyword: nothing to fill in
        else:
            values = fill(cls, fields, False)
        for name, convert in schema.init_convs:
            values[name] = convert(values[name])
        self.__dict__.update(values)
        if schema.post_init is not None:
            schema.post_init(self)

    @classmethod
    def from_data(cls: type[R], data: Mapping[str, Any]) -> R:
        """Build an instance from decoded JSON data (a mapping), as fast as possible.

        Unknown keys (and Faust's ``"__faust"``) are ignored; a missing
        required field raises ValidationError. With the exact field keys and
        no conversion to do, the mapping is copied into the instance as is.

        >>> class Point(Record):
        ...     x: int
        ...     y: int = 0
        >>> Point.from_data({"x": 1, "extra": True})
        Point(x=1, y=0)
        """
        resolve(cls)
        return cls.from_data(data)

    @classmethod
    def loads(cls: type[R], data: bytes, serializer: str | Codec | None = None) -> R:
        """Decode bytes (with the class serializer, JSON by default) into an instance.

        >>> class Point(Record):
        ...     x: int
        >>> Point.loads(b'{"x": 2}')
        Point(x=2)
        """
        obj = get_codec(serializer or cls._options["serializer"] or "json").loads(data)
        if isinstance(obj, cls):
            return obj
        if not isinstance(obj, Mapping):
            raise not_mapping(cls, obj)
        return cls.from_data(obj)

    def dumps(self, serializer: str | Codec | None = None) -> bytes:
        """Encode to bytes (with the class serializer, JSON by default).

        The codec receives :meth:`to_representation` (a JSON-ready dict), as in Faust.

        >>> class Point(Record):
        ...     x: int
        >>> Point(x=2).dumps()
        b'{"x":2}'
        """
        return get_codec(serializer or self._options["serializer"] or "json").dumps(self.to_representation())

    def to_representation(self) -> dict[str, Any]:
        """JSON-ready dict: nested Records as dicts, datetimes ISO-8601, Decimals str.

        >>> class Price(Record):
        ...     amount: Decimal
        >>> Price(amount=Decimal("1.50")).to_representation()
        {'amount': '1.50'}
        """
        schema = self.compiled_schema()
        values = self.__dict__
        convert = schema.json_fields
        return {n: to_json(values[n]) if n in convert else values[n] for n in self._field_names}

    def asdict(self) -> dict[str, Any]:
        """The field values as a dict (shallow: nested Records stay Records).

        >>> class Point(Record):
        ...     x: int
        >>> Point(x=1).asdict()
        {'x': 1}
        """
        values = self.__dict__
        return {name: values[name] for name in self._field_names}

    def validate(self) -> list[ValidationError]:
        """Check every field against its annotation; returns the errors (empty when valid).

        >>> class Point(Record):
        ...     x: int
        >>> [e.field for e in Point(x="1").validate()]
        ['x']
        """
        schema = self.compiled_schema()
        model, errors = type(self).__name__, []
        for name, spec in schema.specs.items():
            value = self.__dict__[name]
            if not spec.check(value):
                message = f"{model}.{name}: expected {spec.name}, got {type(value).__name__} {short_repr(value)}"
                errors.append(ValidationError(message, field=name))
        return errors

    def _values(self) -> tuple[Any, ...]:
        values = self.__dict__
        return tuple([values[name] for name in self._field_names])

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash((type(self), self._values()))

    def __repr__(self) -> str:
        values = self.__dict__
        fields = ", ".join(f"{name}={values.get(name, _MISSING)!r}" for name in self._field_names)
        return f"{type(self).__name__}({fields})"


_RESERVED = frozenset(dir(Record)) | {"__faust"}
register_record_base(Record)
_LAZY_FROM_DATA = Record.__dict__["from_data"]


def _collect_fields(cls: type[Record]) -> None:
    """Field names (inherited first), defaults and descriptors, without evaluating annotations."""
    order, defaults = _inherited_fields(cls)
    _add_own_fields(cls, order, defaults)
    for name in order:  # defaults given (or overridden) in this class body
        value = cls.__dict__.get(name, _MISSING)
        if value is not _MISSING and not isinstance(value, FieldDescriptor):
            defaults[name] = value
    cls._field_names = tuple(order)
    cls._defaults = defaults
    cls._mutable = frozenset(n for n, v in defaults.items() if not isinstance(v, _IMMUTABLE))
    for name in order:
        setattr(cls, name, FieldDescriptor(cls, name, defaults.get(name, _MISSING)))


def _inherited_fields(cls: type[Record]) -> tuple[list[str], dict[str, Any]]:
    """The fields of ``cls``'s Record bases, in order (the furthest base first), and their defaults."""
    order: list[str] = []
    defaults: dict[str, Any] = {}
    for base in reversed(cls.__mro__[1:]):
        if issubclass(base, Record) and "_field_names" in base.__dict__:
            inherited = vars(base)
            for name in inherited["_field_names"]:
                if name not in order:
                    order.append(name)
                defaults.pop(name, None)
                if name in inherited["_defaults"]:
                    defaults[name] = inherited["_defaults"][name]
    return order, defaults


def _add_own_fields(cls: type[Record], order: list[str], defaults: dict[str, Any]) -> None:
    """Add the fields ``cls`` annotates itself to ``order``; a field annotated again loses its inherited default."""
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():
        if _is_classvar(annotation):
            continue
        if name in _RESERVED:
            raise ConfigurationError(
                f"{cls.__name__}.{name}: this field name is taken by a Record method; rename the field"
            )
        if name not in order:
            order.append(name)
        defaults.pop(name, None)


def _is_classvar(annotation: Any) -> bool:
    if isinstance(annotation, str):
        return annotation.replace("typing.", "").startswith("ClassVar")
    return annotation is ClassVar or get_origin(annotation) is ClassVar


def _caller_locals() -> dict[str, Any] | None:
    """Locals of the scope running the ``class`` statement (for annotations naming local classes)."""
    frame = sys._getframe(2)  # noqa: SLF001 - the documented way to read the defining scope
    while frame is not None and frame.f_code.co_name == "__init_subclass__":
        frame = frame.f_back  # type: ignore[assignment]
    if frame is None or frame.f_locals is frame.f_globals:
        return None
    return dict(frame.f_locals)
