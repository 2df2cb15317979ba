"""Display hooks: how ``table.live()``, ``table.chart()`` and ``app.dashboard()`` reach the notebook layer.

The core never imports :mod:`streamnb.notebook` (it sits on top of
everything). The notebook layer registers its views here when it is
imported; the conveniences on tables and apps look them up with
:func:`show`. If nothing is registered yet, :func:`show` loads the
notebook layer once, by name: this is the one place the core refers to it.

The same goes for the magics: importing streamnb in an IPython shell (a
Jupyter kernel) registers small stand-ins for ``%streamnb``, ``%peek`` and
``%%produce`` (:func:`register_magics`), without importing the notebook
layer. The first one used loads the extension (as ``%load_ext streamnb``
does), says so, and runs the real magic. Magics another extension already
defines under these names are left alone.

>>> register("shout", lambda obj, **options: str(obj).upper())
>>> show("shout", "hi")
'HI'
>>> register_magics(None)  # outside IPython: nothing to do
False
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any

from .errors import ConfigurationError

__all__ = ["MAGICS", "NOTEBOOK_LAYER", "register", "register_magics", "register_magics_in_ipython", "show"]

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


# -- the magics before %load_ext ----------------------------------------------------------------

MAGICS = (("line", "streamnb"), ("line", "peek"), ("cell", "produce"))
"""streamnb's magics: ``(kind, name)``."""

HINT = (
    "streamnb: loaded the magics on first use; put `%load_ext streamnb` in an early cell, "
    "so that `%streamnb start` and `%peek` wait in their own cells"
)


def register_magics_in_ipython() -> bool:
    """Register the stand-ins if streamnb is imported in an IPython shell (IPython already imported)."""
    ipython = sys.modules.get("IPython")
    get = getattr(ipython, "get_ipython", None)
    return register_magics(get() if get is not None else None)


def register_magics(shell: Any) -> bool:
    """Register the stand-ins in ``shell`` for the magics it does not have yet; False without a shell."""
    if shell is None or not hasattr(shell, "magics_manager"):
        return False
    registry = shell.magics_manager.magics
    for kind, name in MAGICS:
        if name not in registry[kind]:
            shell.register_magic_function(_stand_in(shell, kind, name), magic_kind=kind, magic_name=name)
    return True


def _load(shell: Any) -> None:
    shell.extension_manager.load_extension("streamnb")
    print(HINT)


def _stand_in(shell: Any, kind: str, name: str) -> Callable[..., Any]:
    if kind == "line":

        def line_magic(line: str) -> Any:
            _load(shell)
            return shell.run_line_magic(name, line)

        line_magic.__doc__ = f"%{name}: loads streamnb's magics (%load_ext streamnb), then runs %{name}."
        return line_magic

    def cell_magic(line: str, cell: str) -> Any:
        _load(shell)
        return shell.run_cell_magic(name, line, cell)

    cell_magic.__doc__ = f"%%{name}: loads streamnb's magics (%load_ext streamnb), then runs %%{name}."
    return cell_magic
