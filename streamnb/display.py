"""Display hooks: how ``table.live()``, ``table.chart()`` and ``app.dashboard()`` reach the notebook layer.

The core never imports :mod:`streamnb.notebook` (it sits on top of
everything). The notebook layer registers its views here when it is
imported; the conveniences on tables and apps look them up with
:func:`show`. If nothing is registered yet, :func:`show` loads the
notebook layer once, by name: this is the one place the core refers to it.

>>> register("shout", lambda obj, **options: str(obj).upper())
>>> show("shout", "hi")
'HI'
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from .errors import ConfigurationError

__all__ = ["NOTEBOOK_LAYER", "register", "show"]

NOTEBOOK_LAYER = "streamnb.notebook"
"""The package that registers the notebook views when imported."""

_VIEWS: dict[str, Callable[..., Any]] = {}


def register(name: str, factory: Callable[..., Any]) -> None:
    """Make ``factory(obj, **options)`` the view called ``name`` (registering again replaces it)."""
    _VIEWS[name] = factory


def show(name: str, obj: Any, **options: Any) -> Any:
    """The view ``name`` of ``obj`` (``live_table``, ``live_chart``, ``dashboard``, ...)."""
    factory = _VIEWS.get(name)
    if factory is None:
        importlib.import_module(NOTEBOOK_LAYER)  # registers the notebook views
        factory = _VIEWS.get(name)
    if factory is None:
        raise ConfigurationError(f"no view named {name!r}; known views: {', '.join(sorted(_VIEWS)) or 'none'}")
    return factory(obj, **options)
