"""streamnb in a real Jupyter kernel (ipykernel, run by nbclient): assertions live in the cells."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import textwrap
import time
from pathlib import Path

import pytest
from jupyter_client.manager import start_new_kernel
from nbhelpers import REPO, client, execute, notebook, table_dict, text_of

from streamnb.testing import wait_until

pytestmark = [pytest.mark.notebook, pytest.mark.slow]


@pytest.fixture
def nb_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder to run a notebook in (its cwd; local:// brokers go there); kernels import this checkout."""
    path = os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv("PYTHONPATH", str(REPO) + (os.pathsep + path if path else ""))
    return tmp_path

SETUP = """
import asyncio, time
import streamnb
from streamnb.testing import settle, wait_until

def agent_tasks():
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("streamnb-agent-")]

def streamnb_tasks():
    return [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("streamnb-")]
"""

PAGES_APP = """
app = streamnb.App("pages", broker="{broker}", topic_partitions=2)
pages = app.topic("pages")
counts = app.Table("counts", default=int)
"""

COUNT_AGENT = """
@app.agent(pages)
async def count(stream):
    async for page in stream:
        if page == "boom":
            raise ValueError("page 'boom' is not a page")
        counts[page] += 1
"""


def test_cells_answer_while_agents_process_a_backlog(nb_dir: Path) -> None:
    nb = notebook(
        SETUP,
        """
        N = 300_000
        app = streamnb.App("busy", broker="memory://busy", topic_partitions=4)
        numbers = app.topic("numbers")

        @app.agent(numbers)
        async def work(stream):
            async for n in stream:
                for _ in range(400):
                    pass

        await app.start()
        await app.transport.send([numbers.record(key=str(i), value=i) for i in range(N)])
        t0 = time.monotonic()
        """,
        """
        answered_after = time.monotonic() - t0
        processed = work.events_processed
        assert 0 < processed < N, processed          # the agent is busy with the backlog...
        assert answered_after < 1.0, answered_after  # ...and this cell ran right away
        print("answered after", round(answered_after, 3), "s with", processed, "of", N, "processed")
        """,
        """
        t1 = time.monotonic()
        assert work.events_processed < N
        """,
        "1 + 1",
        "assert time.monotonic() - t1 < 1.0, time.monotonic() - t1",
        """
        await wait_until(lambda: work.events_processed == N, timeout=90)
        print("backlog done after", round(time.monotonic() - t0, 2), "s")
        await settle(app)
        await app.stop()
        assert streamnb_tasks() == [], streamnb_tasks()
        """,
    )
    execute(nb, nb_dir)
    assert "answered after" in text_of(nb.cells[2])


def test_rerunning_the_agent_cell_replaces_the_agent(nb_dir: Path) -> None:
    nb = notebook(
        SETUP,
        PAGES_APP.format(broker="memory://rerun-agent"),
        COUNT_AGENT,
        """
        await app.start()
        for i in range(100):
            await pages.send(key=f"/p{i % 3}", value=f"/p{i % 3}")
        await settle(app)
        assert sum(counts.values()) == 100
        first = count
        assert len(agent_tasks()) == 1
        """,
        COUNT_AGENT,  # the same cell, run again
        """
        await wait_until(lambda: count is not first and count.running and not first.running, timeout=20)
        assert first.state == "stopped"
        assert app.agents["count"] is count
        assert len(agent_tasks()) == 1, agent_tasks()
        assert len(count._sources) == 1 and not first._sources  # one consumer for the group
        assert sum(counts.values()) == 100  # table state kept
        for i in range(50):
            await pages.send(key="/new", value="/new")
        await settle(app)
        assert count.events_processed == 50, count.events_processed  # from the committed offsets
        assert first.events_processed == 100
        assert counts["/new"] == 50 and sum(counts.values()) == 150  # nothing counted twice
        """,
        COUNT_AGENT,
        COUNT_AGENT,
        COUNT_AGENT,  # run three times in a row
        """
        latest = count
        # The replacements run one after the other: the last one starts the latest agent
        # once the ones before it stopped theirs.
        await wait_until(lambda: latest.running, timeout=20)
        assert len(agent_tasks()) == 1, agent_tasks()
        assert [a for a in [first] if a.running] == []
        for i in range(10):
            await pages.send(key="/last", value="/last")
        await settle(app)
        assert counts["/last"] == 10 and sum(counts.values()) == 160
        assert len(agent_tasks()) == 1, agent_tasks()
        await app.stop()
        assert streamnb_tasks() == [], streamnb_tasks()
        """,
    )
    execute(nb, nb_dir)


