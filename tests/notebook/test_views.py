"""Live table views: updates in place, options, snapshots, and stopping."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pandas as pd
import pytest
from nbhelpers import table_dict

import streamnb
from streamnb.errors import ConfigurationError
from streamnb.notebook import dashboard, live_table
from streamnb.notebook._live import MIN_INTERVAL, TASK_PREFIX
from streamnb.notebook.views import LiveTable
from streamnb.testing import settle, test_app, wait_until

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


class Pipeline:
    def __init__(self) -> None:
        self.app = test_app("views", topic_partitions=2)
        self.views = self.app.topic("views")
        self.counts = self.app.Table("counts", default=int)
        self.per_minute = self.app.Table("per_minute", default=int).tumbling(60, expires=3600)
        counts, per_minute = self.counts, self.per_minute

        @self.app.agent(self.views)
        async def count(stream: Any) -> None:
            async for page in stream:
                counts[page] += 1
                per_minute[page] += 1

        self.agent = count

    async def send(self, *pages: str, timestamp: float | None = None) -> None:
        for page in pages:
            await self.views.send(key=page, value=page, timestamp=timestamp)
        await settle(self.app)


@pytest.fixture
async def pipe() -> AsyncIterator[Pipeline]:
    p = Pipeline()
    await p.app.start()
    yield p
    await p.app.stop()


def view_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith(TASK_PREFIX)]


async def test_live_table_updates_in_place(pipe: Pipeline) -> None:
    await pipe.send("/", "/")
    view = pipe.counts.live(interval=0.2)
    assert isinstance(view, LiveTable)
    assert view.children == (view.html, view.label)
    assert view.running and len(view_tasks()) == 1
    html, label, updates = view.html.value, view.label.value, view.updates
    assert "<table" in html and "/" in html and label.startswith("1 rows · updated ")
    polls = view.polls
    await wait_until(lambda: view.polls >= polls + 2, timeout=5)  # it looked twice more...
    assert view.updates == updates  # ...but nothing changed: nothing re-rendered
    await pipe.send("/a", "/b")
    await wait_until(lambda: view.rows == 3, timeout=5)
    assert view.html.value != html and view.label.value.startswith("3 rows")
    assert view.updates == updates + 1  # one commit, one re-render
    view.close()
    assert not view.running and view.stopped == "closed"
    await wait_until(lambda: view_tasks() == [], timeout=5)  # its task ends at its next step


async def test_options_sort_top_and_key_filter(pipe: Pipeline) -> None:
    await pipe.send("/a", "/b", "/b", "/c", "/c", "/c", "/x/c")
    df = live_table(pipe.counts, sort_by="value").dataframe()
    assert df.to_dict("records")[0] == {"key": "/c", "value": 3}
    assert list(df["value"]) == sorted(df["value"], reverse=True)
    assert list(live_table(pipe.counts, sort_by="value", ascending=True, top=2).dataframe()["value"]) == [1, 1]
    assert set(live_table(pipe.counts, key_filter="c").dataframe()["key"]) == {"/c", "/x/c"}
    only_b = live_table(pipe.counts, key_filter=lambda k: k == "/b")
    assert only_b.dataframe().to_dict("records") == [{"key": "/b", "value": 2}]
    assert only_b.label.value.startswith("1 rows · updated")
    top = live_table(pipe.counts, sort_by="value", top=2)
    assert top.rows == 4 and top.shown == 2 and top.label.value.startswith("4 rows (2 shown) · updated")
    assert list(live_table(pipe.counts, sort_by="key", ascending=True).dataframe()["key"]) == sorted(
        ["/a", "/b", "/c", "/x/c"]
    )


async def test_windowed_view_shows_windows_as_datetimes(pipe: Pipeline) -> None:
    await pipe.send("/a", "/a", timestamp=120.5)
    await pipe.send("/a", timestamp=185.0)
    view = pipe.per_minute.live()
    df = view.dataframe()
    assert list(df.columns) == ["key", "window_start", "window_end", "value", "closed"]
    assert df["window_start"].tolist() == [pd.Timestamp(120, unit="s", tz="UTC"), pd.Timestamp(180, unit="s", tz="UTC")]
    assert df["value"].tolist() == [2, 1]
    assert "1970-01-01 00:02:00" in view.html.value
    epoch = live_table(pipe.per_minute, datetimes=False, sort_by="window_start").dataframe()
    assert epoch["window_start"].tolist() == [180.0, 120.0]


async def test_snapshot_html_beside_the_widget(pipe: Pipeline) -> None:
    await pipe.send("/snap")
    view = live_table(pipe.counts)
    bundle = view._repr_mimebundle_()
    assert WIDGET_MIME in bundle and bundle[WIDGET_MIME]["model_id"] == view.model_id
    assert "<table" in bundle["text/html"] and "/snap" in bundle["text/html"] and "1 rows" in bundle["text/html"]
    view.close()
    from IPython.core.formatters import DisplayFormatter

    data, _ = DisplayFormatter().format(view)  # how IPython shows a closed widget
    assert WIDGET_MIME not in data and "/snap" in data["text/html"]


async def test_view_stops_when_the_app_stops(pipe: Pipeline) -> None:
    view = live_table(pipe.counts, interval=0.2)
    windowed = live_table(pipe.per_minute, interval=0.2)
    assert len(view_tasks()) == 2
    await pipe.app.stop()
    await wait_until(lambda: not view.running and not windowed.running, timeout=3)
    assert view_tasks() == []
    assert view.stopped == "app stopped" and "not updating (app stopped)" in view.label.value
    fresh = live_table(pipe.counts)  # a view of a stopped app renders once and starts no task
    assert not fresh.running and fresh.stopped == "app stopped" and view_tasks() == []


async def test_the_view_shows_the_final_table_after_the_app_stopped(pipe: Pipeline) -> None:
    view = live_table(pipe.counts, interval=60)  # renders now, then naps for a minute
    board = dashboard(pipe.app, interval=60)
    assert view.rows == 0 and not view.frozen
    await pipe.send(*[f"/p{i % 7}" for i in range(100)])
    await pipe.app.stop()
    view.wake()  # the task looks now: the app stopped; it renders the final table once more
    board.wake()
    await wait_until(lambda: view.frozen and board.frozen, timeout=5)
    assert view.stopped == "app stopped" and not view.running
    assert table_dict(view.html.value) == dict(pipe.counts)
    assert view.label.value.startswith("7 rows") and "not updating (app stopped)" in view.label.value
    assert board.figures[0].processed == 100 and board.stopped == "app stopped"
    bundle = view._static_bundle()  # what its outputs become: the final table, no widget
    assert WIDGET_MIME not in bundle and "/p6" in bundle["text/html"]


async def test_view_follows_a_redefined_table(pipe: Pipeline) -> None:
    await pipe.send("/old")
    view = live_table(pipe.counts, interval=0.2)
    new_counts = pipe.app.Table("counts", default=int)  # the table cell run again: same data, new object
    assert new_counts is not pipe.counts and new_counts.data is pipe.counts.data

    @pipe.app.agent(pipe.views)
    async def count(stream: Any) -> None:
        async for page in stream:
            new_counts[page] += 1

    await wait_until(lambda: count.running, timeout=5)
    await pipe.send("/new")
    await wait_until(lambda: view.rows == 2, timeout=5)
    assert view.table is new_counts and "/new" in view.html.value
    view.close()


async def test_view_of_a_replaced_app_stops() -> None:
    broker = "memory://views-replaced"
    old = streamnb.App("replaced", broker=broker)
    view = live_table(old.Table("t", default=int), interval=0.2)
    assert view.running  # an app that has not started yet may still start
    new = streamnb.App("replaced", broker=broker)  # the App cell run again
    await wait_until(lambda: not view.running, timeout=3)
    assert view.stopped == "app replaced" and new.state == "init"


async def test_throttled_and_argument_errors(pipe: Pipeline) -> None:
    view = live_table(pipe.counts, interval=0.001)
    assert view.interval == MIN_INTERVAL
    view.close()
    await wait_until(lambda: view_tasks() == [], timeout=5)
    with pytest.raises(ConfigurationError, match="takes a table"):
        live_table("counts")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="top must be a positive int"):
        live_table(pipe.counts, top=0)
    with pytest.raises(ConfigurationError, match="key_filter must be a str or a function"):
        live_table(pipe.counts, key_filter=3)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="no column 'nope' to sort by; columns are key, value"):
        live_table(pipe.counts, sort_by="nope")
    assert view_tasks() == []


def test_without_a_running_loop_the_view_is_a_snapshot() -> None:
    app = test_app("noloop")
    table = app.Table("t", default=int)
    view = live_table(table)
    assert not view.running and view.stopped is not None and "no running event loop" in view.stopped
    table.data["k"] = 5  # (as recovery would)
    view.refresh()
    assert view.rows == 1 and "k" in view.html.value
    view.close()


async def test_a_table_too_large_to_read_is_followed_by_its_changed_keys(tmp_path: Any) -> None:
    """Beyond follow_above rows the view reads only the keys commits change: a rocksdb table that refuses
    a whole as_dataframe() still shows, top-N by value, with its size."""
    app = test_app("follow", store="rocksdb://", datadir=tmp_path)
    views = app.topic("views")
    counts = app.Table("counts", default=int)
    counts.whole_frame_limit = 3  # as_dataframe() now refuses to read the table whole

    @app.agent(views)
    async def count(stream: Any) -> None:
        async for page in stream:
            counts[page] += 1

    async def send(*pages: str) -> None:
        for page in pages:
            await views.send(key=page, value=page)
        await settle(app)

    await app.start()
    try:
        await send("/a", "/b", "/c", "/d", "/e")
        with pytest.raises(ConfigurationError, match="ask for part of it"):
            counts.as_dataframe()
        view = live_table(counts, sort_by="value", top=2, follow_above=3, interval=0.2)
        assert view.following and view.rows == counts.estimated_len()
        assert "too many to read at each refresh" in view.label.value
        await send("/c", "/c", "/d", "/x")
        await wait_until(lambda: view.dataframe().to_dict("records")[:2] == [
            {"key": "/c", "value": 3}, {"key": "/d", "value": 2}], timeout=5)
        await wait_until(lambda: "/c" in view.html.value and view.shown == 2, timeout=5)
        latest = live_table(counts, follow_above=3, key_filter=lambda k: k != "/b")
        await send("/b", "/e")
        assert latest.dataframe()["key"].tolist()[:1] == ["/e"]  # without sort_by: the latest change first
        with pytest.raises(ConfigurationError, match="ask for part of it"):
            live_table(counts, follow_above=10**9)  # (below follow_above, a view reads the table whole)
    finally:
        await app.stop()


async def test_follow_above_must_be_a_count(pipe: Pipeline) -> None:
    await pipe.send("/a", "/b")
    assert not live_table(pipe.counts, follow_above=2).following
    assert live_table(pipe.counts, follow_above=1).following
    with pytest.raises(ConfigurationError, match="follow_above must be a row count"):
        live_table(pipe.counts, follow_above=-1)
