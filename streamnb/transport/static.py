"""Static group membership for the embedded brokers (``memory://`` and ``local://``).

One process runs every member of a group, so no group protocol is needed:
member ``member`` of ``members`` owns partitions ``p % members == member`` of
each subscribed topic, and starts each at the group's committed offset (or the
start of the log). :class:`StaticConsumer` keeps that bookkeeping (the
assignment, the positions, a round-robin cursor and a wake-up event); each
backend adds how it fetches and commits.

Example::

    >>> static_assignment(["a", "b"], {"a": 4, "b": 2}.get, member=1, members=2)
    [TP(topic='a', partition=1), TP(topic='a', partition=3), TP(topic='b', partition=1)]
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from .base import TP, Consumer, RebalanceListener, Transport

__all__ = ["StaticConsumer", "static_assignment"]


def static_assignment(
    topics: Sequence[str], partition_count: Callable[[str], int | None], member: int, members: int
) -> list[TP]:
    """Partitions ``p % members == member`` of each topic (in topic order; missing topics have none)."""
    assigned: list[TP] = []
    for name in topics:
        count = partition_count(name) or 0
        assigned.extend(TP(name, p) for p in range(count) if p % members == member)
    return assigned


class StaticConsumer(Consumer):
    """A statically assigned member of a consumer group (base of the embedded backends' consumers)."""

    def __init__(
        self,
        transport: Transport,
        group: str,
        topics: Sequence[str],
        listener: RebalanceListener,
        member: int,
        members: int,
    ) -> None:
        self.transport = transport
        self.group = group
        self.topics = list(topics)
        self.listener = listener
        self.member = member
        self.members = members
        self._assigned: list[TP] = []
        self._positions: dict[TP, int] = {}
        self._wakeup = asyncio.Event()
        self._next = 0

    async def _join(self, partition_count: Callable[[str], int | None]) -> None:
        """Take this member's partitions, await ``on_assigned``, then load the positions."""
        assigned = static_assignment(self.topics, partition_count, self.member, self.members)
        self._assigned = assigned
        await self.listener.on_assigned(set(assigned))
        committed = await self.transport.committed(self.group, assigned)
        beginnings = await self.transport.beginning_offsets(assigned)
        for tp in assigned:
            self._positions[tp] = committed.get(tp, beginnings[tp])

    async def _leave(self) -> None:
        """Await ``on_revoked`` with every assigned partition (nothing is committed here)."""
        await self.listener.on_revoked(set(self._assigned))
        self._assigned = []

    def assignment(self) -> set[TP]:
        return set(self._assigned)

    def seek(self, tp: TP, offset: int) -> None:
        self._positions[tp] = offset
