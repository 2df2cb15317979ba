"""How a Record class is compiled: its resolved field types, converters and ``from_data``.

:func:`resolve` runs once per Record class, on first use (the annotations
may name types defined after the class): it evaluates the annotations,
builds the converters that ``coerce=True`` and ``validation=True`` ask for,
and installs a ``from_data`` specialised for the class, whose hot path copies
a dict with exactly the field keys into the instance.

Example::

    >>> from streamnb import Record
    >>> class Point(Record):
    ...     x: int
    >>> resolve(Point).types
    {'x': <class 'int'>}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from copy import deepcopy
from typing import Any, NamedTuple, get_type_hints

from ..errors import ConfigurationError, ValidationError
from ._fieldtypes import CONVERT_ERRORS, Converter, Spec, short_repr, spec_for

__all__ = ["Schema", "fill", "not_mapping", "resolve"]

Record = Any  # a streamnb.models.Record class (not imported: models imports this module)


class Schema(NamedTuple):
    types: dict[str, Any]
    specs: dict[str, Spec]
    init_convs: tuple[tuple[str, Converter], ...]  # constructor: coerce and/or check
    decode_convs: tuple[tuple[str, Converter], ...]  # from_data: rebuild or coerce, and/or check
    json_fields: frozenset[str]  # fields that to_representation must convert
    name_set: frozenset[str]
    post_init: Callable[[Any], None] | None  # the class's __post_init__, if any


def _converter(model: str, name: str, spec: Spec, convert: Converter | None, validate: bool) -> Converter:
    """One field's conversion, raising ValidationError that names the field."""
    check = spec.check

    def run(value: Any) -> Any:
        if convert is not None:
            try:
                value = convert(value)
            except ValidationError as exc:
                raise ValidationError(f"{model}.{name}: {exc}", field=name) from exc
            except CONVERT_ERRORS as exc:
                raise ValidationError(
                    f"{model}.{name}: cannot convert {type(value).__name__} {short_repr(value)} to {spec.name} "
                    f"({exc}); send a value of type {spec.name}",
                    field=name,
                ) from exc
        if validate and not check(value):
            raise ValidationError(
                f"{model}.{name}: expected {spec.name}, got {type(value).__name__} {short_repr(value)}; "
                f"pass a value of type {spec.name}, or declare `class {model}(Record, coerce=True)` to convert it",
                field=name,
            )
        return value

    return run


def resolve(cls: type[Record]) -> Schema:
    """Evaluate the annotations of ``cls`` and install its compiled ``from_data``."""
    localns = {**(cls.__dict__.get("_localns") or {}), cls.__name__: cls}
    try:
        hints = get_type_hints(cls, localns=localns)
    except NameError as exc:
        raise ConfigurationError(
            f"{cls.__name__}: cannot resolve a field annotation ({exc}); define that type before "
            f"{cls.__name__} is first used, at module level"
        ) from exc
    except Exception as exc:
        raise ConfigurationError(f"{cls.__name__}: invalid field annotation ({exc})") from exc
    opts, model = cls._options, cls.__name__
    coerce, validate = bool(opts["coerce"]), bool(opts["validation"]) and not opts["coerce"]
    types = {name: hints.get(name, Any) for name in cls._field_names}
    specs = {name: spec_for(tp) for name, tp in types.items()}
    init_convs, decode_convs = [], []
    for name, spec in specs.items():
        if coerce or validate:
            init_convs.append((name, _converter(model, name, spec, spec.coerce if coerce else None, validate)))
        convert = spec.coerce if coerce else spec.rebuild
        if convert is not None or validate:
            decode_convs.append((name, _converter(model, name, spec, convert, validate)))
    json_fields = frozenset(name for name, spec in specs.items() if not spec.plain)
    post_init = getattr(cls, "__post_init__", None)
    schema = Schema(types, specs, tuple(init_convs), tuple(decode_convs), json_fields, frozenset(types), post_init)
    cls._schema = schema
    cls._localns = None
    cls.from_data = staticmethod(_compile_from_data(cls, schema))
    return schema


