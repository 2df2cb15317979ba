"""The joins' changelogs hold one snapshot of a partition's state per commit: the newest one is the state.

A stream–stream join (its kept records) and a versioned stream–table join
with ``grace=`` (its held events) write a whole snapshot per partition and
commit, keyed by the partition; :func:`latest_snapshot` reads a partition of
such a changelog in batches to its end and returns the last value;
:func:`snapshot_rows` encodes a stream–stream join's kept records.

(:func:`streamnb.tables.recovery.read_changelog` applies every record of a
table's changelog instead; the tables are a layer above the joins, so this
lives here.)

>>> import asyncio
>>> from streamnb.transport.base import TP, ProducerRecord, TopicSpec
>>> from streamnb.transport.memory import MemoryTransport
>>> async def demo():
...     transport = MemoryTransport("memory://snapshots-demo")
...     await transport.create_topic(TopicSpec("c", 1))
...     await transport.send([ProducerRecord("c", 0, b"0", value, 1.0) for value in (b"first", b"second")])
...     return await latest_snapshot(transport, TP("c", 0), batch=1)
>>> asyncio.run(demo())
b'second'
"""

from __future__ import annotations

from collections.abc import Callable
from json.encoder import encode_basestring_ascii

from ...transport.base import TP, Transport
from .windowed import Kept, WindowJoin

__all__ = ["latest_snapshot", "snapshot_rows"]

_string: Callable[[str], str] = encode_basestring_ascii  # a JSON string literal (json's own, in C)


async def latest_snapshot(transport: Transport, tp: TP, batch: int = 10_000) -> bytes | None:
    """The value of the last record of ``tp`` (None when it has none), reading ``batch`` records at a time."""
    start = (await transport.beginning_offsets([tp]))[tp]
    end = (await transport.end_offsets([tp]))[tp]
    last = None
    while start < end:
        msgs = await transport.read(tp, start, end, batch)
        if not msgs:
            break
        last = msgs[-1].value
        start = msgs[-1].offset + 1
    return last


def snapshot_rows(join: WindowJoin) -> list[str]:
    """The changelog's rows of ``join`` as JSON text: ``[side, key, ts, value, matched]``, bytes as latin-1.

    A record's row is encoded at its first snapshot and kept with it
    (:attr:`~.windowed.Kept.cache`, which the rule clears when the record
    becomes matched): a record lives through many commits, and each commit
    writes the partition's whole state.
    """
    return [record.cache or _row(record) for record in join.records()]


def _row(record: Kept) -> str:
    key, value = record.value[0], record.value[1]
    json_key = "null" if key is None else _string(key.decode("latin-1"))
    flag = "true" if record.matched else "false"
    row: str = f"[{record.side},{json_key},{record.ts},{_string(value.decode('latin-1'))},{flag}]"
    record.cache = row
    return row
