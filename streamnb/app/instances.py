"""The Apps of this process: re-running the cell that makes an App replaces the earlier one.

:class:`Instances` is a base class of :class:`~streamnb.app.App`: each App
registers itself under its id and broker; a newer App with the same id and
broker stops the older one (committing) and becomes :meth:`current`.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Coroutine
from typing import Any, ClassVar, Self

__all__ = ["Instances"]


class Instances:
    """The process-wide registry of Apps, by id and broker (a base class of the App)."""

    _instances: ClassVar[dict[tuple[str, str], weakref.ref[Any]]] = {}
    id: str
    broker: str
    state: str

    def spawn(self, coro: Coroutine[Any, Any, Any], what: str) -> asyncio.Task[Any] | None:
        """Run ``coro`` in the background (the App's)."""
        raise NotImplementedError

    async def stop(self) -> None:
        """Stop the app (the App's)."""
        raise NotImplementedError

    def _replace_earlier_app(self) -> None:
        """Re-running the cell that makes the App replaces it: the old app stops (committing) first."""
        self._predecessor: asyncio.Task[Any] | None = None
        previous = type(self).current(self.id, self.broker)
        if previous is not None and previous.state in ("starting", "running"):
            self._predecessor = previous.spawn(previous.stop(), f"stop the previous app {self.id!r}")
        self._instances[(self.id, self.broker)] = weakref.ref(self)

    @classmethod
    def instances(cls) -> list[Self]:
        """Every App of this process still in use (the newest per id and broker).

        >>> from streamnb import App
        >>> app = App("demo-instances", broker="memory://")
        >>> app in App.instances()
        True
        """
        return [app for ref in list(cls._instances.values()) if (app := ref()) is not None]

    @classmethod
    def current(cls, id: str, broker: str) -> Self | None:
        """The newest App made with this id and broker, if it is still in use."""
        ref = cls._instances.get((id, broker))
        return ref() if ref is not None else None

    @property
    def is_current(self) -> bool:
        """False once a newer App with the same id and broker was made (a re-run notebook cell).

        >>> from streamnb import App
        >>> App("demo-current", broker="memory://").is_current
        True
        """
        newest = type(self).current(self.id, self.broker)
        return newest is None or newest is self
