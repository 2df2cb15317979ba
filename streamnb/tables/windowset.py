"""``table[key]`` of a windowed table: the windows of one key, updated together, read one at a time.

>>> from streamnb import App
>>> views = App("demo", broker="memory://").Table("views", default=int).tumbling(60)
>>> views["/"]  # doctest: +ELLIPSIS
<WindowSet views['/'] current=0>
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any, NoReturn, Protocol

from ..errors import WindowError
from ..transaction import MISSING

__all__ = ["WindowSet", "WindowedView"]


class WindowedView(Protocol):
    """What a :class:`WindowSet` reads and updates: a :class:`~streamnb.tables.windowed.WindowedTable`."""

    state: Any
    """The windows (a :class:`~streamnb.tables.windowed.WindowKeeper`)."""
    table: Any
    """The table (its ``name``, ``default`` and clock ``now()``)."""

    def event_time(self, event: Any = None, *, stream: bool = False) -> float:
        """The time the view is relative to (the current event's with ``stream``)."""
        ...

    def apply(self, key: Any, op: Callable[[Any, Any], Any], operand: Any) -> None:
        """Update every open window of ``key`` holding the current time with ``op(value, operand)``."""
        ...


class WindowSet:
    """The windows of one key: ``table[key]`` of a windowed table.

    ``table[key] += 1`` updates every open window holding the current
    event's time; reads pick one window. Used as a number it raises a
    :class:`~streamnb.errors.WindowError` that says how to pick one.

    >>> from streamnb import App
    >>> views = App("demo", broker="memory://").Table("views", default=int).tumbling(60)
    >>> views["/"] + 1  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    streamnb.errors.WindowError: views['/'] is the windows of key '/', not a number: pick one window with ...
    """

    __slots__ = ("key", "wrapper")

    def __init__(self, key: Any, wrapper: WindowedView) -> None:
        self.key = key
        self.wrapper = wrapper

    def _value_at(self, timestamp: float) -> Any:
        window = self.wrapper.state.window_at(self.key, timestamp)
        return self._default() if window is None else self[window]

    def _default(self) -> Any:
        default = self.wrapper.table.default
        return None if default is None else default()

    def __getitem__(self, window: Any) -> Any:
        """Value of one window, given as ``(start, end)`` or as a timestamp inside it."""
        if isinstance(window, (int, float)):
            return self._value_at(float(window))
        start, end = window
        value = self.wrapper.state.get(self.key, (float(start), float(end)))
        return self._default() if value is MISSING else value

    def now(self) -> Any:
        """Value in the newest window holding the app's clock (the wall clock, or virtual time in a replay)."""
        return self._value_at(self.wrapper.table.now())

    def current(self, event: Any = None) -> Any:
        """Value in the newest window holding the current event's time.

        Outside an agent, the newest event time the table has seen is used.
        """
        return self._value_at(self.wrapper.event_time(event, stream=True))

    def value(self, event: Any = None) -> Any:
        """Value in the newest window holding the time the table is relative to."""
        return self._value_at(self.wrapper.event_time(event))

    def delta(self, seconds: float, event: Any = None) -> Any:
        """Value in the window holding ``seconds`` before the current time."""
        state = self.wrapper.state
        if not state.supports_delta:
            raise WindowError(
                f"delta() has no meaning for {state.window.kind} windows (they are not aligned in time): "
                f"read a window by its bounds, table[key][(start, end)], or list them with as_dataframe()"
            )
        return self._value_at(self.wrapper.event_time(event) - seconds)

    def _op(self, op: Callable[[Any, Any], Any], other: Any) -> WindowSet:
        self.wrapper.apply(self.key, op, other)
        return self

    def __iadd__(self, other: Any) -> WindowSet:
        self.wrapper.apply(self.key, operator.add, other)
        return self

    def __isub__(self, other: Any) -> WindowSet:
        return self._op(operator.sub, other)

    def __imul__(self, other: Any) -> WindowSet:
        return self._op(operator.mul, other)

    def __itruediv__(self, other: Any) -> WindowSet:
        return self._op(operator.truediv, other)

    def __ior__(self, other: Any) -> WindowSet:
        return self._op(operator.or_, other)

    def __iand__(self, other: Any) -> WindowSet:
        return self._op(operator.and_, other)

    # -- a WindowSet is not a number: say which window to read ---------------------------------

    def _not_a_number(self, *_args: Any) -> NoReturn:
        name, key = self.wrapper.table.name, self.key
        raise WindowError(
            f"{name}[{key!r}] is the windows of key {key!r}, not a number: pick one window with "
            f"{name}[{key!r}].current() (the current event's window), .now() (the window holding the "
            f"app's clock), .value() (the window of the time the table is relative to), .delta(seconds) "
            f"or [(start, end)]; `{name}[{key!r}] += 1` updates the windows"
        )

    def __add__(self, other: Any) -> NoReturn:
        self._not_a_number()

    def __sub__(self, other: Any) -> NoReturn:
        self._not_a_number()

    def __mul__(self, other: Any) -> NoReturn:
        self._not_a_number()

    def __truediv__(self, other: Any) -> NoReturn:
        self._not_a_number()

    __radd__ = __rsub__ = __rmul__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = _not_a_number
    __pow__ = __lt__ = __le__ = __gt__ = __ge__ = _not_a_number
    __neg__ = __pos__ = __abs__ = __int__ = __float__ = __round__ = __index__ = _not_a_number

    def __repr__(self) -> str:
        return f"<WindowSet {self.wrapper.table.name}[{self.key!r}] current={self.current()!r}>"
