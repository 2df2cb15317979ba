"""The dashboard: figures per agent, offsets and lag, tables, buttons, stopping."""

from __future__ import annotations

import asyncio
import html
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from streamnb.errors import ConfigurationError
from streamnb.notebook import dashboard
from streamnb.notebook._live import TASK_PREFIX
from streamnb.notebook.dashboard import Dashboard
from streamnb.testing import settle, test_app, wait_until


class Pipeline:
    def __init__(self) -> None:
        self.app = test_app("board", topic_partitions=2)
        self.orders = self.app.topic("orders")
        self.unread = self.app.topic("unread", partitions=1)
        self.totals = self.app.Table("totals", default=int)
        totals = self.totals

        @self.app.agent(self.orders)
        async def total(stream: Any) -> None:
            async for order in stream:
                if order == "crash":
                    raise RuntimeError("cannot total 'crash'")
                totals[order] += 1

        self.agent = total


@pytest.fixture
async def pipe() -> AsyncIterator[Pipeline]:
    p = Pipeline()
    await p.app.start()
    yield p
    await p.app.stop()


def agent_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("streamnb-agent-total") and not t.done()]


def row_of(board: Dashboard, name: str) -> Any:
    return board.rows[name]


async def test_agent_figures_offsets_and_tables(pipe: Pipeline) -> None:
    for order in ["a", "b", "a"]:
        await pipe.orders.send(key=order, value=order)
    await pipe.unread.send(value="x")
    await settle(pipe.app)
    board = pipe.app.dashboard()
    assert isinstance(board, Dashboard) and board.running
    await board.refresh()
    fig = board.figures[0]
    assert (fig.name, fig.state, fig.processed, fig.dead_lettered, fig.crashes) == ("total", "running", 3, 0, 0)
    summary = row_of(board, "total").summary.value
    assert "total" in summary and "running" in summary and "3 processed" in summary and "0 dead-lettered" in summary
    offsets = {(r.topic, r.partition): r for r in board.offsets}
    orders = [r for r in board.offsets if r.topic == "orders"]
    assert len(orders) == 2 and sum(r.end for r in orders) == 3 and all(r.lag == 0 for r in orders)
    assert all(r.agent == "total" for r in orders)
    assert offsets[("unread", 0)].end == 1 and offsets[("unread", 0)].lag is None
    assert "offsets and lag" in board.offsets_html.value and "(total lag 0)" in board.offsets_html.value
    assert "totals" in board.tables_html.value and "<td>2</td>" in board.tables_html.value  # 2 rows
    assert "board" in board.header.value and "running" in board.header.value
    html = board._repr_mimebundle_()["text/html"]
    assert "total" in html and "orders" in html and "totals" in html
    board.close()


async def test_lag_while_paused_and_rate(pipe: Pipeline) -> None:
    board = dashboard(pipe.app, interval=0.2)
    row = row_of(board, "total")
    row.pause_button.click()
    assert pipe.agent.state == "paused" and row.pause_button.description == "Resume"
    for i in range(5):
        await pipe.orders.send(key=str(i), value="x")
    await wait_until(lambda: pipe.agent.parked == 1, timeout=5)  # the agent takes no more events
    await wait_until(lambda: sum(r.lag or 0 for r in board.offsets if r.topic == "orders") == 5, timeout=5)
    assert pipe.agent.events_processed == 0
    assert "(total lag 5)" in board.offsets_html.value
    assert board.figures[0].state == "paused"
    row.pause_button.click()
    assert pipe.agent.state == "running" and row.pause_button.description == "Pause"
    await wait_until(lambda: any(f.rate > 0 for f in board.figures), timeout=5)  # events/s over the last interval
    await wait_until(lambda: sum(r.lag or 0 for r in board.offsets if r.topic == "orders") == 0, timeout=5)
    await wait_until(lambda: board.figures[0].rate == 0, timeout=5)  # idle again
    board.close()


async def test_crashed_agent_shows_its_error_and_traceback(pipe: Pipeline) -> None:
    board = dashboard(pipe.app, interval=0.2)
    await pipe.orders.send(value="crash")
    await wait_until(lambda: pipe.agent.dead_lettered == 1, timeout=20)
    await wait_until(lambda: board.figures and board.figures[0].dead_lettered == 1, timeout=5)
    row = row_of(board, "total")
    assert "<details" in row.error.value
    assert "RuntimeError: cannot total &#x27;crash&#x27;" in row.error.value
    assert "Traceback (most recent call last)" in row.error.value  # the traceback, collapsed
    assert "1 dead-lettered" in row.summary.value and f"{pipe.agent.crashes} crashes" in row.summary.value
    last = board.figures[0].last_error  # the crash, then the event dead-lettered
    assert last.startswith("dead-lettered orders[") and last.endswith(": RuntimeError: cannot total 'crash'"), last
    assert "cannot total" in board._repr_mimebundle_()["text/html"]
    board.close()