def fill(cls: type[Record], data: Mapping[str, Any], decoding: bool) -> dict[str, Any]:
    """Field values from ``data`` plus defaults; raise for missing (and, building, unknown) fields."""
    defaults, mutable = cls._defaults, cls._mutable
    out: dict[str, Any] = {}
    missing = []
    given = 0
    for name in cls._field_names:
        if name in data:
            out[name] = data[name]
            given += 1
        elif name in defaults:
            out[name] = deepcopy(defaults[name]) if name in mutable else defaults[name]
        else:
            missing.append(name)
    model = cls.__name__
    if missing:
        where = f"the data has keys {sorted(map(str, data))}" if decoding else f"pass {missing[0]}=..."
        raise ValidationError(
            f"{model}.{missing[0]}: required field missing ({', '.join(missing)}); {where}, "
            f"or give the field a default in {model}",
            field=missing[0],
        )
    if not decoding and given != len(data):
        unknown = [k for k in data if k not in out and k != "__faust"]
        if unknown:
            raise ValidationError(
                f"{model}() got unexpected field(s) {', '.join(map(repr, unknown))}; "
                f"{model} has fields {', '.join(cls._field_names)}",
                field=str(unknown[0]),
            )
    return out


def not_mapping(cls: type, data: Any) -> ValidationError:
    return ValidationError(
        f"{cls.__name__}.from_data: expected a mapping (a decoded JSON object), got "
        f"{type(data).__name__} {short_repr(data)}; check what the producer sends"
    )


def _compile_from_data(cls: Any, schema: Schema) -> Callable[[Mapping[str, Any]], Any]:
    """``cls``'s own ``from_data``: a plain copy when no field needs converting and there is no ``__post_init__``."""
    values_of = _values_reader(cls)
    if not schema.decode_convs and schema.post_init is None:
        from_data = _copying_from_data(cls, values_of)
    else:
        from_data = _converting_from_data(cls, schema, values_of)
    from_data.__doc__ = cls.from_data.__doc__  # Record.from_data's, before it is replaced
    from_data.__qualname__ = f"{cls.__qualname__}.from_data"
    return from_data


def _values_reader(cls: Any) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """``data -> field values``: the slower path (defaults, extra keys ignored, missing fields, other mappings)."""
    field_names, defaults, mutable = cls._field_names, cls._defaults, cls._mutable

    def values_of(data: Mapping[str, Any]) -> dict[str, Any]:
        if type(data) is not dict and not isinstance(data, Mapping):
            raise not_mapping(cls, data)
        values = {}
        for name in field_names:
            if name in data:
                values[name] = data[name]
            elif name in defaults:
                values[name] = deepcopy(defaults[name]) if name in mutable else defaults[name]
            else:
                return fill(cls, data, True)  # raises, naming every missing field
        return values

    return values_of


def _copying_from_data(cls: Any, values_of: Callable[[Mapping[str, Any]], dict[str, Any]]) -> Callable[[Any], Any]:
    """``from_data`` of a Record whose fields need no conversion: the values become the instance's ``__dict__``."""
    count, has_all, new = len(cls._field_names), frozenset(cls._field_names).issuperset, object.__new__

    def from_data(data: Mapping[str, Any]) -> Any:
        obj = new(cls)
        # Hot path: a dict with exactly the field keys is copied into the instance as is.
        if type(data) is dict and len(data) == count and has_all(data):
            obj.__dict__ = data.copy()
        else:
            obj.__dict__ = values_of(data)
        return obj

    return from_data


def _converting_from_data(
    cls: Any, schema: Schema, values_of: Callable[[Mapping[str, Any]], dict[str, Any]]
) -> Callable[[Any], Any]:
    """``from_data`` that runs the fields' decode converters, then ``__post_init__`` if the class has one."""
    count, has_all, new = len(cls._field_names), frozenset(cls._field_names).issuperset, object.__new__
    convs, post = schema.decode_convs, schema.post_init

    def from_data(data: Mapping[str, Any]) -> Any:
        if type(data) is dict and len(data) == count and has_all(data):
            values = data.copy()
        else:
            values = values_of(data)
        for name, convert in convs:
            values[name] = convert(values[name])
        obj = new(cls)
        obj.__dict__ = values
        if post is not None:
            post(obj)
        return obj

    return from_data
