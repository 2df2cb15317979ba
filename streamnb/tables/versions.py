"""Versioned rows: every value a key had, by event time, for lookups *as of* a time (Kafka Streams' versioned store).

A table made with ``app.Table(name, source=topic, history=True)`` (or
``versioned=retention``) keeps, per partition, each key's values with their
timestamps (a tombstone, value ``None``, is a version too), so a stream–table
join can look the table up as of the event's timestamp (KIP-914): the latest
record of the key with ``ts <= t``. The rules are those of Kafka Streams 3.9's
``RocksDBVersionedStore`` (``Stores.persistentVersionedKeyValueStore(name,
historyRetention)``), checked against it in ``tests/oracle/test_joins.py``:

- Each partition has a *stream time*: the largest timestamp of the records it took.
- A record older than stream time − retention is refused (counted, ``expired``);
  any other one is kept as a version (replacing one at the same timestamp). An
  out-of-order record (older than the key's newest version) goes into the
  history only: the table's latest value stays.
- ``as_of(key, t)``: the value of the key's newest version with ``ts <= t``
  (nothing when that is a tombstone or there is none). When ``t`` is older than
  stream time − retention, only the key's newest version can answer (it never
  expires); otherwise nothing.
- Without a retention (``history=True``) every version is kept: the history is
  as long as the topic's.

>>> v = PartitionVersions(retention=None)
>>> v.put("k", 10, "a"), v.put("k", 20, "b"), v.put("k", 15, "c")
(True, True, True)
>>> [v.as_of("k", t) for t in (5, 10, 17, 99)]
[None, 'a', 'c', 'b']
>>> v.latest("k")
(20, 'b')
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import timedelta
from typing import Any

from ..errors import ConfigurationError
from ..timeunits import ms
from ..transaction import MISSING

__all__ = ["PartitionVersions", "TableVersions", "versioning"]


def versioning(name: str, history: bool, versioned: float | timedelta | None) -> TableVersions | None:
    """The versions of table ``name`` made with ``history=True`` or ``versioned=retention`` (None: neither).

    >>> versioning("t", False, 60).retention, versioning("t", True, None).retention
    (60000, None)
    >>> versioning("t", True, 60)
    Traceback (most recent call last):
    ...
    streamnb.errors.ConfigurationError: table 't': give history=True (every version) or versioned=retention \
(seconds of history), not both
    """
    if not isinstance(history, bool):
        raise ConfigurationError(f"table {name!r}: history= is True or False, got {history!r}")
    if versioned is None:
        return TableVersions(None) if history else None
    if history:
        raise ConfigurationError(
            f"table {name!r}: give history=True (every version) or versioned=retention (seconds of history), not both"
        )
    value: Any = versioned.total_seconds() if isinstance(versioned, timedelta) else versioned
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigurationError(
            f"table {name!r}: versioned={versioned!r} is the history retention: seconds (>= 0) or a timedelta"
        )
    return TableVersions(ms(value))


class PartitionVersions:
    """One partition's versions: ``key -> ([ts, ...], [value or MISSING, ...])`` in timestamp order."""

    __slots__ = ("expired", "retention", "stream_time", "versions")

    def __init__(self, retention: int | None) -> None:
        self.retention = retention
        """Milliseconds of history kept behind stream time (None: all)."""
        self.stream_time: int | None = None
        """The largest timestamp taken (ms), None before the first."""
        self.versions: dict[Any, tuple[list[int], list[Any]]] = {}
        self.expired = 0
        """Records refused: older than stream time − retention."""

    def _horizon(self) -> int | None:
        if self.retention is None or self.stream_time is None:
            return None
        return self.stream_time - self.retention

    def put(self, key: Any, ts: int, value: Any) -> bool:
        """Keep ``value`` (None or MISSING: a tombstone) as ``key``'s version at ``ts``; False when refused."""
        horizon = self._horizon()
        if horizon is not None and ts < horizon:
            self.expired += 1
            return False
        if self.stream_time is None or ts > self.stream_time:
            self.stream_time = ts
        stored = MISSING if value is None else value
        times, values = self.versions.setdefault(key, ([], []))
        i = bisect_right(times, ts)
        if i and times[i - 1] == ts:
            values[i - 1] = stored
        else:
            times.insert(i, ts)
            values.insert(i, stored)
        self._prune(key, times, values)
        return True

    def _prune(self, key: Any, times: list[int], values: list[Any]) -> None:
        """Forget versions no lookup can return any more (valid only until before stream time − retention)."""
        horizon = self._horizon()
        if horizon is None:
            return
        drop = 0
        while drop + 1 < len(times) and times[drop + 1] < horizon:
            drop += 1  # version `drop` is valid until times[drop + 1], which is before the horizon
        if drop:
            del times[:drop]
            del values[:drop]
        if len(values) == 1 and values[0] is MISSING and times[0] < horizon:
            del self.versions[key]

    def as_of(self, key: Any, ts: int) -> Any:
        """``key``'s value as of ``ts`` (None when absent then, or when that is beyond the retention)."""
        entry = self.versions.get(key)
        if entry is None:
            return None
        times, values = entry
        horizon = self._horizon()
        if horizon is not None and ts < horizon:  # only the newest version never expires
            value = values[-1] if times[-1] <= ts else MISSING
        else:
            i = bisect_right(times, ts)
            value = values[i - 1] if i else MISSING
        return None if value is MISSING else value

    def latest(self, key: Any) -> tuple[int, Any] | None:
        """``(ts, value)`` of ``key``'s newest version (value MISSING for a tombstone), or None."""
        entry = self.versions.get(key)
        return None if entry is None else (entry[0][-1], entry[1][-1])

    def __len__(self) -> int:
        return sum(len(times) for times, _values in self.versions.values())


class TableVersions:
    """The versions of every partition of a table (see the module docstring)."""

    def __init__(self, retention: int | None) -> None:
        self.retention = retention
        self.partitions: dict[int, PartitionVersions] = {}

    def partition(self, partition: int) -> PartitionVersions:
        """The versions of ``partition`` (created empty)."""
        found = self.partitions.get(partition)
        if found is None:
            found = self.partitions[partition] = PartitionVersions(self.retention)
        return found

    def clear(self) -> None:
        """Forget everything (the table is read again from the beginning of its topic)."""
        self.partitions.clear()

    @property
    def expired(self) -> int:
        """Records refused over all partitions (older than their partition's stream time − retention)."""
        return sum(p.expired for p in self.partitions.values())

    def __len__(self) -> int:
        return sum(len(p) for p in self.partitions.values())
