"""``%streamnb``, ``%peek`` and ``%%produce`` before ``%load_ext streamnb``: the first use loads it.

Importing streamnb in an IPython shell (a Jupyter kernel) registers small
stand-ins for the magics, without importing the notebook layer. The first
one used loads the extension (as ``%load_ext streamnb`` does), says so,
and runs the real magic. Magics another extension already defines under
these names are left alone.

>>> register(None)  # outside IPython: nothing to do
False
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

__all__ = ["MAGICS", "register", "register_in_ipython"]

MAGICS = (("line", "streamnb"), ("line", "peek"), ("cell", "produce"))
"""streamnb's magics: ``(kind, name)``."""

HINT = (
    "streamnb: loaded the magics on first use; put `%load_ext streamnb` in an early cell, "
    "so that `%streamnb start` and `%peek` wait in their own cells"
)


def register_in_ipython() -> bool:
    """Register the stand-ins if streamnb is imported in an IPython shell (IPython already imported)."""
    ipython = sys.modules.get("IPython")
    get = getattr(ipython, "get_ipython", None)
    return register(get() if get is not None else None)


def register(shell: Any) -> bool:
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
