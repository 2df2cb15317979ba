"""Encoders and decoders built from a codec and a declared type: what :func:`streamnb.codecs.serde` returns.

:mod:`streamnb.codecs` shows the rules as a table and :mod:`streamnb.codecs._typerules`
holds them, one :class:`~streamnb.codecs._typerules.Rule` per type. Three builders
turn a codec and a declared type into the ``encode``/``decode`` pair of a
:class:`Serde`, once per topic:

- :func:`json_pair` for JSON codecs (``loads`` returns JSON data),
- :func:`text_pair` for the raw and str codecs (the payload is text),
- :func:`generic_pair` for any other codec (what ``loads`` returns is checked
  with the JSON rules; bytes and str it returns are also read as text).

Per message the work is the codec's ``loads`` plus one type check or parse.

>>> from streamnb.codecs import get_codec
>>> encode, decode = text_pair(get_codec("raw"), int, "value", None, utf8=False)
>>> encode(42), decode(b"42")
(b'42', 42)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, NamedTuple

from ..errors import ConfigurationError, SerializationError, ValidationError
from ._typerules import FAIL, JSON_NAMES, RULES, Convert, Rule, identity, is_record, short, type_label, wrong

__all__ = [
    "Decode", "Encode", "Prefetch", "Prepare", "Serde", "generic_pair", "json_pair", "label", "record_from_data",
    "text_pair",
]

Encode = Callable[[Any], bytes | None]
Decode = Callable[[bytes | None], Any]
Prepare = Callable[[], Awaitable[None]]
Prefetch = Callable[[Sequence[bytes | None]], Awaitable[None]]


def label(role: str, topic: str | None) -> str:
    """How messages name the payload: ``"topic 'orders' value"`` (or just ``"value"``)."""
    return f"topic {topic!r} {role}" if topic else role


class Serde:
    """How one topic's keys or values become bytes and back: what :func:`~streamnb.codecs.serde` returns.

    ``encode(obj) -> bytes | None`` and ``decode(bytes | None) -> obj`` are
    plain functions (attributes, not methods, so calling them costs one call);
    ``None`` is a tombstone both ways. A codec's ``serde_for`` hook returns one.

    Two optional coroutine functions serve codecs whose encoding or decoding
    needs something from the network (a schema registry): ``prepare()`` is
    awaited before the first ``encode`` (``Topic.send`` does it), and
    ``prefetch(payloads)`` before ``decode`` runs on a batch of payloads (the
    consumer does it), so that ``encode``/``decode`` themselves never wait.
    Both are ``None`` for the built-in codecs. ``decode_fields(payload)``, if
    not ``None``, returns a Record payload's fields as a plain dict without
    building the Record: ``group_by(Model.field)`` routes by it (Avro).

    >>> from streamnb.codecs import serde
    >>> s = serde("json", int)
    >>> s.encode(42), s.decode(b"42")
    (b'42', 42)
    """

    __slots__ = (
        "codec", "decode", "decode_fields", "encode", "field_reader", "prefetch", "prepare", "role", "topic", "type"
    )

    codec: Any
    type: Any
    encode: Encode
    decode: Decode
    role: str
    topic: str | None
    prepare: Prepare | None
    prefetch: Prefetch | None
    decode_fields: Decode | None

    def __init__(
        self,
        codec: Any,
        type_: Any,
        encode: Encode,
        decode: Decode,
        *,
        role: str = "value",
        topic: str | None = None,
        prepare: Prepare | None = None,
        prefetch: Prefetch | None = None,
        decode_fields: Decode | None = None,
    ) -> None:
        self.codec = codec
        self.type = type_
        self.encode = encode
        self.decode = decode
        self.role = role
        self.topic = topic
        self.prepare = prepare
        self.prefetch = prefetch
        self.decode_fields = decode_fields
        self.field_reader: Callable[[str], Decode] | None = None
        """Optional: ``field_reader(name)`` gives a decoder returning ``{name: value}`` only (routing)."""

    def __repr__(self) -> str:
        return f"<Serde {self.codec!r} {type_label(self.type)} for the {label(self.role, self.topic)}>"


# -- messages -------------------------------------------------------------------------------------


class _Where(NamedTuple):
    """Who is asking, for messages: the topic, ``key`` or ``value``, and the options to change."""

    topic: str | None
    role: str

    @property
    def what(self) -> str:
        return label(self.role, self.topic)

    def advice(self) -> str:
        return f"check what the producer sends, or change the topic's {self.role}_type or {self.role}_serializer"

    def bad_value(self, name: str, value: Any, why: ValidationError | None = None) -> ValidationError:
        return ValidationError(
            f"{self.what}: {self.role}_type is {name}, got {type(value).__name__} {short(value)}"
            f"{f' ({why})' if why is not None else ''}: "
            f"send a value of type {name}, or change the topic's {self.role}_type",
            field=why.field if why is not None else None,
        )

    def bad_json(self, form: str, name: str, obj: Any) -> ValidationError:
        got = JSON_NAMES.get(type(obj)) or type(obj).__name__
        return ValidationError(f"{self.what}: expected {form} for {self.role}_type={name}, got {got} {short(obj)}: "
                               f"{self.advice()}")

    def bad_text(self, form: str, name: str, data: Any) -> ValidationError:
        return ValidationError(f"{self.what}: expected {form} for {self.role}_type={name}, got {short(data)}: "
                               f"{self.advice()}")

    def cannot_encode(self, exc: Exception, codec: Any, value: Any) -> SerializationError:
        """A codec's error while encoding, saying which topic, which value and which codec."""
        where = f"topic {self.topic!r}: " if self.topic else ""
        return self._like(exc, f"{where}cannot encode {self.role} {short(value)} with {codec!r}: {self._advice(exc)}")

    def cannot_decode(self, exc: Exception, codec: Any) -> SerializationError:
        """A codec's error while decoding, prefixed with the topic and role."""
        if isinstance(exc, SerializationError):
            return self._like(exc, f"{self.what}: {self._advice(exc)}")
        return SerializationError(f"{self.what}: {codec!r} cannot decode it ({type(exc).__name__}: {exc})")

    def _advice(self, exc: Exception) -> str:
        message = str(exc)
        return message.replace("value_serializer", "key_serializer") if self.role == "key" else message

    @staticmethod
    def _like(exc: Exception, message: str) -> SerializationError:
        if isinstance(exc, ValidationError):
            return ValidationError(message, field=exc.field)
        return SerializationError(message)


