"""The public surface is one ``__all__`` (ruff's RUF022 keeps every ``__all__`` sorted) and it is documented."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import streamnb


def test_all_is_complete() -> None:
    for name in streamnb.__all__:
        assert hasattr(streamnb, name), name


def test_every_module_declares_all() -> None:
    for info in pkgutil.walk_packages(streamnb.__path__, "streamnb."):
        module = importlib.import_module(info.name)
        assert hasattr(module, "__all__"), f"{info.name} has no __all__"


def test_public_entry_points_have_docstrings_with_examples() -> None:
    for name in ["App", "Record", "Table", "Topic", "Stream", "Agent", "WindowedTable"]:
        obj = getattr(streamnb, name)
        assert obj.__doc__, name
    for method in [
        streamnb.App.topic, streamnb.App.agent, streamnb.App.Table, streamnb.App.timer, streamnb.App.task,
        streamnb.App.start, streamnb.App.stop, streamnb.App.run, streamnb.Topic.send, streamnb.Stream.group_by,
        streamnb.Stream.take, streamnb.Stream.filter, streamnb.Table.tumbling, streamnb.Table.hopping,
        streamnb.WindowedTable.as_dataframe, streamnb.record, streamnb.replay, streamnb.App.fork,
        streamnb.Table.at, streamnb.Table.history, streamnb.App.now,
    ]:
        doc = inspect.getdoc(method) or ""
        assert ">>>" in doc, f"{method.__qualname__} has no example"


def test_one_error_root() -> None:
    errors = [getattr(streamnb, n) for n in streamnb.__all__ if n.endswith("Error")]
    assert len(errors) >= 10
    for error in errors:
        assert issubclass(error, streamnb.StreamnbError)
