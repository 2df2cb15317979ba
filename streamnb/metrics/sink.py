"""What the parts that know the numbers call: a small protocol, and its no-op.

Sources, commits, dead letters, agents and topics report through a
:class:`Monitor` (the app's ``app.monitor``): once per batch, per commit, per
crash, per rebalance, never per event. :data:`NO_MONITOR` does nothing (an
app made with ``metrics=False``); its :attr:`~Monitor.enabled` is False so
callers can skip work done only for the numbers.

Example (any object with these members will do)::

    >>> NO_MONITOR.enabled
    False
    >>> NO_MONITOR.processed("count", 100, 0.002)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

__all__ = ["NO_MONITOR", "OUTCOMES", "Monitor", "NullMonitor"]

OUTCOMES = ("committed", "aborted", "fenced")
"""The outcomes of an exactly-once transaction."""


class Monitor(Protocol):
    """Where the numbers go (:class:`~streamnb.metrics.registry.Metrics` implements it)."""

    @property
    def enabled(self) -> bool:
        """False when nothing is recorded (skip computing what would only be reported)."""
        ...

    def processed(self, agent: str, events: int, seconds: float) -> None:
        """``agent`` finished a batch of ``events`` in ``seconds`` (negative: not timed)."""
        ...

    def committed(self, agent: str, seconds: float, sent: Mapping[str, int]) -> None:
        """A commit of ``agent`` landed after ``seconds``, writing ``sent`` records by topic."""
        ...

    def sent(self, topic: str, count: int) -> None:
        """``count`` messages were written to ``topic`` outside any commit."""
        ...

    def dead_lettered(self, agent: str, count: int) -> None:
        """``count`` events of ``agent`` went to its dead-letter topic (their commit landed)."""
        ...

    def crashed(self, agent: str) -> None:
        """``agent`` crashed (it restarts from its last commit)."""
        ...

    def rebalanced(self, agent: str) -> None:
        """A consumer of ``agent`` received an assignment."""
        ...

    def transactions(self, agent: str, outcome: str, count: int) -> None:
        """Exactly-once: ``count`` transactions of ``agent`` ended with ``outcome`` (one of :data:`OUTCOMES`)."""
        ...


class NullMonitor:
    """A :class:`Monitor` that records nothing."""

    enabled = False

    def processed(self, agent: str, events: int, seconds: float) -> None:
        """Nothing."""

    def committed(self, agent: str, seconds: float, sent: Mapping[str, int]) -> None:
        """Nothing."""

    def sent(self, topic: str, count: int) -> None:
        """Nothing."""

    def dead_lettered(self, agent: str, count: int) -> None:
        """Nothing."""

    def crashed(self, agent: str) -> None:
        """Nothing."""

    def rebalanced(self, agent: str) -> None:
        """Nothing."""

    def transactions(self, agent: str, outcome: str, count: int) -> None:
        """Nothing."""


NO_MONITOR = NullMonitor()
"""The monitor of an app without metrics."""
