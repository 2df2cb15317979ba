"""The rows a live view shows of a table too large to read at each refresh.

Above ``follow_above`` rows (see :func:`streamnb.notebook.live_table`), a
view stops reading the whole table: it follows the keys each commit changes
(:mod:`streamnb.tables.changes`), reads only those (point reads, cheap on
``rocksdb://`` too) and keeps a top-N of them, sorted as the view asks; the
label gives the table's size from its estimate.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..tables.changes import ChangeFeed, Follower
from ..tables.views import items_frame

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ChangedRows"]

_ABSENT = object()


class ChangedRows:
    """The keys changed since the view opened, with their values now: at most ``keep`` of them.

    >>> from streamnb.tables.changes import ChangeFeed
    >>> feed, data = ChangeFeed(), {"a": 1, "b": 5}
    >>> rows = ChangedRows(feed, keep=10)
    >>> feed.committed(["a", "b"])
    >>> rows.update(data, lambda key: True)
    >>> rows.frame("value", ascending=False, top=1).to_dict("records")
    [{'key': 'b', 'value': 5}]
    """

    def __init__(self, feed: ChangeFeed, keep: int) -> None:
        self.feed = feed
        self.follower: Follower = feed.follow()
        self.keep = keep
        self.rows: dict[Any, Any] = {}
        """Key to value, the most recently changed last."""
        self.dropped = False
        """True once more keys changed between two refreshes than the follower holds (the oldest were missed)."""

    def refollow(self, feed: ChangeFeed) -> None:
        """The table was defined again (a re-run cell): follow the new object's commits."""
        if feed is not self.feed:
            self.feed, self.follower = feed, feed.follow()

    def update(self, data: Mapping[Any, Any], key_ok: Callable[[Any], bool]) -> None:
        """Read the keys changed since the last update (and forget the deleted ones)."""
        keys, overflowed = self.follower.drain()
        self.dropped |= overflowed
        rows = self.rows
        for key in keys:
            if not key_ok(key):
                continue
            rows.pop(key, None)
            value = data.get(key, _ABSENT)
            if value is not _ABSENT:
                rows[key] = value

    def frame(self, sort_by: str | None, ascending: bool, top: int) -> pd.DataFrame:
        """The first ``top`` rows by ``sort_by`` (else the most recently changed first); keeps ``keep`` rows."""
        df = items_frame(list(reversed(self.rows.items())))
        if sort_by is not None and len(df) and sort_by in df.columns:
            try:
                df = df.sort_values(sort_by, ascending=ascending, kind="stable")
            except TypeError:  # mixed types: sort by their text
                df = df.sort_values(sort_by, ascending=ascending, kind="stable", key=lambda s: s.astype(str))
        if len(self.rows) > self.keep:  # the best (or newest) ``keep`` stay candidates
            kept = set(df["key"].head(self.keep))
            self.rows = {k: v for k, v in self.rows.items() if k in kept}
        return df.head(top).reset_index(drop=True)
