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
from .app.base import App
from .app.conf import Settings
from .app.services import Service
from .avro import AvroCodec, AvroDecimal, SchemaRegistry
from .cli import AppCommand
from .codecs.base import Codec
from .codecs.base import register as register_codec
from .errors import (
    AgentError,
    AppNotRunningError,
    BrokerError,
    BrokerLockedError,
    BrokerUnavailableError,
    ConfigurationError,
    CorruptStoreError,
    EventTimeError,
    HistoryUnavailableError,
    PartitionMismatchError,
    RemoteAgentError,
    SchemaRegistryError,
    SchemaRegistryUnavailableError,
    SerializationError,
    StoreLockedError,
    StoreWriteError,
    StreamnbError,
    TableWriteError,
    ValidationError,
    WindowError,
)
from .events import Event
from .faust_types import (
    AgentT,
    AppT,
    ChannelT,
    CollectionT,
    EventT,
    GlobalTableT,
    ModelT,
    ServiceT,
    StreamT,
    TableT,
    TopicT,
    WindowSetT,
    WindowT,
    WindowWrapperT,
)
from .models.record import Record
from .playback.recording import record
from .playback.replay import replay
from .processing.agents import Agent
from .processing.streams import Stream, current_event
from .tables.global_table import GlobalTable
from .tables.sets import SetGlobalTable, SetTable
from .tables.table import Table
from .tables.windowed import WindowedTable, WindowSet
from .tables.windows import HoppingWindow, TumblingWindow, Window
from .topics import Topic

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "AgentError",
    "AgentT",
    "App",
    "AppCommand",
    "AppNotRunningError",
    "AppT",
    "AvroCodec",
    "AvroDecimal",
    "BrokerError",
    "BrokerLockedError",
    "BrokerUnavailableError",
    "Channel",
    "ChannelT",
    "Codec",
    "CollectionT",
    "ConfigurationError",
    "CorruptStoreError",
    "Event",
    "EventT",
    "EventTimeError",
    "GlobalTable",
    "GlobalTableT",
    "HistoryUnavailableError",
    "HoppingWindow",
    "Model",
    "ModelT",
    "PartitionMismatchError",
    "Record",
    "RemoteAgentError",
    "SchemaRegistry",
    "SchemaRegistryError",
    "SchemaRegistryUnavailableError",
    "SerializationError",
    "Service",
    "ServiceT",
    "SetGlobalTable",
    "SetTable",
    "Settings",
    "StoreLockedError",
    "StoreWriteError",
    "Stream",
    "StreamT",
    "StreamnbError",
    "Table",
    "TableT",
    "TableWriteError",
    "Topic",
    "TopicT",
    "TumblingWindow",
    "ValidationError",
    "Window",
    "WindowError",
    "WindowSet",
    "WindowSetT",
    "WindowT",
    "WindowWrapperT",
    "WindowedTable",
    "current_event",
    "record",
    "register_codec",
    "replay",
    "uuid",
]

Channel = Topic
"""Faust's ``faust.Channel``: what ``app.channel()`` returns (a one-partition topic here)."""
Model = Record
"""Faust's ``faust.Model``, the base of its Records: streamnb's models are Records."""


def uuid() -> str:
    """A random UUID as a string (Faust's ``faust.uuid()``).

    >>> len(uuid())
    36
    """
    import uuid as _uuid

    return str(_uuid.uuid4())


def load_ipython_extension(ipython: object) -> None:
    """``%load_ext streamnb``: register the magics (see :mod:`streamnb.notebook`)."""
    importlib.import_module(display.NOTEBOOK_LAYER).load_ipython_extension(ipython)


def unload_ipython_extension(ipython: object) -> None:
    """``%unload_ext streamnb``."""
    importlib.import_module(display.NOTEBOOK_LAYER).unload_ipython_extension(ipython)


display.register_magics_in_ipython()  # in a kernel, %streamnb works before %load_ext streamnb
