"""The quick start in a real browser: JupyterLab + headless Chromium, network blocked.

Starts JupyterLab on 127.0.0.1 (a free port, a token) in a temporary folder
holding a copy of ``notebooks/01_quickstart.ipynb``, opens it in Debian's
Chromium through Playwright, runs all cells from the Run menu and checks,
while the producer runs, that the live chart has drawn marks and that the
chart and the live table change between two moments. Every request that is
not to 127.0.0.1 is aborted, so the chart's JavaScript must come with
streamnb (no CDN). Screenshots go to ``screenshots/`` (git-ignored).

Needs ``pip install playwright`` (the Python package only: the browser is
``/usr/bin/chromium``; set ``STREAMNB_CHROMIUM`` to use another).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "screenshots"
CHROMIUM = os.environ.get("STREAMNB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _settings(folder: Path) -> None:
    """JupyterLab user settings: render every cell (no windowing), no news or update checks."""
    plugins = {
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {
            "windowingMode": "none", "autoStartDefaultKernel": True,
        },
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
            "checkForUpdates": False, "fetchNews": "false",
        },
    }
    for name, value in plugins.items():
        ext, file = name.split("/", 1)[0], name.split("/", 1)[1]
        target = folder / ext / file
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(value))


@contextlib.contextmanager
def serve(tmp_path: Path, notebook: Path) -> Iterator[tuple[str, Path]]:
    """A JupyterLab server on 127.0.0.1 serving a folder with ``notebook``; yields (its URL, the log)."""
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(notebook, work)
    _settings(tmp_path / "settings")
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env["JUPYTERLAB_SETTINGS_DIR"] = str(tmp_path / "settings")
    env["JUPYTERLAB_WORKSPACES_DIR"] = str(tmp_path / "workspaces")
    env["JUPYTER_RUNTIME_DIR"] = str(tmp_path / "runtime")
    log = tmp_path / "lab.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "jupyter", "lab", "--no-browser",
                "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
                f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}",
                "--LabApp.news_url=", "--LabApp.extension_manager=readonly",
                *(["--ServerApp.allow_root=True"] if os.geteuid() == 0 else []),
            ],
            cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"JupyterLab did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield f"{base}/lab/tree/{notebook.name}?token={token}", log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A JupyterLab server on 127.0.0.1 serving a folder with the quick start; yields (url, log)."""
    with serve(tmp_path, ROOT / "notebooks" / "01_quickstart.ipynb") as served:
        yield served


def _chart_state(page: Any) -> dict[str, Any]:
    return page.evaluate(
        """() => {
            const root = document.querySelector('.streamnb-chart');
            if (!root) return {found: false};
            return {
                found: true,
                rows: Number(root.dataset.rows || -1),
                seq: Number(root.dataset.seq || -1),
                marks: root.querySelectorAll('svg .mark-symbol.role-mark path, svg .mark-line.role-mark path').length,
                lines: root.querySelectorAll('svg .mark-line path').length,
                legend: Array.from(root.querySelectorAll('svg .role-legend-label text')).map(t => t.textContent),
                fits: (() => {
                    const svg = root.querySelector('svg');
                    const labels = root.querySelectorAll('svg .role-legend-label text');
                    if (!svg || !labels.length) return false;
                    const right = svg.getBoundingClientRect().right;
                    return Array.from(labels).every(t => t.getBoundingClientRect().right <= right + 1);
                })(),
                error: root.textContent.includes('streamnb chart:') ? root.textContent : '',
            };
        }"""
    )


def _frozen_views(page: Any) -> tuple[list[list[str]], str]:
    """The frozen live table (rows of cell texts, header first) and the frozen chart's SVG text."""
    table, svg = page.evaluate(
        """() => {
            const table = document.querySelector('.jp-OutputArea-output table.streamnb-table');
            const rows = table ? Array.from(table.rows).map(r => Array.from(r.cells).map(c => c.innerText.trim())) : [];
            const out = document.querySelector(".jp-OutputArea-output[data-mime-type='image/svg+xml']");
            const img = out && out.querySelector('img');
            const inline = out && out.querySelector('svg');
            return [rows, img ? img.src : (inline ? inline.outerHTML : '')];
        }"""
    )
    if svg.startswith("data:"):
        head, _, body = svg.partition(",")
        svg = base64.b64decode(body).decode() if head.endswith(";base64") else urllib.parse.unquote(body)
    return table, svg


