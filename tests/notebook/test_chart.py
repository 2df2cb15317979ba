"""The live Altair chart: spec, changesets, static snapshot, update task, bundled JavaScript."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import altair as alt
import pytest

import streamnb
from streamnb.notebook.chart import DATASET, LiveChart, live_chart
from streamnb.testing import settle, test_app

STATIC = Path(streamnb.__file__).parent / "notebook" / "static"


def pipeline(expires: float | None = None) -> tuple[streamnb.App, Any, Any, Any]:
    app = test_app()
    views = app.topic("views", partitions=1)
    per_10s = app.Table("per_10s", default=int, partitions=1).tumbling(10, expires=expires)
    totals = app.Table("totals", default=int, partitions=1)

    @app.agent(views)
    async def count(stream: Any) -> None:
        async for event in stream.events():
            per_10s[event.value] += 1
            totals[event.value] += 1

    return app, views, per_10s, totals


async def send(app: streamnb.App, topic: Any, *events: tuple[str, float]) -> None:
    for page, ts in events:
        await topic.send(key="k", value=page, timestamp=ts)
    await settle(app)


# -- spec -----------------------------------------------------------------------------------------


def test_windowed_default_spec() -> None:
    _app, _views, per_10s, _totals = pipeline()
    chart = per_10s.chart()
    spec = chart.spec
    assert spec["data"] == {"name": DATASET}
    assert "datasets" not in spec
    assert spec["mark"]["type"] == "line"
    enc = spec["encoding"]
    assert (enc["x"]["field"], enc["x"]["type"]) == ("window_start", "temporal")
    assert (enc["y"]["field"], enc["y"]["type"]) == ("value", "quantitative")
    assert (enc["color"]["field"], enc["color"]["type"]) == ("key", "nominal")
    assert {t["field"] for t in enc["tooltip"]} == {"key", "window_start", "value"}
    # pan and zoom in time: an interval selection bound to the scales
    assert any(p.get("bind") == "scales" and p["select"]["encodings"] == ["x"] for p in spec["params"])
    assert spec["autosize"] == {"type": "pad", "resize": True}
    assert spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/v6")
    chart.close()


def test_windowed_options() -> None:
    _app, _views, per_10s, _totals = pipeline()
    bar = per_10s.chart(mark="bar", color="key")
    assert bar.spec["mark"]["type"] == "bar"
    assert bar.spec["encoding"]["x2"] == {"field": "window_end"}  # a bar spans its window
    assert bar.spec["encoding"]["color"]["type"] == "nominal"
    custom = per_10s.chart(x="window_end", y=alt.Y("value:Q", title="views"))
    assert custom.spec["encoding"]["x"] == {"field": "window_end", "type": "temporal"}
    assert custom.spec["encoding"]["y"]["title"] == "views"
    with pytest.raises(streamnb.ConfigurationError, match="unknown mark 'pie'"):
        per_10s.chart(mark="pie")
    for chart in (bar, custom):
        chart.close()


def test_plain_table_needs_x_and_y() -> None:
    _app, _views, _per_10s, totals = pipeline()
    with pytest.raises(streamnb.ConfigurationError) as info:
        totals.chart()
    message = str(info.value)
    assert "\n" not in message
    assert "not windowed" in message and 'x="key", y="value"' in message
    with pytest.raises(streamnb.ConfigurationError):
        totals.chart(x="key")
    chart = totals.chart(x="key", y="value")
    assert chart.spec["mark"]["type"] == "bar"
    assert chart.spec["encoding"]["x"] == {"field": "key", "type": "nominal"}
    assert chart.spec["encoding"]["y"] == {"field": "value", "type": "quantitative"}
    chart.close()


def test_own_altair_chart_gets_the_table_rows() -> None:
    _app, _views, per_10s, _totals = pipeline()
    mine = alt.Chart(alt.Data(values=[{"a": 1}])).mark_area().encode(x="window_start", y="sum(value)")
    chart = per_10s.chart(chart=mine)
    spec = chart.spec
    assert spec["data"] == {"name": DATASET}
    assert spec["mark"]["type"] == "area"
    # untyped shorthands got the types of the table's columns
    assert spec["encoding"]["x"]["type"] == "temporal"
    assert spec["encoding"]["y"] == {"aggregate": "sum", "field": "value", "type": "quantitative"}
    with pytest.raises(streamnb.ConfigurationError, match="not both"):
        per_10s.chart(chart=mine, mark="bar")
    with pytest.raises(streamnb.ConfigurationError, match="Altair chart"):
        per_10s.chart(chart={"mark": "bar"})
    chart.close()


def test_bad_arguments() -> None:
    _app, _views, per_10s, _totals = pipeline()
    with pytest.raises(streamnb.ConfigurationError, match="interval"):
        per_10s.chart(interval=0)
    with pytest.raises(streamnb.ConfigurationError, match="top"):
        per_10s.chart(top=0)
    with pytest.raises(streamnb.ConfigurationError, match="Table"):
        live_chart({"a": 1})  # type: ignore[arg-type]


# -- changesets -----------------------------------------------------------------------------------


async def test_changesets_hold_only_changed_rows() -> None:
    app, views, per_10s, _totals = pipeline(expires=10)
    chart = per_10s.chart(interval=60)  # the test pushes by hand
    changes: list[dict[str, Any]] = []
    chart.observe(lambda c: changes.append(c["new"]), names="change")
    async with app:
        await send(app, views, ("/a", 1.0), ("/a", 2.0), ("/b", 3.0))
        assert chart.refresh()
        first = changes[-1]
        assert first["seq"] == 1 and first["remove"] == []
        assert sorted((r["key"], r["window_start"], r["value"]) for r in first["insert"]) == [
            ("/a", 0.0, 2), ("/b", 0.0, 1)
        ]
        assert not chart.refresh()  # nothing changed: nothing sent
        assert len(changes) == 1

        await send(app, views, ("/b", 4.0), ("/c", 12.0))
        assert chart.refresh()
        second = changes[-1]
        assert second["seq"] == 2 and second["remove"] == []
        # /a did not change, so it is not sent again
        assert sorted((r["key"], r["window_start"], r["value"]) for r in second["insert"]) == [
            ("/b", 0.0, 2), ("/c", 10000.0, 1)
        ]
        assert all(r["window_end"] == r["window_start"] + 10_000 for r in second["insert"])

        await send(app, views, ("/c", 25.0))  # windows ending at 10 expire (10 + expires 10 <= 25)
        assert chart.refresh()
        third = changes[-1]
        assert sorted(json.loads(i)[0] for i in third["remove"]) == ["/a", "/b"]
        assert [(r["key"], r["window_start"]) for r in third["insert"]] == [("/c", 20000.0)]
        assert chart.row_count == 2
        assert sorted((r["key"], r["value"]) for r in chart.rows()) == [("/c", 1), ("/c", 1)]
    chart.close()


async def test_rows_of_plain_tables_and_top() -> None:
    app, views, _per_10s, totals = pipeline()
    chart = totals.chart(x="key", y="value", top=2, interval=60)
    async with app:
        await send(app, views, *[(p, 1.0) for p in ["/a"] * 3 + ["/b"] * 2 + ["/c"]])
        chart.refresh()
        assert sorted((r["key"], r["value"]) for r in chart.rows()) == [("/a", 3), ("/b", 2)]
        await send(app, views, *[("/c", 2.0)] * 3)
        chart.refresh()
        assert sorted((r["key"], r["value"]) for r in chart.rows()) == [("/a", 3), ("/c", 4)]
        assert [json.loads(i) for i in chart.change["remove"]] == ["/b"]
    chart.close()


async def test_resync_request_sends_a_snapshot() -> None:
    app, views, per_10s, _totals = pipeline()
    chart = per_10s.chart(interval=60)
    assert chart.snapshot == {"seq": 0, "rows": []}
    async with app:
        await send(app, views, ("/a", 1.0))
        chart._on_front_end_msg(chart, {"type": "resync", "seq": -1}, [])
        assert chart.snapshot["seq"] == chart.change["seq"] == 1
        assert [r["key"] for r in chart.snapshot["rows"]] == ["/a"]
    chart.close()


# -- the update task ------------------------------------------------------------------------------


async def test_task_follows_the_table_and_stops_when_closed() -> None:
    app, views, per_10s, _totals = pipeline()
    chart = per_10s.chart(interval=0.02)
    witness = per_10s.chart(interval=0.02)  # an open chart of the same table
    assert chart.running
    async with app:
        await send(app, views, ("/a", 1.0))
        await streamnb.testing.wait_until(lambda: chart.row_count == 1, timeout=5)
        chart.close()
        await streamnb.testing.wait_until(lambda: not chart.running, timeout=5)
        assert chart.stopped == "closed"
        await send(app, views, ("/b", 1.0))
        await streamnb.testing.wait_until(lambda: witness.row_count == 2, timeout=5)  # the open one updated...
        assert chart.row_count == 1  # ...the closed one did not
    witness.close()


async def test_task_stops_with_the_app_and_leaves_a_final_snapshot() -> None:
    app, views, per_10s, _totals = pipeline()
    chart = per_10s.chart(interval=0.02)
    async with app:
        await send(app, views, ("/a", 1.0), ("/b", 1.0))
    await streamnb.testing.wait_until(lambda: not chart.running, timeout=5)
    assert chart.stopped == "app stopped"
    assert sorted(r["key"] for r in chart.snapshot["rows"]) == ["/a", "/b"]
    assert chart.snapshot["seq"] == chart.change["seq"]
    assert "stopped" in repr(chart)
    chart.close()


def test_without_a_running_loop_refresh_by_hand() -> None:
    _app, _views, per_10s, _totals = pipeline()
    chart = per_10s.chart()
    assert not chart.running
    assert chart.stopped is not None and "refresh()" in chart.stopped
    assert not chart.refresh()
    chart.close()


# -- static output and the bundled JavaScript -----------------------------------------------------


async def test_static_svg_snapshot_in_the_mime_bundle() -> None:
    app, views, per_10s, _totals = pipeline()
    chart = per_10s.chart(interval=60)
    async with app:
        await send(app, views, ("/a", 1.0), ("/b", 11.0))
        chart.refresh()
    data, _metadata = chart._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in data
    svg = data["image/svg+xml"]
    assert svg.lstrip().startswith("<svg") and "per_10s" in svg
    static = chart.static_spec()
    assert static["data"] == {"values": chart.rows()}
    chart.close()


def test_widget_javascript_is_bundled_offline() -> None:
    bundle = STATIC / "chart.js"
    assert LiveChart._esm  # anywidget loads the file's text
    text = bundle.read_text(encoding="utf-8")
    assert 300_000 < len(text) < 3_000_000  # vega + vega-lite + vega-embed, minified
    assert "export" in text and "initialize" in text and "render" in text
    for cdn in ("cdn.jsdelivr.net", "unpkg.com", "esm.sh", "cdnjs"):
        assert cdn not in text
    licenses = (STATIC / "LICENSES.md").read_text()
    for name in ("vega", "vega-lite", "vega-embed"):
        assert f"## {name} " in licenses
