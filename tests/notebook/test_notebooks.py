"""Every tutorial notebook runs top to bottom in a real kernel (its cells assert).

Each notebook is copied to a temporary folder and executed there with
nbclient, so the local:// broker folders it makes never touch the checkout.
The Kafka notebook runs its part 1, restarts the kernel and runs part 2,
which checks that the table came back from its changelog.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from conftest import kafka_bootstrap
from nbclient import NotebookClient
from nbhelpers import table_dict

from streamnb.notebook.exercises import RIGHT

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
LOCAL = [
    "01_quickstart.ipynb", "02_windows_explained.ipynb", "04_testing_agents.ipynb", "05_event_time.ipynb",
    "07_joins.ipynb",
]
KAFKA = "03_kafka.ipynb"
REPLAY = "06_replay_and_time_travel.ipynb"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
RESTART_MARK = "## part 2: restart the kernel"

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
    return client


async def _start(client: NotebookClient, env: dict[str, str]) -> None:
    client.km = client.create_kernel_manager()
    await client.async_start_new_kernel(env=env, cwd=client.resources["metadata"]["path"])
    await client.async_start_new_kernel_client()


async def _run_cells(client: NotebookClient, cells: range) -> None:
    for index in cells:
        await client.async_execute_cell(client.nb.cells[index], index)


async def _stop(client: NotebookClient) -> None:
    if client.kc is not None:
        client.kc.stop_channels()
        client.kc = None
    if client.km is not None and client.km.has_kernel:
        await client.km.shutdown_kernel(now=True)  # type: ignore[misc]  # an AsyncKernelManager
    client.km = None


def _outputs_text(nb: Any) -> str:
    out = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            out.append(output.get("text", ""))
            out.append(str(output.get("data", {}).get("text/plain", "")))
    return "\n".join(out)


def test_every_notebook_is_tested() -> None:
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted([*LOCAL, KAFKA, REPLAY])


@pytest.mark.parametrize("name", [*LOCAL, KAFKA, REPLAY])
def test_notebooks_end_with_exercises_a_cell_can_check(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    exercises = [i for i, c in enumerate(nb.cells) if "exercise" in c.metadata.get("tags", [])]
    assert 2 <= len(exercises) <= 3, name
    for index in exercises:
        assert "None" in nb.cells[index].source  # blank for the learner...
        assert nb.cells[index].metadata["streamnb"]["reference"]  # ...with a reference answer for the suite
        assert "check(" in nb.cells[index + 1].source  # the cell that says whether it is right
    assert any(c.cell_type == "markdown" and "## Try this" in c.source for c in nb.cells)


def _with_reference_answers(nb: Any) -> list[int]:
    """Fill every exercise cell (tagged ``exercise``) with its reference answer; their indexes."""
    exercises = []
    for index, cell in enumerate(nb.cells):
        if "exercise" in cell.get("metadata", {}).get("tags", []):
            cell.source = cell.metadata["streamnb"]["reference"]
            exercises.append(index)
    return exercises


def _assert_exercises_right(nb: Any, exercises: list[int]) -> None:
    """The cell after each exercise, its check, says right (the answers are the reference ones)."""
    said = ["".join(o.get("text", "") for o in nb.cells[i + 1].outputs if o.output_type == "stream") for i in exercises]
    assert all(text.strip() == RIGHT for text in said), said


def _run_all(name: str, tmp_path: Path, env: dict[str, str] | None = None) -> Any:
    path = _copy(name, tmp_path)
    nb = nbformat.read(path, as_version=4)
    exercises = _with_reference_answers(nb)
    client = _client(nb, tmp_path)

    async def run() -> None:
        await _start(client, _kernel_env(env))
        try:
            await _run_cells(client, range(len(nb.cells)))
        finally:
            await _stop(client)
            nbformat.write(nb, path)  # the executed copy, to look at after a failure

    asyncio.run(run())
    _assert_offline(nb)
    _assert_exercises_right(nb, exercises)
    return nb


def _assert_offline(nb: Any) -> None:
    """No output loads JavaScript from a CDN (charts must work offline)."""
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            html = str(output.get("data", {}).get("text/html", ""))
            for cdn in ("cdn.jsdelivr.net", "unpkg.com", "esm.sh", "cdnjs"):
                assert cdn not in html, f"an output of cell {cell.source[:60]!r} loads from {cdn}"


def test_quickstart(tmp_path: Path) -> None:
    nb = _run_all("01_quickstart.ipynb", tmp_path)
    assert "sent 300 page views" in _outputs_text(nb)
    # Once the app stopped, the live views' outputs are their final state, static (what a file shows).
    (table_cell,) = [c for c in nb.cells if c.cell_type == "code" and ".live(" in c.source]
    (chart_cell,) = [c for c in nb.cells if c.cell_type == "code" and ".chart(" in c.source]
    table, chart = table_cell.outputs[-1]["data"], chart_cell.outputs[-1]["data"]
    assert WIDGET_MIME not in table and WIDGET_MIME not in chart
    counts = table_dict(table["text/html"])
    assert sum(counts.values()) == 300 and "not updating (app stopped)" in table["text/html"]
    svg = chart["image/svg+xml"]
    assert svg.lstrip().startswith("<svg") and "no event yet" not in svg
    assert all(page in svg for page in counts)  # a line per page


def test_quickstart_converted_to_html_shows_the_final_views(tmp_path: Path) -> None:
    """What a reader without a kernel sees: `jupyter nbconvert --to html --execute` (offline)."""
    path = _copy("01_quickstart.ipynb", tmp_path)
    jupyter = Path(sys.executable).with_name("jupyter")
    subprocess.run(
        [str(jupyter), "nbconvert", "--to", "html", "--execute", path.name],
        cwd=tmp_path, env=_kernel_env(), check=True, capture_output=True, timeout=300,
    )
    html = (tmp_path / "01_quickstart.html").read_text()
    counts = table_dict(html, css_class="streamnb-table")  # the live table, frozen at the end
    assert sum(counts.values()) == 300 and len(counts) == 6, counts
    assert "not updating (app stopped)" in html
    images = re.findall(r'data-mime-type="image/svg\+xml".*?src="data:image/svg\+xml;base64,([^"]+)"', html, re.DOTALL)
    svgs = [base64.b64decode(image).decode() for image in images]
    charts = [svg for svg in svgs if "stream time" in svg]  # the live chart's title
    assert len(charts) == 1 and "no event yet" not in charts[0]
    assert all(page in charts[0] for page in counts)  # a line (and a legend entry) per page
    assert f'<script type="{WIDGET_MIME}">' not in html  # no output waits for widget scripts from a CDN


def test_windows_explained(tmp_path: Path) -> None:
    nb = _run_all("02_windows_explained.ipynb", tmp_path)
    mimes = {m for c in nb.cells for o in c.get("outputs", []) for m in o.get("data", {})}
    assert "image/svg+xml" in mimes, mimes  # the window pictures, drawn offline
    assert "application/vnd.jupyter.widget-view+json" in mimes  # the sliders and the live chart


def test_exercise_checks_say_when_an_answer_is_missing_or_wrong(tmp_path: Path) -> None:
    path = _copy("02_windows_explained.ipynb", tmp_path)
    nb = nbformat.read(path, as_version=4)
    exercises = [i for i, c in enumerate(nb.cells) if "exercise" in c.metadata.get("tags", [])]
    nb.cells[exercises[0]].source = "n_windows = 2  # a wrong answer"  # the second stays blank
    client = _client(nb, tmp_path)

    async def run() -> None:
        await _start(client, _kernel_env())
        try:
            await _run_cells(client, range(len(nb.cells)))
        finally:
            await _stop(client)

    asyncio.run(run())
    said = ["".join(o.get("text", "") for o in nb.cells[i + 1].outputs) for i in exercises]
    assert said[0].startswith("❌ not yet: got 2") and said[1].startswith("✏️  no answer yet"), said


def test_testing_agents(tmp_path: Path) -> None:
    nb = _run_all("04_testing_agents.ipynb", tmp_path)
    assert "2 passed, 0 failed" in _outputs_text(nb)


def test_event_time(tmp_path: Path) -> None:
    nb = _run_all("05_event_time.ipynb", tmp_path)
    text = _outputs_text(nb)
    assert "stream time 31, late events 4" in text
    assert "sliding and session windows as expected; 1 late click" in text
    outputs = [o.get("data", {}) for c in nb.cells for o in c.get("outputs", [])]
    svgs = [data["image/svg+xml"] for data in outputs if "image/svg+xml" in data]
    assert len(svgs) >= 8, len(svgs)  # a picture per section, and static snapshots of the live charts
    # The live charts drawn after the events show the stream time and the late events.
    assert any("stream time" in svg and "4 late events" in svg for svg in svgs)
    assert any("sessions" in svg and "1 late event" in svg for svg in svgs)
    # The live charts and the dashboard froze into their final static forms when their apps stopped.
    assert not any(WIDGET_MIME in data for data in outputs)
    assert any("<td>count_clicks</td><td>stopped</td><td>9</td>" in data.get("text/html", "") for data in outputs)


@pytest.mark.kafka
def test_joins(tmp_path: Path) -> None:
    nb = _run_all("07_joins.ipynb", tmp_path)
    text = _outputs_text(nb)
    assert "TableWriteError" in text and "order a3" in text
    svgs = [o for c in nb.cells for o in c.get("outputs", []) if "image/svg+xml" in o.get("data", {})]
    assert svgs  # the picture of each record's join window


def test_kafka_notebook_recovers_after_restart(tmp_path: Path) -> None:
    bootstrap = kafka_bootstrap()
    path = _copy(KAFKA, tmp_path)
    nb = nbformat.read(path, as_version=4)
    exercises = _with_reference_answers(nb)
    marks = [i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and RESTART_MARK in c.source.lower()]
    assert len(marks) == 1, "the Kafka notebook has one '## Part 2: restart the kernel' markdown cell between its parts"
    split = marks[0]
    env = _kernel_env({"STREAMNB_KAFKA": bootstrap})
    client = _client(nb, tmp_path)

    async def run() -> None:
        await _start(client, env)
        try:
            await _run_cells(client, range(split))
            # What "Kernel > Restart Kernel" does: everything in memory is gone.
            await _stop(client)
            await _start(client, env)
            await _run_cells(client, range(split + 1, len(nb.cells)))
        finally:
            await _stop(client)
            nbformat.write(nb, path)

    asyncio.run(run())
    _assert_offline(nb)
    _assert_exercises_right(nb, exercises)
    assert len(exercises) == 2
    assert "recovered" in _outputs_text(nb)


def test_replay_and_time_travel_without_kafka(tmp_path: Path) -> None:
    nb = _run_all(REPLAY, tmp_path, {"STREAMNB_KAFKA": "none"})
    text = _outputs_text(nb)
    assert "no Kafka: the page views were written straight into local://slice" in text
    assert "identical: 5 counts" in text and "forked at minute five" in text


@pytest.mark.kafka
def test_replay_and_time_travel(tmp_path: Path) -> None:
    nb = _run_all(REPLAY, tmp_path, {"STREAMNB_KAFKA": kafka_bootstrap()})
    text = _outputs_text(nb)
    assert "no Kafka" not in text and "on kafka://" in text
    assert "identical: 5 counts" in text and "forked at minute five" in text
    mimes = {m for c in nb.cells for o in c.get("outputs", []) for m in o.get("data", {})}
    assert "application/vnd.jupyter.widget-view+json" in mimes  # the player, the live table, the progress bar


def test_the_docs_site_shows_executed_notebooks(tmp_path: Path) -> None:
    """scripts/execute_notebooks.py runs a tutorial; the site (mkdocs, --strict) renders it with its outputs."""
    executed, site = tmp_path / "executed", tmp_path / "site"
    env = _kernel_env({"STREAMNB_EXECUTED_NOTEBOOKS": str(executed), "NO_MKDOCS_2_WARNING": "1"})
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "execute_notebooks.py"), "01_quickstart.ipynb", "--to", str(executed)],
        cwd=ROOT, env=env, check=True, capture_output=True, timeout=300,
    )
    nb = nbformat.read(executed / "01_quickstart.ipynb", as_version=4)
    assert "widgets" not in nb.metadata  # no widget state: nothing for a page to fetch from a CDN
    assert not [o for c in nb.cells for o in c.get("outputs", []) if WIDGET_MIME in o.get("data", {})]
    assert not (NOTEBOOKS / "01_quickstart.ipynb").read_text().count('"output_type"')  # the committed one stays bare
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    page = (site / "notebooks" / "01_quickstart" / "index.html").read_text()
    counts = table_dict(page, css_class="streamnb-table")  # the live table, frozen at the end
    assert sum(counts.values()) == 300 and "not updating (app stopped)" in page
    images = re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', page)
    charts = [svg for svg in (base64.b64decode(i).decode() for i in images) if "stream time" in svg]
    assert len(charts) == 1 and all(key in charts[0] for key in counts)
    assert "sent 300 page views" in page
    for cdn in ("cdn.jsdelivr.net", "unpkg.com", "esm.sh"):
        assert cdn not in page
    # The downloadable notebook next to the page is the executed copy.
    assert (site / "notebooks" / "01_quickstart" / "01_quickstart.ipynb").read_text().count('"output_type"')
