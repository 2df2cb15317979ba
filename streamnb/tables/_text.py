"""Plain-text rendering of DataFrames for ``as_ansitable``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["text_table"]


def text_table(
    df: pd.DataFrame,
    title: str,
    *,
    sort: bool = True,
    key: str = "key",
    value: str = "value",
    sortkey: Callable[[Any], Any] | None = None,
) -> str:
    """Render ``df`` as a boxed text table under ``title``.

    ``key``/``value`` name the ``key`` and ``value`` columns (Faust's
    ``as_ansitable(key=, value=)``); ``sortkey`` orders rows given as tuples
    of their cells (default: the first columns).
    """
    if sort and len(df.columns) and len(df):
        if sortkey is not None:
            order = sorted(range(len(df)), key=lambda i: sortkey(tuple(df.iloc[i])))
            df = df.iloc[order]
        else:
            try:
                df = df.sort_values(list(df.columns[: min(3, len(df.columns))]))
            except TypeError:
                pass
    df = df.rename(columns={"key": key, "value": value})
    headers = [str(c) for c in df.columns]
    rows = [[str(v) for v in row] for row in df.itertuples(index=False)]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def fmt(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    out = [title, line, fmt(headers), line]
    out += [fmt(r) for r in rows]
    out.append(line)
    return "\n".join(out)
