"""The public surface is one ``__all__`` (ruff's RUF022 keeps every ``__all__`` sorted) and it is documented."""

from __future__ import annotations

import doctest
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


def examples(obj: object) -> list[doctest.Example]:
    """The doctest examples in ``obj``'s docstring (the suite runs them: ``--doctest-modules``)."""
    return doctest.DocTestParser().get_examples(inspect.getdoc(obj) or "")


def runs(example: doctest.Example) -> bool:
    return not example.options.get(doctest.SKIP, False)


def test_public_entry_points_have_docstrings_with_examples() -> None:
    for name in ["App", "Record", "Table", "Topic", "Stream", "Agent", "WindowedTable"]:
        obj = getattr(streamnb, name)
        assert obj.__doc__, name
    # Examples that need a running loop or broker (``await``, ``async for``) are skipped...
    for method in [
        streamnb.App.start, streamnb.App.stop, streamnb.App.run, streamnb.Topic.send, streamnb.Stream.take,
        streamnb.record, streamnb.replay, streamnb.App.fork, streamnb.Table.at, streamnb.Table.history,
    ]:
        assert examples(method), f"{method.__qualname__} has no example"
    # ...the others run.
    for method in [
        streamnb.App, streamnb.App.topic, streamnb.App.agent, streamnb.App.Table, streamnb.App.timer,
        streamnb.App.task, streamnb.Stream.filter, streamnb.Table.tumbling, streamnb.Table.hopping,
        streamnb.Table.as_dataframe, streamnb.WindowedTable.as_dataframe, streamnb.App.now,
    ]:
        found = examples(method)
        assert found and all(runs(e) for e in found), f"{method.__qualname__} has no example that runs"


def test_one_error_root() -> None:
    errors = [getattr(streamnb, n) for n in streamnb.__all__ if n.endswith("Error")]
    assert len(errors) >= 10
    for error in errors:
        assert issubclass(error, streamnb.StreamnbError)
