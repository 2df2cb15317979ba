"""Tables that follow a topic (streamnb/tables/sourced.py): latest value per key, tombstones, read-only."""

from __future__ import annotations

from typing import Any

import pytest

import streamnb as faust
from streamnb import naming
from streamnb.errors import ConfigurationError, TableWriteError
from streamnb.testing import settle, test_app, wait_until


@pytest.mark.parametrize("kind", ["Table", "GlobalTable"])
async def test_a_sourced_table_holds_the_latest_value_of_each_key(kind: str, broker: str, app_id: str) -> None:
    app = faust.App(app_id, broker=broker, topic_partitions=2)
    prices = app.topic(f"{app_id}-prices", key_type=str, value_type=int)
    table = getattr(app, kind)("prices", source=prices)
    assert table.changelog is prices and table.topics() == [prices]  # no second copy
    async with app:
        for key, value in [("a", 1), ("b", 2), ("a", 3), ("c", 4)]:
            await prices.send(key=key, value=value)
        await prices.send(key="c", value=None)  # a tombstone deletes
        await wait_until(lambda: dict(table.items()) == {"a": 3, "b": 2}, timeout=10)
        await prices.send(key="b", value=5)  # kept up to date as the topic grows
        await wait_until(lambda: table.get("b") == 5, timeout=10)
        unused = app.topics.get(naming.changelog_topic(app.id, "prices"))
        assert unused is None or not unused.declared  # never created on the broker


async def test_a_sourced_table_is_read_only() -> None:
    app = test_app()
    source = app.topic("customers", key_type=str)
    customers = app.Table("customers", source=source)
    with pytest.raises(TableWriteError, match="follows topic 'customers'.*read-only.*None deletes the key"):
        customers["ann"] = {"name": "Ann"}
    orders = app.topic("orders", key_type=str)
    errors: list[BaseException] = []

    @app.agent(orders)
    async def write(stream: Any) -> None:
        async for order in stream:
            try:
                customers[order] = 1
            except TableWriteError as exc:
                errors.append(exc)
            try:
                del customers[order]
            except TableWriteError as exc:
                errors.append(exc)

    async with app:
        await orders.send(key="x", value="ann")
        await settle(app)
    assert [type(e) for e in errors] == [TableWriteError, TableWriteError]


async def test_a_global_sourced_table_is_read_to_the_end_before_agents_run() -> None:
    app = test_app(topic_partitions=3)
    rates = app.topic("rates", key_type=str, value_type=float)
    table = app.GlobalTable("rates", source=rates)
    orders = app.topic("orders", key_type=str, value_type=str)
    seen: list[dict[str, float]] = []

    @app.agent(orders)
    async def look(stream: Any) -> None:
        async for _ in stream:
            seen.append(dict(table.items()))

    await app.connect()
    await rates.declare()
    for i, currency in enumerate(["EUR", "USD", "GBP", "JPY", "CHF"]):
        await rates.send(key=currency, value=float(i))
    await orders.declare()
    await orders.send(key="o1", value="x")
    async with app:
        await settle(app)
    assert seen == [{"EUR": 0.0, "USD": 1.0, "GBP": 2.0, "JPY": 3.0, "CHF": 4.0}]


def test_options_that_do_not_apply_to_a_sourced_table_are_errors() -> None:
    app = test_app()
    topic = app.topic("t")
    with pytest.raises(ConfigurationError, match="partitions do\\(es\\) not apply"):
        app.Table("a", source=topic, partitions=4)
    with pytest.raises(ConfigurationError, match="leave out store="):
        app.Table("b", source=topic, store="rocksdb://")
    with pytest.raises(ConfigurationError, match="emit_final"):
        app.GlobalTable("c", source=topic, emit_final="x")
    with pytest.raises(ConfigurationError, match="cannot be windowed"):
        app.Table("d", source=topic).tumbling(10)


async def test_a_sourced_table_keeps_its_rows_in_memory_whatever_the_app_store(tmp_path: Any) -> None:
    app = test_app(store="rocksdb://", datadir=tmp_path)
    table = app.Table("t", source=app.topic("t"))
    assert table.store == "memory://" and table.persistence is None
