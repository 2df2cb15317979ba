"""Run the tutorial notebooks and keep their outputs for the documentation site.

    python scripts/execute_notebooks.py [NAME.ipynb ...] [--to build/executed]

Each notebook runs top to bottom in a fresh kernel (nbclient), in a
temporary folder (the local:// folders it makes stay out of the checkout),
importing streamnb from this checkout. The executed copy goes to ``--to``
(``build/executed/``, ignored by git; nothing with outputs is committed).
``mkdocs build`` (``scripts/mkdocs_hooks.py``) then renders those copies
instead of the committed notebooks, which have no outputs: the live tables
and charts as the static final state they froze into, every printed line.

For a site that any browser shows offline, the copies keep no widget state
and no widget outputs: an output that is a widget and something else keeps
the something else (a live view's HTML table or SVG), a widget alone
becomes its text. ``03_kafka.ipynb`` needs Kafka and restarts its kernel
halfway: it is left out (the site shows it without outputs). 06 runs
without Kafka (``STREAMNB_KAFKA=none``) unless one is named.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
DEFAULT_TARGET = ROOT / "build" / "executed"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
RESTART_MARK = "## part 2: restart the kernel"


def without_widgets(nb: Any) -> Any:
    """``nb`` with no widget state and no widget outputs (see the module docstring)."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data")
            if not data or WIDGET_VIEW not in data:
                continue
            del data[WIDGET_VIEW]
            if not data:
                data["text/plain"] = ""
            output.get("metadata", {}).pop(WIDGET_VIEW, None)
    return nb


def runs_alone(path: Path) -> bool:
    """False for a notebook that restarts its kernel halfway (03: Kafka, then a restart)."""
    return RESTART_MARK not in path.read_text()


def execute(name: str, target: Path, timeout: int = 300) -> Path:
    """Run ``notebooks/name`` and write the executed copy (without widgets) into ``target``."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.setdefault("STREAMNB_KAFKA", "none")
    with tempfile.TemporaryDirectory(prefix="streamnb-docs-") as cwd:
        client = NotebookClient(
            nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": cwd}},
            store_widget_state=False,
        )
        client.execute(env=env, cwd=cwd)
    target.mkdir(parents=True, exist_ok=True)
    out = target / name
    nbformat.write(without_widgets(nb), out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebooks to run (default: every one that can run here)")
    parser.add_argument("--to", type=Path, default=DEFAULT_TARGET, help="where the executed copies go")
    args = parser.parse_args(argv)
    names = args.names or sorted(p.name for p in NOTEBOOKS.glob("*.ipynb") if runs_alone(p))
    for name in names:
        if not (NOTEBOOKS / name).exists():
            parser.error(f"no notebook {name!r} in {NOTEBOOKS}")
        if not runs_alone(NOTEBOOKS / name):
            parser.error(f"{name} restarts its kernel halfway: tests/notebook runs it")
    for name in names:
        print(f"running {name} ...", flush=True)
        print(f"  -> {execute(name, args.to)}")
    left_out = sorted({p.name for p in NOTEBOOKS.glob("*.ipynb")} - set(names))
    if left_out and not args.names:
        print("not run (the site shows them without outputs):", ", ".join(left_out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
