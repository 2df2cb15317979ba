"""App signals: functions called when partitions move (Faust's ``app.on_rebalance_complete`` and friends).

Example::

    @app.on_rebalance_complete.connect
    async def tally(sender, **kwargs):
        print(counts.as_ansitable(key="word", value="count"))

A receiver is called as ``receiver(sender, signal=..., **arguments)``
(``sender`` is the app) and may be ``async``. A receiver that raises is
logged; the others still run and the app goes on.

The app's signals: ``on_partitions_assigned`` (``assigned=`` a set of
topic partitions), ``on_partitions_revoked`` (``revoked=``),
``on_rebalance_start`` and ``on_rebalance_complete``. An agent's consumer
gets its partitions when it starts, on every broker, so
``on_rebalance_complete`` also runs once each agent is running.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

__all__ = ["Signal"]

logger = logging.getLogger("streamnb")


class Signal:
    """A named event receivers connect to.

    >>> signal = Signal("on_ready")
    >>> @signal.connect
    ... def ready(sender, **kwargs):
    ...     print("ready:", sender)
    >>> signal.receivers == [ready]
    True
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.receivers: list[Callable[..., Any]] = []

    def connect(self, fun: Callable[..., Any] | None = None) -> Any:
        """Call ``fun(sender, signal=..., **arguments)`` on every send (as ``@signal.connect`` or ``(...)()``)."""

        def decorator(f: Callable[..., Any]) -> Callable[..., Any]:
            if f not in self.receivers:
                self.receivers.append(f)
            return f

        return decorator(fun) if fun is not None else decorator

    def disconnect(self, fun: Callable[..., Any]) -> None:
        """Stop calling ``fun``."""
        if fun in self.receivers:
            self.receivers.remove(fun)

    async def send(self, sender: Any, **arguments: Any) -> None:
        """Call every receiver (awaiting the async ones); a failing receiver is logged."""
        for receiver in list(self.receivers):
            try:
                result = receiver(sender, signal=self, **arguments)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("receiver %r of %s failed", receiver, self.name)

    def __repr__(self) -> str:
        return f"<Signal {self.name} receivers={len(self.receivers)}>"
