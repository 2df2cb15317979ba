"""Progress of long copies (``streamnb.record``, ``app.fork``): a notebook bar, a terminal line, or yours.

``progress=None`` shows a bar in a notebook and a line on a terminal's
stderr, nothing elsewhere; ``True``/``False`` force it; any object with
``update(done)`` and ``close(text)`` (a :class:`Progress`) gets the calls
itself, e.g. to log them.

Example::

    >>> class Log:
    ...     def update(self, done): print("done", done)
    ...     def close(self, text): print(text)
    >>> bar = progress(Log(), 10, "copying")
    >>> bar.update(4); bar.close("10 messages")
    done 4
    10 messages
"""

from __future__ import annotations

import sys
import time
from typing import Any, Protocol, runtime_checkable

from .. import display
from ..errors import ConfigurationError

__all__ = ["Progress", "progress"]


@runtime_checkable
class Progress(Protocol):
    """What a copy reports progress to (a notebook bar, a terminal line, or your object)."""

    def update(self, done: int) -> None:
        """``done`` items copied so far."""
        ...

    def close(self, text: str) -> None:
        """Finished: show ``text``."""
        ...


class _TextProgress:
    """A progress line on stderr (redrawn at most every 0.2 s)."""

    def __init__(self, total: int, what: str) -> None:
        self.total = max(total, 1)
        self.what = what
        self.last = 0.0

    def update(self, done: int) -> None:
        now = time.monotonic()
        if now - self.last < 0.2:
            return
        self.last = now
        filled = int(30 * min(done, self.total) / self.total)
        sys.stderr.write(f"\r{self.what} [{'#' * filled}{'.' * (30 - filled)}] {done:,}/{self.total:,}")
        sys.stderr.flush()

    def close(self, text: str) -> None:
        sys.stderr.write(f"\r{self.what}: {text}\n")
        sys.stderr.flush()


class _NoProgress:
    def update(self, done: int) -> None:
        pass

    def close(self, text: str) -> None:
        pass


def progress(show: Any, total: int, what: str) -> Progress:
    """What to report to: ``show`` is ``None`` (a notebook bar or a terminal line), a bool, or a :class:`Progress`."""
    if show is not None and not isinstance(show, bool):
        if isinstance(show, Progress):
            return show
        raise ConfigurationError(
            f"progress={show!r}: give True, False, None (a bar in a notebook or a terminal) "
            "or an object with update(done) and close(text)"
        )
    in_kernel = "ipykernel" in sys.modules
    if show is None:
        show = in_kernel or sys.stderr.isatty()
    if not show:
        return _NoProgress()
    if in_kernel:
        bar: Progress = display.show("progress", None, total=total, description=what)
        return bar
    return _TextProgress(total, what)
