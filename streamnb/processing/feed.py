"""What a source reads under a virtual clock: messages released by time, in one deterministic order.

On the wall clock a :class:`~streamnb.processing.source.Source` takes whatever its
consumer fetched, in whatever mix of partitions arrived. Under a virtual
clock (a replay, :mod:`streamnb.playback.clock`) it reads through a :class:`Feed`
instead, so that the same recording and the same code give the same
tables, outputs and timer runs every time:

* a partition's messages are released up to the clock's *horizon*, in
  offset order, stopping at the first one whose timestamp lies beyond it
  (so a message is never overtaken by a later one of its partition);
* the released messages of all the source's partitions are merged by
  *running maximum timestamp* (the newest timestamp of the partition up to
  and including the message), ties broken by topic, partition and offset.
  For partitions in time order that is plain timestamp order; a message
  older than its predecessors goes right after them, as it did live;
* each round reads only up to where each partition ended when the clock's
  round began, so what other agents append meanwhile waits for the next
  round, whatever the timing.

Example (a clock with a horizon at 2.0 and two partitions)::

    >>> merged = merge_keys([[1.0, 3.0], [2.0, 2.0]], horizon=2.0)
    >>> merged
    [(0, 0), (1, 0), (1, 1)]
"""

from __future__ import annotations

import bisect
import itertools
import math
import operator
from collections.abc import Iterable, Sequence

from ..runtime import Gate
from ..transport.base import TP, Message, Transport, within_bytes

__all__ = ["FETCH_CHUNK", "Feed", "merge_keys", "positions_of", "running_max"]

FETCH_CHUNK = 5000
"""Messages read from one partition at a time."""

_NEVER = float("-inf")
_timestamp_of = operator.itemgetter(3)


def running_max(
    messages: Sequence[Message],
    start: float,
    skew: float | None = None,
    origin: float = _NEVER,
    after: float | None = None,
    too_far: list[int] | None = None,
) -> list[float]:
    """The newest timestamp up to and including each message (from ``start``).

    A timestamp that is no event time (``nan``, ``inf``, negative) does not
    count: its message is dead-lettered, it must not hold its partition
    back. With ``skew`` (``max_event_time_skew``) neither does a *lone
    jump*: a time more than ``skew`` ahead of the newest before it (or of
    ``origin``, the replay's start) whose next message (``after``: the
    timestamp following the last one, if known) is not that far ahead too.
    Such a message's index goes to ``too_far``. When the next one is far
    ahead too, the partition goes on from there (a pause in the
    recording): the time counts.

    >>> [running_max([Message("t", 0, i, ts, None, None, ()) for i, ts in enumerate(stamps)], 0.0, skew=60)
    ...  for stamps in ([1.0, 3.0, 2.0], [1.0, float("nan"), 9e9, 4.0], [1.0, 500.0, 501.0])]
    [[1.0, 3.0, 3.0], [1.0, 1.0, 1.0, 4.0], [1.0, 500.0, 501.0]]
    """
    stamps = list(map(_timestamp_of, messages))
    if not stamps:
        return []
    total = sum(stamps)  # nan or inf when a timestamp is
    if total - total == 0 and min(stamps) >= 0 and (skew is None or max(stamps) <= max(start, origin) + skew):
        keys = list(itertools.accumulate(stamps, max, initial=start))
        del keys[0]
        return keys
    limit = math.inf if skew is None else skew
    following = [*stamps[1:], math.nan if after is None else after]
    keys = []
    newest = start
    for i, ts in enumerate(stamps):
        if 0 <= ts < math.inf and ts > newest:
            base = max(newest, origin)
            reference = base + limit
            if base == _NEVER or ts <= reference or reference < following[i] < math.inf:
                newest = ts
            elif too_far is not None:
                too_far.append(i)
        keys.append(newest)
    return keys


def merge_keys(keys: Sequence[Sequence[float]], horizon: float) -> list[tuple[int, int]]:
    """``(partition index, position)`` of every released key in merged order (for tests and docs).

    ``keys`` are the running-maximum timestamps of each partition's messages.
    """
    out = [(k, i, p) for i, ks in enumerate(keys) for p, k in enumerate(ks) if k <= horizon]
    return [(i, p) for _k, i, p in sorted(out)]


