"""Garbage-collector tuning while apps run.

Stream processing allocates many short-lived containers (decoded JSON
dicts, Records, window keys). With CPython's default first-generation
threshold (700) the collector runs every few events and costs about a
quarter of the CPU of a windowed count. While at least one App with
``tune_gc=True`` (the default) runs, the threshold is raised to 50,000;
it is restored when the last such App stops. Reference cycles are still
collected, only less often.
"""

from __future__ import annotations

import gc

__all__ = ["acquire", "release"]

THRESHOLD0 = 50_000
_users = 0
_saved: tuple[int, int, int] | None = None


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
