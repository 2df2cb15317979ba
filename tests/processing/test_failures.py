"""Bad input and failing agents: nothing is silently dropped."""

from __future__ import annotations

import logging

import pytest

import streamnb as faust
from streamnb.testing import settle, wait_until
from streamnb.transport.base import TP


class Order(faust.Record, validation=True):
    id: str
    qty: int


async def read_all(app: faust.App, topic: str) -> list:
    transport = app.transport
    assert transport is not None
    out = []
    count = await transport.partition_count(topic) or 0
    for p in range(count):
        tp = TP(topic, p)
        end = (await transport.end_offsets([tp]))[tp]
        out += await transport.read(tp, 0, end)
    return out


async def test_malformed_messages_go_to_the_dead_letter_topic(broker: str, app_id: str) -> None:
    app = faust.App(app_id, broker=broker, topic_partitions=1)
    orders = app.topic(f"{app_id}-orders", value_type=Order)
    raw = app.topic(f"{app_id}-orders", value_serializer="raw")  # same topic, raw bytes
    total = app.Table("total", default=int, partitions=1)

    @app.agent(orders)
    async def process(stream):
        async for order in stream:
            total["qty"] += order.qty

    app.topics[orders.name] = orders
    async with app:
        await orders.send(value=Order(id="1", qty=2))
        await raw.send(value=b"{not json")
        await raw.send(value=b'{"id": "3"}')  # missing qty
        await raw.send(value=b'{"id": "4", "qty": "many"}')  # wrong type
        await orders.send(value=Order(id="5", qty=3))
        await settle(app)
        assert total["qty"] == 5
        assert process.dead_lettered == 3
        dlq = await read_all(app, f"{app_id}-process-dlq")
        assert [m.value for m in dlq] == [b"{not json", b'{"id": "3"}', b'{"id": "4", "qty": "many"}']
        headers = dict(dlq[1].headers)
        assert b"qty" in headers["streamnb-error"]
        assert headers["streamnb-topic"] == f"{app_id}-orders".encode()
        assert headers["streamnb-offset"] == b"2"


async def test_crashing_agent_is_reported_retried_then_dead_lettered(
    broker: str, app_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = faust.App(app_id, broker=broker, topic_partitions=1)
    topic = app.topic(f"{app_id}-numbers", value_type=int)
    seen = app.Table("seen", default=int, partitions=1)
    attempts: list[int] = []

    @app.agent(topic)
    async def fragile(stream):
        async for n in stream:
            attempts.append(n)
            seen["sum"] += n
            if n == 13:
                raise RuntimeError("unlucky number")

    with caplog.at_level(logging.ERROR, logger="streamnb"):
        async with app:
            for n in [1, 2, 13, 4]:
                await topic.send(value=n)
            await settle(app, timeout=60)
            assert seen["sum"] == 1 + 2 + 4  # the crashing event's writes were undone
            assert fragile.crashes == faust.Agent.max_retries
            assert isinstance(fragile.last_error, RuntimeError)
            assert "unlucky number" in (fragile.last_traceback or "")
            assert fragile.dead_lettered == 1
            assert attempts.count(13) == faust.Agent.max_retries
            dlq = await read_all(app, f"{app_id}-fragile-dlq")
            assert [m.value for m in dlq] == [b"13"]
            assert b"unlucky number" in dict(dlq[0].headers)["streamnb-error"]
            with pytest.raises(faust.AgentError):
                fragile.raise_if_crashed()
    assert "unlucky number" in caplog.text


async def test_table_write_outside_an_agent_is_an_error(broker: str, app_id: str) -> None:
    app = faust.App(app_id, broker=broker)
    counts = app.Table("counts", default=int)
    with pytest.raises(faust.TableWriteError, match="inside an agent"):
        counts["x"] = 1
    windowed = app.Table("w", default=int).tumbling(10)
    with pytest.raises(faust.TableWriteError):
        windowed["x"] += 1


def test_unknown_broker_scheme_lists_the_valid_ones() -> None:
    with pytest.raises(faust.ConfigurationError, match=r"memory://.*local://.*kafka://"):
        faust.App("x", broker="redis://127.0.0.1")
    with pytest.raises(faust.ConfigurationError, match="no scheme"):
        faust.App("x", broker="127.0.0.1:9092")


def test_misconfiguration_errors_say_what_to_do() -> None:
    app = faust.App("x", broker="memory://")
    with pytest.raises(faust.WindowError, match="step"):
        app.Table("t").hopping(10, 20)
    with pytest.raises(faust.WindowError, match="> 0"):
        app.Table("t").tumbling(0)
    with pytest.raises(faust.ConfigurationError, match="async def"):
        app.agent()(lambda stream: None)
    with pytest.raises(faust.ConfigurationError, match="processing_guarantee"):
        faust.App("x", broker="memory://", processing_guarantee="sometimes")
    with pytest.raises(faust.ConfigurationError, match="partitions"):
        app.topic("t", partitions=0)
    assert issubclass(faust.ConfigurationError, faust.StreamnbError)


async def test_table_not_copartitioned_with_its_source(broker: str, app_id: str) -> None:
    app = faust.App(app_id, broker=broker, topic_partitions=4)
    topic = app.topic(f"{app_id}-src", value_type=str)
    table = app.Table("t", default=int, partitions=2)

    @app.agent(topic)
    async def write(stream):
        async for v in stream:
            table[v] += 1

    async with app:
        await topic.send(value="a")
        await wait_until(lambda: write.last_error is not None, timeout=20)
        assert isinstance(write.last_error, faust.PartitionMismatchError)
        assert "partitions=4" in str(write.last_error)
        # Not retried (it cannot get better): stopped, nothing dead-lettered.
        await wait_until(lambda: not write.running, timeout=20)
        assert write.state == "crashed" and write.crashes == 1 and write.dead_lettered == 0


def test_app_run_inside_a_running_loop_is_an_error() -> None:
    import asyncio

    async def main() -> None:
        app = faust.App("x", broker="memory://")
        with pytest.raises(faust.ConfigurationError, match="await app.start"):
            app.run()

    asyncio.run(main())


async def test_a_commit_that_cannot_encode_a_table_value_undoes_the_writes(broker: str, app_id: str) -> None:
    """A value changed after it was written (so it no longer encodes) fails its commit: the tables lose its writes.

    Before, the error left the transaction's writes in the in-memory table while the agent restarted from
    the committed offsets and applied the same events again (counted twice).
    """
    app = faust.App(app_id, broker=broker, topic_partitions=1)
    topic = app.topic(f"{app_id}-numbers", value_type=int)
    total = app.Table("total", default=int, partitions=1)
    notes = app.Table("notes", default=list, partitions=1)

    @app.agent(topic)
    async def add(stream):
        async for n in stream:
            total["sum"] += n
            kept: list[object] = []
            notes[n] = kept  # encodable when written...
            if n == 13:
                kept.append(object())  # ...not any more at the commit

    async with app:
        await topic.send(value=13)
        await wait_until(lambda: add.crashes >= 2, timeout=30, what="the failing commit crashed the agent twice")
        assert isinstance(add.last_error, faust.SerializationError)
        # Every failed commit undid the transaction: the sum never counts 13 twice, nor once before it commits.
        assert total["sum"] in (0, 13) and 13 not in notes
        await add.stop()
        assert total["sum"] == 0 and 13 not in notes
