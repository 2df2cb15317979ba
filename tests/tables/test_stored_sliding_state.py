"""The sliding state in the stores against the one in memory, event by event, with commits at random (hypothesis).

Random events (out of order, later than grace, too late for any window, in
the same millisecond), two partitions, a cache of two keys (so closing and
expiry read the stores by time, not the cache), and at random points a
commit -- or a failed commit, undone and retried: both states close the
same windows with the same finals at every commit, refuse the same updates
and hold the same windows after each commit.
"""

from __future__ import annotations

import json
import operator
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from streamnb.codecs.base import get_codec
from streamnb.tables.state.base import Closed, Dirty
from streamnb.tables.state.sliding import SlidingState
from streamnb.tables.state.stored_sliding import StoredSlidingState
from streamnb.tables.stores.rocksdb import RocksDBStore
from streamnb.tables.windows import SlidingWindow

TABLE_STORES = ["rocksdb://"]  # (the states are made here)
PARTITION = {"a": 0, "b": 1, "c": 0, "d": 1}

steps = st.lists(
    st.tuples(
        st.sampled_from("abcd"), st.integers(0, 120), st.integers(1, 5),
        st.sampled_from(["", "commit", "commit", "fail"]),
    ),
    min_size=1, max_size=60,
)


class SmallCache(StoredSlidingState):
    cache_size = 2


def finals(closed: list[Closed]) -> list[tuple[Any, ...]]:
    return sorted((c.partition, c.window[1], c.key, c.window[0], c.value) for c in closed)


class Pair:
    """The same table in memory and in two partitions' stores."""

    def __init__(self, window: SlidingWindow, folder: Path) -> None:
        self.memory = SlidingState(window, operator.add)
        self.stores = {p: RocksDBStore(folder / str(p), 8 << 20, table="t") for p in (0, 1)}
        codec = get_codec("json")
        self.stored = SmallCache(window, operator.add, {}, codec.dumps, codec.loads, json.loads)
        for p, store in self.stores.items():
            store.open()
            self.stored.serve(p, store)
        self.dumps = codec.dumps
        self.begin()

    def begin(self) -> None:
        self.dirty_m: Dirty[Any] = Dirty()
        self.dirty_s: Dirty[Any] = Dirty()
        self.events: list[tuple[str, int, int]] = []

    def update(self, key: str, t: int, value: int) -> None:
        ts = 1000.0 + t / 1000
        late_m = self.memory.update(self.dirty_m, key, operator.add, value, ts, PARTITION[key], int)
        late_s = self.stored.update(self.dirty_s, key, operator.add, value, ts, PARTITION[key], int)
        assert late_m == late_s
        self.events.append((key, t, value))

    def commit(self) -> list[tuple[Any, ...]]:
        closed_m = self.memory.before_commit(None, self.dirty_m)
        list(self.memory.changes(self.dirty_m))
        closed_s = self.stored.before_commit(None, self.dirty_s)
        records: dict[int, list[tuple[bytes, bytes | None]]] = {0: [], 1: []}
        for change in self.stored.changes(self.dirty_s):
            value = None if change.value is self._missing() else json.dumps(change.value).encode()
            records[change.partition].append((self.dumps(change.key), value))
        for p, pairs in records.items():
            self.stores[p].write(self.stored.keys_of.ops(pairs), None)
        self.stored.flushed()
        assert finals(closed_s) == finals(closed_m)
        assert dict(self.stored.items()) == dict(self.memory.items())  # (what expired is gone from both)
        assert [c.window[1] for c in closed_s if c.partition == 0] == sorted(
            c.window[1] for c in closed_s if c.partition == 0)
        self.begin()
        return finals(closed_m)

    def fail(self) -> None:
        """A commit that fails after closing: both undo the transaction, then its events come again."""
        events = self.events
        self.memory.before_commit(None, self.dirty_m)
        self.stored.before_commit(None, self.dirty_s)
        self.memory.restore(self.dirty_m)
        self.stored.restore(self.dirty_s)
        self.begin()
        for key, t, value in events:
            self.update(key, t, value)

    @staticmethod
    def _missing() -> Any:
        from streamnb.transaction import MISSING

        return MISSING

    def close(self) -> None:
        for store in self.stores.values():
            store.close()


