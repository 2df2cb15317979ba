"""Time travel: ``table.at()`` is the table computed from the input up to that moment; ``history(key)``."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import streamnb as faust
from streamnb.errors import ConfigurationError, HistoryUnavailableError
from streamnb.testing import settle
from streamnb.transport.memory import MemoryBroker

T0 = 1_700_000_000.0
KEYS = ["a", "b", "c"]


def define(app: faust.App) -> tuple[Any, Any, Any]:
    events = app.topic(f"{app.id}-events", partitions=1)  # its own: Kafka keeps topics across runs
    sums = app.Table("sums", default=int)
    counts = app.Table("counts", default=int).tumbling(10, expires=25)

    @app.agent(events)
    async def add(stream: Any) -> None:
        async for event in stream:
            sums[event["k"]] += event["v"]
            counts[event["k"]] += 1
            if event["v"] == 0:
                del sums[event["k"]]

    return events, sums, counts


async def table_of(url: str, events: list[tuple[str, int, float]], history: bool) -> tuple[faust.App, Any, Any]:
    app = faust.App(f"tt-{uuid.uuid4().hex[:6]}", broker=url, history=history, topic_partitions=1)
    topic, sums, counts = define(app)
    await app.start()
    # All at once: the agent takes them in one batch, so one commit holds many changes.
    records = [topic.record(key=key, value={"k": key, "v": value}, timestamp=ts) for key, value, ts in events]
    await app.require_transport().send(records)
    await settle(app)
    return app, sums, counts


def rows(df: Any) -> list[tuple[Any, ...]]:
    return sorted(df.itertuples(index=False, name=None), key=repr)


event_lists = st.lists(
    st.tuples(st.sampled_from(KEYS), st.integers(0, 5), st.sampled_from([0.0, 1.0, 3.0, 9.5, 20.0])),
    min_size=1, max_size=25,
).map(lambda es: [(k, v, T0 + sum(d for _k, _v, d in es[: i + 1])) for i, (k, v, _d) in enumerate(es)])


async def _check(url_of: Any, events: list[tuple[str, int, float]], moments: list[float]) -> None:
    app, sums, counts = await table_of(url_of(), events, history=True)
    try:
        for moment in moments:
            snap_sums = await sums.at(time=moment)
            snap_counts = await counts.at(time=moment)
            prefix = [e for e in events if e[2] <= moment]
            ref, ref_sums, ref_counts = await table_of(f"memory://ref-{uuid.uuid4().hex}", prefix, history=False)
            try:
                assert rows(snap_sums.as_dataframe()) == rows(ref_sums.as_dataframe()), (moment, prefix)
                assert rows(snap_counts.as_dataframe()) == rows(ref_counts.as_dataframe()), (moment, prefix)
            finally:
                await ref.stop()
    finally:
        await app.stop()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=event_lists, picks=st.lists(st.integers(-5, 400), min_size=1, max_size=3))
def test_at_equals_the_table_computed_from_the_input_up_to_then_on_memory(
    events: list[tuple[str, int, float]], picks: list[int]
) -> None:
    moments = [T0 + p / 2 for p in picks]
    asyncio.run(_check(lambda: f"memory://tt-{uuid.uuid4().hex}", events, moments))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=event_lists, picks=st.lists(st.integers(-5, 400), min_size=1, max_size=2))
def test_at_equals_the_table_computed_from_the_input_up_to_then_on_local(
    tmp_path: Path, events: list[tuple[str, int, float]], picks: list[int]
) -> None:
    moments = [T0 + p / 2 for p in picks]
    asyncio.run(_check(lambda: f"local://{tmp_path / uuid.uuid4().hex}", events, moments))


async def test_history_of_a_key_and_at_by_offset() -> None:
    events = [("a", 1, T0), ("b", 2, T0 + 1), ("a", 3, T0 + 2), ("a", 0, T0 + 3), ("a", 4, T0 + 4)]
    app, sums, counts = await table_of(f"memory://tt-{uuid.uuid4().hex}", events, history=True)
    try:
        df = await sums.history("a")
        assert list(df.columns) == ["time", "partition", "offset", "old_value", "new_value"]
        assert df[["old_value", "new_value"]].values.tolist() == [[None, 1], [1, 4], [4, 4], [4, None], [None, 4]]
        assert df["time"].iloc[0].timestamp() == T0
        snap = await sums.at(offset=int(df["offset"].iloc[1]) + 1)  # up to and including the second change
        assert dict(snap) == {"a": 4, "b": 2}
        windows = await counts.history("a")
        assert {"window_start", "window_end"} <= set(windows.columns) and windows["new_value"].tolist() == [1, 2, 3, 4]
        snap = await counts.at(time=T0 + 2.5)
        assert snap["a"].now() == 2 and snap["b"][(T0, T0 + 10)] == 1
        with pytest.raises(faust.TableWriteError, match="read-only"):
            snap.window["a"] += 1  # type: ignore[index]
        with pytest.raises(ConfigurationError, match="exactly one"):
            await sums.at()
        with pytest.raises(ConfigurationError, match="partition: offset"):
            await faust.App("x", broker="memory://", history=True).Table("t", partitions=2).at(offset=3)
    finally:
        await app.stop()


async def test_a_table_without_history_says_how_to_get_it() -> None:
    app, sums, _counts = await table_of(f"memory://tt-{uuid.uuid4().hex}", [("a", 1, T0)], history=False)
    try:
        with pytest.raises(HistoryUnavailableError, match="history=True"):
            await sums.at(time=T0)
        with pytest.raises(HistoryUnavailableError, match="history=True"):
            await sums.history("a")
    finally:
        await app.stop()


async def test_asking_beyond_what_compaction_left_says_so() -> None:
    url = f"memory://tt-{uuid.uuid4().hex}"
    events = [("a", 1, T0), ("b", 1, T0 + 1), ("a", 2, T0 + 2), ("b", 2, T0 + 3), ("c", 5, T0 + 4)]
    app, sums, _counts = await table_of(url, events, history=True)
    try:
        from streamnb.transport.memory import _compact

        _compact(MemoryBroker.named(url.partition("://")[2]).topics[sums.changelog.name].partitions[0])
        assert dict(await sums.at(time=T0 + 10)) == {"a": 3, "b": 3, "c": 5}  # the end is still exact
        with pytest.raises(HistoryUnavailableError, match="compaction or retention removed"):
            await sums.at(time=T0 + 1)
        with pytest.raises(HistoryUnavailableError, match="compaction"):
            await sums.history("a")
        partial = await sums.history("a", complete=False)
        assert partial["new_value"].tolist() == [3]
    finally:
        await app.stop()


@pytest.mark.kafka
async def test_time_travel_on_kafka(app_id: str) -> None:
    from conftest import kafka_bootstrap

    events = [("a", 1, T0), ("b", 2, T0 + 1), ("a", 3, T0 + 2), ("c", 1, T0 + 12)]
    app, sums, counts = await table_of(f"kafka://{kafka_bootstrap()}", events, history=True)
    try:
        assert dict(await sums.at(time=T0 + 1.5)) == {"a": 1, "b": 2}
        assert (await sums.history("a"))["new_value"].tolist() == [1, 4]
        snap = await counts.at(time=T0 + 12)
        assert snap["a"][(T0, T0 + 10)] == 2 and snap["c"].now() == 1
    finally:
        await app.stop()
