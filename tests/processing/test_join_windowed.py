"""The stream–stream join rule (streamnb/processing/joins/windowed.py) against a brute-force statement of it.

``reference`` computes, for a whole input at once, what issue 24's contract
says each record yields: it shares no code or data structure with
``WindowJoin`` (no kept lists, no heap; every pair and every closing instant
is found by scanning the input). Hypothesis draws two-sided inputs out of
order, with ties at window edges and at end + grace, and late records.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamnb.errors import ConfigurationError
from streamnb.processing.joins.windowed import LEFT, RIGHT, JoinWindow, Result, WindowJoin

Record = tuple[int, str, int, int]  # side, key, ts, value


def reference(window: JoinWindow, how: str, records: list[Record]) -> tuple[list[list[Result]], int]:
    """Per input record, what the contract yields after it; and the late count."""
    before, after, grace = window.before, window.after, window.grace

    def end(i: int) -> int:
        side, _key, ts, _value = records[i]
        return ts + (after if side == LEFT else before)

    stream_time = []
    now = -1
    for _side, _key, ts, _value in records:
        now = max(now, ts)
        stream_time.append(now)
    late = {i for i in range(len(records)) if end(i) + grace < stream_time[i]}

    def open_at(i: int, j: int) -> bool:  # record i (kept) still open when record j comes
        return end(i) + grace >= stream_time[j]

    def closes_at(i: int) -> int | None:  # the step at which a kept record is dropped
        return next((k for k in range(i, len(records)) if end(i) + grace < stream_time[k]), None)

    def pair(i: int, j: int) -> bool:  # i earlier than j, both kept, j joins i
        si, ki, ti, _ = records[i]
        sj, kj, tj, _ = records[j]
        if si == sj or ki != kj or i in late or j in late or not open_at(i, j):
            return False
        left_ts, right_ts = (ti, tj) if si == LEFT else (tj, ti)
        return left_ts - before <= right_ts <= left_ts + after

    out: list[list[Result]] = []
    matched: set[int] = set()
    for j, (side, key, ts, value) in enumerate(records):
        step: list[Result] = []
        for i in range(j):
            if pair(i, j):
                matched.update((i, j))
                other = records[i][3]
                left, right = (value, other) if side == LEFT else (other, value)
                step.append(Result(key, max(ts, records[i][2]), left, right))
        closing = [i for i in range(j + 1) if i not in late and closes_at(i) == j]
        closing.sort(key=lambda i: (records[i][2], 0 if records[i][0] == RIGHT else 1, i))
        for i in closing:
            s, k, t, v = records[i]
            if i in matched or how == "inner" or (s == RIGHT and how == "left"):
                continue
            step.append(Result(k, t, v, None) if s == LEFT else Result(k, t, None, v))
        out.append(step)
    return out, len(late)


def run(window: JoinWindow, how: str, records: list[Record]) -> tuple[list[list[Result]], int]:
    join = WindowJoin(window, how)
    return [join.process(s, k, t, v) for s, k, t, v in records], join.late


windows = st.builds(
    JoinWindow, before=st.integers(0, 6), after=st.integers(0, 6), grace=st.integers(0, 5)
)
records = st.lists(
    st.tuples(st.sampled_from([LEFT, RIGHT]), st.sampled_from("ab"), st.integers(0, 40), st.integers(0, 99)),
    max_size=40,
)


@settings(max_examples=600, deadline=None)
@given(window=windows, how=st.sampled_from(["inner", "left", "outer"]), records=records)
def test_the_join_does_what_the_contract_says(window: JoinWindow, how: str, records: list[Record]) -> None:
    assert run(window, how, records) == reference(window, how, records)


@settings(max_examples=200, deadline=None)
@given(window=windows, records=records)
def test_kept_state_reloaded_from_rows_continues_the_same(window: JoinWindow, records: list[Record]) -> None:
    """What a restart does: the kept rows and stream time reloaded halfway give the same rest."""
    half = len(records) // 2
    first = WindowJoin(window, "outer")
    for s, k, t, v in records[:half]:
        first.process(s, k, t, v)
    second = WindowJoin(window, "outer")
    second.load(first.rows(), first.stream_time)
    rest = [(s, k, t, v) for s, k, t, v in records[half:]]
    assert [second.process(*r) for r in rest] == [first.process(*r) for r in rest]


def kept_reference(window: JoinWindow, records: list[Record]) -> list[list[tuple[int, str, int, int]]]:
    """Per input record, the records kept after it (not late, window end + grace not before stream time)."""
    out = []
    now = -1
    for j, (_side, _key, ts, _value) in enumerate(records):
        now = max(now, ts)
        out.append([])
        for i, (side, key, t, value) in enumerate(records[: j + 1]):
            end = t + (window.after if side == LEFT else window.before)
            arrived_at = max(max(r[2] for r in records[: i + 1]), -1)
            if end + window.grace >= arrived_at and end + window.grace >= now:
                out[-1].append((side, key, t, value))
    return out


@settings(max_examples=300, deadline=None)
@given(window=windows, how=st.sampled_from(["inner", "left", "outer"]), records=records)
def test_the_kept_state_is_what_the_contract_says(window: JoinWindow, how: str, records: list[Record]) -> None:
    """After every record, the state read (rows, buffered counts) holds exactly the open records, in arrival order.

    An inner join drops closed records lazily: what it shows must not differ.
    """
    join = WindowJoin(window, how)
    for (s, k, t, v), want in zip(records, kept_reference(window, records)):
        join.process(s, k, t, v)
        assert [(side, key, ts, value) for side, key, ts, value, _m in join.rows()] == want
        assert [join.buffered(LEFT), join.buffered(RIGHT)] == [
            sum(1 for r in want if r[0] == LEFT), sum(1 for r in want if r[0] == RIGHT)]


@settings(max_examples=200, deadline=None)
@given(window=windows, how=st.sampled_from(["inner", "left", "outer"]), records=records)
def test_a_restored_state_is_the_saved_one(window: JoinWindow, how: str, records: list[Record]) -> None:
    """What a failed commit does: the state saved at the transaction's start comes back, and goes on the same."""
    half = len(records) // 2
    join = WindowJoin(window, how)
    for r in records[:half]:
        join.process(*r)
    saved, at, rows = join.saved(), join.stream_time, join.rows()
    rest = [join.process(*r) for r in records[half:]]
    join.restore(saved, at)
    assert join.rows() == rows and join.stream_time == at
    assert [join.process(*r) for r in records[half:]] == rest


