"""Every tutorial notebook runs top to bottom in a real kernel (its cells assert).

Each notebook is copied to a temporary folder and executed there with
nbclient, so the local:// broker folders it makes never touch the checkout.
The Kafka notebook runs its part 1, restarts the kernel and runs part 2,
which checks that the table came back from its changelog.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import kafka_bootstrap

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
LOCAL = ["01_quickstart.ipynb", "02_windows_explained.ipynb", "04_testing_agents.ipynb"]
KAFKA = "03_kafka.ipynb"
RESTART_MARK = "restart the kernel"

pytestmark = pytest.mark.notebook


def _kernel_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The kernel imports streamnb from this checkout, whatever is installed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(extra or {})
    return env


def _copy(name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copy(NOTEBOOKS / name, target)
    return target


def _client(nb: Any, cwd: Path, timeout: int = 180) -> NotebookClient:
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}},
        allow_errors=False,
    )
    client.kernel_manager_class = "jupyter_client.manager.AsyncKernelManager"
    return client


def _execute(client: NotebookClient, cells: list[int], env: dict[str, str]) -> None:
    """Start a kernel (with env) if needed and run the given cells in order."""
    import asyncio

    async def run() -> None:
        if client.km is None:
            client.km = client.create_kernel_manager()
        if not client.km.has_kernel:
            await client.async_start_new_kernel(env=env, cwd=client.resources["metadata"]["path"])
            await client.async_start_new_kernel_client()
        for index in cells:
            await client.async_execute_cell(client.nb.cells[index], index)

    asyncio.run(run())


def _shutdown(client: NotebookClient) -> None:
    import asyncio

    async def stop() -> None:
        if client.kc is not None:
            client.kc.stop_channels()
        if client.km is not None and client.km.has_kernel:
            await client.km.shutdown_kernel(now=True)

    asyncio.run(stop())


def _outputs_text(nb: Any) -> str:
    out = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            out.append(output.get("text", ""))
            out.append(str(output.get("data", {}).get("text/plain", "")))
    return "\n".join(out)


def test_every_notebook_is_tested() -> None:
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted([*LOCAL, KAFKA])


def _run_all(name: str, tmp_path: Path) -> Any:
    path = _copy(name, tmp_path)
    nb = nbformat.read(path, as_version=4)
    env = _kernel_env()
    client = _client(nb, tmp_path)
    try:
        _execute(client, list(range(len(nb.cells))), env)
    finally:
        _shutdown(client)
        nbformat.write(nb, path)  # the executed copy, to look at after a failure
    return nb


def test_quickstart(tmp_path: Path) -> None:
    nb = _run_all("01_quickstart.ipynb", tmp_path)
    # Outside a widget front end (nbconvert, GitHub) the chart still shows: an SVG snapshot.
    chart_cells = [c for c in nb.cells if c.cell_type == "code" and ".chart(" in c.source]
    assert chart_cells
    data = chart_cells[0].outputs[-1]["data"]
    assert "application/vnd.jupyter.widget-view+json" in data
    assert data["image/svg+xml"].lstrip().startswith("<svg")
    assert "sent 300 page views" in _outputs_text(nb)


def test_windows_explained(tmp_path: Path) -> None:
    nb = _run_all("02_windows_explained.ipynb", tmp_path)
    assert "image/svg+xml" in _outputs_text(nb) or any(
        "image/svg+xml" in o.get("data", {}) or "application/vnd.vegalite.v6+json" in o.get("data", {})
        for c in nb.cells for o in c.get("outputs", [])
    )


def test_testing_agents(tmp_path: Path) -> None:
    nb = _run_all("04_testing_agents.ipynb", tmp_path)
    assert "passed" in _outputs_text(nb)


@pytest.mark.kafka
def test_kafka_notebook_recovers_after_restart(tmp_path: Path) -> None:
    bootstrap = kafka_bootstrap()
    path = _copy(KAFKA, tmp_path)
    nb = nbformat.read(path, as_version=4)
    marks = [i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and RESTART_MARK in c.source.lower()]
    assert len(marks) == 1, "the Kafka notebook has one 'restart the kernel' markdown cell between its parts"
    split = marks[0]
    env = _kernel_env({"STREAMNB_KAFKA": bootstrap, "STREAMNB_KAFKA_APP": f"nbtest-{os.getpid()}-{tmp_path.name}"})
    client = _client(nb, tmp_path)
    try:
        _execute(client, list(range(split)), env)
        # "Kernel > Restart kernel": everything in memory is gone.
        _shutdown(client)
        client.km = None
        client.kc = None
        _execute(client, list(range(split + 1, len(nb.cells))), env)
    finally:
        _shutdown(client)
    assert "recovered" in _outputs_text(nb)
