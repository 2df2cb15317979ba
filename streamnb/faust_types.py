"""Faust's type names, for the annotations of code written for Faust.

Faust annotates with abstract ``*T`` types (``StreamT[Order]``,
``ChannelT``, ``TableT``); streamnb has no parallel tree of abstract types,
so each name here is the streamnb class it stands for. Annotations keep
working, and so do ``isinstance`` checks::

    from streamnb import ChannelT, StreamT

    async def stage(dead_letters: ChannelT, stream: StreamT[Order]) -> AsyncIterator[Order]:
        async for order in stream:
            yield order

>>> StreamT is Stream, ChannelT is Topic
(True, True)
"""

from __future__ import annotations

from .app.base import App
from .app.services import Service
from .events import Event
from .models.record import Record
from .processing.agents import Agent
from .processing.streams import Stream
from .tables.global_table import GlobalTable
from .tables.table import Table
from .tables.windowed import WindowedTable, WindowSet
from .tables.windows import Window
from .topics import Topic

__all__ = [
    "AgentT",
    "AppT",
    "ChannelT",
    "CollectionT",
    "EventT",
    "GlobalTableT",
    "ModelT",
    "ServiceT",
    "StreamT",
    "TableT",
    "TopicT",
    "WindowSetT",
    "WindowT",
    "WindowWrapperT",
]

AgentT = Agent
"""An agent (``@app.agent``)."""
AppT = App
"""The app."""
ChannelT = Topic
"""What agents read and ``send`` writes: in streamnb every channel is a topic (``app.channel()`` too)."""
CollectionT = Table
"""A table."""
EventT = Event
"""An event (``stream.events()``, ``stream.current_event``)."""
GlobalTableT = GlobalTable
"""A global table."""
ModelT = Record
"""A model (a Record)."""
ServiceT = Service
"""A service (``@app.service``)."""
StreamT = Stream
"""A stream (what an agent iterates)."""
TableT = Table
"""A table."""
TopicT = Topic
"""A topic."""
WindowSetT = WindowSet
"""``table[key]`` of a windowed table."""
WindowT = Window
"""A window kind (tumbling, hopping)."""
WindowWrapperT = WindowedTable
"""A windowed table (what ``.tumbling()``/``.hopping()`` return)."""
