"""Kafka partition assignment that keeps a partition where its table state is, and names standby replicas.

Every member of a streamnb consumer group joins with its worker's name,
the partitions it held and, per partition number, how far its local table
state (``rocksdb://`` stores, active or standby) has read the changelogs
(a sum of offsets, as Kafka Streams' task offset sums). The group's leader
runs :func:`plan`, which numbers partitions across the group's topics (they
are co-partitioned: partition ``p`` of every topic goes to one member):

1. each member keeps the partitions it held, up to its fair share; one
   that held more keeps first those whose state the other workers lack
   most (a worker back from a restart gets back what it has state for);
2. a partition left over goes to the member whose local state of it read
   furthest (a standby replica, or an earlier owner), if it has room;
3. the rest fill the members with room in order, as Kafka's *range*
   strategy would (contiguous blocks, the first members one more);
4. each partition gets ``replicas`` standby replicas on other workers,
   preferring those that already keep its state, then the least loaded;
   then standbys move from the most to the least loaded worker until
   their numbers differ by one at most.

Shares are fair as in *range*: every member gets ``P // M`` or one more.
The leader sends each member its standby partitions in the assignment's
user data; :class:`StandbyAssignor` hands them to the member's
:class:`~streamnb.transport.base.LocalState`.

>>> members = [Member("m-a", "a", ("t",), frozenset({0}), {0: 900}),
...            Member("m-b", "b", ("t",), frozenset({1}), {1: 800, 0: 870})]
>>> result = plan(2, members, replicas=1)
>>> result.active, result.standby
({'m-a': {0}, 'm-b': {1}}, {'m-a': {1}, 'm-b': {0}})
>>> plan(2, members[1:], replicas=1).active   # a's partition goes to b, which keeps its state
{'m-b': {0, 1}}
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment, ConsumerProtocolMemberMetadata

from ..base import LocalState
from .clients import log

__all__ = ["Member", "Plan", "StandbyAssignor", "plan"]


class Member(NamedTuple):
    """One member of the group, as its subscription describes it."""

    id: str
    """Kafka's member id."""
    worker: str
    """The worker (process) it belongs to; members are ordered by it, so every group orders alike."""
    topics: tuple[str, ...]
    """The topics it reads."""
    owned: frozenset[int]
    """Partition numbers it held before this rebalance."""
    state: Mapping[int, int]
    """``{partition: offset sum}`` of the table state it keeps locally."""


class Plan(NamedTuple):
    """What :func:`plan` decided, by member id."""

    active: dict[str, set[int]]
    """Partition numbers each member owns."""
    standby: dict[str, set[int]]
    """Partition numbers each member keeps a standby replica of."""


class _Shares:
    """Fair shares: every member ``base`` partitions, ``extra`` of them one more."""

    def __init__(self, count: int, ids: Sequence[str]) -> None:
        self.base, self.extra = divmod(count, len(ids))
        self.active: dict[str, set[int]] = {i: set() for i in ids}
        self.owner: dict[int, str] = {}

    def room(self, member: str) -> bool:
        load = len(self.active[member])
        return load < self.base or (load == self.base and self.extra > 0)

    def give(self, partition: int, member: str) -> None:
        if len(self.active[member]) == self.base:
            self.extra -= 1
        self.active[member].add(partition)
        self.owner[partition] = member


def plan(count: int, members: Sequence[Member], replicas: int) -> Plan:
    """Partition numbers ``0..count-1`` to ``members``: owners and standby replicas (see the module docstring)."""
    order = sorted(members, key=lambda m: (m.worker, m.id))
    if not order:
        return Plan({}, {})
    shares = _Shares(count, [m.id for m in order])
    for m in order:  # 1. sticky
        for p in sorted(m.owned, key=lambda p: (-_lead(m, p, order), p)):
            if p < count and p not in shares.owner and shares.room(m.id):
                shares.give(p, m.id)
    for p in range(count):  # 2. where its state is
        holders = [m for m in order if p not in shares.owner and p in m.state and shares.room(m.id)]
        if holders:
            shares.give(p, max(holders, key=lambda m: m.state[p]).id)  # (the first of equals)
    for p in range(count):  # 3. the rest, range-like
        if p not in shares.owner:
            shares.give(p, next(m.id for m in order if shares.room(m.id)))
    return Plan(shares.active, _standbys(count, order, shares.owner, replicas))


def _lead(member: Member, partition: int, order: Sequence[Member]) -> float:
    """How far ``member``'s state of ``partition`` is ahead of the best other worker's (inf: none has any).

    >>> a, b = Member("m-a", "a", (), frozenset({0, 1}), {0: 90, 1: 90}), Member("m-b", "b", (), frozenset(), {0: 80})
    >>> _lead(a, 0, [a, b]), _lead(a, 1, [a, b])
    (10, inf)
    """
    others = [m.state[partition] for m in order if m.worker != member.worker and partition in m.state]
    if not others:
        return float("inf")
    return member.state.get(partition, 0) - max(others)


