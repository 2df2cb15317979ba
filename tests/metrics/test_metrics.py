"""The registry's numbers match what was processed, on every broker (in one process; workers: see
test_worker_metrics.py)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

import streamnb as faust
from streamnb.errors import ConfigurationError
from streamnb.metrics import SPECS, Metrics
from streamnb.testing import settle, wait_until
from streamnb.topics import partition_for_key
from streamnb.transport.base import EXACTLY_ONCE, ProducerRecord

PARTITIONS = 2


class Click(faust.Record):
    page: str


def scrape(app: faust.App) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The app's exposition, parsed by prometheus_client's own parser: (sample name, labels) -> value."""
    assert isinstance(app.monitor, Metrics)
    text = app.monitor.exposition().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text) for s in family.samples
    }


def total(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls)


def build(broker: str, **options: Any) -> tuple[faust.App, Any, Any, Any]:
    name = f"metrics-{uuid.uuid4().hex[:8]}"
    app = faust.App(name, broker=broker, topic_partitions=PARTITIONS, broker_commit_interval=0.1, **options)
    clicks = app.topic(f"{name}-clicks", key_type=str, value_type=Click)
    pages = app.Table("pages", default=int)
    per_minute = app.Table("per_minute", default=int).tumbling(60, expires=3600)

    @app.agent(clicks)
    async def count(stream: Any) -> None:
        async for click in stream:
            pages[click.page] += 1
            per_minute[click.page] += 1

    return app, clicks, per_minute, count


async def test_the_numbers_match_what_was_processed(broker: str) -> None:
    app, clicks, per_minute, count = build(broker)
    good, bad = 40, 3
    count.pause()  # a backlog first: the agent takes nothing until resumed
    async with app:
        await wait_until(lambda: len(count.assignment()) == PARTITIONS, 30, what="partitions assigned")
        for i in range(good):
            await clicks.send(key=f"p{i % 4}", value=Click(page=f"p{i % 4}"), timestamp=10_000.0 + i)
        await clicks.send(key="p0", value=Click(page="p0"), timestamp=100.0)  # its window closed: late
        transport = app.require_transport()
        for i in range(bad):  # not a Click: dead-lettered
            key = f"bad{i}".encode()
            record = ProducerRecord(clicks.name, partition_for_key(key, PARTITIONS), key, json.dumps({"x": i}).encode(),
                                    10_000.0, ())
            await transport.send([record])
        sent = good + 1 + bad
        await app.sample_metrics()
        backlog = scrape(app)
        assert total(backlog, "streamnb_consumer_lag", agent="count", topic=clicks.name) == sent
        assert total(backlog, "streamnb_events_total", agent="count") == 0

        count.resume()
        await settle(app)
        await wait_until(lambda: count.dead_lettered == bad, 30, what="dead letters counted")
        await app.sample_metrics()
        after = scrape(app)
    assert total(after, "streamnb_events_total", agent="count") == sent == count.events_processed
    assert total(after, "streamnb_consumer_lag", agent="count") == 0
    assert len([k for k in after if k[0] == "streamnb_consumer_lag"]) == PARTITIONS
    assert total(after, "streamnb_dead_letters_total", agent="count") == bad
    assert total(after, "streamnb_events_sent_total", topic=app.dead_letter_topic("count").name) == bad
    assert total(after, "streamnb_events_sent_total", topic=clicks.name) == good + 1  # (the raw sends bypass topics)
    assert total(after, "streamnb_agent_errors_total") == 0
    assert total(after, "streamnb_table_keys", table="pages") == 4
    assert total(after, "streamnb_late_events_total", table="per_minute") == per_minute.late_events == 1
    assert total(after, "streamnb_late_windows_total", table="per_minute") == 1
    lag_seconds = [v for (n, ls), v in after.items() if n == "streamnb_stream_time_lag_seconds"]
    assert lag_seconds and all(time.time() - 10_100 < v < time.time() for v in lag_seconds)
    assert total(after, "streamnb_restore_remaining_records", table="pages") == 0
    commits = total(after, "streamnb_commit_seconds_count", agent="count")
    assert commits >= 1 and total(after, "streamnb_commit_seconds_bucket", agent="count", le="+Inf") == commits
    assert total(after, "streamnb_event_seconds_count", agent="count") >= 1
    assert total(after, "streamnb_rebalances_total", agent="count") >= 1
    assert total(after, "streamnb_assigned_partitions", agent="count") == PARTITIONS
    transactions = total(after, "streamnb_transactions_total", agent="count", outcome="committed")
    if app.processing_guarantee == EXACTLY_ONCE:
        assert transactions >= 1
        assert total(after, "streamnb_transactions_total", outcome="aborted") == 0
    else:
        assert transactions == 0


async def test_exactly_once_on_local_counts_its_transactions(tmp_path: Path) -> None:
    app, clicks, _per_minute, count = build(f"local://{tmp_path / 'broker'}", processing_guarantee="exactly_once")
    async with app:
        for i in range(10):
            await clicks.send(key=f"p{i}", value=Click(page=f"p{i}"))
        await settle(app)
        samples = scrape(app)
    assert total(samples, "streamnb_events_total", agent="count") == 10
    committed = total(samples, "streamnb_transactions_total", agent="count", outcome="committed")
    assert committed == total(samples, "streamnb_commit_seconds_count", agent="count") >= 1


