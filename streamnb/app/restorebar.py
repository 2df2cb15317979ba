"""One progress bar for the table restores of ``app.start()`` in a notebook, once they last over a second.

While ``await app.start()`` runs in a Jupyter kernel, :func:`restore_bar`
watches the tables' restores (``table.restore_progress``). When restoring
has gone on for :data:`BAR_AFTER` seconds, one bar appears under the cell:
changelog records read of those known to read (the total grows as more
partitions begin), all tables and partitions together. It ends with
``restoring tables: 5,000,000 records in 23.4 s`` when the app runs. A short
restore (a restart on ``rocksdb://`` reads only the tail) shows nothing;
outside a kernel nothing is shown (a worker logs its restores).

Example (what ``App.start`` does)::

    with restore_bar(app):
        await recover_tables()
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .. import display
from ..tables.progress import RestoreTracker

__all__ = ["BAR_AFTER", "RestoreBar", "restore_bar"]

BAR_AFTER = 1.0
"""Seconds restoring must last at ``app.start()`` before the bar appears."""
POLL = 0.05
"""Seconds between two looks at the restores."""


class RestoreBar:
    """Watches restore trackers; shows one bar (through ``show``) once restoring lasted ``after`` seconds.

    >>> tracker = RestoreTracker("totals")
    >>> shown = []
    >>> bar = RestoreBar(lambda: [tracker], after=0.0, show=lambda total, what: shown.append(total) or Quiet())
    >>> tracker.begin(0, 100); tracker.advance(0, 40)
    >>> bar.look(); shown
    [100]
    >>> bar.done, bar.total
    (40, 100)
    """

    def __init__(
        self,
        trackers: Callable[[], Iterable[RestoreTracker]],
        *,
        after: float | None = None,
        show: Callable[[int, str], Any] | None = None,
    ) -> None:
        self.trackers = trackers
        self.after = BAR_AFTER if after is None else after
        self.show = show or _notebook_bar
        self.base = {id(t): t.records for t in trackers()}
        self.bar: Any = None
        """The bar once shown, else None."""
        self.began: float | None = None
        self.done = 0
        self.total = 0

    def look(self) -> None:
        """Note where the restores stand; show or update the bar."""
        trackers = list(self.trackers())
        remaining = sum(p.remaining for t in trackers for p in t.progress.values())
        restoring = any(t.progress for t in trackers)
        self.done = sum(t.records - self.base.setdefault(id(t), 0) for t in trackers)
        self.total = self.done + remaining
        now = time.monotonic()
        if restoring and self.began is None:
            self.began = now
        if self.bar is None and restoring and self.began is not None and now - self.began >= self.after:
            self.bar = self.show(self.total, "restoring tables")
        if self.bar is not None:
            self.bar.update(self.done, self.total)

    async def watch(self) -> None:
        """Look every :data:`POLL` seconds until cancelled."""
        while True:
            self.look()
            await asyncio.sleep(POLL)

    def close(self) -> None:
        """The start is over: complete the bar, if one was shown."""
        if self.bar is not None:
            self.look()
            took = time.monotonic() - (self.began or time.monotonic())
            self.bar.close(f"{self.done:,} records in {took:.1f} s")


class Quiet:
    """A bar that shows nothing (what the doctest above is given)."""

    def update(self, done: int, total: int | None = None) -> None:
        pass

    def close(self, text: str) -> None:
        pass


def _notebook_bar(total: int, what: str) -> Any:
    return display.show("progress", None, total=total, description=what)


@contextlib.contextmanager
def restore_bar(app: Any) -> Iterator[RestoreBar | None]:
    """While the block runs (on the app's loop, in a kernel): the restore bar of ``app``'s tables."""
    if "ipykernel" not in sys.modules:
        yield None
        return

    def trackers() -> list[RestoreTracker]:
        found = (getattr(t, "restore_tracker", None) for t in list(app.tables.values()))
        return [t for t in found if isinstance(t, RestoreTracker)]

    bar = RestoreBar(trackers)
    task = asyncio.ensure_future(bar.watch())
    try:
        yield bar
    finally:
        task.cancel()
        bar.close()
