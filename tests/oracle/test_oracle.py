"""The Kafka Streams oracle itself, against hand-computed expectations.

Each case pins one rule of the module docstring of ``oracle.kstreams``: if Kafka
Streams behaved otherwise, the test (and the docstring) would be wrong. All cases
run in one JVM (module fixture); times are milliseconds.
"""

from __future__ import annotations

import dataclasses

import pytest

from oracle.kstreams import Emission, OracleCase, OracleError, OracleResult, run_cases, run_json

pytestmark = pytest.mark.slow

C = OracleCase

CASES: dict[str, OracleCase] = {
    case.id: case
    for case in [
        # --- tumbling ------------------------------------------------------------
        C.tumbling(
            10_000,
            5_000,
            [("a", 1_000, 1), ("a", 12_000, 1), ("a", 3_000, 1), ("a", 16_000, 1), ("a", 2_000, 1)],
            id="tumbling-brief",
        ),
        C.tumbling(
            10_000,
            5_000,
            [("a", 1_000, 1), ("a", 14_999, 1), ("a", 9_000, 1), ("a", 15_000, 1), ("a", 9_999, 1)],
            id="tumbling-tie",
        ),
        C.tumbling(10, 5, [("a", 1, 7), ("b", 15, 1)], id="tumbling-other-key"),
        C.tumbling(10, 0, [("b", 0, 1), ("ab", 0, 1), ("a", 5, 1), ("x", 30, 1)], id="tumbling-order"),
        # --- hopping -------------------------------------------------------------
        C.hopping(
            10,
            5,
            0,
            [("a", 3, 1), ("a", 7, 1), ("a", 12, 1), ("a", 16, 1), ("a", 14, 1), ("a", 9, 1)],
            id="hopping-partly-late",
        ),
        C.hopping(10, 3, 2, [("a", 1, 1), ("a", 4, 1), ("a", 20, 1)], id="hopping-uneven"),
        # --- sliding -------------------------------------------------------------
        C.sliding(10, 5, [("a", 10, 1), ("a", 15, 1), ("a", 30, 1)], id="sliding-basic"),
        C.sliding(10, 0, [("a", 10, 1), ("a", 20, 1), ("a", 21, 1), ("a", 35, 1)], id="sliding-right-windows"),
        C.sliding(10, 0, [("a", 3, 1), ("a", 7, 1), ("a", 12, 1), ("a", 40, 1)], id="sliding-early"),
        C.sliding(10, 20, [("a", 10, 1), ("a", 30, 1), ("a", 15, 1)], id="sliding-out-of-order"),
        C.sliding(10, 0, [("a", 30, 1), ("a", 5, 1), ("a", 19, 1), ("a", 20, 1)], id="sliding-late"),
        C.sliding(10, 0, [("a", 20, 1), ("a", 20, 1)], id="sliding-tie-grace0"),
        C.sliding(10, 5, [("a", 10, 1), ("b", 24, 1), ("b", 25, 1), ("a", 20, 1)], id="sliding-retention"),
        C.sliding(10, 5, [("a", 10, 1), ("b", 25, 1), ("a", 20, 1)], id="sliding-retention-control"),
        # --- session -------------------------------------------------------------
        C.session(5, 10, [("a", 0, 1), ("a", 10, 1), ("a", 5, 1), ("a", 40, 1)], id="session-merge-two"),
        C.session(5, 0, [("a", 0, 1), ("a", 5, 1), ("a", 11, 1), ("b", 30, 1)], id="session-gap-inclusive"),
        C.session(5, 3, [("a", 0, 1), ("b", 7, 1), ("b", 8, 1)], id="session-close-time"),
        C.session(5, 3, [("a", 100, 1), ("a", 91, 1), ("a", 92, 1)], id="session-late"),
        C.session(5, 0, [("a", 0, 1), ("b", 5, 1), ("a", 5, 1)], id="session-closed-not-merged"),
        C.session(5, 0, [("a", 0, 1), ("a", 10, 1), ("a", 5, 1), ("a", 30, 1)], id="session-closed-left-alone"),
        C.session(5, 20, [("a", 10, 1), ("a", 12, 1), ("a", 11, 1)], id="session-inside"),
        C.session(
            5_000,
            2_000,
            [("k2", 140_000, 1), ("k2", 142_000, 1), ("k0", 144_000, 1), ("k2", 148_000, 1), ("k0", 150_000, 1),
             ("k0", 155_000, 1), ("k2", 149_315, 1), ("k0", 175_000, 1)],
            id="session-after-close",
        ),
    ]
}


