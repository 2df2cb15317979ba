"""What a worker says when it cannot start: one line that says what to do.

streamnb's own errors already say what to do; anything else is named with
the line of the user's code it came from (``--traceback`` prints the rest).
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

from ..errors import StreamnbError

__all__ = ["failure", "relative", "where_of"]


def failure(exc: BaseException, importing: str | None = None) -> str:
    """The one-line message for ``exc``, raised while running (or ``importing`` that module).

    streamnb's own errors say what to do; anything else is named with the
    line of the user's code it came from, and a pointer to ``--traceback``.

    >>> failure(ValueError("no"), importing="shop")
    'importing shop raised ValueError: no; fix the module (--traceback prints the full traceback)'
    >>> failure(ConnectionResetError("reset by peer"))
    'ConnectionResetError: reset by peer (--traceback prints the full traceback)'
    """
    where = where_of(exc)
    at = f"{where}: " if where else ""
    hint = "--traceback prints the full traceback"
    if isinstance(exc, StreamnbError):
        return f"{at}{exc}" if importing else str(exc)
    if isinstance(exc, SyntaxError):
        return f"{relative(exc.filename or '?')}:{exc.lineno}: {exc.msg}; fix the module"
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        return (f"{at}{importing or 'the app'} imports {exc.name!r}, which is not installed here: install it in "
                f"this environment ({sys.executable}) or fix the import")
    if importing:
        return f"{at}importing {importing} raised {type(exc).__name__}: {exc}; fix the module ({hint})"
    return f"{at}{type(exc).__name__}: {exc} ({hint})"


def where_of(exc: BaseException) -> str:
    """``file:line`` of the frame of the user's code ``exc`` came from ("" when there is none)."""
    package = str(Path(__file__).resolve().parents[1]) + os.sep  # streamnb/
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not f.filename.startswith(("<", package)) and os.sep + "click" + os.sep not in f.filename]
    if not frames:
        return ""
    here = os.getcwd() + os.sep
    frame = ([f for f in frames if f.filename.startswith(here)] or frames)[-1]
    return f"{relative(frame.filename)}:{frame.lineno}"


def relative(path: str) -> str:
    """``path`` relative to the working directory when it is inside it."""
    here = os.getcwd() + os.sep
    return path[len(here):] if path.startswith(here) else path
