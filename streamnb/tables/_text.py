"""Plain-text rendering of DataFrames for ``as_ansitable``."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["text_table"]


def text_table(df: pd.DataFrame, title: str, *, sort: bool = True) -> str:
    """Render ``df`` as a boxed text table under ``title``."""
    if sort and len(df.columns) and len(df):
        try:
            df = df.sort_values(list(df.columns[: min(3, len(df.columns))]))
        except TypeError:
            pass
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
