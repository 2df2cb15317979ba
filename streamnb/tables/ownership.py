"""Which table partitions this worker owns, and what follows when that changes.

Every iterated stream reports the partitions its consumer is assigned. On
Kafka (``transport.distributed``) an assignment recovers those partitions of
every table from their changelogs before the agent sees their events, and a
revocation drops the partitions no consumer of this worker holds any more.
The embedded brokers recover everything at start and never revoke.

Example::

    >>> ownership = PartitionOwnership(app)  # doctest: +SKIP
    >>> await ownership.assigned(source, {TP("clicks", 0)})  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..transport.base import TP

if TYPE_CHECKING:
    from ..app import App

__all__ = ["PartitionOwnership"]


class PartitionOwnership:
    """Partition numbers held per owner (a stream's source), for one app."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.by_owner: dict[Any, set[int]] = {}

    def owned(self) -> set[int]:
        """Every partition number some consumer of this worker holds."""
        return set().union(*self.by_owner.values()) if self.by_owner else set()

    def clear(self) -> None:
        """Forget everything (the app stopped)."""
        self.by_owner.clear()

    def _distributed(self) -> bool:
        transport = self.app.transport
        return transport is not None and transport.distributed

    async def assigned(self, owner: Any, tps: set[TP]) -> None:
        """``owner`` got ``tps``: recover those table partitions (Kafka)."""
        parts = {tp.partition for tp in tps}
        self.by_owner.setdefault(owner, set()).update(parts)
        if self._distributed():
            for table in list(self.app.tables.values()):
                await table.recover(parts)

    async def revoked(self, owner: Any, tps: set[TP]) -> None:
        """``owner`` lost ``tps``: drop table partitions nobody here holds (Kafka)."""
        mine = self.by_owner.get(owner, set())
        mine.difference_update(tp.partition for tp in tps)
        if not mine:
            self.by_owner.pop(owner, None)
        if self._distributed() and self.app.state == "running":
            gone = {tp.partition for tp in tps} - self.owned()
            for table in self.app.tables.values():
                table._drop_partitions(gone)
