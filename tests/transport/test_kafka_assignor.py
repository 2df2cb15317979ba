"""The standby-aware assignment (streamnb/transport/kafka/assignor.py): fair, sticky, prefers local state."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping

from aiokafka.coordinator.protocol import ConsumerProtocolMemberMetadata

from streamnb.transport.kafka.assignor import Member, StandbyAssignor, plan


def member(worker: str, owned: set[int] | None = None, state: Mapping[int, int] | None = None) -> Member:
    return Member(f"m-{worker}", worker, ("t",), frozenset(owned or ()), dict(state or {}))


def test_without_history_it_splits_like_range() -> None:
    assert plan(4, [member("b"), member("a")], 0).active == {"m-a": {0, 1}, "m-b": {2, 3}}
    assert plan(5, [member("a"), member("b")], 0).active == {"m-a": {0, 1, 2}, "m-b": {3, 4}}
    assert plan(1, [member("a"), member("b")], 0).active == {"m-a": {0}, "m-b": set()}


def test_members_keep_what_they_held_up_to_their_fair_share() -> None:
    a, b = member("a", {1, 3}), member("b", {0, 2})
    assert plan(4, [a, b], 0).active == {"m-a": {1, 3}, "m-b": {0, 2}}
    greedy = member("a", {0, 1, 2, 3})  # held everything; a new member joined
    assert plan(4, [greedy, member("b")], 0).active == {"m-a": {0, 1}, "m-b": {2, 3}}


def test_a_restarted_worker_gets_back_the_partitions_it_has_state_for() -> None:
    """b took a's partitions 0-1 while a was away (and keeps 2-3, which only b has state for): a gets 0-1 back.

    Range order would have b keep 0-1 and give a 2-3, whose state a last held long ago.
    """
    b = member("b", {0, 1, 2, 3}, {0: 1100, 1: 1000, 2: 900, 3: 950})
    back = member("a", set(), {0: 1000, 1: 940, 2: 3, 3: 0})  # a's stores on disk: 0-1 as it stopped, 2-3 stale
    result = plan(4, [b, back], 0)
    assert result.active == {"m-a": {0, 1}, "m-b": {2, 3}}
    assert plan(4, [b, member("a")], 0).active == {"m-a": {2, 3}, "m-b": {0, 1}}  # (a that tells nothing)
    assert plan(4, [b, back], 1).standby == {"m-a": {2, 3}, "m-b": {0, 1}}


def test_a_killed_owners_partitions_go_to_the_members_with_their_standbys() -> None:
    """Range order would give b partitions 0-2 and c 3-5; the standbys decide instead."""
    b = member("b", {2, 3}, {2: 50, 3: 60, 1: 40})  # b keeps a standby of 1
    c = member("c", {4, 5}, {4: 70, 5: 80, 0: 30})  # c keeps a standby of 0
    result = plan(6, [b, c], 1)
    assert result.active == {"m-b": {1, 2, 3}, "m-c": {0, 4, 5}}


def test_the_most_caught_up_standby_wins() -> None:
    b = member("b", set(), {0: 10})
    c = member("c", set(), {0: 900})
    assert plan(2, [b, c], 1).active == {"m-b": {1}, "m-c": {0}}


def test_standbys_go_to_other_workers_preferring_those_with_state_then_the_least_loaded() -> None:
    members = [member("a", {0, 1}), member("b", {2, 3}), member("c", {4, 5}, {0: 5})]
    result = plan(6, members, 1)
    owner = {p: m for m, ps in result.active.items() for p in ps}
    for m, ps in result.standby.items():
        assert all(owner[p] != m for p in ps)
    assert 0 in result.standby["m-c"]  # c keeps state of 0
    assert sorted(len(ps) for ps in result.standby.values()) == [2, 2, 2]
    two = plan(6, members, 2).standby
    assert all(len(ps) == 4 for ps in two.values())  # every partition on both other workers
    assert plan(6, members, 5).standby == two  # no more replicas than other workers
    assert plan(6, members, 0).standby == {"m-a": set(), "m-b": set(), "m-c": set()}


def test_members_of_one_worker_keep_no_standby_of_its_own_partitions() -> None:
    one = [Member("x1", "w", ("t",), frozenset(), {}), Member("x2", "w", ("t",), frozenset(), {})]
    result = plan(4, one, 1)
    assert result.active == {"x1": {0, 1}, "x2": {2, 3}}
    assert result.standby == {"x1": set(), "x2": set()}


def test_every_plan_is_fair_and_complete() -> None:
    rng = random.Random(7)
    for _ in range(300):
        count, n = rng.randint(0, 12), rng.randint(1, 5)
        members = [
            member(f"w{i}", set(rng.sample(range(count + 2), rng.randint(0, count))),
                   {p: rng.randint(0, 100) for p in rng.sample(range(count + 2), rng.randint(0, count))})
            for i in range(n)
        ]
        result = plan(count, members, rng.randint(0, 3))
        owned = [p for ps in result.active.values() for p in ps]
        assert sorted(owned) == list(range(count))
        loads = [len(ps) for ps in result.active.values()]
        assert max(loads) - min(loads) <= 1


class State:
    """A member's LocalState for the adapter tests."""

    def __init__(self, worker: str, offsets: dict[int, int], replicas: int = 1) -> None:
        self.worker, self.replicas, self._offsets = worker, replicas, offsets
        self.heard: list[set[int]] = []

    def offsets(self) -> Mapping[int, int]:
        return self._offsets

    def standbys(self, partitions: set[int]) -> None:
        self.heard.append(partitions)


class Cluster:
    def __init__(self, counts: dict[str, int]) -> None:
        self.counts = counts

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return set(range(self.counts[topic])) if topic in self.counts else None


def test_the_aiokafka_assignor_carries_state_in_subscriptions_and_standbys_in_assignments() -> None:
    states = {"a": State("a", {}), "b": State("b", {0: 120})}
    assignors = {w: StandbyAssignor(s) for w, s in states.items()}
    subscriptions = {f"m-{w}": assignors[w].metadata(["events", "events-repartition"]) for w in assignors}
    assert json.loads(subscriptions["m-b"].user_data) == {"worker": "b", "owned": [], "state": {"0": 120}}
    out = assignors["a"].assign(Cluster({"events": 4, "events-repartition": 2}), subscriptions)
    # b keeps state of 0: it gets 0, the rest fill a then b in order; the small topic only has 0-1.
    assert [(t, ps) for t, ps in out["m-b"].assignment] == [("events", [0, 3]), ("events-repartition", [0])]
    assert [(t, ps) for t, ps in out["m-a"].assignment] == [("events", [1, 2]), ("events-repartition", [1])]
    for w in assignors:
        assignors[w].on_assignment(out[f"m-{w}"])
    assert states["a"].heard == [{0, 3}] and states["b"].heard == [{1, 2}]
    assert assignors["b"].owned == {0, 3}
    again = assignors["b"].metadata(["events"])
    assert json.loads(again.user_data)["owned"] == [0, 3]


def test_a_subscription_from_another_program_counts_as_no_state() -> None:
    foreign = ConsumerProtocolMemberMetadata(0, ["events"], b"not json")
    mine = StandbyAssignor(State("a", {1: 5})).metadata(["events"])
    out = StandbyAssignor(State("a", {})).assign(Cluster({"events": 2}), {"m-z": foreign, "m-a": mine})
    assert dict(out["m-a"].assignment) == {"events": [1]} and dict(out["m-z"].assignment) == {"events": [0]}