async def test_buttons_stop_and_start_an_agent(pipe: Pipeline) -> None:
    board = dashboard(pipe.app, interval=0.2)
    row = row_of(board, "total")
    assert row.start_button.disabled and not row.stop_button.disabled
    row.stop_button.click()
    await wait_until(lambda: not pipe.agent.running, timeout=10)
    await wait_until(lambda: board.figures[0].state == "stopped", timeout=5)
    assert not row.start_button.disabled and row.stop_button.disabled and row.pause_button.disabled
    await pipe.orders.send(value="a")
    assert agent_tasks() == []  # nothing left that could take it
    assert pipe.totals["a"] == 0
    row.start_button.click()
    await wait_until(lambda: pipe.agent.running, timeout=10)
    await settle(pipe.app)
    assert pipe.totals["a"] == 1  # from the committed offset
    assert len(agent_tasks()) == 1
    board.close()


async def test_dashboard_stops_with_the_app_and_when_closed(pipe: Pipeline) -> None:
    board = dashboard(pipe.app, interval=0.2)
    closed = dashboard(pipe.app, interval=0.2)
    closed.close()
    assert not closed.running
    await pipe.app.stop()
    await wait_until(lambda: not board.running, timeout=3)
    assert board.stopped == "app stopped" and "not updating (app stopped)" in board.header.value
    row = row_of(board, "total")
    assert row.start_button.disabled and row.stop_button.disabled  # nothing to do on a stopped app
    assert "stopped" in row.summary.value
    assert [t for t in asyncio.all_tasks() if t.get_name().startswith("streamnb-")] == []
    row.start_button.click()  # does nothing on a stopped app: no task to start the agent
    assert board.act("total", "start") is None
    assert [t for t in asyncio.all_tasks() if t.get_name().startswith("streamnb-")] == []
    assert not pipe.agent.running


async def test_dashboard_before_start_and_errors() -> None:
    app = test_app("early")
    orders = app.topic("orders")

    @app.agent(orders)
    async def total(stream: Any) -> None:
        async for _ in stream:
            pass

    board = dashboard(app, interval=0.2)
    assert board.running and board.figures[0].state == "stopped"
    assert "shown while the app is running" in board.offsets_html.value
    await app.start()
    await wait_until(lambda: board.figures[0].state == "running" and board.offsets, timeout=5)
    board.close()
    await app.stop()
    with pytest.raises(ConfigurationError, match="takes a streamnb.App"):
        dashboard("app")  # type: ignore[arg-type]
    assert [t for t in asyncio.all_tasks() if t.get_name().startswith(TASK_PREFIX)] == []


async def test_windowed_tables_show_stream_time_and_late_events() -> None:
    app = test_app("times", topic_partitions=1)
    clicks = app.topic("clicks")
    plain = app.Table("plain", default=int)
    per_10s = app.Table("per_10s", default=int).tumbling(10, grace=2)
    visits = app.Table("visits", default=int).session(5)

    @app.agent(clicks)
    async def count(stream: Any) -> None:
        async for click in stream:
            plain[click] += 1
            per_10s[click] += 1
            visits[click] += 1

    async with app:
        board = dashboard(app, interval=0.2)
        await wait_until(lambda: "late events" in board.tables_html.value, timeout=5)
        assert "<td>-</td>" in board.tables_html.value  # no event yet: no stream time
        base = 1_700_000_000.0
        for t in (1.0, 12.5, 3.0):  # 3.0 is late: [0, 10) closed at 12 and session [1, 1] at 6
            await clicks.send(key="k", value="a", timestamp=base + t)
        await settle(app)
        assert (per_10s.late_events, visits.late_events) == (1, 1)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(base + 12)) + ".500"

        def row(name: str) -> str:
            html = board.tables_html.value
            start = html.index(f"<td>{name}</td>")
            return html[start:html.index("</tr>", start)]

        await wait_until(lambda: stamp in row("per_10s"), timeout=5)
        assert stamp in row("visits")
        assert "<td style='color:#cf222e'>1</td>" in row("per_10s")  # one late event...
        assert "<td style='color:#cf222e'>1</td>" in row("visits")
        assert row("plain").endswith("<td></td><td></td><td></td>")  # plain tables have no event time
        assert "stream time" in board.tables_html.value and "late window updates" in board.tables_html.value
        assert stamp in board._repr_mimebundle_()["text/html"]
        board.close()


async def test_timers_and_crontabs_show_their_schedule_and_next_run() -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    app = test_app("board-timers")
    ticks: list[float] = []

    @app.timer(3600.0)
    async def hourly() -> None:
        pass

    @app.crontab("* * * * * *", timezone="Europe/Berlin")  # every second
    async def every_second() -> None:
        ticks.append(app.now())
        raise RuntimeError("no report today")

    board = app.dashboard()
    html = board.timers_html.value
    assert "every 3600 s" in html and "cron &#x27;* * * * * *&#x27; in Europe/Berlin" in html
    async with app:
        await wait_until(lambda: len(ticks) >= 1, what="the crontab ran")
        await board.refresh()
        job = app.timers["every_second"]
        assert job.next_run is not None
        shown = datetime.fromtimestamp(job.next_run, ZoneInfo("Europe/Berlin")).strftime("%Y-%m-%d %H:%M:%S %Z")
        html = board.timers_html.value
        assert shown in html and "RuntimeError: no report today" in html
        assert "timers and crontabs" in board._snapshot_html()
    board.close()