# -- encoders -------------------------------------------------------------------------------------
# Each one checks the value, then calls the codec inside a try (free in Python 3.11 when
# nothing is raised) that names the topic in the codec's error.


def _untyped_encoder(dumps: Callable[[Any], bytes], where: _Where, codec: Any, records: bool = True) -> Encode:
    """No declared type: whatever the codec takes (Records as their JSON-ready dict, as in Faust).

    ``records=False``: the codec turns Records into dicts itself (the built-in JSON codec).
    """
    if not records:

        def encode_plain(value: Any) -> bytes | None:
            if value is None:
                return None
            try:
                return dumps(value)
            except Exception as exc:
                raise where.cannot_encode(exc, codec, value) from exc

        return encode_plain

    def encode(value: Any) -> bytes | None:
        if value is None:
            return None
        to_representation = getattr(value, "to_representation", None)
        if to_representation is not None:
            value = to_representation()
        try:
            return dumps(value)
        except Exception as exc:
            raise where.cannot_encode(exc, codec, value) from exc

    return encode


def _record_encoder(type_: Any, dumps: Callable[[Any], bytes], where: _Where, codec: Any) -> Encode:
    """A Record type: an instance (as its JSON-ready dict), or a mapping, checked as a reader would read it.

    A mapping is sent as it is, once ``from_data`` accepted it (every required
    field there; field types too with the Record's ``validation=True``): bad
    input is refused by ``send()``, not dead-lettered by the agent reading it.
    """
    name = type_.__name__
    from_data = record_from_data(type_)

    def encode(value: Any) -> bytes | None:
        if value is None:
            return None
        if isinstance(value, type_):
            value = value.to_representation()
        elif not isinstance(value, Mapping):
            raise where.bad_value(name, value)
        else:
            try:
                from_data(value)
            except ValidationError as exc:
                raise where.bad_value(name, value, exc) from exc
        try:
            return dumps(value)
        except Exception as exc:
            raise where.cannot_encode(exc, codec, value) from exc

    return encode


def _rule_encoder(rule: Rule, convert: Convert, dumps: Callable[[Any], bytes] | None, where: _Where,
                  codec: Any) -> Encode:
    accepts, name = rule.accepts, rule.name

    def encode(value: Any) -> bytes | None:
        if value is None:
            return None
        if not accepts(value):
            raise where.bad_value(name, value)
        try:
            return convert(value) if dumps is None else dumps(convert(value))
        except Exception as exc:
            raise where.cannot_encode(exc, codec, value) from exc

    return encode


# -- decoders -------------------------------------------------------------------------------------


def record_from_data(type_: Any) -> Callable[[Any], Any]:
    """``data -> instance`` of Record class ``type_``: its compiled ``from_data``, looked up once.

    A Record compiles on first use (its annotations may name types defined
    after it) and then replaces ``from_data``; until then each call looks it up.
    """
    from_data: Callable[[Any], Any] = type_.from_data
    if getattr(from_data, "__self__", None) is None:
        return from_data  # compiled: a plain function

    def compiled_on_first_use(obj: Any) -> Any:
        return type_.from_data(obj)

    return compiled_on_first_use