@pytest.fixture(scope="module")
def results() -> dict[str, OracleResult]:
    ordered = list(CASES.values())
    return {case.id: result for case, result in zip(ordered, run_cases(ordered))}


def finals(result: OracleResult) -> list[tuple[str, int, int, int | None, int]]:
    """(key, start, end, value, emitting event index) of each final, in order."""
    return [(e.key, e.start, e.end, e.value, e.at) for e in result.finals]


def updates(result: OracleResult) -> list[tuple[str, int, int, int | None, int]]:
    return [(e.key, e.start, e.end, e.value, e.at) for e in result.updates]


# --- tumbling -------------------------------------------------------------------


def test_tumbling_window_closes_at_end_plus_grace_and_refuses_late(results: dict[str, OracleResult]) -> None:
    # size 10 s, grace 5 s: 1 s and 3 s land in [0,10); 12 s keeps it open (12 < 15);
    # 16 s closes it (final 2); 2 s is then late; [10,20) stays open at the end.
    r = results["tumbling-brief"]
    assert finals(r) == [("a", 0, 10_000, 2, 3)]
    assert r.finals[0].timestamp == 3_000  # the largest event time in the window
    assert (r.late, r.late_events, r.stream_time) == (1, {4: 1}, 16_000)
    assert ("a", 10_000, 20_000, 2, 3) in updates(r)


def test_tumbling_tie_exactly_at_end_plus_grace(results: dict[str, OracleResult]) -> None:
    # At S = 14_999 = end + grace - 1 the window still accepts (9 s joins); S = 15_000 =
    # end + grace closes it: the final is emitted by that event and 9_999 is late.
    r = results["tumbling-tie"]
    assert finals(r) == [("a", 0, 10_000, 2, 3)]
    assert r.late_events == {4: 1}


def test_tumbling_another_key_advances_stream_time(results: dict[str, OracleResult]) -> None:
    r = results["tumbling-other-key"]
    assert finals(r) == [("a", 0, 10, 7, 1)]
    # b's own window [10,20) is not closed by the end of the input.
    assert r.late == 0


def test_tumbling_finals_closed_together_come_out_by_key(results: dict[str, OracleResult]) -> None:
    r = results["tumbling-order"]
    assert finals(r) == [("a", 0, 10, 1, 3), ("ab", 0, 10, 1, 3), ("b", 0, 10, 1, 3)]
    assert [e.timestamp for e in r.finals] == [5, 0, 0]


# --- hopping --------------------------------------------------------------------


def test_hopping_counts_one_drop_per_closed_window(results: dict[str, OracleResult]) -> None:
    # size 10 advance 5 grace 0. Windows [0,10) [5,15) [10,20) [15,25).
    # 14 at S=16: [5,15) closed (15 <= 16): 1 drop, [10,20) updated to 3.
    # 9 at S=16: [0,10) and [5,15) both closed: 2 drops.
    r = results["hopping-partly-late"]
    assert finals(r) == [("a", 0, 10, 2, 2), ("a", 5, 15, 2, 3)]
    assert r.late_events == {4: 1, 5: 2}
    assert r.late == 3
    assert updates(r)[-1] == ("a", 10, 20, 3, 4)
    # 16 updates [10,20) then creates [15,25): ascending start.
    assert [u for u in updates(r) if u[4] == 3] == [("a", 10, 20, 2, 3), ("a", 15, 25, 1, 3)]