def _table_text(page: Any) -> str:
    return str(page.evaluate(
        """() => Array.from(document.querySelectorAll('.jp-OutputArea-output table'))
                 .map(t => t.innerText).join('\\n---\\n')"""
    ))


def test_quickstart_runs_live_in_jupyterlab(lab: tuple[str, Path]) -> None:
    url, log = lab
    SHOTS.mkdir(exist_ok=True)
    blocked: list[str] = []

    def only_localhost(route: Any) -> None:
        if route.request.url.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:")):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.route("**/*", only_localhost)
            console: list[str] = []
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.goto(url)
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
            select = page.locator(".jp-Dialog button", has_text="Select")
            try:  # "Select Kernel" (older settings): take the notebook's own kernel
                select.wait_for(timeout=5_000)
                select.click()
            except Exception:
                pass
            # Wait for the kernel to be ready before running.
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)

            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()

            # The chart draws its first marks while the producer is still sending.
            try:
                page.wait_for_function(  # data marks only (legend symbols are marks too)
                    """() => document.querySelectorAll('.streamnb-chart svg .mark-symbol.role-mark path, '
                                                       + '.streamnb-chart svg .mark-line.role-mark path').length > 0""",
                    timeout=90_000,
                )
            except Exception:
                page.screenshot(path=str(SHOTS / "quickstart-failed.png"))
                raise AssertionError(
                    f"no chart marks; chart={_chart_state(page)}\nconsole={console[-20:]}\n"
                    f"lab log tail:\n{log.read_text()[-2000:]}"
                ) from None
            chart = page.locator(".streamnb-chart").first
            chart.scroll_into_view_if_needed()
            first, first_table = _chart_state(page), _table_text(page)
            page.screenshot(path=str(SHOTS / "quickstart-1-running.png"))
            # The chart gets changesets and the live table moves while the producer runs.
            page.wait_for_function(
                """([seq, table]) => {
                    const root = document.querySelector('.streamnb-chart');
                    const text = Array.from(document.querySelectorAll('.jp-OutputArea-output table'))
                        .map(t => t.innerText).join('\\n---\\n');
                    return root && Number(root.dataset.seq || -1) > seq && text && text !== table;
                }""",
                arg=[first["seq"], first_table],
                timeout=60_000,
            )
            second, second_table = _chart_state(page), _table_text(page)
            page.screenshot(path=str(SHOTS / "quickstart-2-running.png"))

            assert first["marks"] > 0 and not first["error"], first
            assert second["seq"] > first["seq"], (first, second)  # the chart got changesets...
            assert second["rows"] >= first["rows"] > 0, (first, second)
            assert first_table and second_table != first_table, (first_table, second_table)  # ...and the table moved

            # The run ends (the notebook's own asserts pass) with the final counts.
            page.wait_for_function(
                """() => Array.from(document.querySelectorAll('.jp-OutputArea-output'))
                         .some(o => o.innerText.includes('sent 300 page views'))""",
                timeout=120_000,
            )
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
            errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
            tracebacks = [t for t in errors.all_inner_texts() if "Traceback" in t or "Error" in t]
            assert not tracebacks, tracebacks
            assert second["fits"], second  # the legend grows with the data and is not cut off
            assert not [u for u in blocked if "cdn" in u or "jsdelivr" in u or "unpkg" in u], blocked

            # The app stopped in the last cell: the live views rendered the final state and froze
            # into static outputs (the chart as SVG, the table as HTML), which the file keeps.
            page.wait_for_function(
                """() => !document.querySelector('.streamnb-chart')
                         && document.querySelector(".jp-OutputArea-output[data-mime-type='image/svg+xml']")""",
                timeout=30_000,
            )
            final_table, final_svg = _frozen_views(page)
            page.screenshot(path=str(SHOTS / "quickstart-3-done.png"))
            counts = {row[0]: int(row[1]) for row in final_table[1:]}
            assert sum(counts.values()) == 300 and len(counts) == 6, final_table
            pages = ["/", "/about", "/cart", "/checkout", "/products", "/products/42"]
            assert sorted(counts) == pages and all(f">{p}<" in final_svg for p in pages), final_svg[:500]

            # Saved and reloaded (the kernel still runs, the app is stopped): the file shows the
            # final table and chart as they were.
            page.locator(".jp-Notebook").first.click()
            page.keyboard.press("Control+s")
            page.wait_for_function(
                "() => !document.querySelector('.jp-mod-dirty')", timeout=30_000
            )
            page.reload()
            page.wait_for_selector(
                ".jp-OutputArea-output[data-mime-type='image/svg+xml']", timeout=60_000, state="attached"
            )
            assert _frozen_views(page) == (final_table, final_svg)
            page.screenshot(path=str(SHOTS / "quickstart-4-reloaded.png"))
        finally:
            browser.close()


# -- the chart widget alone: event time set without re-rendering ---------------------------------

WIDGET_PAGE = """<!doctype html><html><body><div id="out"></div><script type="module">
import widget from "./chart.js";
// The part of an anywidget model the widget uses.
class Model {
  constructor(state) { this.state = state; this.handlers = {}; this.sent = []; }
  get(name) { return this.state[name]; }
  set(name, value) { this.state[name] = value; for (const h of this.handlers["change:" + name] || []) h(); }
  on(event, h) { (this.handlers[event] ||= []).push(h); }
  off(event, h) { this.handlers[event] = (this.handlers[event] || []).filter((x) => x !== h); }
  send(message) { this.sent.push(message); }
}
window.model = new Model(JSON.parse(document.getElementById("state").textContent));
widget.initialize({ model: window.model });
widget.render({ model: window.model, el: document.getElementById("out") });
</script><script type="application/json" id="state">STATE</script></html>"""


def test_chart_widget_draws_event_time_without_redrawing() -> None:
    """The title and the stream-time rule follow the ``event_time`` trait; the SVG is not redrawn."""
    from streamnb.notebook.chart import LiveChart
    from streamnb.testing import test_app

    app = test_app(topic_partitions=1)
    per_10s = app.Table("per_10s", default=int).tumbling(10)
    chart: LiveChart = per_10s.chart()  # no running loop: no update task, nothing to stop
    base = 1_700_000_000_000.0
    rows = [
        {"key": "a", "window_start": base, "window_end": base + 10_000, "value": 3, "closed": True, "__id": "1"},
        {"key": "a", "window_start": base + 10_000, "window_end": base + 20_000, "value": 1, "closed": False,
         "__id": "2"},
    ]
    state = {
        "spec": chart.spec, "dataset": chart.dataset, "renderer": "svg", "uid": chart.uid,
        "snapshot": {"seq": 1, "rows": rows}, "change": {"seq": 0, "remove": [], "insert": []},
        "event_time": {"stream_time": None, "late_events": 0, "late_windows": 0},
    }
    chart.close()
    bundle = (ROOT / "streamnb" / "notebook" / "static" / "chart.js").read_text(encoding="utf-8")
    page_html = WIDGET_PAGE.replace("STATE", json.dumps(state).replace("</", "<\\/"))

    def serve(route: Any) -> None:
        url = route.request.url
        if url.endswith("/chart.js"):
            route.fulfill(body=bundle, content_type="text/javascript")
        elif url.endswith("/widget.html"):
            route.fulfill(body=page_html, content_type="text/html")
        else:
            route.abort()

    title_js = "() => document.querySelector('#out svg .role-title-text')?.textContent || ''"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 600})
            page.route("**/*", serve)
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto("http://127.0.0.1:9/widget.html")
            page.wait_for_function("() => document.querySelector('#out .streamnb-chart')?.dataset.rows === '2'")
            title = page.evaluate(title_js)
            assert title == "per_10s · no event yet · 0 late events", title
            assert page.locator("#out svg .mark-rule.role-mark line").count() == 0  # no stream time yet: no rule
            page.evaluate("() => document.querySelector('#out svg').dataset.marker = 'first'")

            page.evaluate(
                "(t) => window.model.set('event_time', {stream_time: t, late_events: 2, late_windows: 3})",
                base + 12_500,
            )
            page.wait_for_function(f"() => ({title_js})().includes('2 late events')")
            title = page.evaluate(title_js)
            clock = time.strftime("%H:%M:%S", time.localtime((base + 12_500) / 1000)) + ".500"
            assert title == f"per_10s · stream time {clock} · 2 late events (3 window updates refused)", title
            assert page.locator("#out svg .mark-rule.role-mark line").count() == 1  # the stream-time rule
            assert page.evaluate("() => document.querySelector('#out svg').dataset.marker") == "first"  # same SVG
            root = page.locator("#out .streamnb-chart")
            assert root.get_attribute("data-stream-time") == str(int(base + 12_500))
            assert root.get_attribute("data-late-events") == "2"
            opacities = page.evaluate(
                "() => Array.from(document.querySelectorAll('#out svg .mark-symbol.role-mark path'))"
                ".map(p => Number(p.getAttribute('opacity') ?? p.style.opacity))"
            )
            assert sorted(opacities) == [0.35, 0.95], opacities  # the open window faded, the closed one solid
            assert not errors, errors
        finally:
            browser.close()


