"""Fixtures for the notebook tests (helpers live in nbhelpers.py)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell
from nbhelpers import REPO, Shell


@pytest.fixture
async def ipy() -> AsyncIterator[Shell]:
    """A shell with the extension loaded and an empty namespace; its apps are stopped afterwards."""
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


@pytest.fixture
def kernel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kernels started by the test import streamnb from this checkout."""
    path = os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv("PYTHONPATH", str(REPO) + (os.pathsep + path if path else ""))


@pytest.fixture
def nb_dir(tmp_path: Path, kernel_env: None) -> Iterator[Path]:
    """A folder to run a notebook in (its cwd; local:// brokers go there)."""
    yield tmp_path
