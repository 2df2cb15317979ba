"""Compaction and retention passes over an open ``local://`` store (on its writer thread).

A compacted partition is compacted once at least ``min_dirty`` messages
(and more than it keeps) are new since the last compaction, so its cost per
message written stays flat; retention runs when the store says it is due
(:class:`~streamnb.transport.local.store.Store` holds the thresholds). A
damaged partition is left as it is (reading it raises) and the pass goes on.

Example (on the writer thread, ``topics`` the store's cache)::

    if due(topics, written, retention_due=True, min_dirty=10_000):
        run(conn, topics, folder, min_dirty=10_000, force=False, retention=True)
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping
from typing import Any

from ... import _gc
from .catalogue import Topic
from .integrity import Damage, corrupt
from .log import compact, compaction_due, expire

__all__ = ["due", "run"]

logger = logging.getLogger("streamnb.transport.local")


def due(
    topics: Mapping[str, Topic], written: Mapping[str, tuple[Any, Any, list[list[Any]]]], *, retention_due: bool,
    min_dirty: int,
) -> bool:
    """Whether a write to ``written`` (topic -> (id, ends, new messages per partition)) calls for a pass.

    >>> topic = Topic(1, "clicks", 1, True, None, [20_000], [0], [0], [0])
    >>> due({"clicks": topic}, {"clicks": (1, [20_000], [[b"x"]])}, retention_due=False, min_dirty=10_000)
    True
    """
    for name, (_, _, rows) in written.items():
        topic = topics[name]
        if topic.retention is not None and retention_due:
            return True
        if topic.compacted:
            for p, appended in enumerate(rows):
                if appended and compaction_due(topic, p, min_dirty):
                    return True
    return False


def run(
    conn: sqlite3.Connection, topics: Mapping[str, Topic], folder: str, *, min_dirty: int, force: bool,
    retention: bool,
) -> None:
    """Compact the partitions that need it (every one with new messages if ``force``); expire if ``retention``."""
    _gc.pause()  # (a collection over a partition read whole would hold the event loop too: see streamnb._gc)
    try:
        for topic in list(topics.values()):
            for p in range(topic.partitions):
                try:
                    if topic.compacted and (
                        topic.ends[p] > topic.clean_upto[p] if force else compaction_due(topic, p, min_dirty)
                    ):
                        compact(conn, topic, p)
                    if retention and topic.retention is not None:
                        expire(conn, topic, p)
                except Damage as damage:  # left as it is: reading it raises, the rest goes on
                    logger.error("not compacting nor expiring a damaged partition: %s", corrupt(folder, damage))
    finally:
        _gc.resume()
