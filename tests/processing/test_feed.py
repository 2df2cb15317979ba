"""The feed's merge order: released by time, the same order every time, whatever the fetch sizes."""

from __future__ import annotations

import asyncio
import heapq
import uuid
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from streamnb.processing.feed import Feed, merge_keys, running_max
from streamnb.transport.base import TP, ProducerRecord, TopicSpec
from streamnb.transport.memory import MemoryTransport


def head_merge(partitions: list[list[float]], horizon: float) -> list[tuple[int, int]]:
    """The reference: repeatedly take the partition whose next message is oldest (ties: lower partition);
    a partition stops at its first message later than the horizon."""
    heads = [(ts[0], i, 0) for i, ts in enumerate(partitions) if ts and ts[0] <= horizon]
    heapq.heapify(heads)
    out = []
    while heads:
        _t, i, p = heapq.heappop(heads)
        out.append((i, p))
        if p + 1 < len(partitions[i]) and max(partitions[i][: p + 2]) <= horizon:
            heapq.heappush(heads, (partitions[i][p + 1], i, p + 1))
    return out


timestamps = st.lists(st.lists(st.integers(0, 30).map(float), max_size=12), min_size=1, max_size=4)


@given(timestamps, st.integers(0, 35).map(float))
def test_running_maximum_order_is_the_order_of_taking_the_oldest_head(parts: list[list[float]], horizon: float) -> None:
    keys = [running_max([_msg(t) for t in ts], float("-inf")) for ts in parts]
    assert merge_keys(keys, horizon) == head_merge(parts, horizon)


def _msg(ts: float) -> Any:
    return ("t", 0, 0, ts, None, None, ())


class FixedGate:
    """A gate at a fixed horizon whose one round ends where the partitions end."""

    def __init__(self, horizon: float, ends: dict[TP, int]) -> None:
        self.horizon = horizon
        self.floor = float("-inf")
        self.ends = ends

    async def join(self, feed: Any) -> None:
        pass

    def leave(self, feed: Any) -> None:
        pass

    def round_end(self, tp: TP) -> int:
        return self.ends[tp]

    async def round_done(self, feed: Any, released: int) -> None:
        pass


async def _drain(parts: list[list[float]], horizon: float, chunk: int, batch: int) -> list[tuple[int, int]]:
    transport = MemoryTransport(f"memory://feed-{uuid.uuid4().hex[:8]}")
    await transport.create_topic(TopicSpec("t", len(parts)))
    await transport.send([ProducerRecord("t", i, None, b"x", t) for i, ts in enumerate(parts) for t in ts])
    tps = [TP("t", i) for i in range(len(parts))]
    ends = await transport.end_offsets(tps)
    feed = Feed(transport, FixedGate(horizon, ends), dict.fromkeys(tps, 0), chunk=chunk)
    out: list[tuple[int, int]] = []
    while batch_ := await feed.next_batch(batch):
        out += [(m.partition, m.offset) for m in batch_]
    return out


@settings(max_examples=150, deadline=None)
@given(timestamps, st.integers(0, 35).map(float), st.integers(1, 5), st.integers(1, 7))
def test_the_feed_hands_out_that_order_whatever_the_chunk_and_batch_sizes(
    parts: list[list[float]], horizon: float, chunk: int, batch: int
) -> None:
    got = asyncio.run(_drain(parts, horizon, chunk, batch))
    assert got == head_merge(parts, horizon)


def test_a_partition_stops_at_its_first_message_beyond_the_horizon() -> None:
    got = asyncio.run(_drain([[1.0, 9.0, 2.0], [3.0]], horizon=5.0, chunk=10, batch=10))
    assert got == [(0, 0), (1, 0)]  # 2.0 waits behind 9.0: a message never overtakes an earlier one
