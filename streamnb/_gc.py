"""Garbage-collector tuning while apps run.

Stream processing allocates many short-lived containers (decoded JSON
dicts, Records, window keys). With CPython's default first-generation
threshold (700) the collector runs every few events and costs about a
quarter of the CPU of a windowed count. While at least one App with
``tune_gc=True`` (the default) runs, the threshold is raised to 50,000;
it is restored when the last such App stops. Reference cycles are still
collected, only less often.

A large commit (:data:`LARGE` records or more) pauses automatic
collection until it landed (:func:`resume`): its records are tuples the
collector never stops tracking (named tuples), and a full collection over
a million of them holds every thread, the event loop's too, for about half
a second. Freed by reference counting once the commit landed, they are
never scanned. So does the ``local://`` store's background compaction,
which reads a whole partition (in its worker thread: a collection there
holds every thread too).

Example::

    >>> pause(); gc.isenabled()
    False
    >>> resume(); gc.isenabled()
    True
"""

from __future__ import annotations

import asyncio
import gc
import threading

__all__ = ["LARGE", "Pause", "acquire", "end_pauses", "pause", "release", "resume"]

THRESHOLD0 = 50_000
LARGE = 50_000
"""Records from which a commit pauses automatic collection (see the module docstring)."""
PATIENCE = 1.0
"""Seconds :meth:`Pause.end` waits at most for a commit's records to be freed."""
_users = 0
_saved: tuple[int, int, int] | None = None
_pauses = 0
_was_enabled = True


_lock = threading.Lock()


def pause() -> None:
    """Turn automatic collection off until the matching :func:`resume` (pauses nest; any thread)."""
    global _pauses, _was_enabled
    with _lock:
        if _pauses == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _pauses += 1


def resume() -> None:
    """End a :func:`pause`; collection is back on (if it was) after the last one."""
    global _pauses
    with _lock:
        if _pauses == 0:
            return
        _pauses -= 1
        if _pauses == 0 and _was_enabled:
            gc.enable()


def acquire() -> None:
    """One more running app wants the raised threshold."""
    global _users, _saved
    if _users == 0:
        _saved = gc.get_threshold()
        gen0, gen1, gen2 = _saved
        gc.set_threshold(max(gen0, THRESHOLD0), gen1, gen2)
    _users += 1


def release() -> None:
    """A running app stopped; restore the threshold after the last one."""
    global _users, _saved
    if _users == 0:
        return
    _users -= 1
    if _users == 0 and _saved is not None:
        gc.set_threshold(*_saved)
        _saved = None


class Pause:
    """One :func:`pause`, made at construction; :meth:`end` resumes it, once however often it is called.

    ``end()`` waits (up to :data:`PATIENCE` s, on the running loop) while the
    collector's young generation is still :data:`LARGE`: what held the
    commit's records (a worker thread's last reference) lets go of them just
    after the commit landed, and a collection then would scan them all.

    >>> p = Pause(); p.end(); p.end(); gc.isenabled()
    True
    """

    def __init__(self) -> None:
        pause()
        self.ended = False
        self.deadline: float | None = None
        _open.add(self)

    def end(self, *, now: bool = False) -> None:
        """Resume, once the records are gone or :data:`PATIENCE` s passed (``now``: at once)."""
        if self.ended:
            return
        if gc.get_count()[0] > LARGE and not now:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None:
                at = loop.time()
                if self.deadline is None:
                    self.deadline = at + PATIENCE
                if at < self.deadline:
                    loop.call_later(0.02, self.end)
                    return
        self.ended = True
        _open.discard(self)
        resume()


_open: set[Pause] = set()


def end_pauses() -> None:
    """End every pause now (an app stopped: nothing it started may keep collection off).

    >>> p = Pause(); end_pauses(); p.ended and gc.isenabled()
    True
    """
    for p in list(_open):
        p.end(now=True)
