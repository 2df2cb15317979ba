"""The restore bar of ``app.start()`` (streamnb/app/restorebar.py); in a kernel: tests/notebook/test_restore_bar.py."""

from __future__ import annotations

import sys

import pytest

from streamnb.app.restorebar import RestoreBar, restore_bar
from streamnb.tables.progress import RestoreTracker


def test_the_bar_counts_every_partition_and_waits_for_its_threshold() -> None:
    a, b = RestoreTracker("a"), RestoreTracker("b")
    shown: list[tuple[int, str]] = []

    class Bar:
        def __init__(self) -> None:
            self.calls: list[tuple[int, int | None]] = []
            self.closed = ""

        def update(self, done: int, total: int | None = None) -> None:
            self.calls.append((done, total))

        def close(self, text: str) -> None:
            self.closed = text

    made = Bar()
    bar = RestoreBar(lambda: [a, b], after=3600.0, show=lambda total, what: shown.append((total, what)) or made)
    a.begin(0, 100)
    a.advance(0, 60)
    bar.look()
    assert not shown and (bar.done, bar.total) == (60, 100)  # restoring, but not for an hour yet
    bar.after = 0.0
    a.finish(0)
    b.begin(3, 50)
    b.advance(3, 10)
    bar.look()
    assert shown == [(110, "restoring tables")] and made.calls[-1] == (70, 110)
    b.advance(3, 40)
    b.finish(3)
    bar.close()
    assert made.closed.startswith("110 records in")
    quiet = RestoreBar(lambda: [a], after=0.0, show=lambda total, what: shown.append((total, what)))
    quiet.look()
    quiet.close()
    assert len(shown) == 1  # nothing restoring: no bar


def test_outside_a_kernel_nothing_is_watched(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    with restore_bar(object()) as bar:
        assert bar is None
