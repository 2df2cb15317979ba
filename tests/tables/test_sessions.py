"""Session state: its bookkeeping stays as small as the sessions it keeps, and undo reschedules closing."""

from __future__ import annotations

import operator
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from streamnb.tables.state.base import Dirty
from streamnb.tables.state.sessions import SessionState, merge_sessions
from streamnb.tables.windows import SessionWindow

add = operator.add


def write(state: SessionState, dirty: Dirty[Any], key: str, t: float) -> None:
    assert state.update(dirty, key, add, 1, t, 0, int) is None, f"{key}@{t} was late"


def commit(state: SessionState, dirty: Dirty[Any]) -> list[tuple[str, tuple[float, float], Any]]:
    closed = state.before_commit(None, dirty)
    list(state.changes(dirty))
    state.after_commit()
    return [(c.key, c.window, c.value) for c in closed]


def test_a_session_extended_many_times_keeps_one_entry() -> None:
    """Merged-away bounds are forgotten: bookkeeping does not grow with the events of a session."""
    state = SessionState(SessionWindow(5), add)
    for i in range(200):
        dirty: Dirty[Any] = Dirty()
        write(state, dirty, "k", 1000.0 + i)  # each event extends the session by 1 s
        commit(state, dirty)
    assert state.items() == [(("k", (1000.0, 1199.0)), 200)]
    assert state.born == {"k": {(1_000_000, 1_199_000): state.born["k"][(1_000_000, 1_199_000)]}}
    dirty = Dirty()
    write(state, dirty, "k", 1300.0)  # closes [1000, 1199] (1199 + 5 <= 1300)
    assert commit(state, dirty) == [("k", (1000.0, 1199.0), 200)]


def test_sessions_put_back_by_an_undo_still_close_once() -> None:
    state = SessionState(SessionWindow(5, grace=10), add)
    dirty: Dirty[Any] = Dirty()
    write(state, dirty, "k", 1.0)
    write(state, dirty, "k", 10.0)  # 10 - 1 > 5: a second session
    assert commit(state, dirty) == []
    undone: Dirty[Any] = Dirty()
    write(state, undone, "k", 5.0)  # within the gap of both: merges them into [1, 10]...
    assert state.items() == [(("k", (1.0, 10.0)), 3)]
    state.restore(undone)  # ...but the transaction is undone
    assert sorted(state.items()) == [(("k", (1.0, 1.0)), 1), (("k", (10.0, 10.0)), 1)]
    dirty = Dirty()
    write(state, dirty, "k", 100.0)  # both close: 1 + 5 + 10 and 10 + 5 + 10 <= 100
    assert commit(state, dirty) == [("k", (1.0, 1.0), 1), ("k", (10.0, 10.0), 1)]
    dirty = Dirty()
    write(state, dirty, "k", 200.0)
    assert commit(state, dirty) == [("k", (100.0, 100.0), 1)]  # nothing closes twice


def test_a_session_deleted_by_an_undone_commit_comes_back_to_expire() -> None:
    state = SessionState(SessionWindow(5, expires=5), add)
    dirty: Dirty[Any] = Dirty()
    write(state, dirty, "k", 1.0)
    write(state, dirty, "k", 7.0)  # [1, 1] closes at 6
    assert commit(state, dirty) == [("k", (1.0, 1.0), 1)]
    undone: Dirty[Any] = Dirty()
    write(state, undone, "k", 20.0)  # [1, 1] expires at 11, [7, 7] closes at 12
    assert commit_without_after(state, undone) == [("k", (7.0, 7.0), 1)]
    assert ("k", (1.0, 1.0)) not in dict(state.items())
    state.restore(undone)  # the commit failed: [1, 1] is back (closed), [7, 7] open again
    assert sorted(state.items()) == [(("k", (1.0, 1.0)), 1), (("k", (7.0, 7.0)), 1)]
    dirty = Dirty()
    write(state, dirty, "k", 20.0)
    assert commit(state, dirty) == [("k", (7.0, 7.0), 1)]  # [1, 1] is not emitted a second time
    assert state.items() == [(("k", (20.0, 20.0)), 1)]  # both expired: 1 + 5 + 5 and 7 + 5 + 5 <= 20


