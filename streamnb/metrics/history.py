"""The last minutes of an app's metrics, one snapshot a second (``app.metrics_history()``).

Example::

    >>> history = History(seconds=3)
    >>> for t in range(5):
    ...     history.record(float(t), [("streamnb_events_total", {"agent": "count"}, 10.0 * t)])
    >>> [row[0] for row in history.rows()]
    [2.0, 3.0, 4.0]
"""

from __future__ import annotations

from collections import deque

__all__ = ["History", "Row"]

Row = tuple[float, str, dict[str, str], float]
"""``(time, name, labels, value)``: one sample at one time (epoch seconds)."""


class History:
    """Snapshots of samples, the newest ``seconds`` of them (one a second)."""

    def __init__(self, seconds: int = 300) -> None:
        if seconds < 1:
            raise ValueError(f"History keeps at least one second, got {seconds!r}")
        self.seconds = seconds
        self._snapshots: deque[tuple[float, list[tuple[str, tuple[tuple[str, str], ...], float]]]] = deque(
            maxlen=seconds
        )

    def __len__(self) -> int:
        return len(self._snapshots)

    def record(self, when: float, samples: list[tuple[str, dict[str, str], float]]) -> None:
        """Keep the samples taken at ``when`` (the oldest snapshot goes once there are :attr:`seconds`).

        Histogram buckets are left out (``_count`` and ``_sum`` stay): the history stays small.
        """
        kept = [(name, tuple(labels.items()), value) for name, labels, value in samples
                if not name.endswith("_bucket")]
        self._snapshots.append((when, kept))

    def rows(self, since: float | None = None) -> list[Row]:
        """Every sample kept (taken at or after ``since``), oldest first."""
        return [
            (when, name, dict(labels), value)
            for when, samples in self._snapshots
            if since is None or when >= since
            for name, labels, value in samples
        ]

    def clear(self) -> None:
        """Forget every snapshot."""
        self._snapshots.clear()
