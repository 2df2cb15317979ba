"""Metrics in the notebook: ``%streamnb metrics`` and the dashboard's sparklines (rate, lag, commit latency).

Both read the app's one registry (:mod:`streamnb.metrics`): the table is
``app.metrics()`` made readable, the sparklines are drawn from
``app.metrics_history()`` (one snapshot a second) with Altair, as an SVG
drawn by ``vl-convert`` (nothing loaded from a CDN; it shows in nbconvert too).

Example (in a notebook)::

    %streamnb metrics                 # the metrics now, one row per sample
    app.dashboard()                   # sparklines per agent under its rows

>>> from streamnb import App
>>> app = App("demo-sparklines", broker="memory://")
>>> sparkline_frame(app).columns.tolist()
['time', 'agent', 'measure', 'value']
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets
import pandas as pd

if TYPE_CHECKING:
    import altair as alt

    from ..app.base import App

__all__ = ["MEASURES", "MetricsSparklines", "metrics_table", "sparkline_chart", "sparkline_frame"]

MEASURES = {"rate": "events/s", "lag": "lag (messages)", "commit": "commit latency (s)"}
"""The sparklines drawn per agent, and their titles."""


def metrics_table(app: App) -> pd.DataFrame:
    """``app.metrics()`` without histogram buckets and label columns that are empty in every row.

    >>> from streamnb import App
    >>> metrics_table(App("demo-metrics-table", broker="memory://")).columns.tolist()
    ['metric', 'app', 'value']
    """
    frame = app.metrics()
    frame = frame[~frame["metric"].str.endswith("_bucket")]
    keep = [c for c in frame.columns if c in ("metric", "app", "value") or frame[c].notna().any()]
    return frame[keep].reset_index(drop=True)


def sparkline_frame(app: App, seconds: float = 120.0) -> pd.DataFrame:
    """Per agent and second of the last ``seconds``: ``rate`` (events/s), ``lag`` and ``commit`` (mean seconds).

    Rates and commit latencies come from the differences between two
    snapshots of the counters; lag is the sum over the agent's partitions.
    """
    history = app.metrics_history(seconds)
    columns = ["time", "agent", "measure", "value"]
    if history.empty:
        return pd.DataFrame({c: [] for c in columns})
    per_agent = history[history["agent"].notna()]

    def series(metric: str) -> pd.DataFrame:
        rows = per_agent[per_agent["metric"] == metric]
        return rows.groupby(["agent", "time"], as_index=False)["value"].sum()

    parts = []
    events = series("streamnb_events_total")
    for agent, rows in events.groupby("agent"):
        rows = rows.sort_values("time")
        dt = rows["time"].diff().dt.total_seconds()
        parts.append(pd.DataFrame({"time": rows["time"], "agent": agent, "measure": "rate",
                                   "value": (rows["value"].diff() / dt).clip(lower=0)}).dropna())
    lag = series("streamnb_consumer_lag")
    if not lag.empty:
        parts.append(lag.assign(measure="lag")[columns])
    sums, counts = series("streamnb_commit_seconds_sum"), series("streamnb_commit_seconds_count")
    both = sums.merge(counts, on=["agent", "time"], suffixes=("_sum", "_count"))
    for agent, rows in both.groupby("agent"):
        rows = rows.sort_values("time")
        done = rows["value_count"].diff()
        mean = (rows["value_sum"].diff() / done).where(done > 0)
        parts.append(pd.DataFrame({"time": rows["time"], "agent": agent, "measure": "commit",
                                   "value": mean.ffill()}).dropna())
    parts = [p for p in parts if not p.empty]
    if not parts:
        return pd.DataFrame({c: [] for c in columns})
    return pd.concat(parts, ignore_index=True)[columns]


def sparkline_chart(frame: pd.DataFrame) -> alt.FacetChart | alt.Chart:
    """Small line charts: a row per agent, a column per measure, each with its own y scale.

    >>> import pandas as pd
    >>> frame = pd.DataFrame({"time": pd.to_datetime([0, 1], unit="s", utc=True), "agent": "count",
    ...                       "measure": "rate", "value": [1.0, 2.0]})
    >>> sparkline_chart(frame).to_dict()["facet"]["row"]["field"]
    'agent'
    """
    import altair as alt

    data = frame.assign(measure=frame["measure"].map(MEASURES))
    base = alt.Chart(data).mark_line(strokeWidth=1.5).encode(
        x=alt.X("time:T", axis=None),
        y=alt.Y("value:Q", axis=alt.Axis(title=None, tickCount=2, grid=False)),
    ).properties(width=160, height=36)
    chart: alt.FacetChart = base.facet(
        row=alt.Row("agent:N", header=alt.Header(title=None, labelAngle=0, labelAlign="left")),
        column=alt.Column("measure:N", header=alt.Header(title=None), sort=list(MEASURES.values())),
    ).resolve_scale(y="independent")
    return chart


class MetricsSparklines(widgets.HTML):
    """The dashboard's sparklines: an SVG redrawn at most every ``every`` seconds (see :meth:`update`)."""

    def __init__(self, app: App, *, seconds: float = 120.0, every: float = 2.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.app = app
        self.seconds = seconds
        self.every = every
        self.drawn = 0.0
        """``time.monotonic()`` of the last drawing."""
        self.frame: pd.DataFrame = sparkline_frame(app, seconds)
        """What the sparklines show now."""

    def update(self, force: bool = False) -> bool:
        """Redraw from the app's metrics history if ``every`` seconds passed; True if it redrew.

        >>> from streamnb import App
        >>> MetricsSparklines(App("demo-spark", broker="memory://")).update(force=True)
        True
        """
        now = time.monotonic()
        if not force and now - self.drawn < self.every:
            return False
        self.drawn = now
        self.frame = sparkline_frame(self.app, self.seconds)
        if self.frame.empty:
            self.value = "<div style='color:#57606a'>metrics: no history yet (sampled every second while running)</div>"
            return True
        import vl_convert

        svg = vl_convert.vegalite_to_svg(sparkline_chart(self.frame).to_dict(), allowed_base_urls=[])
        self.value = f"<div class='streamnb-sparklines'>{svg}</div>"
        return True
