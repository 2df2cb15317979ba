"""A progress bar in the notebook (what ``streamnb.record`` shows while it copies).

Example::

    bar = progress_bar(total=1_000_000, description="recording page_views")
    bar.update(250_000)
    bar.close("1,000,000 messages into local://slice")
"""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets

__all__ = ["ProgressBar", "progress_bar"]


class ProgressBar:
    """An ipywidgets bar with a label, displayed when made."""

    def __init__(self, total: int, description: str) -> None:
        from IPython.display import display

        self.total = max(int(total), 1)
        self.bar = widgets.IntProgress(value=0, min=0, max=self.total, description="", bar_style="info")
        self.label = widgets.Label(f"{description}: 0/{self.total:,}")
        self.description = description
        self.widget = widgets.HBox([self.bar, self.label])
        display(self.widget)

    def update(self, done: int, total: int | None = None) -> None:
        """``done`` items so far (of ``total``, when it changed)."""
        if total is not None and total != self.total:
            self.total = max(int(total), 1)
            self.bar.max = self.total
        self.bar.value = min(done, self.total)
        self.label.value = f"{self.description}: {done:,}/{self.total:,}"

    def close(self, text: str) -> None:
        """Finished: fill the bar and show ``text``."""
        self.bar.value = self.total
        self.bar.bar_style = "success"
        self.label.value = f"{self.description}: {text}"


def progress_bar(_obj: Any = None, *, total: int, description: str) -> ProgressBar:
    """A displayed :class:`ProgressBar` (the ``progress`` view of :mod:`streamnb.display`)."""
    return ProgressBar(total, description)
