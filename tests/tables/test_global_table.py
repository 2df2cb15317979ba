"""Global tables: every worker holds every partition (Kafka: tests/tables/test_kafka_global_table.py)."""

from __future__ import annotations

import streamnb as faust
from streamnb.tables.global_table import GlobalTable
from streamnb.testing import settle


async def test_a_global_table_is_a_table_on_one_process(app_id: str, durable_broker: str) -> None:
    def make() -> tuple[faust.App, faust.Topic, GlobalTable]:  # type: ignore[type-arg]
        app = faust.App(app_id, broker=durable_broker, topic_partitions=4)
        rates = app.topic(f"{app_id}-rates", key_type=str, value_type=float)
        latest = app.GlobalTable("latest", default=float)

        @app.agent(rates)
        async def record(stream):  # type: ignore[no-untyped-def]
            async for currency, rate in stream.items():
                latest[currency] = rate

        return app, rates, latest

    app, rates, latest = make()
    assert isinstance(latest, faust.GlobalTable) and latest.is_global
    async with app:
        for i, currency in enumerate(["EUR", "USD", "GBP", "CHF", "JPY"]):
            await rates.send(key=currency, value=1.0 + i)
        await settle(app)
        assert dict(latest.data) == {"EUR": 1.0, "USD": 2.0, "GBP": 3.0, "CHF": 4.0, "JPY": 5.0}
        assert latest["NOK"] == 0.0
    again, _rates, latest_again = make()
    async with again:  # rebuilt from the changelog at start, every partition
        assert dict(latest_again.data) == {"EUR": 1.0, "USD": 2.0, "GBP": 3.0, "CHF": 4.0, "JPY": 5.0}
        assert latest_again.recovered_partitions == {0, 1, 2, 3}


def test_redefining_keeps_the_rows(app_id: str) -> None:
    app = faust.App(app_id, broker=f"memory://{app_id}")
    first = app.GlobalTable("latest", default=float)
    first.positions[0] = 7
    second = app.GlobalTable("latest", default=float)
    assert second.state is first.state and second.positions == {0: 7} and app.tables["latest"] is second
    assert app.SetGlobalTable("tags", value_type=str).is_global
