"""How a table shows itself: DataFrames, text tables, live widgets and charts.

A mixin of :class:`~streamnb.tables.table.Table`. A ``rocksdb://`` table is
read as it goes, and one too large to read whole asks for ``limit=``.

>>> from streamnb import App
>>> counts = App("demo-views", broker="memory://").Table("counts", default=int)
>>> counts.as_dataframe().shape
(0, 2)
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from .. import display
from ..errors import ConfigurationError
from .state.stored import StoredState

if TYPE_CHECKING:
    import pandas as pd

    from .windowed import WindowedTable

__all__ = ["TableViews", "items_frame"]


class TableViews:
    """``as_dataframe``, ``as_ansitable``, ``live`` and ``chart`` of a table."""

    name: str
    state: Any
    data: MutableMapping[Any, Any]
    window: WindowedTable | None

    whole_frame_limit: int = 1_000_000
    """Rows beyond which ``as_dataframe()`` of a ``rocksdb://`` table asks for ``limit=`` instead of reading all."""

    def as_dataframe(self, limit: int | None = None, *, times: str | None = None) -> pd.DataFrame:
        """The table as a DataFrame with columns ``key`` and ``value`` (at most ``limit`` rows).

        A ``rocksdb://`` table of more than :attr:`whole_frame_limit` rows needs
        ``limit=`` (rows are read in key order, as they go). A windowed table
        gives its windows (see :meth:`WindowedTable.as_dataframe`), their
        bounds as UTC timestamps, or epoch seconds with ``times="epoch"``.

        >>> from streamnb import App
        >>> counts = App("demo", broker="memory://").Table("counts", default=int)
        >>> list(counts.as_dataframe().columns)
        ['key', 'value']
        """
        import itertools

        if self.window is not None:
            return self.window.as_dataframe(times=times or "datetime")
        if times is not None:
            raise ConfigurationError(
                f"as_dataframe(times={times!r}) applies to windowed tables; table {self.name!r} is not windowed"
            )
        state = self.state
        if limit is None and isinstance(state, StoredState) and (size := state.estimate()) > self.whole_frame_limit:
            raise ConfigurationError(
                f"table {self.name!r} holds about {size:,} rows on disk: ask for part of it, "
                f"e.g. as_dataframe(limit=10_000), or read it as it goes with table.items()"
            )
        return items_frame(list(itertools.islice(self.data.items(), limit)))

    def as_ansitable(
        self, title: str | None = None, sort: bool = True, *, key: str = "key", value: str = "value",
        sortkey: Callable[[Any], Any] | None = None,
    ) -> str:
        """The table as a text table (for terminals and logs); ``key``/``value`` name those columns.

        >>> from streamnb import App
        >>> counts = App("demo", broker="memory://").Table("counts", default=int)
        >>> print(counts.as_ansitable(key="word", value="count", title="$$ TALLY $$"))  # no rows yet
        $$ TALLY $$
        +------+-------+
        | word | count |
        +------+-------+
        +------+-------+
        """
        from ._text import text_table

        frame = self.as_dataframe(times="epoch") if self.window is not None else self.as_dataframe()
        return text_table(frame, title or self.name, sort=sort, key=key, value=value, sortkey=sortkey)

    def live(self, **options: Any) -> Any:
        """A widget showing the table as a live DataFrame (see :mod:`streamnb.notebook`)."""
        return display.show("live_table", self, **options)

    def chart(self, **options: Any) -> Any:
        """A live Altair chart of the table (see :mod:`streamnb.notebook`)."""
        return display.show("live_chart", self, **options)


def items_frame(items: list[tuple[Any, Any]]) -> pd.DataFrame:
    """``(key, value)`` pairs as a DataFrame: ``key`` and ``value``, or a column per field of Record values.

    >>> items_frame([("a", 1)]).to_dict("records")
    [{'key': 'a', 'value': 1}]
    """
    import pandas as pd

    if items and all(hasattr(v, "asdict") for _, v in items):
        return pd.DataFrame([{"key": k, **v.asdict()} for k, v in items])
    return pd.DataFrame({"key": [k for k, _ in items], "value": [v for _, v in items]})
