"""Tables, windowed tables and window math."""

from .table import Table
from .windowed import WindowedTable, WindowSet
from .windows import HoppingWindow, TumblingWindow, Window, WindowRange, window_ranges

__all__ = [
    "HoppingWindow", "Table", "TumblingWindow", "Window", "WindowRange", "WindowSet", "WindowedTable", "window_ranges"
]