def test_rerunning_the_app_cell_replaces_the_app(nb_dir: Path) -> None:
    app_cell = "\n".join([PAGES_APP.format(broker="local://broker"), COUNT_AGENT])
    nb = notebook(
        SETUP,
        app_cell,
        """
        await app.start()
        for i in range(20):
            await pages.send(key="/", value="/")
        await settle(app)
        assert counts["/"] == 20
        old, old_counts = app, counts
        """,
        app_cell,  # run again: a new App with the same id and broker
        """
        assert app is not old
        await app.start()  # waits for the old app to stop (it owns the local:// folder)
        assert old.state == "stopped", old.state
        assert counts["/"] == 20  # recovered from the changelog
        assert len(agent_tasks()) == 1, agent_tasks()
        for i in range(5):
            await pages.send(key="/", value="/")
        await settle(app)
        assert counts["/"] == 25 and count.events_processed == 5
        assert old_counts["/"] == 20
        """,
        "await app.stop()\nassert streamnb_tasks() == [], streamnb_tasks()",
    )
    execute(nb, nb_dir)


async def test_interrupting_a_cell_does_not_kill_the_agents(nb_dir: Path) -> None:
    nb = notebook(
        SETUP,
        PAGES_APP.format(broker="memory://interrupt") + COUNT_AGENT,
        "await app.start()\nassert len(agent_tasks()) == 1",
        "print('sleeping', flush=True)\ntime.sleep(60)  # interrupted (a sync cell)",
        "after_sync = len(agent_tasks())",
        "print('sleeping', flush=True)\nawait asyncio.sleep(60)  # interrupted (an async cell)",
        "after_async = len(agent_tasks())",
        "raise KeyboardInterrupt",
        """
        assert after_sync == after_async == 1
        assert count.running and app.state == "running"
        assert len(agent_tasks()) == 1
        for i in range(30):
            await pages.send(key="/after", value="/after")
        await settle(app)
        assert counts["/after"] == 30
        await app.stop()
        """,
        allow_errors=(3, 5, 7),
    )
    nbc = client(nb, nb_dir)
    async with nbc.async_setup_kernel():
        for index, cell in enumerate(nb.cells):
            if index in (3, 5):
                running = asyncio.ensure_future(nbc.async_execute_cell(cell, index))
                # The cell runs once its output arrives (nbclient adds outputs as they come).
                await wait_until(lambda c=cell: any("sleeping" in o.get("text", "") for o in c.outputs), timeout=60)
                assert not running.done()
                started = time.monotonic()
                await nbc.km.interrupt_kernel()
                await asyncio.wait_for(running, 30)
                assert time.monotonic() - started < 20
            else:
                await nbc.async_execute_cell(cell, index)
    errors = {i: [o.ename for o in nb.cells[i].outputs if o.output_type == "error"] for i in (3, 5, 7)}
    assert errors[3] == ["KeyboardInterrupt"]
    assert errors[5] == ["CancelledError"]  # ipykernel turns SIGINT into cancelling an async cell
    assert errors[7] == ["KeyboardInterrupt"]
    assert all(o.output_type != "error" for o in nb.cells[8].outputs)


