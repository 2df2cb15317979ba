"""The "Try this" exercises of the tutorial notebooks: a cell that says whether an answer is right.

Example (in a notebook)::

    answer = None   # your answer: the page with the most views
    check(answer, max(views_per_page, key=views_per_page.get), hint="views_per_page is a dict-like table")

An exercise cell is tagged ``exercise`` and carries its reference answer in
its metadata (``streamnb.reference``); the test suite runs every notebook
with the reference answers filled in and expects every check to say right.

>>> check(3, 3)
✅ right
True
>>> check(None, 3, hint="count the rows")
✏️  no answer yet: replace the None (count the rows)
False
>>> check(2, 3, hint="count the rows")
❌ not yet: got 2 (count the rows)
False
"""

from __future__ import annotations

from typing import Any

__all__ = ["RIGHT", "check"]

RIGHT = "✅ right"
"""What :func:`check` prints for a right answer."""


def check(answer: Any, expected: Any, *, hint: str = "") -> bool:
    """Print whether ``answer`` equals ``expected`` (with ``hint`` when it does not); return it."""
    tail = f" ({hint})" if hint else ""
    if answer is None and expected is not None:
        print(f"✏️  no answer yet: replace the None{tail}")
        return False
    try:
        right = bool(answer == expected)
    except Exception:  # a DataFrame or anything whose == is not a bool
        right = False
    if right:
        print(RIGHT)
        return True
    print(f"❌ not yet: got {answer!r}{tail}")
    return False