def _untyped_decoder(loads: Callable[[bytes], Any], where: _Where, codec: Any) -> Decode:
    def decode(data: bytes | None) -> Any:
        if data is None:
            return None
        try:
            return loads(data)
        except Exception as exc:
            raise where.cannot_decode(exc, codec) from exc

    return decode


def _record_decoder(
    type_: Any,
    loads: Callable[[bytes], Any],
    where: _Where,
    codec: Any,
    exact: bool,
    raw_decode: Callable[[str], tuple[Any, int]] | None = None,
) -> Decode:
    """JSON object -> Record: the hot path of a typical pipeline, kept to one parse and one from_data.

    ``exact``: ``loads`` returns plain JSON data, so an instance of ``type_`` cannot come back.
    ``raw_decode``: a ``json.JSONDecoder.raw_decode`` that ``loads`` is equivalent to on UTF-8
    text, called directly (the built-in JSON codec).
    """
    from_data = record_from_data(type_)
    decode = _mapping_record_decoder(type_, from_data, loads, where, codec, exact)
    return decode if raw_decode is None else _json_object_record_decoder(raw_decode, from_data, decode, where)


def _mapping_record_decoder(type_: Any, from_data: Callable[[Any], Any], loads: Callable[[bytes], Any],
                            where: _Where, codec: Any, exact: bool) -> Decode:
    """``loads``, then a mapping -> ``from_data`` (or, unless ``exact``, an instance of ``type_`` as it is)."""
    name = type_.__name__
    form = "a JSON object" if exact else f"a mapping or a {name}"

    def decode(data: bytes | None) -> Any:
        if data is None:
            return None
        try:
            obj = loads(data)
        except Exception as exc:
            raise where.cannot_decode(exc, codec) from exc
        if type(obj) is not dict and not isinstance(obj, Mapping):
            if not exact and isinstance(obj, type_):
                return obj
            raise where.bad_json(form, name, obj)
        try:
            return from_data(obj)
        except ValidationError as exc:
            raise ValidationError(f"{where.what}: {exc}", field=exc.field) from exc

    return decode


def _json_object_record_decoder(raw_decode: Callable[[str], tuple[Any, int]], from_data: Callable[[Any], Any],
                                careful: Decode, where: _Where) -> Decode:
    """``careful`` with the JSON codec's fast path inlined: UTF-8 text holding one JSON object."""

    def decode_object(data: bytes | None) -> Any:
        try:
            text = data.decode()  # type: ignore[union-attr]
            obj, end = raw_decode(text)
        except Exception:
            return careful(data)  # None, other encodings, bad JSON: the careful path says why
        if type(obj) is not dict or end != len(text):
            return careful(data)
        try:
            return from_data(obj)
        except ValidationError as exc:
            raise ValidationError(f"{where.what}: {exc}", field=exc.field) from exc

    return decode_object


def _json_rule_decoder(rule: Rule, loads: Callable[[bytes], Any], where: _Where, codec: Any) -> Decode:
    convert, form, name = rule.from_json, rule.json_form, rule.name

    def decode(data: bytes | None) -> Any:
        if data is None:
            return None
        try:
            obj = loads(data)
        except Exception as exc:
            raise where.cannot_decode(exc, codec) from exc
        try:
            return convert(obj)
        except FAIL:
            raise where.bad_json(form, name, obj) from None

    return decode


def _text_rule_decoder(from_text: Callable[[bytes], Any], form: str, name: str, where: _Where) -> Decode:
    def decode(data: bytes | None) -> Any:
        if data is None:
            return None
        try:
            return from_text(data)
        except FAIL:
            raise where.bad_text(form, name, data) from None

    return decode


# -- builders -------------------------------------------------------------------------------------


def _rule_for(type_: Any, codec: Any, where: _Where) -> Rule:
    rule = RULES.get(type_)
    if rule is None:
        names = ", ".join(["None", "a Record", *(r.name for r in RULES.values())])
        raise ConfigurationError(
            f"{where.what}: {where.role}_type={type_label(type_)} is not supported by {codec!r}; declare one of "
            f"{names}, or register a codec that handles {type_label(type_)} (see streamnb.codecs)"
        )
    return rule


