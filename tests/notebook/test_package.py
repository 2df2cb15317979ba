"""The public surface of streamnb.notebook."""

from __future__ import annotations

import importlib
import inspect

import streamnb
from streamnb import notebook
from streamnb.notebook import magics


def test_all_is_sorted_and_every_name_is_a_function() -> None:
    assert notebook.__all__ == sorted(notebook.__all__)
    for name in notebook.__all__:
        assert inspect.isfunction(getattr(notebook, name)), name


def test_functions_stay_functions_after_importing_their_modules() -> None:
    importlib.import_module("streamnb.notebook.peek")
    importlib.import_module("streamnb.notebook.dashboard")
    assert inspect.isfunction(notebook.peek) and inspect.isfunction(notebook.dashboard)


def test_every_module_has_all_and_public_entry_points_have_examples() -> None:
    for module_name in ("views", "dashboard", "peek", "magics", "_live", "_stats"):
        module = importlib.import_module(f"streamnb.notebook.{module_name}")
        assert module.__all__ == sorted(module.__all__, key=lambda n: (not n.isupper(), not n[0].isupper(), n))
    for fn in (notebook.live_table, notebook.dashboard, notebook.peek, notebook.live_peek, magics.find_app,
               magics.status_text, magics.parse_messages, streamnb.App.dashboard):
        assert ">>>" in (fn.__doc__ or ""), fn


def test_app_and_tables_delegate_to_the_views() -> None:
    source = inspect.getsource(streamnb.App.dashboard)
    assert "notebook.dashboard" in source
    assert "live_table" in inspect.getsource(streamnb.Table.live)
    assert "live_table" in inspect.getsource(streamnb.WindowedTable.live)