REPLAY_CELLS = [
    '''
import streamnb
from streamnb.transport.base import ProducerRecord, TopicSpec
from streamnb.transport.local import LocalTransport

%load_ext streamnb
T0 = 1_700_000_000.0
# A recording: one page view a second for a minute; every fourth one is /a.
folder = LocalTransport("local://slice")
await folder.start()
await folder.create_topic(TopicSpec("views", 2))
await folder.send([ProducerRecord("views", i % 2, None, (b'"/a"' if i % 4 == 0 else b'"/b"'), T0 + i)
                   for i in range(60)])
await folder.stop()

app = streamnb.App("player-demo", broker="local://slice", clock="virtual", speed=0, topic_partitions=2)
views = app.topic("views", partitions=2)
counts = app.Table("counts", default=int)

@app.agent(views)
async def count(stream):
    async for page in stream:
        counts[page] += 1

await app.start()
''',
    "app.player()",
    'counts.live(sort_by="key")',
]


def _seek(page: Any, when: float) -> None:
    """Type a time into the player's box and press Enter (what a user does instead of dragging)."""
    box = page.locator(".streamnb-player-goto input").first
    box.click()
    box.fill(f"{when}")
    box.press("Enter")
    box.evaluate("input => input.blur()")  # (the widget sends its value on change: Enter, or leaving the box)