def test_live_view_updates_in_the_kernel(nb_dir: Path) -> None:
    nb = notebook(
        SETUP,
        PAGES_APP.format(broker="memory://live-view") + COUNT_AGENT + "\nawait app.start()",
        "view = counts.live(interval=0.2)\nview",
        """
        before = (view.html.value, view.label.value, view.updates, view.rows)
        assert before[3] == 0 and before[1].startswith("0 rows")
        for page in ["/a", "/b", "/b"]:
            await pages.send(key=page, value=page)
        await settle(app)
        await wait_until(lambda: view.label.value.startswith("2 rows"), timeout=10)
        assert view.running
        assert view.updates > before[2]
        assert view.html.value != before[0] and "/b" in view.html.value
        assert view.label.value != before[1] and view.label.value.startswith("2 rows")
        """,
        """
        moment = view.label.value
        await pages.send(key="/c", value="/c")
        await settle(app)
        await wait_until(lambda: view.label.value.startswith("3 rows"), timeout=10)
        assert view.label.value != moment
        """,
        """
        view.close()
        assert not view.running and view.stopped == "closed"
        await wait_until(lambda: [n for n in streamnb_tasks() if n.startswith("streamnb-view-")] == [], timeout=10)
        """,
    )
    execute(nb, nb_dir)
    shown = nb.cells[2].outputs[0]
    assert shown.output_type == "display_data"  # with a display_id: updated when the view freezes
    assert "application/vnd.jupyter.widget-view+json" in shown.data  # the live widget...
    assert "<table" in shown.data["text/html"]  # ...and a static snapshot
    assert nb.cells[2].execution_count is not None


def test_live_views_end_with_the_final_state(nb_dir: Path) -> None:
    nb = notebook(
        SETUP,
        PAGES_APP.format(broker="memory://final-views") + COUNT_AGENT + "\nawait app.start()",
        "view = counts.live(interval=30)\nview",  # renders now, then naps: only the stop wakes it
        "chart = counts.chart(x='key', y='value', interval=30)\nchart",
        "board = app.dashboard()\nboard",
        """
        for i in range(300):
            page = f"/p{i % 7}" if i % 3 else f"/q{i % 5}"
            await pages.send(key=page, value=page)
        await settle(app)
        await app.stop()
        """,
        """
        import json
        assert view.frozen and chart.frozen and board.frozen
        assert view.stopped == chart.stopped == board.stopped == "app stopped"
        assert view.dataframe().set_index("key")["value"].to_dict() == dict(counts)
        assert {r["key"]: r["value"] for r in chart.rows()} == dict(counts)
        print(json.dumps(dict(counts)))
        """,
    )
    execute(nb, nb_dir)
    final = json.loads(text_of(nb.cells[6]))
    assert sum(final.values()) == 300
    table, chart, board = (nb.cells[i].outputs for i in (2, 3, 4))
    for outputs in (table, chart, board):  # each output became the static final state, without the widget
        assert len(outputs) == 1 and outputs[0].output_type == "display_data"
        assert "application/vnd.jupyter.widget-view+json" not in outputs[0].data
    assert table_dict(table[0].data["text/html"]) == final
    assert "7 rows" not in table[0].data["text/html"] and "12 rows" in table[0].data["text/html"]
    assert "not updating (app stopped)" in table[0].data["text/html"]
    svg = chart[0].data["image/svg+xml"]
    assert svg.lstrip().startswith("<svg") and all(key in svg for key in final)
    assert "stopped" in board[0].data["text/html"] and "300" in board[0].data["text/html"]