def commit_without_after(state: SessionState, dirty: Dirty[Any]) -> list[tuple[str, tuple[float, float], Any]]:
    return [(c.key, c.window, c.value) for c in state.before_commit(None, dirty)]


def test_a_record_within_the_gap_of_a_closed_session_starts_a_new_one() -> None:
    """Issue 24's example, decided as Kafka Streams 3.9 does (tests/oracle: "session-after-close").

    k0@155 closes k2's [148, 148] (148 + 5 + 2 <= 155) and its final is emitted. k2@149.315 is
    within the gap of it, but a final stays final: it starts [149.315, 149.315], not late.
    """
    state = SessionState(SessionWindow(5, grace=2), add)
    emitted = []
    for key, t in [("k2", 140.0), ("k2", 142.0), ("k0", 144.0), ("k2", 148.0), ("k0", 150.0), ("k0", 155.0),
                   ("k2", 149.315), ("k0", 175.0)]:
        dirty: Dirty[Any] = Dirty()
        write(state, dirty, key, t)
        emitted += commit(state, dirty)
    assert emitted == [
        ("k2", (140.0, 142.0), 2),
        ("k0", (144.0, 144.0), 1),
        ("k2", (148.0, 148.0), 1),
        ("k2", (149.315, 149.315), 1),
        ("k0", (150.0, 155.0), 2),
    ]
    assert state.late == {}


# -- the merge rule (merge_sessions, used by the memory:// and rocksdb:// states) against brute force ---------------

GAP_MS = st.integers(1, 50)
TIMES = st.integers(0, 400)


def joins_brute(session: tuple[int, int], t: int, gap: int, grace: int, before: int | None) -> bool:
    """A session joins when a millisecond of it is at most ``gap`` from ``t`` and it had not closed."""
    near = any(abs(p - t) <= gap for p in range(session[0], session[1] + 1))
    return near and (before is None or session[1] + gap + grace > before)


@settings(max_examples=400, deadline=None)
@given(
    sessions=st.lists(st.tuples(TIMES, st.integers(0, 60)).map(lambda p: (p[0], p[0] + p[1])), max_size=6, unique=True),
    t=TIMES, gap=GAP_MS, grace=st.integers(0, 100), before=st.none() | TIMES, ahead=st.integers(0, 200),
)
def test_merge_sessions_matches_a_brute_force_reference(
    sessions: list[tuple[int, int]], t: int, gap: int, grace: int, before: int | None, ahead: int
) -> None:
    window = SessionWindow(gap / 1000, grace=grace / 1000, expires=1.0)
    now = max(t, before or 0) + ahead
    got = merge_sessions(sessions, t, window, before, now)
    joined = sorted(s for s in sessions if joins_brute(s, t, gap, grace, before))
    start = min([t, *(s for s, _ in joined)])
    end = max([t, *(e for _, e in joined)])
    assert got == (joined, start, end, end + gap + grace < now)


@settings(max_examples=300, deadline=None)
@given(times=st.lists(TIMES, min_size=1, max_size=25), gap=GAP_MS)
def test_sessions_of_events_in_any_order_are_the_gap_clusters(times: list[int], gap: int) -> None:
    """With nothing closed, the sessions an event sequence leaves are its times split where they are more than
    ``gap`` apart, whatever the order they came in."""
    window = SessionWindow(gap / 1000, expires=10.0)
    sessions: dict[tuple[int, int], int] = {}
    for t in times:
        merged, start, end, late = merge_sessions(sessions, t, window, None, t)
        assert not late
        count = sum(sessions.pop(m) for m in merged)
        sessions[(start, end)] = count + 1
    clusters: list[list[int]] = []
    for t in sorted(times):
        if clusters and t - clusters[-1][-1] <= gap:
            clusters[-1].append(t)
        else:
            clusters.append([t])
    assert sessions == {(c[0], c[-1]): len(c) for c in clusters}
