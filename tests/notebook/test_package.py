"""The public surface of streamnb.notebook."""

from __future__ import annotations

import doctest
import importlib
import inspect
import subprocess
import sys

import streamnb
from streamnb import notebook
from streamnb.notebook import magics


def test_every_name_is_a_function() -> None:
    for name in notebook.__all__:
        assert inspect.isfunction(getattr(notebook, name)), name


def test_functions_stay_functions_after_importing_their_modules() -> None:
    importlib.import_module("streamnb.notebook.peek")
    importlib.import_module("streamnb.notebook.dashboard")
    assert inspect.isfunction(notebook.peek) and inspect.isfunction(notebook.dashboard)


def test_public_entry_points_have_examples_that_run() -> None:
    """The suite runs them (``--doctest-modules``); only ``await`` examples are skipped."""
    parser = doctest.DocTestParser()
    for fn in (notebook.live_table, notebook.dashboard, notebook.live_peek, magics.find_app,
               magics.status_text, magics.parse_messages, streamnb.App.dashboard, notebook.live_chart):
        found = parser.get_examples(inspect.getdoc(fn) or "")
        assert found and not any(e.options.get(doctest.SKIP) for e in found), fn
    assert parser.get_examples(inspect.getdoc(notebook.peek) or ""), "peek has no example"


def test_app_and_tables_show_the_registered_views() -> None:
    from streamnb import display

    app = streamnb.App("delegates", broker="memory://")
    counts = app.Table("counts", default=int)
    windows = app.Table("windows", default=int).tumbling(10)
    calls: list[tuple[str, object, dict]] = []
    saved = {name: display._VIEWS[name] for name in ("live_table", "live_chart", "dashboard")}  # noqa: SLF001
    try:
        for name in saved:
            display.register(name, lambda obj, _n=name, **options: calls.append((_n, obj, options)) or _n)
        assert counts.live(top=3) == "live_table"
        assert windows.chart(mark="bar") == "live_chart"
        assert app.dashboard() == "dashboard"
    finally:
        for name, factory in saved.items():
            display.register(name, factory)
    assert calls == [
        ("live_table", counts, {"top": 3}), ("live_chart", windows, {"mark": "bar"}), ("dashboard", app, {})
    ]


def test_the_core_loads_the_notebook_layer_on_first_use() -> None:
    code = (
        "import sys, streamnb\n"
        "assert 'streamnb.notebook' not in sys.modules\n"
        "app = streamnb.App('lazy', broker='memory://')\n"
        "widget = app.Table('t', default=int).live()\n"
        "assert 'streamnb.notebook' in sys.modules, 'not loaded'\n"
        "print(type(widget).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "LiveTable"
