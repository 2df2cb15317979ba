"""streamnb in Jupyter: magics, live table views, the dashboard and live charts.

Example (in a notebook)::

    %load_ext streamnb
    %streamnb start
    counts.live(sort_by="value", top=10)      # live_table(counts, ...)
    per_minute.chart()                        # live_chart(per_minute)
    app.dashboard()                           # dashboard(app)
    app.player()                              # player(app): drives a replay's virtual clock
    await peek(app, "page_views", n=5)        # or: %peek page_views -n 5

Everything here runs on the kernel's own event loop: live widgets refresh
from background tasks that update widget traits (throttled) and stop when
closed or when their app stops.
"""

from __future__ import annotations

from typing import Any

from .. import display

# Imported here, not lazily: ``dashboard`` and ``peek`` are both a module and
# the function it defines, and the package attribute must stay the function.
from .dashboard import dashboard
from .exercises import check
from .peek import live_peek, peek
from .player import player
from .progress import progress_bar
from .views import live_table

__all__ = [
    "check",
    "dashboard",
    "live_chart",
    "live_peek",
    "live_table",
    "load_ipython_extension",
    "peek",
    "player",
    "unload_ipython_extension",
]


def _live_chart(table: Any, **options: Any) -> Any:
    from .chart import live_chart

    return live_chart(table, **options)


# What ``table.live()``, ``table.chart()`` and ``app.dashboard()`` call (see streamnb.display).
display.register("live_table", live_table)
display.register("live_chart", _live_chart)
display.register("dashboard", dashboard)
display.register("player", player)
display.register("progress", progress_bar)


def __getattr__(name: str) -> Any:
    """``live_chart`` is imported (with Altair) only when first used."""
    if name != "live_chart":
        raise AttributeError(f"module 'streamnb.notebook' has no attribute {name!r}")
    from .chart import live_chart

    globals()["live_chart"] = live_chart
    return live_chart


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext streamnb`` (or ``%load_ext streamnb.notebook``): register the magics."""
    from .magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext streamnb``."""
    from .magics import unload_ipython_extension as unload

    unload(ipython)