def test_dashboard_shows_a_crashed_agent(nb_dir: Path) -> None:
    nb = notebook(
        SETUP,
        PAGES_APP.format(broker="memory://crash") + COUNT_AGENT + "\nawait app.start()",
        """
        await pages.send(key="/", value="/")
        await pages.send(key="boom", value="boom")
        await wait_until(lambda: count.dead_lettered == 1, timeout=30)
        board = app.dashboard()
        board
        """,
        """
        row = board.rows["count"]
        await wait_until(lambda: "ValueError: page &#x27;boom&#x27; is not a page" in row.error.value, timeout=10)
        assert "<details" in row.error.value and "Traceback" in row.error.value
        assert "1 dead-lettered" in row.summary.value
        assert board.figures[0].last_error.endswith(": ValueError: page 'boom' is not a page")
        assert board.running
        """,
    )
    execute(nb, nb_dir)
    html = nb.cells[2].outputs[0].data["text/html"]
    assert "page &#x27;boom&#x27; is not a page" in html


def test_views_stop_when_the_app_stops(nb_dir: Path) -> None:
    nb = notebook(
        "%load_ext streamnb",
        SETUP,
        PAGES_APP.format(broker="memory://stop-views") + COUNT_AGENT,
        "%streamnb start",
        "view = counts.live()\nboard = app.dashboard()",
        "%peek pages --live",
        """
        follow = _
        await wait_until(lambda: len([n for n in streamnb_tasks() if n.startswith("streamnb-view-")]) == 3, timeout=10)
        assert view.running and board.running and follow.running
        """,
        "%streamnb stop",
        """
        await wait_until(lambda: streamnb_tasks() == [], timeout=10)
        assert view.stopped == board.stopped == follow.stopped == "app stopped"
        assert "not updating (app stopped)" in view.label.value
        """,
    )
    execute(nb, nb_dir)


def test_magics_work_before_load_ext(nb_dir: Path) -> None:
    nb = notebook(
        "import streamnb\napp = streamnb.App('first-magic', broker='memory://first-magic')",
        "%streamnb status",  # no %load_ext streamnb yet
        "%streamnb start",  # the extension is loaded now: the cell waits for the app
        "assert app.state == 'running', app.state\nawait app.stop()",
    )
    execute(nb, nb_dir)
    out = text_of(nb.cells[1])
    assert "loaded the magics on first use; put `%load_ext streamnb` in an early cell" in out
    assert "app 'first-magic' init" in out
    assert "loaded the magics" not in text_of(nb.cells[2])  # once


def test_magics_in_the_kernel(nb_dir: Path) -> None:
    nb = notebook(
        "%load_ext streamnb",
        SETUP,
        PAGES_APP.format(broker="local://broker") + COUNT_AGENT,
        "%streamnb start",
        '%%produce pages\n"/"\n"/a"\n"/"',
        "%peek pages -n 2",
        '%%produce pages\n"/x"\nnot json',
        "await settle(app)\nassert dict(counts) == {'/': 2, '/a': 1}, dict(counts)",
        "%streamnb status",
        "%streamnb stop",
        "%peek pages",
        allow_errors=(6, 10),
    )
    execute(nb, nb_dir)
    assert "running on local://broker" in text_of(nb.cells[3])
    assert "sent 3 messages to pages" in text_of(nb.cells[4])
    peeked = nb.cells[5].outputs[0]
    assert peeked.output_type == "execute_result" and "<table" in peeked.data["text/html"]
    assert "partition" in peeked.data["text/html"] and "/a" in peeked.data["text/plain"]
    assert "UsageError: line 2: invalid JSON" in text_of(nb.cells[6])
    assert "Traceback" not in text_of(nb.cells[6])
    assert "| count | running | 3" in text_of(nb.cells[8])
    assert "stopped" in text_of(nb.cells[9])
    assert "not running" in text_of(nb.cells[10]) and "%streamnb start" in text_of(nb.cells[10])


def test_a_usage_error_in_the_first_awaited_cells_gets_an_answer(nb_dir: Path) -> None:
    """ipykernel 7 never answered a UsageError raised before any synchronous cell ran (it hung)."""
    nb = notebook(
        "%load_ext streamnb\n" + SETUP + PAGES_APP.format(broker="memory://usage") + COUNT_AGENT + "await app.start()",
        "%streamnb no-such-action",
        "1 + 1",
        allow_errors=(1,),
    )
    execute(nb, nb_dir)
    assert "UsageError: argument action: invalid choice: 'no-such-action'" in text_of(nb.cells[1])
    assert nb.cells[2].outputs[0].data["text/plain"] == "2"