def test_hopping_windows_start_at_multiples_of_advance_from_zero(results: dict[str, OracleResult]) -> None:
    # size 10 advance 3 grace 2: ts 1 is only in [0,10) (no negative starts); ts 4 in
    # [0,10) and [3,13); ts 20 in [12,22) [15,25) [18,28) and closes [0,10), [3,13)
    # (13 + 2 <= 20).
    r = results["hopping-uneven"]
    assert finals(r) == [("a", 0, 10, 2, 2), ("a", 3, 13, 1, 2)]
    assert sorted((u[1], u[2]) for u in updates(r) if u[4] == 2) == [(12, 22), (15, 25), (18, 28)]


# --- sliding --------------------------------------------------------------------


def test_sliding_left_and_right_windows(results: dict[str, OracleResult]) -> None:
    # size 10 grace 5; events 10, 15, 30. Left windows [0,10] {10}, [5,15] {10,15},
    # [20,30] {30}; right window of 10: [11,21] {15} (15 is within (10,20]); none for
    # 15 (nothing in (15,25]). Finals at S >= end + 5: [0,10] at S=15, the rest at 30.
    r = results["sliding-basic"]
    assert finals(r) == [("a", 0, 10, 1, 1), ("a", 5, 15, 2, 2), ("a", 11, 21, 1, 2)]
    assert ("a", 20, 30, 1, 2) in updates(r)


def test_sliding_right_window_shared_with_a_left_window(results: dict[str, OracleResult]) -> None:
    # grace 0, events 10, 20, 21, 35: [0,10]{10} [10,20]{10,20} [11,21]{20,21}
    # (right of 10 and left of 21) [21,31]{21} (right of 20) [25,35]{35}; no right
    # window for 21 (35 > 31). Left windows are emitted at once (S == end, grace 0).
    r = results["sliding-right-windows"]
    assert finals(r) == [
        ("a", 0, 10, 1, 0),
        ("a", 10, 20, 2, 1),
        ("a", 11, 21, 2, 2),
        ("a", 21, 31, 1, 3),
        ("a", 25, 35, 1, 3),
    ]


def test_sliding_early_records_share_window_zero_to_size(results: dict[str, OracleResult]) -> None:
    # size 10: 3 and 7 (< size) both go to [0,10]; right of 3: [4,14]{7,12};
    # left of 12: [2,12]{3,7,12}; right of 7: [8,18]{12}.
    r = results["sliding-early"]
    assert finals(r) == [
        ("a", 0, 10, 2, 2),
        ("a", 2, 12, 3, 2),
        ("a", 4, 14, 2, 3),
        ("a", 8, 18, 1, 3),
        ("a", 30, 40, 1, 3),
    ]


def test_sliding_out_of_order_event_creates_its_windows(results: dict[str, OracleResult]) -> None:
    # grace 20: 15 after 30 is on time; it makes its left window [5,15]{10,15} and the
    # previous event's right window [11,21]{15}; no right window of its own ((15,25] empty).
    r = results["sliding-out-of-order"]
    assert [u for u in updates(r) if u[4] == 2] == [("a", 11, 21, 1, 2), ("a", 5, 15, 2, 2)]
    assert r.late == 0


def test_sliding_late_rules(results: dict[str, OracleResult]) -> None:
    # grace 0, S = 30 after the first event; close = 30.
    # 5: 5 + 10 < 30, wholly late (1). 19: 29 < 30, wholly late (1).
    # 20: 30 >= 30 so processed: [20,30] is updated (end 30 >= 30) and re-emitted as a
    # final; its left window [10,20] is refused (1); its right window [21,31] is copied
    # from [20,30] before the update (value 1).
    r = results["sliding-late"]
    assert r.late_events == {1: 1, 2: 1, 3: 1}
    assert finals(r) == [("a", 20, 30, 1, 0), ("a", 20, 30, 2, 3)]
    assert ("a", 21, 31, 1, 3) in updates(r)


