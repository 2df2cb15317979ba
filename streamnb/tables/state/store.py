"""Storage of windowed tables: ``{(key, (start, end)): value}``, kept per key.

A windowed count touches every window holding an event: six of them for a
60 s window hopping every 10 s. Keeping the windows of one key together
(``{key: {start: value}}``) costs one hash of the key per event and one
float hash per window, instead of hashing a ``(key, (start, end))`` tuple
three times per window. To everything else the store is an ordinary
mutable mapping keyed by ``(key, (start, end))``.

>>> store = WindowStore(10.0)
>>> store[("a", (20.0, 30.0))] = 3
>>> list(store.items())
[(('a', (20.0, 30.0)), 3)]
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any, cast

__all__ = ["WindowStore"]


class WindowStore(MutableMapping[Any, Any]):
    """A ``(key, (start, end)) -> value`` mapping stored as ``{key: {start: value}}``.

    ``size`` fixes every window's end: ``end = start + size``.
    """

    def __init__(self, size: float) -> None:
        self.size = size
        self.by_key: dict[Any, dict[float, Any]] = {}
        self._len = 0

    def end(self, start: float) -> float:
        """The end of the window starting at ``start`` (rounded as window math rounds it)."""
        return float(round(start + self.size, 9))

    def __getitem__(self, wk: Any) -> Any:
        key, window = wk
        return self.by_key[key][window[0]]

    def get(self, wk: Any, default: Any = None) -> Any:
        key, window = wk
        inner = self.by_key.get(key)
        if inner is None:
            return default
        return inner.get(window[0], default)

    def __contains__(self, wk: object) -> bool:
        try:
            key, window = cast(tuple[Any, Any], wk)
            inner = self.by_key.get(key)
            return inner is not None and window[0] in inner
        except (TypeError, ValueError):
            return False

    def __setitem__(self, wk: Any, value: Any) -> None:
        key, window = wk
        inner = self.by_key.get(key)
        if inner is None:
            inner = self.by_key[key] = {}
        start = window[0]
        if start not in inner:
            self._len += 1
        inner[start] = value

    def __delitem__(self, wk: Any) -> None:
        key, window = wk
        inner = self.by_key[key]
        del inner[window[0]]
        self._len -= 1
        if not inner:
            del self.by_key[key]

    def discard(self, key: Any, start: float) -> None:
        """Remove one window if present."""
        inner = self.by_key.get(key)
        if inner is not None and start in inner:
            del inner[start]
            self._len -= 1
            if not inner:
                del self.by_key[key]

    def put(self, key: Any, start: float, value: Any) -> None:
        """Set one window's value."""
        inner = self.by_key.get(key)
        if inner is None:
            inner = self.by_key[key] = {}
        if start not in inner:
            self._len += 1
        inner[start] = value

    def count(self, added: int) -> None:
        """Account for windows added (or, negative, removed) through ``by_key`` directly."""
        self._len += added

    def __iter__(self) -> Iterator[Any]:
        end = self.end
        for key, inner in list(self.by_key.items()):
            for start in list(inner):
                yield (key, (start, end(start)))

    def items(self) -> Any:
        """``((key, (start, end)), value)`` pairs (a list: safe while agents write)."""
        end = self.end
        return [
            ((key, (start, end(start))), value)
            for key, inner in list(self.by_key.items())
            for start, value in list(inner.items())
        ]

    def __len__(self) -> int:
        return self._len

    def clear(self) -> None:
        self.by_key.clear()
        self._len = 0

    def __repr__(self) -> str:
        return f"WindowStore({dict(self.items())!r})"
