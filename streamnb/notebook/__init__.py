"""streamnb in Jupyter: magics, live table views, the dashboard and live charts.

Example (in a notebook)::

    %load_ext streamnb
    %streamnb start
    counts.live(sort_by="value", top=10)      # live_table(counts, ...)
    per_minute.chart()                        # live_chart(per_minute)
    app.dashboard()                           # dashboard(app)
    await peek(app, "page_views", n=5)        # or: %peek page_views -n 5

Everything here runs on the kernel's own event loop: live widgets refresh
from background tasks that update widget traits (throttled) and stop when
closed or when their app stops.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "dashboard",
    "live_chart",
    "live_peek",
    "live_table",
    "load_ipython_extension",
    "peek",
    "unload_ipython_extension",
]

_LAZY = {
    "dashboard": ".dashboard",
    "live_chart": ".chart",
    "live_peek": ".peek",
    "live_table": ".views",
    "peek": ".peek",
}


def __getattr__(name: str) -> Any:
    """Import the widgets (and ipywidgets) only when first used."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'streamnb.notebook' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext streamnb`` (or ``%load_ext streamnb.notebook``): register the magics."""
    from .magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext streamnb``."""
    from .magics import unload_ipython_extension as unload

    unload(ipython)