@settings(max_examples=300, deadline=None)
@given(items=steps, size=st.integers(1, 25), grace=st.integers(0, 12), expires=st.integers(0, 50))
# A late event freezes a window that expired already (at 7, when stream time is 36 and [-9, 8] expired at 31):
# the frozen final goes at once, as in memory, though stream time did not move.
@example(items=[("b", 8, 1, "commit"), ("b", 36, 4, "commit"), ("b", 7, 3, "commit")], size=17, grace=12, expires=23)
def test_stored_sliding_state_closes_and_expires_as_in_memory(
    items: list[tuple[str, int, int, str]], size: int, grace: int, expires: int
) -> None:
    window = SlidingWindow(size / 1000, expires=max(size, grace, expires) / 1000, grace=grace / 1000)
    with tempfile.TemporaryDirectory() as folder:
        pair = Pair(window, Path(folder))
        try:
            for key, t, value, then in items:
                pair.update(key, t, value)
                if then == "commit":
                    pair.commit()
                elif then == "fail":
                    pair.fail()
            pair.update("a", 10_000, 1)  # (closes and expires everything before)
            pair.commit()
            pair.commit()
            memory, stored = pair.memory, pair.stored
            assert dict(stored.items()) == dict(memory.items())
            assert (stored.late, stored.late_windows) == (memory.late, memory.late_windows)
        finally:
            pair.close()


def test_the_draw_closes_windows_at_the_stream_time_of_a_commit() -> None:
    """A right window closing exactly at a commit's stream time, its bucket in the store, not cached."""
    with tempfile.TemporaryDirectory() as folder:
        pair = Pair(SlidingWindow(0.010, grace=0.0), Path(folder))
        try:
            pair.update("a", 100, 1)
            pair.update("a", 105, 1)  # right window of 100: [101, 111], closes at 112
            assert pair.commit() == [(0, 1000.1, "a", 1000.09, 1)]  # (the left window of 100)
            for key in "bcd":
                pair.update(key, 50, 1)
            pair.commit()  # (evicts a from the cache of two keys)
            assert "a" not in pair.stored.by_key
            pair.update("c", 112, 1)
            got = pair.commit()
            assert got == [(0, 1000.105, "a", 1000.095, 2), (0, 1000.111, "a", 1000.101, 1)]
        finally:
            pair.close()


def test_a_frozen_final_expires_at_the_stream_time_of_a_commit() -> None:
    """A final frozen by a late event, in the store and not cached, expires exactly at ``end + expires``."""
    with tempfile.TemporaryDirectory() as folder:
        pair = Pair(SlidingWindow(0.010, expires=0.010, grace=0.0), Path(folder))
        try:
            for t in (100, 108, 113):
                pair.update("a", t, 1)
            pair.commit()  # closes [90, 100], [98, 108] and [101, 111]
            pair.update("a", 105, 1)  # late for [98, 108] and [101, 111]: their values are frozen first
            pair.commit()
            assert pair.stored.get("a", (1000.098, 1000.108)) == 2  # (its buckets hold 3 now)
            for key in "bd":
                pair.update(key, 50, 1)
            pair.commit()  # (evicts a from the cache of two keys)
            assert "a" not in pair.stored.by_key
            pair.update("c", 118, 1)
            pair.commit()
            assert pair.stored.get("a", (1000.098, 1000.108)) == 2
            pair.update("c", 119, 1)  # [98, 108]'s final expires at 108 + 10 + 1
            pair.commit()
            assert pair.stored.get("a", (1000.098, 1000.108)) == pair.memory.get("a", (1000.098, 1000.108)) == 3
        finally:
            pair.close()
