"""Live DataFrame views of tables and windowed tables.

Example (in a notebook)::

    counts.live()                                     # Table.live() calls live_table
    per_minute.live(sort_by="value", top=10)          # windowed: key, window, value
    live_table(counts, key_filter="/products")        # substring of the key
    live_table(counts, key_filter=lambda k: k.startswith("/"))

A table of more than ``follow_above`` rows (default 100,000; e.g. a
``rocksdb://`` table of millions of keys) is not read at each refresh: the
view follows the keys its commits change, reads only those, and shows a
top-N of them (by ``sort_by``, else the most recently changed), with the
table's estimated size in the label.

The view is an ipywidgets ``VBox``: an HTML widget with the DataFrame and a
label with the row count and the time of the last update. A background task
on the kernel's loop checks ``table.version`` every ``interval`` seconds
and re-renders only when it changed. It stops when the widget is closed
(``view.close()``) or the app stops; then it renders the final table once
more and its output becomes that static HTML table (``frozen``), which is
what nbconvert, GitHub and other readers without a kernel show.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from ..errors import ConfigurationError
from ..timeunits import as_datetimes
from ._following import ChangedRows
from ._live import HtmlLabelWidget, app_of, base_table, clock, styled

if TYPE_CHECKING:
    import pandas as pd

    from ..tables.table import Table
    from ..tables.windowed import WindowedTable

__all__ = ["LiveTable", "live_table"]

KeyFilter = str | Callable[[Any], bool] | None

MAX_ROWS = 1000
"""Rows rendered at most when no ``top`` is given (the label tells how many there are)."""


def live_table(
    table_or_windowed: Table[Any, Any] | WindowedTable,
    *,
    sort_by: str | None = None,
    ascending: bool = False,
    top: int | None = None,
    key_filter: KeyFilter = None,
    interval: float = 0.5,
    datetimes: bool = True,
    follow_above: int = 100_000,
) -> LiveTable:
    """A widget showing a table as a DataFrame that updates in place.

    Args:
        table_or_windowed: an ``app.Table(...)`` or a windowed table
            (``.tumbling(...)``/``.hopping(...)``).
        sort_by: column to sort by (``key``, ``value``, ``window_start``...).
        ascending: sort order (default: largest first).
        top: show only the first ``top`` rows (after sorting).
        key_filter: keep keys containing this substring, or for which this
            function returns true.
        interval: seconds between checks for changes (at least 0.2).
        datetimes: show window starts and ends as UTC datetimes (else epoch seconds).
        follow_above: beyond this many rows, show only keys changed since the
            view opened (a top-N of them) instead of reading the whole table.

    >>> from streamnb import App
    >>> counts = App("demo", broker="memory://").Table("counts", default=int)
    >>> view = live_table(counts, sort_by="value", top=10)
    >>> view  # doctest: +ELLIPSIS
    <LiveTable 'counts' ...>
    """
    from ..tables.table import Table
    from ..tables.windowed import WindowedTable

    if not isinstance(table_or_windowed, (Table, WindowedTable)):
        raise ConfigurationError(
            f"live_table() takes a table (app.Table(...), or a windowed one), got {table_or_windowed!r}; "
            "for a table by name use app.tables['name'] or `%streamnb table NAME`"
        )
    if top is not None and (not isinstance(top, int) or top < 1):
        raise ConfigurationError(f"live_table(): top must be a positive int, got {top!r}")
    if key_filter is not None and not (isinstance(key_filter, str) or callable(key_filter)):
        raise ConfigurationError(f"live_table(): key_filter must be a str or a function, got {key_filter!r}")
    if not isinstance(follow_above, int) or follow_above < 0:
        raise ConfigurationError(f"live_table(): follow_above must be a row count >= 0, got {follow_above!r}")
    return LiveTable(
        table_or_windowed, sort_by=sort_by, ascending=ascending, top=top, key_filter=key_filter,
        interval=interval, datetimes=datetimes, follow_above=follow_above,
    )


class LiveTable(HtmlLabelWidget):
    """The widget :func:`live_table` returns: ``children == (html, label)``."""

    kind = "table"

    def __init__(
        self,
        table: Table[Any, Any] | WindowedTable,
        *,
        sort_by: str | None,
        ascending: bool,
        top: int | None,
        key_filter: KeyFilter,
        interval: float,
        datetimes: bool,
        follow_above: int = 100_000,
    ) -> None:
        self.table = table
        self.follow_above = follow_above
        base = _base(table)
        self.changed: ChangedRows | None = None
        """The keys followed once the table is larger than ``follow_above`` (plain tables of this process)."""
        if table is base and base.changes.complete:
            self.changed = ChangedRows(base.changes, keep=max(4 * (top or 250), 1000))
        self.following = False
        """True while the view shows followed keys rather than the whole table."""
        self.sort_by = sort_by
        self.ascending = ascending
        self.top = top
        self.key_filter = key_filter
        self.datetimes = datetimes
        self.html = widgets.HTML()
        """The DataFrame's HTML."""
        self.label = widgets.Label()
        """``N rows · updated HH:MM:SS`` (and why updates stopped, once they did)."""
        self.rows = 0
        """Rows passing the key filter at the last update."""
        self.shown = 0
        """Rows shown at the last update (fewer than ``rows`` with ``top``)."""
        self._seen: tuple[int, int] | None = None
        super().__init__(app_of(table), name=table.name, interval=interval, children=[self.html, self.label])
        try:
            self.refresh()  # a bad sort_by fails here, in the cell that asked for the view
        except BaseException:
            self.close()
            raise
        self._seen = (id(_base(self.table)), self.table.version)
        self._start()

    # -- data ---------------------------------------------------------------------------------

    @property
    def windowed(self) -> bool:
        """True for a view of a windowed table."""
        from ..tables.windowed import WindowedTable

        return isinstance(self.table, WindowedTable)

    def _current(self) -> Table[Any, Any] | WindowedTable:
        """The table as defined now (a re-run table cell makes a new object sharing the data)."""
        base = _base(self.table)
        newest = app_of(base).tables.get(base.name)
        if newest is not None and newest is not base:
            self.table = newest.window if self.windowed and newest.window is not None else newest
        return self.table

    def _follows(self) -> bool:
        """Whether the table is too large to read at each refresh (then: read the changed keys)."""
        changed = self.changed
        if changed is None:
            return False
        table = self._current()
        changed.refollow(table.changes)  # type: ignore[union-attr]
        size = table.estimated_len()  # type: ignore[union-attr]
        if size <= self.follow_above:
            self.following = False
            return False
        if not self.following:  # from now on: start from a few rows, in key order
            self.following = True
            changed.update(table.data, self._key_ok)
            if not changed.rows:
                changed.rows = dict(itertools.islice((kv for kv in table.data.items() if self._key_ok(kv[0])),
                                                     changed.keep))
        self.rows = size
        return True

    def _followed(self) -> pd.DataFrame:
        """The followed keys' rows: sorted, cut to ``top`` (or the rendering limit)."""
        changed = self.changed
        assert changed is not None
        changed.update(self._current().data, self._key_ok)
        return changed.frame(self.sort_by, self.ascending, self.top or MAX_ROWS)

    def _key_ok(self, key: Any) -> bool:
        fn = self.key_filter
        if fn is None:
            return True
        return bool(fn(key)) if callable(fn) else fn in str(key)

    def dataframe(self) -> pd.DataFrame:
        """The rows the view shows: filtered, sorted and cut to ``top``.

        >>> from streamnb import App
        >>> view = live_table(App("demo", broker="memory://").Table("counts", default=int))
        >>> list(view.dataframe().columns)
        ['key', 'value']
        """
        if self._follows():
            return self._followed()
        return self._finish(self._select())

    def _select(self) -> pd.DataFrame:
        """Every row passing the key filter, sorted."""
        current = self._current()
        df = current.as_dataframe(times="epoch") if self.windowed else current.as_dataframe()
        if self.key_filter is not None and len(df):
            keys = df["key"]
            if callable(self.key_filter):
                fn = self.key_filter
                mask = keys.map(lambda k: bool(fn(k)))
            else:
                mask = keys.map(lambda k: self.key_filter in str(k))
            df = df[mask.astype(bool)]
        if self.sort_by is not None:
            if self.sort_by not in df.columns:
                raise ConfigurationError(
                    f"live view of {self.name!r}: no column {self.sort_by!r} to sort by; "
                    f"columns are {', '.join(map(str, df.columns))}"
                )
            try:
                df = df.sort_values(self.sort_by, ascending=self.ascending, kind="stable")
            except TypeError:  # mixed types: sort by their text
                df = df.sort_values(self.sort_by, ascending=self.ascending, kind="stable", key=lambda s: s.astype(str))
        return df

    def _finish(self, df: pd.DataFrame, limit: int | None = None) -> pd.DataFrame:
        """Cut to ``top`` (or ``limit``) rows; window bounds as datetimes."""
        cut = self.top if self.top is not None else limit
        if cut is not None:
            df = df.head(cut)
        if self.windowed and self.datetimes:
            df = as_datetimes(df, ("window_start", "window_end"))
        return df.reset_index(drop=True)

    # -- rendering ----------------------------------------------------------------------------

    def refresh(self) -> None:
        """Re-render now (the background task calls this when the table changed)."""
        if self._follows():
            shown = self._followed()
        else:
            selected = self._select()
            self.rows = len(selected)
            shown = self._finish(selected, limit=MAX_ROWS)
        self.shown = len(shown)
        body = shown.to_html(index=False, border=0, classes="streamnb-table", max_cols=50)
        if self.top is None and len(shown) < self.rows and not self.following:
            body += f"<div><em>showing the first {len(shown):,} rows; pass top= or key_filter=</em></div>"
        body = styled(body)
        if self.html.value != body:
            self.html.value = body
        self._mark_updated()
        self._set_label()

    def _set_label(self) -> None:
        text = f"{self.rows:,} rows"
        if self.following:
            order = f"the first by {self.sort_by}" if self.sort_by else "the latest"
            text = (f"about {self.rows:,} rows, too many to read at each refresh: {self.shown:,} shown, "
                    f"{order} of the keys changed since the view opened")
        elif self.shown < self.rows:
            text += f" ({self.shown:,} shown)"
        text += f" · updated {clock(self.last_update)}"
        if self.error:
            text += f" · error: {self.error}"
        if self.stopped:
            text += f" · not updating ({self.stopped})"
        if self.label.value != text:
            self.label.value = text

    def _final_refresh(self) -> None:
        self.refresh()

    async def _poll(self) -> None:
        table = self._current()
        seen = (id(_base(table)), table.version)
        if seen != self._seen:
            self._seen = seen
            self.refresh()



_base = base_table
