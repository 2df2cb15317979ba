"""Views of a replay rest when its clock goes idle: static final outputs while the app keeps running.

A replay does not stop at the end of its recording (the player can seek
back): its views render once more when the clock is idle and their outputs
become static (table as HTML, chart as SVG) until the clock moves again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from nbhelpers import REPO, Shell, execute, memory_url, notebook, shell_fixture, table_dict, text_of

pytestmark = [pytest.mark.notebook]

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"

RECORDING = """
import json
import streamnb
from streamnb.transport import open_transport
from streamnb.transport.base import ProducerRecord, TopicSpec

T0 = 1_700_000_000.0
URL = "{url}"
transport = open_transport(URL, client_id="writer")
await transport.start()
await transport.create_topic(TopicSpec("views", 2))
await transport.send([
    ProducerRecord("views", i % 2, None, json.dumps({{"page": f"/p{{i % 4}}"}}).encode(), T0 + i) for i in range(60)
])
await transport.stop()
"""

REPLAY_APP = """
app = streamnb.App("rests", broker=URL, clock="virtual", speed=0, topic_partitions=2)
views = app.topic("views", partitions=2)
counts = app.Table("counts", default=int)

@app.agent(views)
async def count(stream):
    async for view in stream:
        counts[view["page"]] += 1

await app.start()
"""

ipy = shell_fixture


@pytest.fixture
def nb_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv("PYTHONPATH", str(REPO) + (os.pathsep + path if path else ""))
    return tmp_path


@pytest.mark.slow
def test_views_of_an_idle_replay_show_its_final_state_in_the_kernel(nb_dir: Path) -> None:
    nb = notebook(
        RECORDING.format(url="memory://kernel-rests"),
        REPLAY_APP,
        "view = counts.live(interval=30)\nview",  # renders now, then naps: the cell ends make it rest
        "chart = counts.chart(x='key', y='value', interval=30)\nchart",
        "player = app.player()\nplayer",
        """
        app.clock.resume(None)
        await app.clock.idle()
        assert sum(counts.values()) == 60 and app.state == "running"
        """,
        """
        # The end of the last cell: every view rendered the replay's end, and rests there.
        assert view.rested_at == chart.rested_at == player.rested_at == app.clock.version
        assert not (view.frozen or chart.frozen or player.frozen) and view.running
        assert view.dataframe().set_index("key")["value"].to_dict() == dict(counts)
        assert "60 events" in player.label.value and "at the end" in player.label.value
        await app.clock.seek(T0 + 20)  # back: the replay starts over and pauses after 21 events
        assert sum(counts.values()) == 21 and app.state == "running"
        print(json.dumps(dict(counts)))
        """,
    )
    execute(nb, nb_dir)  # (the app is still running when the notebook ends)
    final = json.loads(text_of(nb.cells[6]))
    assert sum(final.values()) == 21
    table, chart, shown_player = (nb.cells[i].outputs for i in (2, 3, 4))
    for outputs in (table, chart):  # static: the state at the last rest, without the widget
        assert len(outputs) == 1 and outputs[0].output_type == "display_data"
        assert WIDGET_MIME not in outputs[0].data
    assert table_dict(table[0].data["text/html"]) == final
    assert "4 rows" in table[0].data["text/html"] and "not updating" not in table[0].data["text/html"]
    svg = chart[0].data["image/svg+xml"]
    assert svg.lstrip().startswith("<svg") and all(key in svg for key in final)
    (player_output,) = shown_player  # the player stays a widget; its static form is the last rest
    assert WIDGET_MIME in player_output.data
    assert "2023-11-14 22:13:40.000 UTC" in player_output.data["text/html"]
    assert "paused" in player_output.data["text/html"] and "21 events" in player_output.data["text/html"]


async def test_the_view_task_rests_and_thaws_with_the_clock(ipy: Shell) -> None:
    """Without a cell ending (the player's buttons move the clock), a view's task follows the rests."""
    url = memory_url()
    await ipy.ok(RECORDING.format(url=url))
    await ipy.ok(REPLAY_APP)
    await ipy.ok("view = counts.live(interval=0.2)")
    view, app = ipy.ns["view"], ipy.ns["app"]
    from streamnb.testing import wait_until

    await app.clock.idle(timeout=30)  # paused at the start
    await wait_until(lambda: view.rested_at == app.clock.version, timeout=10)
    app.clock.speed = 1  # playing one recorded second a second: the clock moves, the view is live again
    await wait_until(lambda: view.rested_at is None, timeout=10)
    app.clock.resume(None)
    await app.clock.idle(timeout=30)
    await wait_until(lambda: view.rested_at == app.clock.version, timeout=10)
    assert view.rows == 4 and sum(view.dataframe()["value"]) == 60
    await app.stop()
    await wait_until(lambda: view.frozen, timeout=10)
    assert view.stopped == "app stopped"
