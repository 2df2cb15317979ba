"""Stream–table joins (streamnb/processing/joins/stream_table.py) on every broker.

The table's topic and the stream are written before the app starts, so the
result is the one the timestamp-ordered merge of the two partitions gives
(table updates first at equal timestamps), whatever the timing.
"""

from __future__ import annotations

from typing import Any

import pytest

import streamnb as faust
from streamnb.errors import ConfigurationError, PartitionMismatchError
from streamnb.testing import settle

CUSTOMERS = [("ann", 1.0, "A1"), ("ann", 5.0, "A2"), ("bob", 7.0, "B1"), ("bob", 8.5, None)]
ORDERS = [("ann", 0.0, "o1"), ("ann", 3.0, "o2"), ("ann", 5.0, "o3"), ("bob", 6.0, "o4"), ("bob", 8.0, "o5"),
          ("carl", 9.0, "o6"), ("ann", 10.0, None), ("bob", 11.0, "o7")]


def expected(how: str) -> list[tuple[str, str | None]]:
    """The merge's answer, by brute force: the latest customer update at or before each order."""
    out: list[tuple[str, str | None]] = []
    for key, t, order in ORDERS:
        if order is None:
            continue
        updates = [v for k, u, v in CUSTOMERS if k == key and u <= t]
        row = updates[-1] if updates else None
        if row is not None or how == "left":
            out.append((order, row))
    return out


async def run_join(broker: str, app_id: str, how: str, partitions: int = 2) -> tuple[list[Any], Any]:
    app = faust.App(app_id, broker=broker, topic_partitions=partitions)
    customers_topic = app.topic(f"{app_id}-customers", key_type=str, value_type=str)
    orders = app.topic(f"{app_id}-orders", key_type=str, value_type=str)
    customers = app.Table("customers", source=customers_topic)
    out: list[Any] = []
    stats: list[Any] = []

    @app.agent(orders)
    async def enrich(stream: Any) -> None:
        joined = stream.join(customers, how=how)
        stats.append(joined.join_stats)
        async for order, customer in joined:
            out.append((order, customer))

    await app.connect()
    for topic in (customers_topic, orders):
        await topic.declare()
    for key, t, value in CUSTOMERS:
        await customers_topic.send(key=key, value=value, timestamp=t)
    for key, t, value in ORDERS:
        await orders.send(key=key, value=value, timestamp=t)
    async with app:
        await settle(app, timeout=60)
        enrich.raise_if_crashed()
    return out, stats[0]


@pytest.mark.parametrize("how", ["left", "inner"])
async def test_stream_table_join_reads_both_in_timestamp_order(broker: str, app_id: str, how: str) -> None:
    out, stats = await run_join(broker, app_id, how)
    by_key = {order: key for key, _t, order in ORDERS}
    # Per key (one partition each) the order is the stream's; across partitions it is not defined.
    for key in ("ann", "bob", "carl"):
        assert [r for r in out if by_key[r[0]] == key] == [r for r in expected(how) if by_key[r[0]] == key]
    assert sorted(out, key=str) == sorted(expected(how), key=str)
    assert stats.dropped == 1  # the order with a None value
    assert stats.unmatched == (4 if how == "inner" else 0)  # o1, o4, o6 and o7 (after the tombstone)


async def test_global_table_join_looks_up_by_on(app_id: str) -> None:
    class Order(faust.Record):
        customer: str
        amount: int

    app = faust.App(app_id, broker="memory://" + app_id, topic_partitions=3)
    customers_topic = app.topic("customers", key_type=str, value_type=str)
    orders = app.topic("orders", key_type=str, value_type=Order)
    customers = app.GlobalTable("customers", source=customers_topic)
    out: list[Any] = []

    @app.agent(orders)
    async def enrich(stream: Any) -> None:
        async for order, name in stream.join(customers, how="inner", on=Order.customer):
            out.append((order.amount, name))

    await app.connect()
    await customers_topic.declare()
    await customers_topic.send(key="c1", value="Ann")
    await customers_topic.send(key="c2", value="Bob")
    async with app:
        for i, customer in enumerate(["c1", "c2", "c3", "c1"]):
            await orders.send(key=f"order-{i}", value=Order(customer=customer, amount=i))
        await settle(app)
        enrich.raise_if_crashed()
    assert sorted(out) == [(0, "Ann"), (1, "Bob"), (3, "Ann")]


def test_a_partitioned_join_over_topics_of_different_partition_counts_is_refused() -> None:
    app = faust.App("mismatch", broker="memory://mismatch")
    customers = app.Table("customers", source=app.topic("customers", partitions=3))
    stream = app.topic("orders", partitions=4).stream()
    with pytest.raises(PartitionMismatchError, match=r"'orders' has 4 partitions but 'customers' has 3.*group_by"):
        stream.join(customers)
    rates = app.GlobalTable("rates", source=app.topic("rates", partitions=3))
    stream.join(rates, on=lambda v: v)  # a global table needs no co-partitioning


def test_join_options_that_do_not_apply_are_errors() -> None:
    app = faust.App("options", broker="memory://options")
    customers = app.Table("customers", source=app.topic("customers"))
    stream = app.topic("orders").stream()
    with pytest.raises(ConfigurationError, match="'inner' or 'left'"):
        stream.join(customers, how="outer")
    with pytest.raises(ConfigurationError, match="on= picks the lookup key of a GlobalTable"):
        stream.join(customers, on=lambda v: v)
    with pytest.raises(ConfigurationError, match="apply to stream–stream joins"):
        stream.join(customers, within=5)
    with pytest.raises(ConfigurationError, match="only a versioned table"):
        stream.join(customers, grace=5)
    with pytest.raises(ConfigurationError, match="cannot be joined"):
        stream.join(app.Table("w", default=int).tumbling(10).table)


@pytest.mark.parametrize("backend", ["memory", "local", pytest.param("kafka", marks=pytest.mark.kafka)])
@pytest.mark.parametrize("kind", ["table", "stream", "table-table"])
async def test_app_start_refuses_joins_over_topics_of_different_partition_counts(
    backend: str, kind: str, tmp_path: Any, app_id: str
) -> None:
    from conftest import broker_url

    app = faust.App(app_id, broker=broker_url(backend, tmp_path))
    orders = app.topic(f"{app_id}-orders", partitions=4)
    other = app.topic(f"{app_id}-customers", partitions=3)
    if kind == "table-table":
        app.Table("a", source=orders).join(app.Table("b", source=other))
    else:
        customers = app.Table("customers", source=other)

        @app.agent(orders)
        async def enrich(stream: Any) -> None:
            joined = stream.join(customers) if kind == "table" else stream.join(other, within=5)
            async for _pair in joined:
                pass

    with pytest.raises(PartitionMismatchError) as raised:
        await app.start()
    message = str(raised.value)
    assert f"'{app_id}-orders' has 4 partitions but '{app_id}-customers' has 3" in message
    assert "GlobalTable" in message and ("group_by" in message or kind == "table-table")
    assert app.state == "init" and not any(agent.running for agent in app.agents.values())
    await app.stop()