async def test_each_app_has_its_own_registry() -> None:
    first, clicks_a, _w, _c = build("memory://")
    second, _clicks_b, _w2, count_b = build(f"memory://{uuid.uuid4().hex}")
    async with first, second:
        for i in range(5):
            await clicks_a.send(key="k", value=Click(page=str(i)))
        await settle(first)
        await settle(second)
        mine, theirs = scrape(first), scrape(second)
    assert total(mine, "streamnb_events_total", app=first.id) == 5
    assert total(theirs, "streamnb_events_total") == 0 == count_b.events_processed
    assert all(dict(labels)["app"] == second.id for (_n, labels) in theirs if labels)


async def test_metrics_frame_and_history() -> None:
    app, clicks, _w, _count = build("memory://")
    async with app:
        for i in range(7):
            await clicks.send(key="k", value=Click(page=str(i)))
        await settle(app)
        await app.sample_metrics()
        frame = app.metrics()
        await wait_until(lambda: app.metrics_history()["time"].nunique() >= 2, 10, what="two samples a second apart")
        history = app.metrics_history()
    assert list(frame.columns[:1]) == ["metric"] and frame.columns[-1] == "value"
    events = frame[(frame.metric == "streamnb_events_total") & (frame.agent == "count")]
    assert events["value"].tolist() == [7.0]
    assert {"app", "agent", "topic", "partition", "table", "outcome", "le"} <= set(frame.columns)
    assert pd.api.types.is_datetime64_any_dtype(history["time"])
    assert set(history.metric) >= {"streamnb_events_total", "streamnb_consumer_lag"}


def test_without_metrics_nothing_is_recorded_and_metrics_port_is_an_error() -> None:
    app = faust.App(f"nometrics-{uuid.uuid4().hex[:6]}", broker="memory://", metrics=False)
    assert not app.monitor.enabled and app.metrics().empty and "/metrics" not in app.web.endpoints
    with pytest.raises(ConfigurationError, match="metrics=False"):
        faust.App("x", broker="memory://", metrics=False, metrics_port=0)
    with pytest.raises(ConfigurationError, match="metrics_port must be a port"):
        faust.App("x", broker="memory://", metrics_port=-1)


async def test_metrics_port_serves_in_a_notebook() -> None:
    import aiohttp

    app, clicks, _w, _count = build("memory://", metrics_port=0)
    async with app:
        assert app.web.url is None and app.metrics_url is not None  # no web server, the metrics' own
        await clicks.send(key="k", value=Click(page="a"))
        await settle(app)
        async with aiohttp.ClientSession() as session, session.get(app.metrics_url) as response:
            assert response.status == 200 and response.headers["Content-Type"].startswith("text/plain")
            text = await response.text()
    parsed = {f.name: f for f in text_string_to_metric_families(text)}
    assert [s.value for s in parsed["streamnb_events"].samples if s.name.endswith("_total")] == [1.0]
    assert app.metrics_url is None


def test_every_metric_of_the_issue_is_in_the_catalogue() -> None:
    wanted = {
        "streamnb_events_total", "streamnb_events_sent_total", "streamnb_dead_letters_total",
        "streamnb_agent_errors_total", "streamnb_late_events_total", "streamnb_late_windows_total",
        "streamnb_consumer_lag", "streamnb_stream_time_lag_seconds", "streamnb_table_keys",
        "streamnb_restore_remaining_records", "streamnb_commit_seconds", "streamnb_event_seconds",
        "streamnb_rebalances_total", "streamnb_assigned_partitions", "streamnb_transactions_total",
        "streamnb_standby_lag_records",  # (issue 18: standby replicas)
    }
    assert set(SPECS) == wanted
    page = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()
    for spec in SPECS.values():
        assert f"`{spec.name}`" in page, f"the Metrics page (docs/metrics.md) does not list {spec.name}"


async def test_restore_progress_shows_while_a_table_recovers(tmp_path: Path) -> None:
    import asyncio

    broker = f"local://{tmp_path / 'broker'}"
    name = f"restore-{uuid.uuid4().hex[:6]}"
    keys = 100_000

    def make() -> tuple[faust.App, Any]:
        app = faust.App(name, broker=broker, topic_partitions=1)
        numbers = app.topic(f"{name}-numbers", key_type=str)
        table = app.Table("seen", default=int, store="memory://")  # (a full restore, as memory:// does)

        @app.agent(numbers)
        async def remember(stream: Any) -> None:
            async for n in stream:
                table[n] = 1

        return app, numbers

    first, numbers = make()
    async with first:
        transport = first.require_transport()
        records = [ProducerRecord(numbers.name, 0, None, json.dumps(i).encode(), 1.0, ()) for i in range(keys)]
        await transport.send(records)
        await settle(first, timeout=120)
        changelog = first.tables["seen"].changelog.name
    second, _numbers = make()
    seen: list[float] = []
    starting = asyncio.ensure_future(second.start())
    try:
        while not starting.done():
            await second.sample_metrics()
            seen.append(total(scrape(second), "streamnb_restore_remaining_records", table="seen", partition="0"))
            await asyncio.sleep(0)
        await starting
        await second.sample_metrics()
        after = scrape(second)
    finally:
        await second.stop()
    assert keys in seen, (changelog, sorted(set(seen)))  # the whole changelog partition is left while it restores
    assert total(after, "streamnb_restore_remaining_records", table="seen", partition="0") == 0
    assert total(after, "streamnb_table_keys", table="seen") == keys
