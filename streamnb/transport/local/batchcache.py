"""The reader's batches read in part: where each partition's next read begins, already parsed.

A consumer's share of a fetch is often a small part of a batch (a fetch of
2,000 records over 16 partitions takes 125 of a batch's 2,048), and a join
reads its other side in steps. Without a cache, every such read queries sqlite
for the batch again, copies and checks its bytes, and unpacks its columns:
more work than cutting the messages out. :class:`BatchCache` keeps, per
partition, the last batch a read stopped inside (a
:class:`~streamnb.transport.local.batch.BatchView`), up to a bound on the
bytes kept. Only the reader thread uses it.

An entry is dropped when the topic is deleted, or when compaction or retention
moved the partition since the batch was read; until then it holds what the log
held when it was read, which a reader may still see (as a Kafka consumer that
fetched before a compaction does).

Example::

    >>> from streamnb.transport.local.batch import BatchView, encode
    >>> class Topic:  # what the cache looks at of a topic
    ...     id, starts, clean_upto = 1, [0], [0]
    >>> topic, cache = Topic(), BatchCache()
    >>> view = BatchView(encode([(b"k", b"v", 1.0, ())] * 4), 0)
    >>> cache.keep(topic, 0, view, 4)
    >>> cache.find(topic, 0, 2) == (view, 4), cache.find(topic, 0, 4)
    (True, None)
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .batch import BatchView

__all__ = ["MAX_BYTES", "BatchCache"]

MAX_BYTES = 64 * 1024 * 1024
"""Most bytes of batches kept (the oldest entries go first)."""


class _Entry(NamedTuple):
    topic: Any  # the catalogue's Topic object it was read from (a topic made again is another one)
    view: BatchView
    end: int  # where the next batch begins
    start: int  # the partition's log start when it was read
    clean_upto: int  # and how far it was compacted


class BatchCache:
    """Per partition, the batch the last read stopped inside (see the module docstring)."""

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._entries: dict[tuple[int, int], _Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def find(self, topic: Any, partition: int, start: int) -> tuple[BatchView, int] | None:
        """The kept batch holding offset ``start`` of the partition and where the next batch begins, if any."""
        entry = self._entries.get((topic.id, partition))
        if entry is None:
            return None
        view = entry.view
        if not view.base <= start <= view.last:
            return None
        if (entry.topic is not topic or topic.starts[partition] != entry.start
                or topic.clean_upto[partition] != entry.clean_upto or start < entry.start):
            self.drop(topic, partition)
            return None
        return view, entry.end

    def keep(self, topic: Any, partition: int, view: BatchView, end: int) -> None:
        """Keep ``view`` as the partition's batch read in part (``end``: where the next batch begins)."""
        self.drop(topic, partition)
        self._entries[(topic.id, partition)] = _Entry(topic, view, end, topic.starts[partition],
                                                      topic.clean_upto[partition])
        self.bytes += len(view.blob)
        entries = self._entries
        while self.bytes > self.max_bytes and len(entries) > 1:
            oldest = next(iter(entries))
            self.bytes -= len(entries.pop(oldest).view.blob)

    def drop(self, topic: Any, partition: int) -> None:
        """Forget the partition's batch (read to its end, or no longer valid)."""
        entry = self._entries.pop((topic.id, partition), None)
        if entry is not None:
            self.bytes -= len(entry.view.blob)

    def clear(self) -> None:
        """Forget every batch (the store is closing)."""
        self._entries.clear()
        self.bytes = 0
