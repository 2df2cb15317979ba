"""Faust's ``app.flow_control`` and ``app.finalize()``, the names its testing guide's fixture uses.

Faust's guide sets up a test app like this; it runs unchanged here::

    @pytest.fixture()
    def test_app(event_loop):
        app.finalize()
        app.conf.store = "memory://"
        app.flow_control.resume()
        return app

:class:`FlowControl` suspends and resumes the flow of events into every agent
of the app (each agent commits what it processed, then waits); an agent
defined while the flow is suspended starts suspended. ``finalize()`` is
there for Faust's programs: an app's settings are final when ``App()``
returns, so there is nothing left to do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

__all__ = ["FlowControl", "FlowControlled"]


class Pausable(Protocol):
    """What flow control needs of an agent."""

    def pause(self) -> None: ...

    def resume(self) -> None: ...


class FlowControl:
    """Suspends and resumes the events flowing into an app's agents (Faust's ``app.flow_control``).

    >>> from streamnb import App
    >>> app = App("demo-flow", broker="memory://")
    >>> app.flow_control.suspend()
    >>> app.flow_control.is_active()
    False
    >>> app.flow_control.resume()
    >>> app.flow_control.is_active()
    True
    """

    def __init__(self, agents: Mapping[str, Pausable]) -> None:
        self._agents = agents
        self._active = True

    def is_active(self) -> bool:
        """True while events flow (not between :meth:`suspend` and :meth:`resume`)."""
        return self._active

    def suspend(self) -> None:
        """Pause every agent: each commits what it processed and takes no new event until :meth:`resume`."""
        self._active = False
        for agent in list(self._agents.values()):
            agent.pause()

    def resume(self) -> None:
        """Let events flow into every agent again."""
        self._active = True
        for agent in list(self._agents.values()):
            agent.resume()

    def clear(self) -> None:
        """Faust's name for :meth:`suspend`."""
        self.suspend()

    def joined(self, agent: Pausable) -> None:
        """An agent was (re)defined: it starts suspended while the flow is."""
        if not self._active:
            agent.pause()


class FlowControlled:
    """Base class of :class:`~streamnb.app.App`: ``flow_control`` and ``finalize()``."""

    agents: Mapping[str, Pausable]
    _flow_control: FlowControl | None = None

    @property
    def flow_control(self) -> FlowControl:
        """Suspend and resume every agent's events (Faust's ``app.flow_control``).

        >>> from streamnb import App
        >>> App("demo-flow", broker="memory://").flow_control.is_active()
        True
        """
        if self._flow_control is None:
            self._flow_control = FlowControl(self.agents)
        return self._flow_control

    def finalize(self) -> None:
        """Faust's ``app.finalize()``: the settings are final when ``App()`` returns, so it does nothing.

        >>> from streamnb import App
        >>> App("demo-final", broker="memory://").finalize()
        """