def test_a_small_outer_join_by_hand() -> None:
    # within 5 s, grace 1 s: l@10 and r@15 (exactly 5 apart) join; r@30 closes both; l@3 is late
    # (3 + 5 + 1 < 30); r@40 closes r@30 unmatched.
    join = WindowJoin(JoinWindow.of(within=0.005, grace=0.001), "outer")
    assert join.process(LEFT, "k", 10, "l10") == []
    assert join.process(RIGHT, "k", 15, "r15") == [Result("k", 15, "l10", "r15")]
    assert join.process(RIGHT, "k", 30, "r30") == []
    assert join.process(LEFT, "k", 3, "l3") == [] and join.late == 1
    assert join.process(RIGHT, "j", 40, "x") == [Result("k", 30, None, "r30")]
    assert join.buffered(RIGHT) == 1 and join.buffered(LEFT) == 0


def test_window_options() -> None:
    with pytest.raises(ConfigurationError, match="needs a time window: within="):
        JoinWindow.of(grace=3)
    with pytest.raises(ConfigurationError, match="not both"):
        JoinWindow.of(within=3, before=1)
    with pytest.raises(ConfigurationError, match=">= 0"):
        JoinWindow.of(before=-1, after=3)
    with pytest.raises(ConfigurationError, match="'inner', 'left' or 'outer'"):
        WindowJoin(JoinWindow.of(within=1), "full")


