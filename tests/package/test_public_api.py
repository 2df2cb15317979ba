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


PUBLIC_NAMES = [
    "Agent", "AgentError", "AgentT", "App", "AppCommand", "AppNotRunningError", "AppT", "AvroCodec", "AvroDecimal",
    "BrokerError", "BrokerLockedError", "BrokerUnavailableError", "Channel", "ChannelT", "Codec", "CollectionT",
    "ConfigurationError", "CorruptStoreError", "Event", "EventT", "GlobalTable", "GlobalTableT",
    "HistoryUnavailableError",
    "HoppingWindow", "Model", "ModelT", "PartitionMismatchError", "Record", "RemoteAgentError", "SchemaRegistry",
    "SchemaRegistryError",
    "SchemaRegistryUnavailableError", "SerializationError", "Service", "ServiceT", "SetGlobalTable", "SetTable",
    "Settings", "Stream",
    "StreamT", "StreamnbError", "Table", "TableT", "TableWriteError", "Topic", "TopicT", "TumblingWindow",
    "ValidationError", "Window", "WindowError", "WindowSet", "WindowSetT", "WindowT", "WindowWrapperT",
    "WindowedTable", "current_event", "record", "register_codec", "replay", "uuid",
]
"""``streamnb.__all__`` as users know it: names may be added, never taken away."""


def test_no_public_name_disappears() -> None:
    assert set(PUBLIC_NAMES) <= set(streamnb.__all__), sorted(set(PUBLIC_NAMES) - set(streamnb.__all__))
    assert callable(streamnb.record) and callable(streamnb.replay)  # functions, not the modules behind them


def test_documented_module_paths_keep_working() -> None:
    """The module paths the docs, the notebooks and users import by: they do not move with the packages."""
    from streamnb.avro import AvroCodec, SchemaRegistry  # noqa: F401
    from streamnb.cli import argument, option  # noqa: F401
    from streamnb.codecs import Codec, get_codec  # noqa: F401
    from streamnb.models import FieldDescriptor, Record  # noqa: F401
    from streamnb.notebook import live_table  # noqa: F401
    from streamnb.tables.windows import HoppingWindow, TumblingWindow  # noqa: F401
    from streamnb.testing import lag, settle, test_app  # noqa: F401
    from streamnb.topics import Topic  # noqa: F401
    from streamnb.transport.base import TP, Message, Transport  # noqa: F401

    assert Record is streamnb.Record and Topic is streamnb.Topic and Codec is streamnb.Codec
