"""A worker's share of the partitions: what an App's consumers hold, rebalances, the leader.

A mixin of :class:`~streamnb.app.App`. The agents' consumers report what
Kafka assigns and revokes (:meth:`Membership.partitions_assigned`,
:meth:`Membership.partitions_revoked`); the app keeps the table partitions
of what it holds (:class:`~streamnb.tables.ownership.PartitionOwnership`),
sends Faust's rebalance signals, and knows whether it is the leader (the
worker whose ``on_leader`` timers run). On the embedded brokers one worker
holds everything.

Example::

    @app.on_partitions_assigned.connect
    async def moved(app, assigned, **kwargs):
        print("now mine:", sorted(assigned), "tables keep", app.owned_partitions())
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .signals import Signal
from .tables.ownership import PartitionOwnership
from .transport.base import TP

if TYPE_CHECKING:
    from .agents import Agent
    from .tables.table import Table
    from .topics import Topic
    from .transport.base import Transport
    from .web import Web

__all__ = ["Membership"]


class Membership:
    """The partitions an App's consumers hold (a mixin of :class:`~streamnb.app.App`)."""

    state: str
    transport: Transport | None
    agents: dict[str, Agent]
    tables: dict[str, Table[Any, Any]]
    topics: dict[str, Topic[Any, Any]]
    web: Web

    def _init_membership(self) -> None:
        self.on_partitions_assigned = Signal("on_partitions_assigned")
        """Sent ``(app, assigned=set of TP)`` after a consumer got partitions and their tables recovered."""
        self.on_partitions_revoked = Signal("on_partitions_revoked")
        """Sent ``(app, revoked=set of TP)`` after a consumer lost partitions."""
        self.on_rebalance_start = Signal("on_rebalance_start")
        self.on_rebalance_complete = Signal("on_rebalance_complete")
        self._rebalancing: set[object] = set()  # consumers revoked and not yet assigned again
        self._partitions = PartitionOwnership(
            lambda: list(self.tables.values()), lambda: self.transport, lambda: self.state == "running"
        )
        self._held: dict[object, set[TP]] = {}  # topic partitions held, per consumer (leader election)

    def _forget_membership(self) -> None:
        """The app stopped: it holds nothing."""
        self._partitions.clear()
        self._held.clear()
        self._rebalancing.clear()

    async def partitions_assigned(self, owner: object, tps: set[TP]) -> None:
        """A consumer of this app got ``tps``: recover their table partitions (Kafka)."""
        self._held.setdefault(owner, set()).update(tps)
        await self._partitions.assigned(owner, tps)
        self.web.ownership_changed()
        await self.on_partitions_assigned.send(self, assigned=set(tps))
        self._rebalancing.discard(owner)
        if not self._rebalancing:
            await self.on_rebalance_complete.send(self)

    async def partitions_revoked(self, owner: object, tps: set[TP], *, final: bool = False) -> None:
        """A consumer of this app loses ``tps`` (``final``: it closes)."""
        held = self._held.get(owner)
        if held is not None:
            held.difference_update(tps)
            if not held:
                del self._held[owner]
        await self._partitions.revoked(owner, tps, final=final)
        self.web.ownership_changed()
        if not final and self.state == "running":
            if not self._rebalancing:
                await self.on_rebalance_start.send(self)
            self._rebalancing.add(owner)
        await self.on_partitions_revoked.send(self, revoked=set(tps))

    @property
    def rebalancing(self) -> bool:
        """True while a consumer of this app has lost its partitions and not got new ones yet."""
        return bool(self._rebalancing)

    def owned_partitions(self) -> set[int]:
        """Partition numbers this worker's consumers hold: the table partitions it keeps (all, off Kafka).

        >>> from streamnb import App
        >>> App("demo-owned", broker="memory://").owned_partitions()
        set()
        """
        return self._partitions.owned()

    def read_topics(self) -> list[Topic[Any, Any]]:
        """The topics the agents read: their own, and ``group_by``/``through`` topics once iterated."""
        names = dict.fromkeys(n for agent in self.agents.values() for n in agent.read_topics())
        return [self.topics[n] for n in names if n in self.topics]

    def is_leader(self) -> bool:
        """True on the worker that runs ``on_leader`` timers.

        On the embedded brokers every app is the leader; on Kafka it is the
        worker holding partition 0 of the first agent's topic.
        """
        transport = self.transport
        if transport is None or not transport.distributed:
            return True
        first = next(iter(self.agents.values()), None)
        if first is None:
            return False
        wanted = TP(first.channel.name, 0)
        return any(wanted in tps for tps in self._held.values())
