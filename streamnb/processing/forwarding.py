"""Re-keying for ``group_by`` and ``through``: source messages into the stream's own topic.

A stream made by ``stream.group_by(key)`` reads a repartition topic; its
:class:`~streamnb.processing.source.Source` also consumes the original topic and hands
those messages to a :class:`Forwarder`, which computes each one's new key and
partition and appends the record to the agent's transaction (so forwarding
commits with the offsets it consumed). A message whose key cannot be
computed goes to the dead-letter callback with the reason.

The fast path: when the key is a field of a JSON (or Avro) Record, the field
is read from the decoded dict (or the Avro field reader) without building
the Record, and the (key bytes, partition) route of each key seen is reused.

A repartition topic keeps its records whatever their timestamps (replayed
history must not fall to the broker's time retention between the two
stages), so the one agent reading it deletes what it committed, every
:attr:`Purger.interval` seconds (:meth:`~streamnb.transport.base.Transport.purge`;
Kafka Streams does the same with its repartition topics).

Example::

    forwarder = Forwarder(views_topic, PageView.user, repartition_topic, dead_letter)
    rest, forwarded = forwarder.forward_batch(msgs, "page_views", txn.records)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import StreamnbError
from ..runtime import Runtime
from ..topics import Topic, partition_for_key
from ..transport.base import TP, Message, ProducerRecord

__all__ = ["DeadLetter", "Forwarder", "Purger"]

logger = logging.getLogger("streamnb")

DeadLetter = Callable[[Message, BaseException], None]
"""``dead_letter(msg, exc)``: where a message goes whose new key cannot be computed."""

_new_tuple = tuple.__new__
_MISSING: Any = object()
_MAX_ROUTES = 100_000
"""Keys whose route is remembered (beyond that, new keys take the general path)."""


class Forwarder:
    """Re-keys messages of ``source`` by ``keyfn`` into ``target`` (``keyfn=None`` keeps the key: ``through``)."""

    def __init__(
        self,
        source: Topic[Any, Any],
        keyfn: Callable[[Any], Any] | None,
        target: Topic[Any, Any],
        dead_letter: DeadLetter,
    ) -> None:
        self.source = source
        self.keyfn = keyfn
        self.target = target
        self.dead_letter = dead_letter
        self.routes: dict[str, tuple[bytes, int]] = {}
        """Known string keys: their encoded key and partition."""
        self.field: str | None = None
        """The Record field the key is, when it can be read without building the Record."""
        self.loads: Callable[[bytes], Any] = lambda data: None
        field = getattr(keyfn, "field", None)
        if field is not None and source.value_serializer == "json" and hasattr(source.value_type, "from_data"):
            self.field = field
            self.loads = source.value_codec.loads
        elif field is not None and (fields := getattr(source.value_serde, "decode_fields", None)) is not None:
            self.field = field  # the codec reads a Record's fields without building it (Avro)
            reader = getattr(source.value_serde, "field_reader", None)
            self.loads = fields if reader is None else reader(field)  # or just the one field

    def __repr__(self) -> str:
        return f"<Forwarder {self.source.name!r} -> {self.target.name!r}>"

    def forward_batch(
        self, msgs: list[Message], forward_name: str, out: list[ProducerRecord]
    ) -> tuple[list[Message], list[Message]]:
        """Forward the messages of topic ``forward_name`` into ``out``; return (the rest, the forwarded)."""
        rest: list[Message] = []
        forwarded: list[Message] = []
        forward_one = self.forward_one
        field = self.field
        if field is None:
            for msg in msgs:
                if msg[0] == forward_name:
                    forward_one(msg, out)
                    forwarded.append(msg)
                else:
                    rest.append(msg)
            return rest, forwarded
        # Records keyed by a field: read the field from the decoded dict and
        # reuse the (key bytes, partition) route of known keys.
        loads = self.loads
        routes = self.routes
        target = self.target.name
        append = out.append
        new = _new_tuple
        record = ProducerRecord
        for msg in msgs:
            if msg[0] != forward_name:
                rest.append(msg)
                continue
            forwarded.append(msg)
            value = msg[5]
            route = None
            if value is not None:
                try:
                    obj = loads(value)
                except StreamnbError:
                    obj = None
                if type(obj) is dict:
                    key = obj.get(field)
                    if type(key) is str:
                        route = routes.get(key)
            if route is None:
                forward_one(msg, out)  # the general path: decodes, dead-letters, learns the route
            else:
                append(new(record, (target, route[1], route[0], value, msg[3], msg[6])))
        return rest, forwarded

    def forward_one(self, msg: Message, out: list[ProducerRecord]) -> None:
        """Re-key one source message into ``out`` (or dead-letter it)."""
        keyfn, target = self.keyfn, self.target
        key: Any = _MISSING
        if keyfn is None:
            raw_key = msg.key
        else:
            try:
                field = self.field
                if field is not None and msg.value is not None:
                    # Read the key field without building the Record
                    # (the processing side decodes and validates it).
                    obj = self.loads(msg.value)
                    if type(obj) is dict:
                        key = obj.get(field, _MISSING)
                if key is _MISSING:
                    key = keyfn(self.source.decode_value(msg.value))
            except Exception as exc:  # undecodable, or the user's key function failed on this value
                self.dead_letter(msg, exc)
                return
            raw_key = target.encode_key(key)
        partition = partition_for_key(raw_key, target.partition_count, target.round_robin)
        if type(key) is str and raw_key is not None and len(self.routes) < _MAX_ROUTES:
            self.routes[key] = (raw_key, partition)
        out.append(_new_tuple(ProducerRecord, (target.name, partition, raw_key, msg.value, msg.timestamp, msg.headers)))


class Purger:
    """Deletes the committed records of a repartition topic read by one agent (every ``interval`` s)."""

    interval: float = 30.0
    """Seconds between two purges (Kafka Streams' ``repartition.purge.interval.ms`` is 30 s too)."""

    def __init__(self, app: Runtime, topic: Topic[Any, Any], owner: str) -> None:
        self.app = app
        self.topic = topic
        self.owner = owner
        self.purgeable: dict[TP, int] = {}
        """Per partition: the offset before which every record was committed and can go."""
        self._staged: dict[TP, int] = {}
        self._last = time.monotonic()

    def __repr__(self) -> str:
        return f"<Purger {self.topic.name!r}>"

    def stage(self, offsets: Mapping[TP, int]) -> None:
        """A commit of ``offsets`` (of any topics) is under way."""
        name = self.topic.name
        self._staged = {tp: offset for tp, offset in offsets.items() if tp.topic == name}

    def committed(self) -> None:
        """The staged commit succeeded: purge what it covers once the interval passed."""
        self.purgeable.update(self._staged)
        self._staged = {}
        now = time.monotonic()
        if not self.purgeable or now - self._last < self.interval:
            return
        self._last = now
        offsets, self.purgeable = self.purgeable, {}
        self.app.spawn(self._purge(offsets), f"purge the consumed records of {self.topic.name!r}")

    async def _purge(self, offsets: dict[TP, int]) -> None:
        try:
            await self.app.require_transport().purge(offsets)
        except StreamnbError as exc:  # the records stay; the next purge deletes them
            logger.warning("%s: could not purge %s: %s", self.owner, self.topic.name, exc)