def _counts_shown(page: Any) -> str:
    return str(page.evaluate(
        """() => Array.from(document.querySelectorAll('.streamnb-view table'))
                 .map(t => t.innerText).join('\\n')"""
    ))


def test_the_replay_player_scrubs_and_the_live_table_shows_that_moment(tmp_path: Path) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook(cells=[new_code_cell(c.strip()) for c in REPLAY_CELLS])
    nb.metadata["kernelspec"] = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    notebook = tmp_path / "player.ipynb"
    nbformat.write(nb, notebook)
    SHOTS.mkdir(exist_ok=True)
    with serve(tmp_path, notebook) as (url, log), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(
                ("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:")) else route.abort())
            page.goto(url)
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
            select = page.locator(".jp-Dialog button", has_text="Select")
            try:  # "Select Kernel" (older settings): take the notebook's own kernel
                select.wait_for(timeout=5_000)
                select.click()
            except Exception:
                pass
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
            try:
                page.wait_for_selector(".streamnb-player .streamnb-player-goto input", timeout=90_000)
                page.wait_for_selector(".streamnb-view table", timeout=60_000)
            except Exception:
                page.screenshot(path=str(SHOTS / "player-failed.png"))
                raise AssertionError(f"no player or live table; lab log:\n{log.read_text()[-2000:]}") from None

            # Scrub forward to 29.5 s: views 0..29 played, 8 of them /a.
            _seek(page, 1_700_000_029.5)
            page.wait_for_function(
                """() => document.querySelector('.streamnb-player-time')?.innerText.includes('22:13:49.500')""",
                timeout=60_000,
            )
            page.wait_for_function(
                """() => { const t = Array.from(document.querySelectorAll('.streamnb-view table'))
                              .map(t => t.innerText).join('\\n');
                           return /\\/a\\s+8\\b/.test(t) && /\\/b\\s+22\\b/.test(t); }""",
                timeout=60_000,
            )
            page.screenshot(path=str(SHOTS / "player-1-forward.png"))
            assert "paused" in page.locator(".streamnb-player-time").inner_text()

            # Back to 9.5 s: the replay starts over with fresh tables, and the table shows that moment.
            _seek(page, 1_700_000_009.5)
            try:
                page.wait_for_function(
                    """() => document.querySelector('.streamnb-player-time')?.innerText.includes('22:13:29.500')""",
                    timeout=60_000,
                )
            except Exception:
                page.screenshot(path=str(SHOTS / "player-failed.png"))
                raise
            page.wait_for_function(
                """() => { const t = Array.from(document.querySelectorAll('.streamnb-view table'))
                              .map(t => t.innerText).join('\\n');
                           return /\\/a\\s+3\\b/.test(t) && /\\/b\\s+7\\b/.test(t); }""",
                timeout=60_000,
            )
            page.screenshot(path=str(SHOTS / "player-2-back.png"))
            text = _counts_shown(page)
            assert "8" not in text.split("/a")[1].split()[0], text
            errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
            assert not [t for t in errors.all_inner_texts() if "Traceback" in t or "Error" in t]
        finally:
            browser.close()