def test_sliding_window_updated_after_its_final_is_emitted_again(results: dict[str, OracleResult]) -> None:
    r = results["sliding-tie-grace0"]
    assert finals(r) == [("a", 10, 20, 1, 0), ("a", 10, 20, 2, 1)]
    assert r.late == 0


def test_sliding_store_retention_hides_an_event_at_the_boundary(results: dict[str, OracleResult]) -> None:
    # size 10 grace 5. b@24, b@25 write the right window [25,35], so the store's time is
    # 25 and windows starting before 25 - (2*10 + 5) + 1 = 1 are no longer fetched:
    # a@20 (= S - grace, still on time) does not see a@10's window [0,10], so its left
    # window [10,20] misses a@10 and a@10's right window [11,21] is never made.
    hidden = results["sliding-retention"]
    assert [u for u in updates(hidden) if u[0] == "a"] == [("a", 0, 10, 1, 0), ("a", 10, 20, 1, 3)]
    control = results["sliding-retention-control"]
    assert [u for u in updates(control) if u[0] == "a"] == [
        ("a", 0, 10, 1, 0),
        ("a", 11, 21, 1, 2),
        ("a", 10, 20, 2, 2),
    ]


# --- session --------------------------------------------------------------------


def test_session_event_merges_two_sessions(results: dict[str, OracleResult]) -> None:
    # gap 5 grace 10: 5 is within 5 of both [0,0] and [10,10] -> [0,10] = 3, final at
    # S = 40 >= 10 + 5 + 10. The merge sends tombstones for both old sessions first.
    r = results["session-merge-two"]
    assert finals(r) == [("a", 0, 10, 3, 3)]
    assert [u for u in updates(r) if u[4] == 2] == [
        ("a", 0, 0, None, 2),
        ("a", 10, 10, None, 2),
        ("a", 0, 10, 3, 2),
    ]
    assert r.finals[0].timestamp == 10


def test_session_gap_exactly_equal_merges(results: dict[str, OracleResult]) -> None:
    # gap 5 grace 0: 0 and 5 (distance 5) merge into [0,5]; 11 (distance 6) does not.
    # [0,5] is emitted by 11 (S = 11 >= 5 + 5); [11,11] by b@30.
    r = results["session-gap-inclusive"]
    assert finals(r) == [("a", 0, 5, 2, 2), ("a", 11, 11, 1, 3)]


def test_session_close_time_is_end_plus_gap_plus_grace(results: dict[str, OracleResult]) -> None:
    # gap 5 grace 3: [0,0] closes at S = 8, not at 7.
    r = results["session-close-time"]
    assert finals(r) == [("a", 0, 0, 1, 2)]


def test_session_late_when_end_before_stream_time_minus_gap_minus_grace(results: dict[str, OracleResult]) -> None:
    # gap 5 grace 3, S = 100: 91 < 92 is late; 92 >= 92 is accepted as [92,92] and, since
    # 92 + 5 + 3 <= 100, emitted at once.
    r = results["session-late"]
    assert r.late_events == {1: 1}
    assert finals(r) == [("a", 92, 92, 1, 2)]


def test_session_closed_session_never_merges(results: dict[str, OracleResult]) -> None:
    # gap 5 grace 0. b@5 closes a's [0,0] (S = 5 >= 0 + 5); a@5 then starts [5,5]
    # instead of extending it (contrast: a@0, a@5 alone merge, see gap-inclusive).
    r = results["session-closed-not-merged"]
    assert finals(r) == [("a", 0, 0, 1, 1)]
    assert updates(r)[-1] == ("a", 5, 5, 1, 2)
    # a@5 after a@10: merges with [10,10] only; the emitted [0,0] is left alone.
    r = results["session-closed-left-alone"]
    assert finals(r) == [("a", 0, 0, 1, 1), ("a", 5, 10, 2, 3)]
    assert r.late == 0