class Feed:
    """The messages one source may process under a virtual clock (see the module docstring).

    ``positions`` gives the first offset to read in each partition.
    """

    def __init__(
        self, transport: Transport, gate: Gate, positions: dict[TP, int], chunk: int = FETCH_CHUNK,
        skew: float | None = None, judged: frozenset[str] = frozenset(), max_bytes: int | None = None,
    ) -> None:
        self.transport = transport
        self.gate = gate
        self.chunk = chunk
        self.skew = skew
        """``max_event_time_skew``: a lone jump further ahead is dead-lettered and holds nothing back."""
        self.max_bytes = None if max_bytes is None else max(1, max_bytes // max(1, len(positions)))
        """Most bytes read from one partition at a time (its share of ``stream_batch_max_bytes``)."""
        self.judged = judged
        """The topics whose times ``skew`` judges (not internal ones: their messages were judged before)."""
        self.origin = gate.floor
        """The replay's time when this feed started (what the first messages' times are judged against)."""
        self.too_far: dict[tuple[str, int, int], float] = {}
        """Messages read whose time is a lone jump more than ``skew`` ahead: what it was ahead of."""
        self.tps: list[TP] = sorted(positions)
        """The partitions read, in the order that breaks ties."""
        self.position = dict(positions)
        """Next offset to fetch, per partition."""
        self.newest = _NEVER
        """The newest (running maximum) timestamp released so far."""
        self.released = 0
        """Messages handed out so far."""
        self.closed = False
        self._buffers: dict[TP, list[Message]] = {tp: [] for tp in self.tps}
        self._keys: dict[TP, list[float]] = {tp: [] for tp in self.tps}
        self._cursor: dict[TP, int] = dict.fromkeys(self.tps, 0)
        self._max: dict[TP, float] = dict.fromkeys(self.tps, _NEVER)
        self._ready: list[Message] = []
        self._ready_at = 0
        self._round_released = 0

    def next_key(self) -> float | None:
        """The (running maximum) timestamp of the first message held back by the horizon, if known."""
        found = [
            self._keys[tp][self._cursor[tp]] for tp in self.tps if self._cursor[tp] < len(self._buffers[tp])
        ]
        return min(found, default=None)

    def upcoming(self, n: int) -> list[float]:
        """The (running maximum) timestamps of up to ``n`` messages read but held back, oldest first."""
        found: list[float] = []
        for tp in self.tps:
            lo = self._cursor[tp]
            found += self._keys[tp][lo : lo + n]
        found.sort()
        return found[:n]

    def pending(self) -> bool:
        """True when a message was read but not handed out (held back by the horizon)."""
        return self._ready_at < len(self._ready) or any(
            self._cursor[tp] < len(self._buffers[tp]) for tp in self.tps
        )

    async def next_batch(self, max_records: int, max_bytes: int | None = None) -> list[Message]:
        """Up to ``max_records`` messages (and ``max_bytes``) in merged order; ``[]`` when this round is done."""
        if self._ready_at >= len(self._ready):
            self._ready, self._ready_at = await self._refill(), 0
            if not self._ready:
                return []
        start = self._ready_at
        batch = within_bytes(self._ready[start : start + max_records], max_bytes)
        self._ready_at = start + len(batch)
        self._round_released += len(batch)
        self.released += len(batch)
        return batch

    async def round_done(self) -> None:
        """Report the round finished and wait for the next one."""
        released, self._round_released = self._round_released, 0
        await self.gate.round_done(self, released)

    def close(self) -> None:
        """Stop taking part in the clock's rounds."""
        if not self.closed:
            self.closed = True
            self.gate.leave(self)

    # -- reading and merging -------------------------------------------------------------------

    async def _fill(self, tp: TP) -> None:
        """Read the next chunk of ``tp`` (up to where the round began) into its buffer."""
        end = self.gate.round_end(tp)
        position = self.position[tp]
        if position >= end:
            return
        messages = await self.transport.read(tp, position, end, self.chunk + 1, self.max_bytes)  # (one more: ahead)
        if not messages:  # only removed offsets left (compaction, retention)
            self.position[tp] = end
            return
        after = messages.pop().timestamp if len(messages) > self.chunk else None
        if after is None and len(messages) > 1 and messages[-1].offset + 1 < end and self.skew is not None:
            ahead = await self.transport.read(tp, messages[-1].offset + 1, end, 1)  # (cut short by bytes)
            after = ahead[0].timestamp if ahead else None
        too_far: list[int] = []
        skew = self.skew if tp.topic in self.judged else None
        keys = running_max(messages, self._max[tp], skew, self.origin, after, too_far)
        for i in too_far:
            m = messages[i]
            self.too_far[(m.topic, m.partition, m.offset)] = max(keys[i], self.origin)
        self._max[tp] = keys[-1]
        self._buffers[tp] = messages
        self._keys[tp] = keys
        self._cursor[tp] = 0
        self.position[tp] = messages[-1].offset + 1

    async def _refill(self) -> list[Message]:
        """The next run of messages whose place in the merged order is settled."""
        horizon = self.gate.horizon
        for tp in self.tps:
            if self._cursor[tp] >= len(self._buffers[tp]):
                await self._fill(tp)
        parts = self._release(horizon, self._bound(horizon))
        if not parts:  # (a bounding partition always releases its buffer, so the round is over)
            return []
        merged, last = _merge(parts)
        if last > self.newest:
            self.newest = last
        return merged

    def _bound(self, horizon: float) -> tuple[float, int] | None:
        """Where the merge stops: ``(key, partition index)`` of the earliest partition that may hold more.

        A partition that may hold more releasable messages than it buffered
        bounds the merge at its last buffered message: nothing after that
        may be handed out yet. None when no partition bounds it.
        """
        bound: tuple[float, int] | None = None
        keys, cursor, position, round_end = self._keys, self._cursor, self.position, self.gate.round_end
        for index, tp in enumerate(self.tps):
            ks = keys[tp]
            if cursor[tp] < len(ks) and ks[-1] <= horizon and position[tp] < round_end(tp):
                if bound is None or ks[-1] < bound[0]:
                    bound = (ks[-1], index)
        return bound

    def _release(self, horizon: float, bound: tuple[float, int] | None) -> list[tuple[list[Message], list[float]]]:
        """Per partition, the buffered messages (with their keys) released up to ``horizon`` and ``bound``.

        Their partitions' cursors move past them. Ties at the bound go to
        the partitions up to the bounding one (the tie-break order).
        """
        buffers, keys, cursor = self._buffers, self._keys, self._cursor
        parts: list[tuple[list[Message], list[float]]] = []
        for index, tp in enumerate(self.tps):
            lo = cursor[tp]
            ks = keys[tp]
            if lo >= len(ks) or ks[lo] > horizon:
                continue
            if bound is None or bound[0] > horizon:
                hi = bisect.bisect_right(ks, horizon, lo)
            elif index <= bound[1]:
                hi = bisect.bisect_right(ks, bound[0], lo)
            else:
                hi = bisect.bisect_left(ks, bound[0], lo)
            if hi > lo:
                parts.append((buffers[tp][lo:hi], ks[lo:hi]))
                cursor[tp] = hi
        return parts


def _merge(parts: list[tuple[list[Message], list[float]]]) -> tuple[list[Message], float]:
    """Released runs of several partitions merged by key (ties by partition order); and the last key."""
    if len(parts) == 1:
        return parts[0][0], parts[0][1][-1]
    messages: list[Message] = []
    order_keys: list[float] = []
    for msgs, ks in parts:
        messages += msgs
        order_keys += ks
    order = sorted(range(len(order_keys)), key=order_keys.__getitem__)  # stable: ties by partition
    return [messages[i] for i in order], order_keys[order[-1]]


def positions_of(tps: Iterable[TP], committed: dict[TP, int], beginnings: dict[TP, int]) -> dict[TP, int]:
    """Where a group member starts each partition: its committed offset, else the log start."""
    return {tp: committed.get(tp, beginnings.get(tp, 0)) for tp in tps}
