"""``agent.test_context()``: one agent alone on a private in-memory broker, as in Faust's testing guide.

The app below is written as Faust's guide writes it (a Kafka broker that is
never contacted, a Record topic, a table written behind a ``group_by``, an
agent that yields), plus a second agent, a timer and a task that must not run.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import streamnb as faust
from streamnb.errors import ConfigurationError
from streamnb.events import Event


class Order(faust.Record, serializer="json"):
    account_id: str
    product_id: str
    amount: int
    price: float


class Example:
    """A fresh copy of the guide's ``example.py`` module per test."""

    def __init__(self) -> None:
        self.app = app = faust.App("test-example", broker="kafka://localhost:9092", topic_partitions=4)
        self.orders_topic = app.topic("orders", value_type=Order)
        self.totals_topic = app.topic("totals")
        self.orders_for_account = app.Table("order-count-by-account", default=int)
        self.sunk: list[Any] = []
        self.elsewhere: list[str] = []
        orders_for_account = self.orders_for_account

        @app.agent(self.orders_topic, sink=[self.totals_topic, self.sunk.append])
        async def order(orders: Any) -> Any:
            async for order in orders.group_by(Order.account_id):
                if order.product_id == "boom":
                    raise ValueError("no such product: boom")
                orders_for_account[order.account_id] += 1
                if order.amount > 0:
                    yield order

        @app.agent(self.totals_topic)
        async def downstream(totals: Any) -> None:
            async for _total in totals:
                self.elsewhere.append("downstream agent")

        @app.timer(0.01)
        async def tick() -> None:
            self.elsewhere.append("timer")

        @app.task
        async def seed() -> None:
            self.elsewhere.append("task")

        self.order = order
        self.downstream = downstream


@pytest.fixture
def example() -> Iterator[Example]:
    ex = Example()
    ex.app.conf.store = "memory://"  # what the guide's fixture sets (the tables took kafka's rocksdb:// first)
    yield ex


async def test_put_returns_the_event_once_processed_and_results_hold_what_the_agent_yielded(example: Example) -> None:
    first = Order(account_id="1", product_id="2", amount=1, price=300)
    second = Order(account_id="1", product_id="3", amount=2, price=10)
    async with example.order.test_context() as agent:
        event = await agent.put(first, key="1")
        assert isinstance(event, Event) and event.value == first and event.key == b"1"  # key_serializer="raw"
        assert event.topic == "orders" and event.offset == 0
        # the table behind the group_by is written by the time put() returns
        assert example.orders_for_account["1"] == 1
        assert agent.results == {0: first}
        await agent.put(second, key="1")
        assert example.orders_for_account["1"] == 2
        assert agent.results == {0: first, 1: second}
        assert agent.events_processed == 2 and agent.name == "order"  # the agent's own attributes
        assert example.sunk == [first, second]  # the agent's sink callbacks ran
    assert example.elsewhere == []  # no other agent, timer or task ran
    assert agent.results == {0: first, 1: second}  # kept after the block


async def test_a_value_the_agent_yields_nothing_for_still_returns(example: Example) -> None:
    async with example.order.test_context() as agent:
        await agent.put(Order(account_id="7", product_id="1", amount=0, price=1.0), key="7")
        assert example.orders_for_account["7"] == 1 and agent.results == {}


async def test_a_crash_makes_put_raise_it_after_on_error(example: Example) -> None:
    seen: list[tuple[Any, BaseException]] = []

    async def on_error(agent: Any, exc: BaseException) -> None:
        seen.append((agent, exc))

    async with example.order.test_context(on_error=on_error) as agent:
        with pytest.raises(ValueError, match="no such product: boom"):
            await agent.put(Order(account_id="1", product_id="boom", amount=1, price=1.0), key="1")
    assert [(a.name, str(e)) for a, e in seen] == [("order", "no such product: boom")]


async def test_the_app_is_left_as_it_was_and_the_next_context_starts_empty(example: Example) -> None:
    app = example.app
    agents, timers, tasks = list(app.agents.items()), list(app.timers.items()), list(app.tasks.items())
    async with example.order.test_context() as agent:
        assert app.broker.startswith("memory://test-") and app.state == "running"
        assert not example.downstream.running and not app.timers["tick"].running
        await agent.put(Order(account_id="a", product_id="p", amount=1, price=1.0), key="a")
        assert example.orders_for_account["a"] == 1
    assert app.broker == "kafka://localhost:9092" and app.state == "stopped"
    assert (list(app.agents.items()), list(app.timers.items()), list(app.tasks.items())) == (agents, timers, tasks)
    assert dict(example.orders_for_account.data) == {}  # the app's real tables never hold test rows
    async with example.order.test_context() as agent:
        await agent.put(Order(account_id="a", product_id="p", amount=1, price=1.0), key="a")
        assert example.orders_for_account["a"] == 1 and agent.results[0].account_id == "a"


async def test_put_without_waiting_and_faust_options_that_do_not_apply(example: Example) -> None:
    async with example.order.test_context(timeout=5) as agent:
        event = await agent.put(Order(account_id="b", product_id="p", amount=1, price=1.0), key="b", wait=False)
        assert event.value.account_id == "b"
        with pytest.raises(ConfigurationError, match="needs reply_to="):
            await agent.put("x", correlation_id="c-1")
    with pytest.raises(ConfigurationError, match="channel"):
        example.order.test_context(channel=example.totals_topic)


async def test_a_running_app_is_refused() -> None:
    app = faust.App("running-app", broker="memory://")

    @app.agent()
    async def echo(stream: Any) -> Any:
        async for value in stream:
            yield value

    async with app:
        with pytest.raises(ConfigurationError, match="is running: `await app.stop\\(\\)` first"):
            async with echo.test_context():
                pass
        assert app.broker == "memory://" and app.state == "running"


async def test_a_plain_agent_on_memory_with_raw_values() -> None:
    app = faust.App("plain-test-context", broker="memory://", value_serializer="raw")
    words = app.topic("words", value_type=str)
    counts = app.Table("counts", default=int)

    @app.agent(words)
    async def count(stream: Any) -> Any:
        async for word in stream:
            counts[word] += 1
            yield counts[word]

    async with count.test_context() as agent:
        for word in ["a", "b", "a"]:
            await agent.put(word)
        assert agent.results == {0: 1, 1: 1, 2: 2}
        assert dict(counts.data) == {"a": 2, "b": 1}
