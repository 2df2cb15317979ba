"""The live Altair chart: spec, changesets, static snapshot, update task, bundled JavaScript."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import altair as alt
import pytest

import streamnb
from streamnb.notebook._chart_spec import LATE_EVENTS, LATE_WINDOWS, STREAM_TIME
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


def layers(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The layers of a windowed chart by mark type."""
    return {layer["mark"]["type"]: layer for layer in spec["layer"]}


def test_windowed_default_spec() -> None:
    _app, _views, per_10s, _totals = pipeline()
    chart = per_10s.chart()
    spec = chart.spec
    assert spec["data"] == {"name": DATASET}
    assert "datasets" not in spec
    by_mark = layers(spec)
    assert list(by_mark) == ["line", "point", "rule", "text"]
    assert all("data" not in by_mark[m] for m in ("line", "point"))  # the table's rows
    enc = by_mark["point"]["encoding"]
    assert (enc["x"]["field"], enc["x"]["type"]) == ("window_start", "temporal")
    assert (enc["y"]["field"], enc["y"]["type"]) == ("value", "quantitative")
    assert (enc["color"]["field"], enc["color"]["type"]) == ("key", "nominal")
    assert {t["field"] for t in enc["tooltip"]} == {"key", "window_start", "window_end", "value", "closed"}
    # closed windows solid, open ones faded
    assert enc["opacity"]["field"] == "closed"
    assert enc["opacity"]["scale"] == {"domain": [True, False], "range": [0.95, 0.35]}
    # pan and zoom in time: an interval selection bound to the scales
    zoom = [p for p in spec["params"] if p.get("bind") == "scales" and p["select"]["encodings"] == ["x"]]
    assert len(zoom) == 1 and zoom[0]["views"] == [by_mark["line"]["name"]]
    assert spec["autosize"] == {"type": "pad", "resize": True}
    assert spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/v6")
    chart.close()


def test_windowed_chart_draws_stream_time_and_late_events() -> None:
    _app, _views, per_10s, _totals = pipeline()
    chart = per_10s.chart()
    spec = chart.spec
    # the parameters the widget sets: stream time (ms), late events, refused window updates
    values = {p["name"]: p["value"] for p in spec["params"] if "value" in p}
    assert values == {STREAM_TIME: None, LATE_EVENTS: 0, LATE_WINDOWS: 0}
    rule = layers(spec)["rule"]
    assert rule["data"] == {"values": [{}]}
    assert {"calculate": STREAM_TIME, "as": "stream_time"} in rule["transform"]
    assert rule["encoding"]["x"]["field"] == "stream_time" and rule["encoding"]["x"]["type"] == "temporal"
    title = spec["title"]["text"]["expr"]
    assert "per_10s" in title and STREAM_TIME in title and LATE_EVENTS in title
    assert chart.event_time == {"stream_time": None, "late_events": 0, "late_windows": 0}
    chart.close()


def test_windowed_options() -> None:
    _app, _views, per_10s, _totals = pipeline()
    bar = per_10s.chart(mark="bar", color="key")
    main = bar.spec["layer"][0]
    assert main["mark"]["type"] == "bar"
    assert main["encoding"]["x2"] == {"field": "window_end"}  # a bar spans its window
    assert main["encoding"]["y2"] == {"datum": 0}
    assert main["encoding"]["color"]["type"] == "nominal"
    assert main["encoding"]["opacity"]["field"] == "closed"
    custom = per_10s.chart(x="window_end", y=alt.Y("value:Q", title="views"))
    assert custom.spec["layer"][0]["encoding"]["x"] == {"field": "window_end", "type": "temporal"}
    assert custom.spec["layer"][0]["encoding"]["y"]["title"] == "views"
    assert "rule" in layers(custom.spec)  # x is still time: the stream time is drawn
    by_key = per_10s.chart(mark="bar", x="key")
    assert "rule" not in layers(by_key.spec)  # x is not time: no stream-time rule
    by_key.close()
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
    # the event-time parameters are there to use in your own expressions
    assert {STREAM_TIME, LATE_EVENTS, LATE_WINDOWS} <= {p["name"] for p in spec["params"]}
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


# -- event time -----------------------------------------------------------------------------------


def event_time_pipeline() -> tuple[streamnb.App, Any, Any, Any, Any]:
    app = test_app()
    clicks = app.topic("clicks", partitions=1)
    per_10s = app.Table("per_10s", default=int, partitions=1).tumbling(10, grace=2, expires=60)
    visits = app.Table("visits", default=int, partitions=1).session(5, expires=60)
    recent = app.Table("recent", default=int, partitions=1).sliding(10, expires=60)

    @app.agent(clicks)
    async def count(stream: Any) -> None:
        async for event in stream.events():
            per_10s[event.value] += 1
            visits[event.value] += 1
            recent[event.value] += 1

    return app, clicks, per_10s, visits, recent


def frame_rows(windowed: Any) -> list[tuple[Any, float, float, Any, bool]]:
    df = windowed.as_dataframe(times="epoch")
    return sorted(
        (r.key, r.window_start * 1000, r.window_end * 1000, r.value, bool(r.closed)) for r in df.itertuples()
    )


