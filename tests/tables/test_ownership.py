"""Partition ownership and rebalances, without Kafka: a fake distributed transport and recording tables.

``PartitionOwnership`` sees the app through three callables (its tables, its
transport, whether it runs). Here the transport is a stand-in that says it is
distributed (as Kafka is) and answers ``end_offsets`` from a dict the test
moves, and the tables record what they are told to recover and drop.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from streamnb.tables.ownership import PartitionOwnership
from streamnb.transport.base import TP

TOPIC = "views"


def tps(*partitions: int, topic: str = TOPIC) -> set[TP]:
    return {TP(topic, p) for p in partitions}


class FakeTransport:
    """What ownership reads from a transport: ``distributed`` and changelog ``end_offsets``."""

    def __init__(self, distributed: bool = True) -> None:
        self.distributed = distributed
        self.ends: dict[TP, int] = {}
        self.asked: list[set[TP]] = []

    async def end_offsets(self, tps: Iterable[TP]) -> dict[TP, int]:
        wanted = set(tps)
        self.asked.append(wanted)
        return {tp: self.ends.get(tp, 0) for tp in wanted}

    def write(self, table: str, partition: int, n: int = 1) -> None:
        """Another worker wrote ``n`` records to the changelog partition of ``table``."""
        tp = TP(f"{table}-changelog", partition)
        self.ends[tp] = self.ends.get(tp, 0) + n


@dataclass
class Changelog:
    name: str


@dataclass
class FakeTable:
    """Records recover/drop calls, as :class:`~streamnb.tables.ownership.OwnedTable`."""

    table: str
    recovered: list[set[int] | None] = field(default_factory=list)
    dropped: list[set[int]] = field(default_factory=list)

    @property
    def changelog(self) -> Changelog:
        return Changelog(f"{self.table}-changelog")

    async def recover(self, partitions: Iterable[int] | None = None) -> int:
        self.recovered.append(None if partitions is None else set(partitions))
        return 0

    def drop_partitions(self, partitions: set[int]) -> None:
        self.dropped.append(set(partitions))

    def all_dropped(self) -> set[int]:
        return set().union(*self.dropped) if self.dropped else set()


class World:
    """One worker's ownership over a fake transport and two tables."""

    def __init__(self, distributed: bool = True, *, connected: bool = True) -> None:
        self.transport = FakeTransport(distributed)
        self.tables = [FakeTable("counts"), FakeTable("totals")]
        self.running = True
        self.connected = connected
        self.ownership = PartitionOwnership(
            lambda: self.tables,
            lambda: self.transport if self.connected else None,
            lambda: self.running,
        )

    @property
    def counts(self) -> FakeTable:
        return self.tables[0]

    def recovered(self) -> list[set[int] | None]:
        assert self.tables[0].recovered == self.tables[1].recovered  # every table is told the same
        return self.tables[0].recovered

    def dropped(self) -> list[set[int]]:
        assert self.tables[0].dropped == self.tables[1].dropped
        return self.tables[0].dropped


SOURCE, OTHER = object(), object()  # two streams of one worker (two consumers)


# -- embedded brokers: nothing to recover or drop per partition -----------------------------------


async def test_embedded_transport_only_records_ownership() -> None:
    world = World(distributed=False)
    await world.ownership.assigned(SOURCE, tps(0, 1, 2))
    assert world.ownership.owned() == {0, 1, 2}
    await world.ownership.revoked(SOURCE, tps(1))
    assert world.ownership.owned() == {0, 2}
    await world.ownership.revoked(SOURCE, tps(0, 2), final=True)
    assert world.ownership.owned() == set()
    assert world.recovered() == [] and world.dropped() == []
    assert world.transport.asked == [] and world.ownership.held == {}


async def test_no_transport_yet_only_records_ownership() -> None:
    world = World(connected=False)
    await world.ownership.assigned(SOURCE, tps(3))
    await world.ownership.revoked(SOURCE, tps(3))
    assert world.recovered() == [] and world.dropped() == [] and world.ownership.held == {}


