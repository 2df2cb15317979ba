"""streamnb: Faust-style stream processing that lives in a Jupyter kernel.

Faust's vocabulary, on an embedded durable broker or on Kafka::

    import streamnb as faust

    class PageView(faust.Record):
        id: str
        user: str
        page: str

    app = faust.App("page-views", broker="local://.streamnb")
    page_views = app.topic("page_views", value_type=PageView)
    counts = app.Table("counts", default=int).tumbling(60)

    @app.agent(page_views)
    async def count(views):
        async for view in views.group_by(PageView.page):
            counts[view.page] += 1

In a notebook, ``%load_ext streamnb`` adds the magics and ``await
app.start()`` runs the agents on the kernel's loop.
"""

from __future__ import annotations

import importlib

from . import display
from .agents import Agent
from .app import App
from .codecs import Codec
from .codecs import register as register_codec
from .errors import (
    AgentError,
    AppNotRunningError,
    BrokerError,
    BrokerLockedError,
    BrokerUnavailableError,
    ConfigurationError,
    HistoryUnavailableError,
    PartitionMismatchError,
    SerializationError,
    StreamnbError,
    TableWriteError,
    ValidationError,
    WindowError,
)
from .events import Event
from .models import Record
from .record import record
from .replay import replay
from .streams import Stream
from .tables.table import Table
from .tables.windowed import WindowedTable, WindowSet
from .tables.windows import HoppingWindow, TumblingWindow
from .topics import Topic

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "AgentError",
    "App",
    "AppNotRunningError",
    "BrokerError",
    "BrokerLockedError",
    "BrokerUnavailableError",
    "Codec",
    "ConfigurationError",
    "Event",
    "HistoryUnavailableError",
    "HoppingWindow",
    "PartitionMismatchError",
    "Record",
    "SerializationError",
    "Stream",
    "StreamnbError",
    "Table",
    "TableWriteError",
    "Topic",
    "TumblingWindow",
    "ValidationError",
    "WindowError",
    "WindowSet",
    "WindowedTable",
    "record",
    "register_codec",
    "replay",
]


def load_ipython_extension(ipython: object) -> None:
    """``%load_ext streamnb``: register the magics (see :mod:`streamnb.notebook`)."""
    importlib.import_module(display.NOTEBOOK_LAYER).load_ipython_extension(ipython)


def unload_ipython_extension(ipython: object) -> None:
    """``%unload_ext streamnb``."""
    importlib.import_module(display.NOTEBOOK_LAYER).unload_ipython_extension(ipython)