def chart_rows(chart: LiveChart) -> list[tuple[Any, float, float, Any, bool]]:
    return sorted((r["key"], r["window_start"], r["window_end"], r["value"], r["closed"]) for r in chart.rows())


async def test_stream_time_closed_windows_and_late_events_reach_the_chart() -> None:
    app, clicks, per_10s, _visits, _recent = event_time_pipeline()
    chart = per_10s.chart(interval=60)
    async with app:
        await send(app, clicks, ("/a", 1.0), ("/a", 12.0))  # stream time 12 = 10 + grace: [0, 10) closes
        assert chart.refresh()
        assert chart_rows(chart) == [("/a", 0.0, 10_000.0, 1, True), ("/a", 10_000.0, 20_000.0, 1, False)]
        assert chart.event_time == {"stream_time": 12_000.0, "late_events": 0, "late_windows": 0}
        seq = chart.change["seq"]

        await send(app, clicks, ("/a", 5.0))  # late: its window closed; no row changes
        assert per_10s.late_events == 1
        assert chart.refresh()  # the late count moved, so the chart is updated...
        assert chart.change["seq"] == seq  # ...without a row changeset
        assert chart.event_time == {"stream_time": 12_000.0, "late_events": 1, "late_windows": 1}
        assert not chart.refresh()

        await send(app, clicks, ("/b", 23.0))  # [10, 20) closes at 22: its row flips to closed
        assert chart.refresh()
        assert ("/a", 10_000.0, 20_000.0, 1, True) in chart_rows(chart)
        assert [(r["key"], r["closed"]) for r in chart.change["insert"]] in (
            [("/a", True), ("/b", False)], [("/b", False), ("/a", True)]
        )
        assert chart_rows(chart) == frame_rows(per_10s)
    # the static snapshot holds the same figures (the title is drawn from them)
    params = {p["name"]: p.get("value") for p in chart.static_spec()["params"]}
    assert params[STREAM_TIME] == 23_000.0 and params[LATE_EVENTS] == 1
    svg = chart.to_svg()
    assert "stream time" in svg and "1 late event" in svg and "1 late events" not in svg
    chart.close()


async def test_session_windows_as_spans() -> None:
    app, clicks, _per_10s, visits, _recent = event_time_pipeline()
    chart = visits.chart(mark="rect", interval=60)
    spans = layers(chart.spec)
    main = spans["rect"]["encoding"]
    assert (main["x"]["field"], main["x2"]["field"]) == ("window_start", "window_end")
    assert (main["y"]["field"], main["y"]["type"]) == ("key", "nominal")
    assert "y2" not in main and main["opacity"]["field"] == "closed"
    # a session of one event is zero wide: a tick shows it
    assert spans["tick"]["transform"] == [{"filter": "datum.window_end <= datum.window_start"}]
    assert "rule" in spans
    async with app:
        await send(app, clicks, ("/a", 1.0), ("/a", 4.0), ("/b", 2.0), ("/a", 20.0), ("/a", 8.0))
        assert chart.refresh()
        # 8 is within the gap of [1, 4], but that session closed at 4 + 5 <= 20: the event is late
        assert chart_rows(chart) == frame_rows(visits) == [
            ("/a", 1_000.0, 4_000.0, 2, True), ("/a", 20_000.0, 20_000.0, 1, False), ("/b", 2_000.0, 2_000.0, 1, True),
        ]
        assert chart.event_time["late_events"] == visits.late_events == 1
    svg = chart.to_svg()
    assert svg.lstrip().startswith("<svg")
    chart.close()


async def test_sliding_window_rows_are_current() -> None:
    app, clicks, _per_10s, _visits, recent = event_time_pipeline()
    chart = recent.chart(interval=60)
    async with app:
        await send(app, clicks, ("/a", 11.0), ("/a", 15.0))
        assert chart.refresh()
        first = chart_rows(chart)
        assert first == frame_rows(recent) and len(first) == 3  # [1, 11], [5, 15], [11.001, 21.001]
        await send(app, clicks, ("/a", 30.0))
        assert chart.refresh()
        assert chart_rows(chart) == frame_rows(recent) != first
        assert chart.event_time["stream_time"] == 30_000.0
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
    static = chart.static_spec()  # the rows, without the column only tooltips named (none in a picture)
    assert static["data"] == {"values": [{k: v for k, v in r.items() if k != "window_end"} for r in chart.rows()]}
    chart.close()


async def test_the_time_axis_reads_as_times_from_the_first_window() -> None:
    app, views, per_10s, _totals = pipeline()
    chart = per_10s.chart(interval=60)
    async with app:
        await send(app, views, ("/a", 1_796_434_001.0))  # one window: the axis spans a few seconds
        chart.refresh()
    svg = chart.to_svg()
    labels = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
    assert "window start" in labels  # the axis title
    assert [t for t in labels if re.fullmatch(r"\d\d:\d\d:\d\d", t)]  # times of day...
    assert not [t for t in labels if re.fullmatch(r"[.:]\d+", t)], labels  # ...never ".500" or ":41"
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
