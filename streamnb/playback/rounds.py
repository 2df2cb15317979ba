"""The rounds a virtual clock runs its sources in (the base of :class:`~streamnb.playback.clock.VirtualClock`).

Sources read through feeds (:mod:`streamnb.processing.feed`). At the start of a round
the clock notes where every partition its feeds read ends; each feed hands
out what it may up to there and reports back with :meth:`Rounds.round_done`.
When every feed reported, the round is over: if it released nothing
anywhere, the clock is at rest. So what an agent writes in one round
reaches the agents that read it in the next one, whatever the timing.

Example (the clock drives; a feed does)::

    await clock.join(feed)
    batch = await feed.next_batch(1000)       # reads up to clock.round_end(tp)
    await clock.round_done(feed, len(batch))  # waits for the next round
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ..processing.feed import Feed
from ..transport.base import TP, Transport

__all__ = ["NEVER", "Rounds", "loop_time"]

logger = logging.getLogger("streamnb")

NEVER = float("-inf")
"""The time of a virtual clock before it was started."""


def loop_time() -> float:
    """The running loop's clock (monotonic seconds)."""
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        import time

        return time.monotonic()


class Rounds:
    """The feeds of a virtual clock and the round they are in (see the module docstring)."""

    def __init__(self) -> None:
        self.expected_feeds: Callable[[], int] = lambda: 0
        """How many sources should be reading (one per agent instance): the clock does not rest without them."""
        self._transport: Transport | None = None
        self._feeds: set[Feed] = set()
        self._ends: dict[TP, int] = {}
        self._done: set[Feed] = set()
        self._progress = 0
        self._all_done = asyncio.Event()
        self._next_round: asyncio.Future[None] | None = None
        self._released_before_stop = 0

    @property
    def released(self) -> int:
        """Events the sources were handed since the replay (re)started (after a stop: until it stopped)."""
        if not self._feeds:
            return self._released_before_stop
        return sum(feed.released for feed in self._feeds)

    async def join(self, feed: Feed) -> None:
        """A source starts reading: note where its partitions end now, unless this round did."""
        missing = [tp for tp in feed.tps if tp not in self._ends]
        if missing and self._transport is not None:
            self._ends.update(await self._transport.end_offsets(missing))
        self._feeds.add(feed)
        self._check_done()

    def leave(self, feed: Feed) -> None:
        """A source stopped reading."""
        self._feeds.discard(feed)
        self._done.discard(feed)
        self._check_done()

    def round_end(self, tp: TP) -> int:
        """Where ``tp`` ended when this round began."""
        return self._ends.get(tp, 0)

    async def round_done(self, feed: Feed, released: int) -> None:
        """``feed`` handed out all it may this round; wait for the next round."""
        self._progress += released
        waiter = self._next_round
        if waiter is None:
            waiter = self._next_round = asyncio.get_running_loop().create_future()
        self._done.add(feed)
        self._check_done()
        await asyncio.shield(waiter)

    def _check_done(self) -> None:
        if self._feeds <= self._done:
            self._all_done.set()

    async def _wait_for_feeds(self, timeout: float = 10.0) -> None:
        deadline = loop_time() + timeout
        while len(self._feeds) < self.expected_feeds() and loop_time() < deadline:
            await asyncio.sleep(0.005)
        if len(self._feeds) < self.expected_feeds():
            logger.warning(
                "virtual clock: %d of %d agent sources started within %.0f s; replaying without the others",
                len(self._feeds), self.expected_feeds(), timeout,
            )

    async def _start_round(self) -> None:
        tps = {tp for feed in self._feeds for tp in feed.tps}
        if self._transport is not None and tps:
            self._ends = await self._transport.end_offsets(tps)
        self._done.clear()
        self._progress = 0
        self._all_done.clear()
        waiter, self._next_round = self._next_round, asyncio.get_running_loop().create_future()
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._check_done()

    def _newest(self) -> float:
        return max((feed.newest for feed in self._feeds), default=NEVER)

    def _held_back(self) -> float | None:
        return min((k for feed in self._feeds if (k := feed.next_key()) is not None), default=None)

    async def _more_written(self) -> bool:
        """True when a partition the feeds read grew since this round began."""
        if self._transport is None or not self._ends:
            return False
        now = await self._transport.end_offsets(list(self._ends))
        return any(now[tp] > end for tp, end in self._ends.items())
