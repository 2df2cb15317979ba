"""Window assignment against a brute-force reference (hypothesis)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamnb.errors import WindowError
from streamnb.tables.windows import HoppingWindow, TumblingWindow, window_ranges

TABLE_STORES = ["memory://"]  # (pure window math: no table, no store)


def brute_force(ts: float, size: float, step: float) -> list[tuple[float, float]]:
    """Every window start k*step >= 0 (as the module rounds it) with start <= ts < start + size."""
    lo = math.floor((ts - size) / step) - 2
    hi = math.floor(ts / step) + 2
    out = []
    for k in range(lo, hi + 1):
        start = float(round(k * step, 9))
        end = float(round(start + size, 9))
        if 0 <= start <= ts < end:
            out.append((start, end))
    return out


steps = st.sampled_from([0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 60.0])


@settings(max_examples=500, deadline=None)
@given(ts=st.floats(0, 2e9, allow_nan=False), step=steps, ratio=st.integers(1, 6))
def test_hopping_ranges_match_brute_force(ts: float, step: float, ratio: int) -> None:
    size = step * ratio
    got = [tuple(w) for w in window_ranges(ts, size, step)]
    assert got == brute_force(ts, size, step)
    if ts >= size:  # no window starts before time 0: earlier timestamps have fewer
        assert len(got) == ratio or len(got) == ratio - 1 or len(got) == ratio + 1
    assert all(s <= ts < e for s, e in got)


@settings(max_examples=300, deadline=None)
@given(ts=st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=40), step=steps, ratio=st.integers(1, 4))
def test_cached_ranges_equal_the_pure_function(ts: list[float], step: float, ratio: int) -> None:
    window = HoppingWindow(step * ratio, step)
    for t in sorted(ts) + ts:
        assert window.ranges(t) == window_ranges(t, step * ratio, step)


@settings(max_examples=300, deadline=None)
@given(ts=st.floats(0, 2e9, allow_nan=False), size=st.sampled_from([0.5, 1.0, 3.0, 60.0, 3600.0]))
def test_tumbling_has_exactly_one_window(ts: float, size: float) -> None:
    (w,) = TumblingWindow(size).ranges(ts)
    assert w.start <= ts < w.end
    assert w.end - w.start == pytest.approx(size)


def test_examples() -> None:
    assert HoppingWindow(10, 5).ranges(23.5) == [(15.0, 25.0), (20.0, 30.0)]
    assert TumblingWindow(0.5).ranges(1.25) == [(1.0, 1.5)]
    assert window_ranges(0.3, 0.3, 0.1) == [(0.1, 0.4), (0.2, 0.5), (0.3, 0.6)]


def test_invalid_windows() -> None:
    with pytest.raises(WindowError, match="must not exceed"):
        HoppingWindow(5, 10)
    with pytest.raises(WindowError):
        TumblingWindow(-1)
    with pytest.raises(WindowError, match="seconds"):
        TumblingWindow("60")  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(
    stamps=st.lists(st.integers(0, 400), min_size=1, max_size=40),
    step=st.sampled_from([1, 2, 3, 5, 7]),
    extra=st.integers(0, 9),
)
def test_cached_ranges_equal_fresh_ones_in_any_order(stamps: list[int], step: int, extra: int) -> None:
    # A size that is not a multiple of the step puts window ends between step starts.
    size = step + extra
    window = HoppingWindow(size, step)
    for ts in stamps:
        assert [tuple(w) for w in window.ranges(ts / 10)] == brute_force(ts / 10, size, step)
