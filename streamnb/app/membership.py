"""A worker's share of the partitions: what an App's consumers hold, rebalances, the leader.

A mixin of :class:`~streamnb.app.App`. The agents' consumers report what
Kafka assigns and revokes (:meth:`Membership.partitions_assigned`,
:meth:`Membership.partitions_revoked`); the app keeps the table partitions
of what it holds (:class:`~streamnb.tables.ownership.PartitionOwnership`),
sends Faust's rebalance signals, and knows whether it is the leader (the
worker whose ``on_leader`` timers run). On the embedded brokers one worker
holds everything.

At ``info`` it logs what an operator needs to follow a worker: one line
per consumer whose assignment changed, and one per rebalance, once every
consumer of the app has its partitions again (tables log their restores
in between)::

    INFO streamnb: count: assigned orders[0-1] (gained orders[1]; lost orders[2-3])
    INFO streamnb: table 'counts' restored partitions 1 from shop-counts-changelog: 5208 records in 0.21 s
    INFO streamnb: rebalance done in 0.84 s: this worker holds partitions 0-1 (was 0,2-3)

Example::

    @app.on_partitions_assigned.connect
    async def moved(app, assigned, **kwargs):
        print("now mine:", sorted(assigned), "tables keep", app.owned_partitions())
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from ..ranges import ranges, topic_ranges
from ..tables.ownership import PartitionOwnership
from ..tables.standby import StandbyReplicas
from ..transport.base import TP, LocalState
from .signals import Signal

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Coroutine
    from pathlib import Path

    from ..processing.agents import Agent
    from ..tables.table import Table
    from ..topics import Topic
    from ..transport.base import Transport
    from ..worker.web import Web

__all__ = ["Membership"]

logger = logging.getLogger("streamnb")


class Membership:
    """The partitions an App's consumers hold (a mixin of :class:`~streamnb.app.App`)."""

    state: str
    id: str
    datadir: Path
    table_standby_replicas: int
    transport: Transport | None
    agents: dict[str, Agent]
    tables: dict[str, Table[Any, Any]]
    topics: dict[str, Topic[Any, Any]]
    web: Web

    if TYPE_CHECKING:
        def spawn(self, coro: Coroutine[Any, Any, Any], what: str) -> asyncio.Task[Any] | None: ...

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
        self._assignments: dict[object, set[TP]] = {}  # the last assignment logged, per consumer
        self._rebalance_began: tuple[float, set[int]] | None = None  # when, and the partitions held then
        self.standbys = StandbyReplicas(
            lambda: list(self.tables.values()), lambda: self.transport, self.owned_partitions,
            replicas=self.table_standby_replicas, folder=self.datadir / self.id,
        )
        """The standby replicas this worker keeps (Kafka, ``rocksdb://`` tables; :mod:`streamnb.tables.standby`)."""

    def standby_hooks(self, owner: object) -> LocalState | None:
        """What ``owner``'s consumer tells its group about this worker's table state, else None.

        On Kafka, for an app with ``rocksdb://`` tables (their groups use
        streamnb's standby-aware assignor); the others keep Kafka's *range*.
        """
        transport = self.transport
        if transport is None or not transport.distributed or not self.standbys.stores():
            return None
        return self.standbys.hooks(owner)

    def _start_standbys(self) -> None:
        """Kafka: follow the changelogs of the standby replicas the groups' leaders name."""
        if self.standbys.replicas > 0 and any(s for s in self.standbys.stores()):
            self.spawn(self.standbys.follow(), "follow standby replicas")

    def standby_partitions(self) -> set[int]:
        """Partition numbers whose ``rocksdb://`` tables this worker keeps standby replicas of (Kafka).

        >>> from streamnb import App
        >>> App("demo-standby", broker="memory://").standby_partitions()
        set()
        """
        return self.standbys.partitions()

    def _forget_membership(self) -> None:
        """The app stopped: it holds nothing."""
        self._partitions.clear()
        self._held.clear()
        self._rebalancing.clear()
        self._assignments.clear()
        self._rebalance_began = None

    async def partitions_assigned(self, owner: object, tps: set[TP]) -> None:
        """A consumer of this app got ``tps``: recover their table partitions (Kafka)."""
        self._log_assignment(owner, tps)
        self._held.setdefault(owner, set()).update(tps)
        await self._partitions.assigned(owner, tps)
        self.web.ownership_changed()
        await self.on_partitions_assigned.send(self, assigned=set(tps))
        self._rebalancing.discard(owner)
        if not self._rebalancing:
            self._log_rebalance_done()
            await self.on_rebalance_complete.send(self)

    async def partitions_revoked(self, owner: object, tps: set[TP], *, final: bool = False) -> None:
        """A consumer of this app loses ``tps`` (``final``: it closes)."""
        owned_before = self._partitions.owned()
        held = self._held.get(owner)
        if held is not None:
            held.difference_update(tps)
            if not held:
                del self._held[owner]
        await self._partitions.revoked(owner, tps, final=final)
        self.web.ownership_changed()
        if final:
            self._assignments.pop(owner, None)
            self.standbys.forget(owner)
        if not final and self.state == "running":
            if not self._rebalancing:
                self._rebalance_began = (time.monotonic(), owned_before)
                await self.on_rebalance_start.send(self)
            self._rebalancing.add(owner)
        await self.on_partitions_revoked.send(self, revoked=set(tps))

    def _log_assignment(self, owner: object, tps: set[TP]) -> None:
        """One line when a consumer's assignment is new or differs from its last one."""
        before = self._assignments.get(owner)
        now = set(tps)
        self._assignments[owner] = now
        name = getattr(owner, "owner", None) or repr(owner)  # a Source: its agent's name
        if before is None:
            logger.info("%s: assigned %s", name, topic_ranges(now))
        elif before != now:
            changes = [f"gained {topic_ranges(now - before)}" if now - before else "",
                       f"lost {topic_ranges(before - now)}" if before - now else ""]
            logger.info("%s: assigned %s (%s)", name, topic_ranges(now), "; ".join(c for c in changes if c))

    def _log_rebalance_done(self) -> None:
        """One line per rebalance, once every consumer has its partitions (tables recovered)."""
        if self._rebalance_began is None:
            return
        began, before = self._rebalance_began
        self._rebalance_began = None
        now = self._partitions.owned()
        was = "unchanged" if now == before else f"was {ranges(before) or 'none'}"
        logger.info("rebalance done in %.2f s: this worker holds partitions %s (%s)",
                    time.monotonic() - began, ranges(now) or "none", was)

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