def _standbys(count: int, order: Sequence[Member], owner: Mapping[int, str], replicas: int) -> dict[str, set[int]]:
    """``replicas`` standby replicas per partition, each on another worker than its owner (and each other)."""
    standby: dict[str, set[int]] = {m.id: set() for m in order}
    workers: dict[str, Member] = {}
    for m in order:  # a worker's first member holds its standbys (the worker unions its members' anyway)
        workers.setdefault(m.worker, m)
    by_id = {m.id: m for m in order}
    for p in range(count):
        owning = by_id[owner[p]].worker
        candidates = sorted(
            (m for w, m in workers.items() if w != owning),
            key=lambda m: (p not in m.state, -m.state.get(p, 0), len(standby[m.id])),
        )
        for m in candidates[: max(replicas, 0)]:
            standby[m.id].add(p)
    _even_out(standby, {p: by_id[owner[p]].worker for p in range(count)}, list(workers.values()))
    return standby


def _even_out(standby: dict[str, set[int]], owning: Mapping[int, str], holders: Sequence[Member]) -> None:
    """Move standbys from the most to the least loaded worker until loads differ by one at most.

    A move never puts a standby on its partition's owner or twice on one
    worker; standbys without local state move first.
    """
    for _ in range(sum(len(ps) for ps in standby.values())):
        hi = max(holders, key=lambda m: len(standby[m.id]))
        lo = min(holders, key=lambda m: len(standby[m.id]))
        if len(standby[hi.id]) - len(standby[lo.id]) <= 1:
            return
        movable = sorted(
            (p for p in standby[hi.id] if owning[p] != lo.worker and p not in standby[lo.id]),
            key=lambda p: (p in hi.state, p),
        )
        if not movable:
            return
        standby[hi.id].discard(movable[0])
        standby[lo.id].add(movable[0])


def _member(member_id: str, metadata: Any) -> Member:
    """A member from its subscription (user data written by another program counts as no state)."""
    try:
        data = json.loads(bytes(metadata.user_data or b"{}"))
        return Member(
            member_id, str(data.get("worker", member_id)), tuple(metadata.subscription),
            frozenset(int(p) for p in data.get("owned", ())),
            {int(p): int(o) for p, o in dict(data.get("state", {})).items()},
        )
    except (ValueError, TypeError, AttributeError):
        return Member(member_id, member_id, tuple(metadata.subscription), frozenset(), {})


class StandbyAssignor:
    """aiokafka's assignor protocol around :func:`plan`, for one member whose table state is ``state``.

    One instance per consumer (aiokafka calls :meth:`metadata` when the
    member joins, :meth:`assign` on the group's leader and
    :meth:`on_assignment` with what the leader decided).
    """

    name = "streamnb-standby"
    version = 1

    def __init__(self, state: LocalState) -> None:
        self.state = state
        self.owned: frozenset[int] = frozenset()
        """Partition numbers the last assignment gave this member."""

    def metadata(self, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
        """This member's subscription: its topics, worker, partitions held and local state."""
        data = {
            "worker": self.state.worker,
            "owned": sorted(self.owned),
            "state": {str(p): int(o) for p, o in self.state.offsets().items()},
        }
        return ConsumerProtocolMemberMetadata(self.version, sorted(topics), json.dumps(data).encode())

    def assign(
        self, cluster: Any, members: Mapping[str, ConsumerProtocolMemberMetadata]
    ) -> dict[str, ConsumerProtocolMemberAssignment]:
        """The leader's assignment of every member (owners and standby replicas)."""
        parsed = [_member(member_id, metadata) for member_id, metadata in members.items()]
        counts: dict[str, int] = {}
        for topic in sorted({t for m in parsed for t in m.topics}):
            partitions = cluster.partitions_for_topic(topic)
            if partitions is None:
                log.warning("no partition metadata for topic %s", topic)
                continue
            counts[topic] = len(partitions)
        result = plan(max(counts.values(), default=0), parsed, self.state.replicas)
        out = {}
        for m in parsed:
            mine = result.active.get(m.id, set())
            topics = [(t, sorted(p for p in mine if p < counts[t])) for t in sorted(m.topics) if t in counts]
            data = json.dumps({"standby": sorted(result.standby.get(m.id, ()))}).encode()
            out[m.id] = ConsumerProtocolMemberAssignment(self.version, topics, data)
        return out

    def on_assignment(self, assignment: ConsumerProtocolMemberAssignment) -> None:
        """Note what this member owns now, and tell its state which standby replicas to keep."""
        self.owned = frozenset(p for _, parts in assignment.assignment for p in parts)
        try:
            standby = {int(p) for p in json.loads(bytes(assignment.user_data or b"{}")).get("standby", ())}
        except (ValueError, TypeError, AttributeError):
            standby = set()
        self.state.standbys(standby - self.owned)
