"""Helpers for the notebook tests: a real IPython shell, notebooks run in a real kernel."""

from __future__ import annotations

import asyncio
import textwrap
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from IPython.core.interactiveshell import ExecutionResult, InteractiveShell
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

REPO = Path(__file__).resolve().parents[2]


class Shell:
    """An InteractiveShell with ``%load_ext streamnb``, run cell by cell as in a kernel."""

    def __init__(self, shell: InteractiveShell) -> None:
        self.shell = shell

    @property
    def ns(self) -> dict[str, Any]:
        return self.shell.user_ns

    async def run(self, cell: str) -> ExecutionResult:
        cell = textwrap.dedent(cell).strip("\n") + "\n"
        return await self.shell.run_cell_async(cell, transformed_cell=self.shell.transform_cell(cell))

    async def ok(self, cell: str) -> Any:
        """Run a cell that must succeed; return its result value."""
        result = await self.run(cell)
        if not result.success:
            raise AssertionError(f"cell failed: {result.error_before_exec or result.error_in_exec!r}\n{cell}")
        return result.result


async def _shell() -> AsyncIterator[Shell]:
    """A shell with the extension loaded and an empty namespace; its apps (and live views) are stopped afterwards."""
    import streamnb

    shell = InteractiveShell.instance()
    shell.reset(new_session=False)
    shell.run_line_magic("load_ext", "streamnb")
    yield Shell(shell)
    for value in list(shell.user_ns.values()):
        if isinstance(value, streamnb.App):
            await value.stop()
    for value in list(shell.user_ns.values()):
        close = getattr(value, "close", None)
        if callable(close) and type(value).__module__.startswith("streamnb.notebook"):
            close()
    shell.run_line_magic("unload_ext", "streamnb")
    shell.reset(new_session=False)
    await asyncio.sleep(0)


shell_fixture = pytest.fixture(_shell, name="ipy")
"""The ``ipy`` fixture: a test module uses it with ``ipy = shell_fixture``."""


def memory_url() -> str:
    return f"memory://nbtest-{uuid.uuid4().hex[:12]}"


# -- kernels ---------------------------------------------------------------------------------------


def notebook(*cells: str, allow_errors: tuple[int, ...] = ()) -> nbformat.NotebookNode:
    """A notebook of code cells; cells whose index is in ``allow_errors`` may raise."""
    nb = new_notebook(cells=[new_code_cell(textwrap.dedent(c).strip("\n")) for c in cells])
    for index in allow_errors:
        nb.cells[index].metadata["tags"] = ["raises-exception"]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def client(nb: nbformat.NotebookNode, path: Path) -> NotebookClient:
    return NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(path)}})


def execute(nb: nbformat.NotebookNode, path: Path) -> nbformat.NotebookNode:
    """Run every cell in a fresh kernel (cwd ``path``); a failing cell fails the test."""
    client(nb, path).execute()
    return nb


def text_of(cell: nbformat.NotebookNode) -> str:
    """Everything a cell printed (streams and plain-text results)."""
    out = []
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            out.append(output.text)
        elif output.output_type in ("execute_result", "display_data"):
            out.append(output.data.get("text/plain", ""))
        elif output.output_type == "error":
            out.append(f"{output.ename}: {output.evalue}")
    return "".join(out)


def html_tables(html: str, css_class: str | None = None) -> list[list[list[str]]]:
    """The tables in an HTML text (of that CSS class): for each, its rows (header first) as lists of cell texts."""
    from html.parser import HTMLParser

    tables: list[list[list[str]]] = []

    class Cells(HTMLParser):
        cell: list[str] | None = None
        inside = False

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag == "table":
                classes = (dict(attrs).get("class") or "").split()
                self.inside = css_class is None or css_class in classes
                if self.inside:
                    tables.append([])
            elif not self.inside:
                return
            elif tag == "tr" and tables:
                tables[-1].append([])
            elif tag in ("td", "th"):
                self.cell = []

        def handle_endtag(self, tag: str) -> None:
            if tag == "table":
                self.inside = False
            if tag in ("td", "th") and self.cell is not None and tables and tables[-1]:
                tables[-1][-1].append("".join(self.cell).strip())
                self.cell = None

        def handle_data(self, data: str) -> None:
            if self.cell is not None:
                self.cell.append(data)

    Cells().feed(html)
    return tables


def table_dict(html: str, index: int = 0, css_class: str | None = None) -> dict[str, int]:
    """``{key: value}`` of the ``index``-th key/value table (of that CSS class) in an HTML text (values as ints)."""
    rows = html_tables(html, css_class)[index]
    header, body = rows[0], rows[1:]
    k, v = header.index("key"), header.index("value")
    return {row[k]: int(row[v]) for row in body}
