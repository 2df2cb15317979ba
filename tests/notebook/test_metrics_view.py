"""Metrics in the notebook: ``%streamnb metrics`` through a real InteractiveShell; the dashboard's sparklines update."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from nbhelpers import REPO, Shell, execute, memory_url, notebook, shell_fixture

from streamnb.notebook.dashboard import dashboard
from streamnb.notebook.metrics_view import sparkline_frame
from streamnb.testing import settle, test_app, wait_until

ipy = shell_fixture

APP_CELL = """
import streamnb

app = streamnb.App("nbmetrics", broker="{url}", topic_partitions=2)
views = app.topic("views")

@app.agent(views)
async def count(stream):
    async for view in stream:
        pass
"""


async def test_the_metrics_magic_shows_the_registry(ipy: Shell) -> None:
    await ipy.ok(APP_CELL.replace("{url}", memory_url()))
    await ipy.ok("%streamnb start")
    app = ipy.ns["app"]
    for i in range(6):
        await ipy.ns["views"].send(value=i)
    await settle(app)
    frame = await ipy.ok("%streamnb metrics")
    assert isinstance(frame, pd.DataFrame)
    assert not frame["metric"].str.endswith("_bucket").any()
    events = frame[(frame["metric"] == "streamnb_events_total") & (frame["agent"] == "count")]
    assert events["value"].tolist() == [6.0]
    await ipy.ok("%streamnb stop")


async def test_the_dashboard_sparklines_follow_rate_lag_and_commits() -> None:
    app = test_app("sparks", topic_partitions=2)
    views = app.topic("views")

    @app.agent(views)
    async def count(stream: Any) -> None:
        async for _ in stream:
            pass

    board = dashboard(app, interval=0.2)
    board.sparklines.every = 0.2
    assert "no history yet" in board.sparklines.value
    async with app:
        sent = 0

        async def busy() -> bool:  # events every few ms, until two seconds of history show a rate
            nonlocal sent
            for _ in range(20):
                await views.send(value=sent)
                sent += 1
            frame = board.sparklines.frame
            rates = frame[(frame["agent"] == "count") & (frame["measure"] == "rate")]
            return bool((rates["value"] > 0).any()) and "<svg" in board.sparklines.value

        await wait_until(busy, 20, 0.05, what="a rate in the sparklines")
        first = board.sparklines.frame["time"].max()
        await wait_until(lambda: board.sparklines.frame["time"].max() > first, 10, what="the sparklines move on")
        frame = sparkline_frame(app)
        assert set(frame["measure"]) == {"rate", "lag", "commit"}
        commits = frame[frame["measure"] == "commit"]["value"]
        assert (commits > 0).all() and (commits < 30).all()
        await settle(app)
        await app.sample_metrics()
        lag = sparkline_frame(app)
        assert lag[lag["measure"] == "lag"].sort_values("time")["value"].iloc[-1] == 0
    board.close()
    await asyncio.sleep(0)


KERNEL_SETUP = """
import streamnb
from streamnb.testing import settle, wait_until

app = streamnb.App("kernel-metrics", broker="memory://kernel-metrics", topic_partitions=2)
pages = app.topic("pages")

@app.agent(pages)
async def count(stream):
    async for page in stream:
        pass

await app.start()
"""


@pytest.mark.notebook
@pytest.mark.slow
def test_sparklines_update_in_a_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv("PYTHONPATH", str(REPO) + (os.pathsep + path if path else ""))
    nb = notebook(
        "%load_ext streamnb",
        KERNEL_SETUP,
        "board = app.dashboard()\nboard.sparklines.every = 0.2\nboard",
        """
        first = board.sparklines.value
        sent = 0
        async def busy():
            global sent
            for _ in range(20):
                await pages.send(value=sent)
                sent += 1
            f = board.sparklines.frame
            return bool((f[(f.agent == "count") & (f.measure == "rate")].value > 0).any())
        await wait_until(busy, timeout=20, interval=0.05)
        assert "<svg" in board.sparklines.value and board.sparklines.value != first
        moment = board.sparklines.value
        await wait_until(lambda: board.sparklines.value != moment, timeout=10)
        """,
        "%streamnb metrics",
        """
        frame = _
        await settle(app)
        assert frame[frame.metric == "streamnb_events_total"].value.iloc[0] > 0
        await app.stop()
        """,
    )
    execute(nb, tmp_path)
    shown = nb.cells[2].outputs[0]  # the app stopped: the live dashboard froze into static HTML, sparklines kept
    assert "application/vnd.jupyter.widget-view+json" not in shown.data
    assert "<svg" in shown.data["text/html"] and "kernel-metrics" in shown.data["text/html"]
    metrics_out = nb.cells[4].outputs[0]
    assert "streamnb_events_total" in metrics_out.data["text/html"]
