"""Sliding and session windows against brute-force definitions (hypothesis).

With a grace longer than the input, nothing closes early and nothing is
late, so the windows must be exactly what the definitions say, whatever the
order the events come in.
"""

from __future__ import annotations

import operator
from collections import defaultdict
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from streamnb.tables.state.base import Dirty
from streamnb.tables.state.sessions import SessionState
from streamnb.tables.state.sliding import SlidingState
from streamnb.tables.windows import SessionWindow, SlidingWindow

events = st.lists(
    st.tuples(st.sampled_from("ab"), st.integers(0, 300), st.integers(1, 5)), min_size=1, max_size=40
)


def feed(state: SlidingState | SessionState, items: list[tuple[str, int, int]]) -> None:
    for key, t, value in items:
        dirty: Dirty[Any] = Dirty()
        state.update(dirty, key, operator.add, value, 1000 + t / 1000, 0, int)
        state.before_commit(None, dirty)
        list(state.changes(dirty))


def sliding_reference(items: list[tuple[str, int, int]], size: int) -> dict[tuple[str, tuple[int, int]], int]:
    """KIP-450: a window ending at every event, one starting 1 ms after each event that has a later one within size."""
    out = {}
    by_key: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for key, t, value in items:
        by_key[key].append((1_000_000 + t, value))
    for key, evs in by_key.items():
        times = sorted({t for t, _ in evs})
        windows = {(t - size, t) for t in times}
        windows |= {(t + 1, t + 1 + size) for t in times if any(t < u <= t + size for u in times)}
        for start, end in windows:
            out[(key, (start, end))] = sum(v for t, v in evs if start <= t <= end)
    return out


@settings(max_examples=300, deadline=None)
@given(items=events, size=st.integers(1, 50))
def test_sliding_windows_hold_every_event_within_their_bounds(items: list[tuple[str, int, int]], size: int) -> None:
    state = SlidingState(SlidingWindow(size / 1000, grace=3600), operator.add)
    feed(state, items)
    got = {(k, (round(w[0] * 1000), round(w[1] * 1000))): v for (k, w), v in state.items()}
    assert got == sliding_reference(items, size)


def session_reference(items: list[tuple[str, int, int]], gap: int) -> dict[tuple[str, tuple[int, int]], int]:
    """Sessions: runs of a key's sorted event times no more than ``gap`` apart."""
    out = {}
    by_key: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for key, t, value in items:
        by_key[key].append((1_000_000 + t, value))
    for key, evs in by_key.items():
        evs.sort()
        start, end, total = evs[0][0], evs[0][0], 0
        for t, v in evs:
            if t - end > gap:
                out[(key, (start, end))] = total
                start, total = t, 0
            end, total = t, total + v
        out[(key, (start, end))] = total
    return out


@settings(max_examples=300, deadline=None)
@given(items=events, gap=st.integers(1, 60))
def test_sessions_are_runs_of_events_within_the_gap(items: list[tuple[str, int, int]], gap: int) -> None:
    state = SessionState(SessionWindow(gap / 1000, grace=3600), operator.add)
    feed(state, items)
    got = {(k, (round(w[0] * 1000), round(w[1] * 1000))): v for (k, w), v in state.items()}
    assert got == session_reference(items, gap)


@settings(max_examples=200, deadline=None)
@given(items=events, gap=st.integers(1, 60))
def test_undoing_a_transaction_restores_the_sessions(items: list[tuple[str, int, int]], gap: int) -> None:
    state = SessionState(SessionWindow(gap / 1000, grace=3600), operator.add)
    half = len(items) // 2
    feed(state, items[:half])
    before = sorted(state.items()), dict(state.stream_time)
    dirty: Dirty[Any] = Dirty()
    for key, t, value in items[half:]:
        state.update(dirty, key, operator.add, value, 1000 + t / 1000, 0, int)
    state.restore(dirty)
    assert (sorted(state.items()), dict(state.stream_time)) == before


@settings(max_examples=300, deadline=None)
@given(
    key=st.text(),
    start=st.floats(allow_nan=False, allow_infinity=False),
    end=st.floats(allow_nan=False, allow_infinity=False),
)
def test_window_keys_are_written_as_the_json_codec_writes_them(key: str, start: float, end: float) -> None:
    from streamnb.codecs import get_codec
    from streamnb.tables.changelog import window_key_json

    dumps = get_codec("json").dumps
    assert window_key_json((key, (start, end))) == dumps((key, (start, end)))
    assert window_key_json((key, start)) == dumps((key, start))


def test_windows_a_failed_commit_closed_close_again() -> None:
    from streamnb.tables.state.fixed import WindowedState
    from streamnb.tables.windows import TumblingWindow

    states = [
        WindowedState(TumblingWindow(10, grace=0)),
        SlidingState(SlidingWindow(10), operator.add),
        SessionState(SessionWindow(10), operator.add),
    ]
    for state in states:
        committed: Dirty[Any] = Dirty()
        state.update(committed, "k", operator.add, 1, 100.0, 0, int)
        state.before_commit(None, committed)
        list(state.changes(committed))
        failing: Dirty[Any] = Dirty()
        state.update(failing, "k", operator.add, 1, 200.0, 0, int)  # closes what the first event made
        assert state.before_commit(None, failing), type(state).__name__
        state.restore(failing)  # the commit failed: as if the second event never came
        assert state.stream_time_of(0) == 100.0
        retry: Dirty[Any] = Dirty()
        state.update(retry, "k", operator.add, 1, 200.0, 0, int)
        closed = state.before_commit(None, retry)
        assert [c.window[1] <= 110.0 for c in closed] and any(c.window[1] <= 110.0 for c in closed), (
            type(state).__name__, closed,
        )