def json_pair(
    codec: Any,
    type_: Any,
    role: str,
    topic: str | None,
    *,
    dumps: Callable[[Any], bytes],
    loads: Callable[[bytes], Any],
    records: bool = True,
    raw_decode: Callable[[str], tuple[Any, int]] | None = None,
) -> tuple[Encode, Decode]:
    """``encode``/``decode`` for a JSON codec: ``loads`` returns JSON data, ``dumps`` takes it.

    ``records=False``: ``dumps`` encodes Records itself, so untyped values go to it as they are.
    ``raw_decode``: the parser ``loads`` uses on UTF-8 text, for the Record fast path.
    """
    where = _Where(topic, role)
    if type_ is None:
        return _untyped_encoder(dumps, where, codec, records), _untyped_decoder(loads, where, codec)
    if is_record(type_):
        decode = _record_decoder(type_, loads, where, codec, exact=True, raw_decode=raw_decode)
        return _record_encoder(type_, dumps, where, codec), decode
    rule = _rule_for(type_, codec, where)
    return _rule_encoder(rule, rule.to_json, dumps, where, codec), _json_rule_decoder(rule, loads, where, codec)


def text_pair(codec: Any, type_: Any, role: str, topic: str | None, *, utf8: bool) -> tuple[Encode, Decode]:
    """``encode``/``decode`` for the raw codec (``utf8=False``) and the str codec (``utf8=True``)."""
    where = _Where(topic, role)
    if type_ is None:
        return _untyped_encoder(codec.dumps, where, codec), _untyped_decoder(codec.loads, where, codec)
    reads = "text" if utf8 else "bytes"
    if is_record(type_):
        raise ConfigurationError(
            f"{where.what}: {role}_type={type_.__name__} is a Record, which needs a codec that reads objects "
            f"(such as 'json'), but {codec!r} reads {reads}: set {role}_serializer='json' "
            f"(or the Record's serializer), or change the {role}_type"
        )
    rule = _rule_for(type_, codec, where)
    if rule.from_text is None or rule.to_text is None:
        raise ConfigurationError(
            f"{where.what}: {role}_type={rule.name} needs a codec that reads {rule.json_form}, such as 'json', "
            f"but {codec!r} reads {reads}: set {role}_serializer='json', or change the {role}_type"
        )
    from_text = rule.from_text
    form = rule.text_form or rule.name
    if utf8 and type_ is bytes:
        form = "UTF-8 text"

        def from_text(data: bytes) -> Any:
            data.decode()  # the str codec promises text
            return data

    return _rule_encoder(rule, rule.to_text, None, where, codec), _text_rule_decoder(from_text, form, rule.name, where)


def generic_pair(codec: Any, type_: Any, role: str, topic: str | None) -> tuple[Encode, Decode]:
    """``encode``/``decode`` for a codec that has no ``serde_for`` hook.

    Encoding hands the codec JSON-ready data (a Record's dict, a Decimal as
    str, ...); decoding checks what ``loads`` returns with the JSON rules, and
    also reads bytes or str it returns as text (``"42"`` for ``int``). An
    unknown declared type accepts its own instances only.
    """
    where = _Where(topic, role)
    dumps, loads = codec.dumps, codec.loads
    if type_ is None:
        return _untyped_encoder(dumps, where, codec), _untyped_decoder(loads, where, codec)
    if is_record(type_):
        return _record_encoder(type_, dumps, where, codec), _record_decoder(type_, loads, where, codec, exact=False)
    rule = RULES.get(type_)
    if rule is None:
        rule = _instance_rule(type_, where)
    return _rule_encoder(rule, rule.to_json, dumps, where, codec), _json_or_text_rule_decoder(rule, loads, where, codec)


def _instance_rule(type_: Any, where: _Where) -> Rule:
    """The rule for a type with no rule of its own (a protobuf class, ...): its instances only."""
    if not isinstance(type_, type):
        raise ConfigurationError(f"{where.what}: {where.role}_type must be a class or None, got {type_!r}")

    def instance(v: Any) -> Any:
        if isinstance(v, type_):
            return v
        raise wrong(v)

    name = type_.__name__
    return Rule(name, lambda v: isinstance(v, type_), f"a {name}", instance, identity, None, None, None)


def _json_or_text_rule_decoder(rule: Rule, loads: Callable[[bytes], Any], where: _Where, codec: Any) -> Decode:
    """``loads``, then the rule's JSON form; bytes or str that ``loads`` returns may also be the rule's text form."""
    from_json, from_text, name = rule.from_json, rule.from_text, rule.name
    form = rule.json_form if rule.text_form is None else f"{rule.json_form}, or {rule.text_form}"

    def decode(data: bytes | None) -> Any:
        if data is None:
            return None
        try:
            obj = loads(data)
        except Exception as exc:
            raise where.cannot_decode(exc, codec) from exc
        try:
            return from_json(obj)
        except FAIL:
            pass
        if from_text is not None and isinstance(obj, (bytes, str)):
            try:
                return from_text(obj if isinstance(obj, bytes) else obj.encode())
            except FAIL:
                pass
        raise where.bad_json(form, name, obj)

    return decode