def test_run_all_with_every_cell_queued_at_once(nb_dir: Path) -> None:
    """JupyterLab's Run All queues every cell before the first ends; the magics still wait in order."""
    cells = [
        "%load_ext streamnb",
        SETUP,
        PAGES_APP.format(broker="memory://run-all") + COUNT_AGENT,
        "%streamnb start",
        "assert app.state == 'running', app.state",
        '%%produce pages\n"/"\n"/"',
        "%peek pages",
        "assert len(_) == 2, _",
        "await settle(app)\nassert counts['/'] == 2",
        "%streamnb stop",
        "assert app.state == 'stopped' and streamnb_tasks() == []",
    ]
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(nb_dir))
    try:
        ids = [kc.execute(textwrap.dedent(c).strip("\n")) for c in cells]
        replies: dict[str, dict] = {}
        deadline = time.monotonic() + 120
        while not set(ids) <= set(replies) and time.monotonic() < deadline:
            try:
                reply = kc.get_shell_msg(timeout=5)
            except queue.Empty:
                continue
            replies[reply["parent_header"].get("msg_id", "")] = reply["content"]
        assert set(ids) <= set(replies), "some cells never answered"
        failed = [
            (cells[i], replies[m].get("ename"), replies[m].get("evalue"))
            for i, m in enumerate(ids)
            if replies.get(m, {}).get("status") != "ok"
        ]
        assert failed == []
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_a_table_join_live_and_its_emit_topic_peeked(nb_dir: Path) -> None:
    """``live_table(joined)`` of a table–table join updates as both topics change; ``%peek`` of ``emit=`` shows pairs;
    ``%streamnb status`` has a line per join of an agent's stream."""
    nb = notebook(
        "%load_ext streamnb",
        SETUP,
        """
        from streamnb.notebook import live_table
        app = streamnb.App("tt", broker="memory://tt-join", topic_partitions=1)
        users = app.topic("users", key_type=str, value_type=str)
        cities = app.topic("cities", key_type=str, value_type=str)
        joined = app.Table("user", source=users).join(app.Table("city", source=cities), how="left", emit="user-view")
        orders = app.topic("orders", key_type=str, value_type=int)
        matched = []

        @app.agent(orders)
        async def match(stream):
            async for pair in stream.join(cities, within=60):
                matched.append(pair)
        """,
        "%streamnb start",
        """
        view = live_table(joined, interval=0.2)
        await users.send(key="ann", value="Ann", timestamp=10)
        await cities.send(key="ann", value="Paris", timestamp=11)
        await users.send(key="bob", value="Bob", timestamp=12)
        await wait_until(lambda: view.rows == 2 and "Paris" in view.html.value, timeout=10)
        assert dict(joined) == {"ann": ("Ann", "Paris"), "bob": ("Bob", None)}, dict(joined)
        """,
        """
        await orders.send(key="ann", value=1, timestamp=20)
        await settle(app)
        assert matched == [(1, "Paris")], matched
        """,
        "%peek user-view",
        "%streamnb status",
        "%streamnb stop",
    )
    execute(nb, nb_dir)
    peeked = nb.cells[6].outputs[0]
    assert peeked.output_type == "execute_result", peeked
    text = peeked.data["text/plain"]
    pairs = ["{'left': 'Ann', 'right': None}", "{'left': 'Ann', 'right': 'Paris'}", "{'left': 'Bob', 'right': None}"]
    assert all(p in text for p in pairs) and sorted(pairs, key=text.index) == pairs, text  # every change, in order
    status = text_of(nb.cells[7])
    assert "join in match: join(cities, inner, before=60.0 s, after=60.0 s, grace=0.0 s): 1 joined" in status, status