# -- assignment ----------------------------------------------------------------------------------


async def test_assignment_recovers_the_partitions_of_every_table() -> None:
    world = World()
    await world.ownership.assigned(SOURCE, tps(0, 2))
    assert world.ownership.owned() == {0, 2}
    assert world.recovered() == [{0, 2}]
    await world.ownership.assigned(OTHER, tps(1, topic="views-by-user"))
    assert world.ownership.owned() == {0, 1, 2}
    assert world.ownership.by_owner == {SOURCE: {0, 2}, OTHER: {1}}
    assert world.recovered() == [{0, 2}, {1}]
    assert world.dropped() == []


# -- revocation within a rebalance: held until the next assignment ------------------------------


async def test_partitions_that_come_back_unchanged_keep_their_rows() -> None:
    world = World()
    world.transport.write("counts", 0, 5)
    world.transport.write("totals", 1, 2)
    await world.ownership.assigned(SOURCE, tps(0, 1, 2, 3))
    await world.ownership.revoked(SOURCE, tps(0, 1, 2, 3))  # Kafka's eager rebalance revokes them all
    assert world.ownership.owned() == set()
    assert set(world.ownership.held) == {0, 1, 2, 3}
    assert world.ownership.held[0] == (SOURCE, {"counts-changelog": 5, "totals-changelog": 0})
    assert world.ownership.held[1] == (SOURCE, {"counts-changelog": 0, "totals-changelog": 2})
    assert world.dropped() == []  # held, not dropped: most partitions come straight back
    await world.ownership.assigned(SOURCE, tps(0, 1, 2, 3))
    assert world.dropped() == []
    assert world.ownership.held == {}
    assert world.ownership.owned() == {0, 1, 2, 3}
    assert world.recovered() == [{0, 1, 2, 3}, {0, 1, 2, 3}]  # recovery resumes where it stood


async def test_partitions_whose_changelog_moved_meanwhile_are_dropped_and_read_again() -> None:
    world = World()
    await world.ownership.assigned(SOURCE, tps(0, 1, 2))
    await world.ownership.revoked(SOURCE, tps(0, 1, 2))
    world.transport.write("totals", 1)  # another worker owned partition 1 for a while and wrote to it
    await world.ownership.assigned(SOURCE, tps(0, 1, 2))
    assert world.dropped() == [{1}]  # its rows are stale: dropped (in every table) ...
    assert world.recovered()[-1] == {0, 1, 2}  # ... before recovery reads it again
    assert world.ownership.held == {}


async def test_partitions_that_went_to_another_worker_are_dropped() -> None:
    world = World()
    await world.ownership.assigned(SOURCE, tps(0, 1, 2, 3))
    await world.ownership.revoked(SOURCE, tps(0, 1, 2, 3))
    await world.ownership.assigned(SOURCE, tps(0, 1))  # 2 and 3 went elsewhere
    assert world.dropped() == [{2, 3}]
    assert world.ownership.owned() == {0, 1} and world.ownership.held == {}
    assert world.recovered()[-1] == {0, 1}


async def test_a_revoked_partition_another_stream_still_owns_is_not_held() -> None:
    world = World()
    await world.ownership.assigned(SOURCE, tps(0, 1))
    await world.ownership.assigned(OTHER, tps(1, topic="views-by-user"))
    await world.ownership.revoked(SOURCE, tps(0, 1))
    assert set(world.ownership.held) == {0}  # partition 1's tables still serve OTHER
    assert world.ownership.owned() == {1}
    await world.ownership.assigned(SOURCE, tps(2))
    assert world.dropped() == [{0}]
    assert world.ownership.owned() == {1, 2}


