"""Which keys a table's commits changed, for readers that follow a table without scanning it.

A live view of a table with millions of rows cannot read them all twice a
second; it follows the table instead: ``table.changes.follow()`` gives a
:class:`Follower` that collects the keys each commit wrote, and the view
reads only those keys (point reads) when it refreshes.

>>> feed = ChangeFeed()
>>> follower = feed.follow()
>>> feed.committed(["a", "b"])
>>> feed.committed(["a"])
>>> follower.drain()
(['b', 'a'], False)
>>> follower.drain()
([], False)
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Iterable
from typing import Any

__all__ = ["ChangeFeed", "Follower"]


class Follower:
    """The keys changed since the last :meth:`drain`, oldest change first (at most ``capacity`` of them)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._keys: dict[Any, None] = {}
        self._overflowed = False

    def note(self, keys: Iterable[Any]) -> None:
        """A commit wrote ``keys``."""
        held = self._keys
        for key in keys:
            held.pop(key, None)
            held[key] = None
        if len(held) > self.capacity:  # keep the newest; the reader hears some were dropped
            for key in list(itertools.islice(held, len(held) - self.capacity)):
                del held[key]
            self._overflowed = True

    def drain(self) -> tuple[list[Any], bool]:
        """The keys changed since the last call, and whether more changed than ``capacity`` (some dropped)."""
        keys, overflowed = list(self._keys), self._overflowed
        self._keys, self._overflowed = {}, False
        return keys, overflowed


class ChangeFeed:
    """A table's commits, told to each :class:`Follower` (kept only while someone holds it)."""

    def __init__(self) -> None:
        self._followers: weakref.WeakSet[Follower] = weakref.WeakSet()
        self.complete = True
        """False for tables that also change without a commit of this process (global, from a topic, joined)."""

    def follow(self, capacity: int = 100_000) -> Follower:
        """A new follower, which hears of every commit from now on while it is referenced."""
        follower = Follower(capacity)
        self._followers.add(follower)
        return follower

    def committed(self, keys: Iterable[Any]) -> None:
        """A commit wrote ``keys`` (the table calls this after each commit)."""
        followers = self._followers
        if not followers:
            return
        keys = list(keys)
        for follower in list(followers):
            follower.note(keys)
