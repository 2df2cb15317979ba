"""The package's layers point one way, and its module graph has no cycle.

Every ``import`` of a streamnb module counts: at module level, inside
functions, and under ``if TYPE_CHECKING:`` (a type-only import is still a
dependency a reader has to follow). The one dynamic reference to the
notebook layer lives in :mod:`streamnb.display` (by name, through
``importlib``), which is how the core's ``table.live()`` reaches it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "streamnb"

# Lowest first: one package per layer (and the few top-level modules every layer uses or
# users import by path). A module may import modules of its own layer or of lower ones; a
# module in a package that is not listed here, or in the wrong one, fails the test.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("errors", "naming", "display", "_gc", "ranges", "timeunits", "metrics")),
    ("transport", ("transport",)),
    ("data", ("codecs", "models", "avro")),
    ("channels", ("events", "transaction", "topics", "runtime")),
    ("processing", ("processing",)),
    ("state", ("tables",)),
    ("playback", ("playback",)),
    ("worker", ("worker", "cli")),
    ("application", ("app", "testing", "datagen", "faust_types", "__main__")),
    ("notebook", ("notebook",)),
]
TOP_LEVEL_MODULES = {
    "errors", "naming", "display", "_gc", "ranges", "timeunits", "events", "transaction", "topics",
    "runtime", "cli", "testing", "faust_types", "__main__",
}
"""What may stay a module beside the packages."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int | None:
    """The layer index of ``streamnb.x.y`` (None for the package root, the facade)."""
    parts = module.split(".")
    if len(parts) == 1:
        return None
    for index, (_name, prefixes) in enumerate(LAYERS):
        if parts[1] in prefixes:
            return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")


def imports_of(path: Path) -> set[str]:
    """Every streamnb module ``path`` imports, anywhere in the file."""
    return imports_in(path.read_text(), module_name(path), is_package=path.name == "__init__.py")


def imports_in(text: str, me: str, *, is_package: bool = False) -> set[str]:
    """Every streamnb module the source ``text`` of module ``me`` imports."""
    package = me if is_package else me.rpartition(".")[0]
    tree = ast.parse(text)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "streamnb")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "streamnb":
                continue
            found.add(target)
            for alias in node.names:  # `from . import naming` imports the module streamnb.naming
                candidate = f"{target}.{alias.name}"
                if _exists(candidate):
                    found.add(candidate)
    found.discard(me)
    return found


def _exists(module: str) -> bool:
    rel = Path(*module.split(".")[1:])
    return (PACKAGE / rel).with_suffix(".py").exists() or (PACKAGE / rel / "__init__.py").exists()


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_the_folders_are_the_layers() -> None:
    top = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    stray = sorted(top - TOP_LEVEL_MODULES)
    assert not stray, f"top-level modules that belong in a layer's package: {stray}"
    packages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    listed = {prefix for _name, prefixes in LAYERS for prefix in prefixes}
    assert packages <= listed, f"packages in no layer: {sorted(packages - listed)}"


def test_every_import_points_down_the_layers() -> None:
    back_edges = []
    for module, targets in graph().items():
        mine = layer_of(module)
        if mine is None:
            continue  # the package root re-exports the public API of every layer
        for target in targets:
            theirs = layer_of(target)
            if theirs is not None and theirs > mine:
                back_edges.append(f"{module} ({LAYERS[mine][0]}) imports {target} ({LAYERS[theirs][0]})")
    assert not back_edges, "imports against the layers:\n" + "\n".join(sorted(back_edges))


def test_nothing_outside_the_notebook_layer_imports_it() -> None:
    offenders = [
        f"{module} imports {target}"
        for module, targets in graph().items()
        if not module.startswith("streamnb.notebook")
        for target in targets
        if target.startswith("streamnb.notebook")
    ]
    assert not offenders, offenders


def test_the_module_graph_has_no_cycle() -> None:
    edges = graph()
    # A package's __init__ re-exporting its submodules is not a dependency of theirs on it.
    for module, targets in edges.items():
        edges[module] = {t for t in targets if not module.startswith(t + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in edges:
                continue
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module)


def test_the_layer_test_sees_function_level_and_type_only_imports() -> None:
    text = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from .app import App\n"
        "def f():\n    from .notebook import views\n    import streamnb.tables.table\n"
    )
    found = imports_in(text, "streamnb.events")
    assert {"streamnb.app", "streamnb.notebook", "streamnb.notebook.views", "streamnb.tables.table"} <= found