def test_session_record_within_gap_of_a_closed_session_starts_another(results: dict[str, OracleResult]) -> None:
    # Issue 24's example (gap 5 s, grace 2 s). k0@155 closes k2's [148, 148] (148 + 5 + 2 <= 155),
    # its final = 1 is emitted. k2@149.315 then lies within the gap of it, and its merged session
    # would still be accepted (148 >= 155 - 5 - 2), but Kafka Streams does not reopen it: a session
    # closed before the record came is outside the store's retention (end < 155 - 7 + 1) and never
    # fetched, so the record starts [149.315, 149.315] (not late), with a final of its own.
    r = results["session-after-close"]
    assert finals(r) == [
        ("k2", 140_000, 142_000, 2, 4),
        ("k0", 144_000, 144_000, 1, 5),
        ("k2", 148_000, 148_000, 1, 5),
        ("k2", 149_315, 149_315, 1, 7),
        ("k0", 150_000, 155_000, 2, 7),
    ]
    assert r.late == 0


def test_session_event_inside_a_session_rewrites_it(results: dict[str, OracleResult]) -> None:
    r = results["session-inside"]
    assert [u for u in updates(r) if u[4] == 2] == [("a", 10, 12, None, 2), ("a", 10, 12, 3, 2)]
    assert finals(r) == []  # S = 12 < 12 + 5 + 20: nothing closes


# --- the wrapper ----------------------------------------------------------------


def test_in_memory_stores_give_the_same_windows() -> None:
    ordered = list(CASES.values())
    memory = run_cases([dataclasses.replace(case, store="in_memory") for case in ordered])
    rocks = run_cases(ordered)
    for case, a, b in zip(ordered, rocks, memory):
        assert (a.finals, a.updates) == (b.finals, b.updates), case.id


def test_bad_cases_are_refused_with_a_reason() -> None:
    with pytest.raises(OracleError, match="gap_ms does not apply to tumbling"):
        run_cases([OracleCase("tumbling", (), size_ms=10, gap_ms=5)])
    with pytest.raises(OracleError, match="negative timestamp"):
        run_cases([OracleCase.tumbling(10, 0, [("a", -1, 1)])])
    with pytest.raises(OracleError, match="size_ms must be > 0"):
        run_cases([OracleCase.sliding(0, 0, [])])
    # The Java side checks too, and one bad case does not stop the others.
    rows = run_json(
        [
            {"id": "x", "kind": "weekly", "events": []},
            {"id": "y", "kind": "session", "gap_ms": 5, "grace_ms": 0, "size_ms": 3, "events": []},
            {"id": "z", "kind": "tumbling", "size_ms": 10, "grace_ms": 0, "events": [["a", 1, 2]]},
        ]
    )
    assert rows[0] == {
        "id": "x",
        "error": 'IllegalArgumentException: unknown kind "weekly": use tumbling, hopping, sliding or session',
    }
    assert "size_ms" in rows[1]["error"] and "does not apply to session" in rows[1]["error"]
    assert rows[2]["updates"] == [["a", 0, 10, 2, 0, 1]]


def test_emission_fields() -> None:
    [r] = run_cases([OracleCase.tumbling(10, 0, [("k", 4, 3), ("k", 12, 1)], id="fields")])
    assert r.finals == [Emission(key="k", start=0, end=10, value=3, at=1, timestamp=4)]
    assert r.final_values() == {("k", 0, 10): 3}
    assert r.case.id == "fields"


def test_module_examples_hold() -> None:
    import doctest

    from oracle import kstreams

    outcome = doctest.testmod(kstreams)
    assert outcome.attempted >= 3 and outcome.failed == 0