async def test_a_held_partition_taken_by_another_stream_of_this_worker_is_kept() -> None:
    world = World()
    await world.ownership.assigned(SOURCE, tps(0, 1))
    await world.ownership.revoked(SOURCE, tps(0, 1))
    await world.ownership.assigned(OTHER, tps(1, topic="views-by-user"))  # 1 is back, for OTHER
    assert set(world.ownership.held) == {0}
    await world.ownership.assigned(SOURCE, tps(2))
    assert world.dropped() == [{0}]  # 0 went elsewhere; 1 is owned here, unchanged: kept
    assert world.ownership.owned() == {1, 2}


async def test_a_changed_partition_back_at_another_stream_is_dropped_before_it_recovers() -> None:
    world = World()
    await world.ownership.assigned(SOURCE, tps(4))
    await world.ownership.revoked(SOURCE, tps(4))
    world.transport.write("counts", 4, 3)
    await world.ownership.assigned(OTHER, tps(4, topic="views-by-user"))
    assert world.dropped() == [{4}]
    assert world.recovered()[-1] == {4}
    assert world.ownership.held == {}


# -- the consumer closes, or the app stops -------------------------------------------------------


async def test_final_revocation_drops_at_once_including_what_the_owner_held() -> None:
    world = World()
    await world.ownership.assigned(SOURCE, tps(0, 1, 2))
    await world.ownership.revoked(SOURCE, tps(2))  # a rebalance: 2 is held
    assert set(world.ownership.held) == {2}
    await world.ownership.revoked(SOURCE, tps(0, 1), final=True)  # the consumer closes
    assert world.dropped() == [{0, 1, 2}]
    assert world.ownership.owned() == set()


async def test_final_revocation_keeps_what_another_stream_owns() -> None:
    world = World()
    await world.ownership.assigned(SOURCE, tps(0, 1))
    await world.ownership.assigned(OTHER, tps(1, topic="views-by-user"))
    await world.ownership.revoked(SOURCE, tps(0, 1), final=True)
    assert world.dropped() == [{0}]
    assert world.ownership.owned() == {1}


async def test_final_revocation_leaves_other_owners_held_partitions() -> None:
    world = World()
    await world.ownership.assigned(SOURCE, tps(0))
    await world.ownership.assigned(OTHER, tps(1, topic="views-by-user"))
    await world.ownership.revoked(OTHER, tps(1))  # OTHER is mid-rebalance
    await world.ownership.revoked(SOURCE, tps(0), final=True)
    assert world.dropped() == [{0}]
    assert set(world.ownership.held) == {1}  # OTHER's next assignment decides


async def test_revocations_while_the_app_stops_drop_nothing() -> None:
    world = World()
    await world.ownership.assigned(SOURCE, tps(0, 1))
    world.running = False  # the app stops: tables stay as they are (the next start recovers)
    await world.ownership.revoked(SOURCE, tps(0, 1), final=True)
    assert world.dropped() == [] and world.ownership.held == {}
    assert world.ownership.owned() == set()


async def test_clear_forgets_owners_and_held_partitions() -> None:
    world = World()
    await world.ownership.assigned(SOURCE, tps(0, 1))
    await world.ownership.revoked(SOURCE, tps(1))
    world.ownership.clear()
    assert world.ownership.owned() == set() and world.ownership.held == {} and world.ownership.by_owner == {}
    await world.ownership.assigned(SOURCE, tps(0))  # nothing held: nothing to drop
    assert world.dropped() == []


async def test_changelog_ends_are_asked_only_for_held_partitions() -> None:
    world = World()
    await world.ownership.assigned(SOURCE, tps(0, 1, 2))
    assert world.transport.asked == []  # a plain assignment asks nothing
    await world.ownership.revoked(SOURCE, tps(1, 2))
    names = ["counts-changelog", "totals-changelog"]
    assert world.transport.asked == [{TP(n, p) for n in names for p in (1, 2)}]
    await world.ownership.assigned(SOURCE, tps(1))
    assert world.transport.asked[-1] == {TP(n, 1) for n in names}
    assert world.dropped() == [{2}]
