"""The static SVG of a live chart: no interaction, only the columns it draws, the latest windows when big."""

from __future__ import annotations

import re
from typing import Any

import altair as alt

from streamnb.notebook._chart_static import POINTS_LIMIT, ROWS_LIMIT, static_spec
from streamnb.notebook.chart import live_chart
from streamnb.testing import test_app

T0 = 1_700_000_000.0


def windowed_chart(series: int, windows: int, **options: Any) -> Any:
    app = test_app("static-chart")
    per_minute = app.Table("per_minute", default=int).tumbling(60, expires=365 * 86400)
    for k in range(series):
        for w in range(windows):
            per_minute.state.load((f"s{k}", (T0 + 60 * w, T0 + 60 * (w + 1))), k * 1000 + w, 0)
    return live_chart(per_minute, interval=3600, **options)


def marks(spec: dict[str, Any]) -> list[str]:
    return [layer["mark"]["type"] for layer in spec["layer"]]


def test_a_small_chart_keeps_every_row_and_its_points_without_interaction() -> None:
    chart = windowed_chart(series=3, windows=10)
    live, static = chart.spec, chart.static_spec()
    assert any("select" in p for p in live["params"]) and "tooltip" in str(live)
    assert not any("select" in p for p in static["params"]) and "tooltip" not in str(static)
    assert marks(static) == ["line", "point", "rule", "text"]  # the point per window stays
    assert len(static["data"]["values"]) == 30
    assert set(static["data"]["values"][0]) == {"key", "window_start", "value", "closed"}
    alt.LayerChart.from_dict(static)  # still a valid spec
    svg = chart.to_svg()
    assert "latest" not in svg and all(f"s{k}" in svg for k in range(3))
    chart.close()


def test_a_big_chart_draws_the_latest_windows_that_fit_and_says_so() -> None:
    chart = windowed_chart(series=50, windows=60)  # 3,000 rows
    static = chart.static_spec()
    rows = static["data"]["values"]
    starts = sorted({r["window_start"] for r in rows})
    assert len(rows) <= ROWS_LIMIT and len(starts) == ROWS_LIMIT // 50
    assert starts[-1] == (T0 + 60 * 59) * 1000  # the latest windows
    assert "point" not in marks(static) and len(rows) > POINTS_LIMIT  # lines only: too many points
    svg = chart.to_svg()
    assert "the latest 20 of 60 windows" in re.sub(r"\s+", " ", svg)
    chart.close()


def test_your_own_chart_keeps_its_selections_and_names() -> None:
    brush = alt.selection_point(fields=["key"], bind="legend")
    faded = alt.condition(brush, alt.value(1), alt.value(0.2))
    own = alt.Chart().mark_bar().encode(x="key:N", y="value:Q", opacity=faded)
    spec = own.add_params(brush).to_dict()
    spec["data"] = {"name": "rows"}
    out = static_spec(spec, {}, [{"key": "a", "value": 1}])
    assert [p["name"] for p in out["params"]] == [p["name"] for p in spec["params"]]  # not a pan and zoom
    assert out["data"] == {"values": [{"key": "a", "value": 1}]}