async def test_a_stream_time_far_ahead_of_the_clock_is_a_warning_in_the_dashboard_and_the_status() -> None:
    import html

    from streamnb.notebook.magics import status_text

    app = test_app("future", topic_partitions=1)
    clicks = app.topic("clicks")
    per_minute = app.Table("per_minute", default=int).tumbling(60)

    @app.agent(clicks)
    async def count(stream: Any) -> None:
        async for click in stream:
            per_minute[click] += 1

    async with app:
        board = dashboard(app, interval=0.2)
        await clicks.send(value="a", timestamp=time.time())
        await settle(app)
        await board.refresh()
        assert "&#9888;" not in board.tables_html.value and "warning" not in status_text(app)
        await clicks.send(value="b", timestamp=4_102_444_800.0)  # 2100: moves stream time there (no guard)
        await settle(app)
        await wait_until(lambda: "&#9888;" in board.tables_html.value, timeout=5)
        expected = "table 'per_minute' partition 0: stream time 2100-01-01 00:00:00 UTC is 7"
        assert expected in html.unescape(board.tables_html.value)
        status = status_text(app)
        assert f"warning: {expected}" in status and "max_event_time_skew" in status
        board.close()


async def test_a_joined_stream_shows_its_buffered_records_per_side_and_its_late_count() -> None:
    from streamnb.notebook.magics import status_text

    app = test_app("joinboard", topic_partitions=1)
    orders = app.topic("orders", key_type=str, value_type=int)
    payments = app.topic("payments", key_type=str, value_type=int)

    @app.agent(orders)
    async def match(stream: Any) -> None:
        async for _pair in stream.join(payments, within=1, grace=0, how="inner"):
            pass

    await app.connect()
    for topic in (orders, payments):
        await topic.declare()
    # L k@10 and R k@10.5 join; R x@20 stays open; L k@5 comes after its window closed (5 + 1 < 20): late.
    await orders.send(key="k", value=1, timestamp=10)
    await payments.send(key="k", value=2, timestamp=10.5)
    await payments.send(key="x", value=3, timestamp=20)
    await orders.send(key="k", value=4, timestamp=21)
    await orders.send(key="k", value=5, timestamp=5)
    async with app:
        board = dashboard(app)
        await settle(app)
        stats = match.joins["join(payments, inner, before=1.0 s, after=1.0 s, grace=0.0 s)"]
        await wait_until(lambda: stats.late == 1, timeout=10, what="the late record counted")
        await board.refresh()
        line = "join(payments, inner, before=1.0 s, after=1.0 s, grace=0.0 s): 1 joined · buffered 1 left / 1 right"
        assert (stats.joined, stats.buffered_left, stats.buffered_right) == (1, 1, 1)
        assert f"{line} · 1 late · 0 dropped" in row_of(board, "match").joins.value
        assert f"join in match: {line} · 1 late" in status_text(app)
        assert "1 late" in board._snapshot_html()
        board.close()


async def test_a_stream_table_join_shows_the_records_of_the_tables_topic_it_read() -> None:
    from streamnb.notebook.magics import status_text

    app = test_app("tableboard", topic_partitions=1)
    orders = app.topic("orders", key_type=str, value_type=int)
    customers = app.Table("customers", source=app.topic("customers", key_type=str, value_type=str))

    @app.agent(orders)
    async def enrich(stream: Any) -> None:
        async for _pair in stream.join(customers, how="inner"):
            pass

    await app.connect()
    for topic in (orders, customers.source):
        await topic.declare()
    # Three records of the table's topic (two for ann) before the orders: the join reads all three.
    for key, value, ts in (("ann", "gold", 1), ("bob", "tin", 2), ("ann", "silver", 3)):
        await customers.source.send(key=key, value=value, timestamp=ts)
    await orders.send(key="ann", value=1, timestamp=10)
    await orders.send(key="cid", value=2, timestamp=11)  # no row: skipped (inner)
    async with app:
        board = dashboard(app)
        stats = enrich.joins["join(customers, inner)"]
        await wait_until(lambda: stats.joined + stats.unmatched == 2, timeout=10, what="both orders joined")
        await settle(app)
        await board.refresh()
        assert (stats.joined, stats.unmatched, stats.table_read) == (1, 1, 3)
        line = ("join(customers, inner): 1 joined · 1 unmatched · 0 events held · "
                "3 records of table 'customers' read · 0 late · 0 dropped")
        assert html.escape(line) in row_of(board, "enrich").joins.value
        assert f"join in enrich: {line}" in status_text(app)
        board.close()
