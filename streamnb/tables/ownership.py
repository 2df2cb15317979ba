"""Which table partitions this worker owns, and what follows when that changes.

Every iterated stream reports the partitions its consumer is assigned. On
Kafka (``transport.distributed``) an assignment recovers those partitions of
every table from their changelogs before the agent sees their events, and a
revocation drops the partitions no consumer of this worker holds any more.
The embedded brokers recover everything at start and never revoke.

It sees the app through three callables (the tables, the transport, whether
the app runs), so it can be tested with a fake transport::

    >>> ownership = PartitionOwnership(lambda: [], lambda: None, lambda: True)
    >>> ownership.owned()
    set()
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from ..transport.base import TP, Transport

__all__ = ["OwnedTable", "PartitionOwnership"]


class _Named(Protocol):
    name: str


class OwnedTable(Protocol):
    """What ownership needs from a table (:class:`~streamnb.tables.table.Table`)."""

    @property
    def changelog(self) -> _Named:
        """The changelog topic (its name)."""
        ...

    async def recover(self, partitions: Iterable[int] | None = None) -> int:
        """Rebuild these partitions from the changelog."""
        ...

    def drop_partitions(self, partitions: set[int]) -> None:
        """Forget the rows of these partitions."""
        ...


class PartitionOwnership:
    """Partition numbers held per owner (a stream's source), for one app."""

    def __init__(
        self,
        tables: Callable[[], Iterable[OwnedTable]],
        transport: Callable[[], Transport | None],
        active: Callable[[], bool],
    ) -> None:
        self.tables = tables
        """The app's tables, now."""
        self.transport = transport
        """The app's open transport, if any."""
        self.active = active
        """True while the app runs (revocations during a stop drop nothing)."""
        self.by_owner: dict[Any, set[int]] = {}
        # Partitions a rebalance revoked, kept until the assignment that follows:
        # partition -> (owner that lost it, changelog end offset per table then).
        self.held: dict[int, tuple[Any, dict[str, int]]] = {}

    def owned(self) -> set[int]:
        """Every partition number some consumer of this worker holds."""
        return set().union(*self.by_owner.values()) if self.by_owner else set()

    def clear(self) -> None:
        """Forget everything (the app stopped)."""
        self.by_owner.clear()
        self.held.clear()

    def _distributed(self) -> bool:
        transport = self.transport()
        return transport is not None and transport.distributed

    async def assigned(self, owner: Any, tps: set[TP]) -> None:
        """``owner`` got ``tps``: recover those table partitions (Kafka).

        A partition revoked by the rebalance and assigned here again keeps its
        table rows when no other worker wrote its changelogs meanwhile (their
        end offsets did not move): Kafka's eager rebalance revokes every
        partition, and most come straight back.
        """
        parts = {tp.partition for tp in tps}
        self.by_owner.setdefault(owner, set()).update(parts)
        if self._distributed():
            await self._settle_held(owner, parts)
            for table in list(self.tables()):
                await table.recover(parts)

    async def revoked(self, owner: Any, tps: set[TP], *, final: bool = False) -> None:
        """``owner`` lost ``tps``: table partitions nobody here holds go (Kafka).

        Within a rebalance (``final=False``) they are held until the next
        assignment shows whether they come back; when the consumer closes,
        they are dropped at once.
        """
        mine = self.by_owner.get(owner, set())
        mine.difference_update(tp.partition for tp in tps)
        if not mine:
            self.by_owner.pop(owner, None)
        if self._distributed() and self.active():
            gone = {tp.partition for tp in tps} - self.owned()
            if final:
                gone |= {p for p, (who, _) in self.held.items() if who is owner} - self.owned()
                self._drop(gone)
            elif gone:
                ends = await self._changelog_ends(gone)
                for p in gone:
                    self.held[p] = (owner, ends[p])

    async def _settle_held(self, owner: Any, parts: set[int]) -> None:
        """Keep the held partitions that came back unchanged; drop the others ``owner`` held."""
        back = {p for p in self.held if p in parts}
        drop = {p for p, (who, _) in self.held.items() if who is owner and p not in parts} - self.owned()
        if back:
            now = await self._changelog_ends(back)
            drop |= {p for p in back if now[p] != self.held[p][1]}
        for p in back | drop:
            self.held.pop(p, None)
        self._drop(drop)

    def _drop(self, partitions: set[int]) -> None:
        if partitions:
            for table in list(self.tables()):
                table.drop_partitions(partitions)

    async def _changelog_ends(self, partitions: set[int]) -> dict[int, dict[str, int]]:
        """The end offset of each table's changelog, per partition number (-1: unknown)."""
        transport = self.transport()
        assert transport is not None
        names = [table.changelog.name for table in self.tables()]
        ends = await transport.end_offsets([TP(name, p) for name in names for p in partitions])
        return {p: {name: ends.get(TP(name, p), -1) for name in names} for p in partitions}
