"""streamnb.datagen: seeded generators, produce() on the app's clock, send_dataframe and read_csv."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import streamnb as faust
from streamnb import datagen
from streamnb.testing import settle, test_app


def test_the_same_seed_gives_the_same_events() -> None:
    one = datagen.page_views(seed=3, out_of_order=0.2, late=0.05).take(200)
    two = datagen.page_views(seed=3, out_of_order=0.2, late=0.05).take(200)
    other = datagen.page_views(seed=4, out_of_order=0.2, late=0.05).take(200)
    assert one == two and one != other
    assert [e.at for e in one] == sorted(e.at for e in one)  # sent in order...
    assert [e.at for e in one][:3] == [0.0, 0.05, 0.1]  # ...20 a second


def test_out_of_order_and_late_shares_and_how_far() -> None:
    events = datagen.page_views(rate=10, out_of_order=0.3, max_delay=4, late=0.1, lateness=90, seed=1).take(5000)
    behind = [e.at - e.timestamp for e in events]
    late = [b for b in behind if b == 90]
    disordered = [b for b in behind if 0 < b < 90]
    assert 0.08 < len(late) / len(events) < 0.12
    assert 0.27 < len(disordered) / len(events) < 0.33
    assert max(disordered) <= 4
    assert sum(1 for b in behind if b == 0) / len(events) > 0.55
    with pytest.raises(faust.ConfigurationError, match="out_of_order \\+ late is at most 1"):
        datagen.page_views(out_of_order=0.8, late=0.3)
    with pytest.raises(faust.ConfigurationError, match="rate must be > 0"):
        datagen.sensor_readings(rate=0)


def test_orders_come_with_payments_later() -> None:
    events = datagen.orders(rate=5, paid=0.8, pay_within=20, seed=2).take(1000)
    orders = {e.value.id: e for e in events if e.stream == "orders"}
    payments = [e for e in events if e.stream == "payments"]
    assert payments and all(p.value.order_id in orders for p in payments)
    for p in payments:
        order = orders[p.value.order_id]
        assert p.value.amount == order.value.amount and 1 <= p.at - order.at <= 20
    assert 0.7 < len(payments) / len(orders) < 0.9


class MyView(faust.Record):  # a user's own Record with the generator's fields
    id: str
    user: str
    page: str


async def test_produce_real_time_on_the_app_clock_and_as_fast_as_possible() -> None:
    app = test_app("datagen")
    views = app.topic("views", value_type=MyView)
    counts = app.Table("counts", default=int)

    @app.agent(views)
    async def count(stream: Any) -> None:
        async for view in stream:
            assert isinstance(view, MyView)
            counts[view.page] += 1

    async with app:
        start = app.now()
        sent = await datagen.produce(datagen.page_views(rate=50, seed=5), views, seconds=0.5)
        assert sent == {"page_views": 25} and app.now() - start >= 0.45  # in real time
        fast = await datagen.produce(datagen.page_views(rate=1, seed=5), views, n=100, realtime=False, start=0)
        assert fast == {"page_views": 100}
        await settle(app)
        assert sum(counts.values()) == 125
    with pytest.raises(faust.ConfigurationError, match="pass \\{name: topic\\}"):
        await datagen.produce(datagen.orders(), views, n=1)
    with pytest.raises(faust.ConfigurationError, match="n=<events> or seconds="):
        await datagen.produce(datagen.orders(), {"orders": views}, n=1, seconds=2)


async def test_send_dataframe_and_read_csv(tmp_path: Path) -> None:
    csv = tmp_path / "views.csv"
    csv.write_text("time,user,page\n2026-01-01T00:00:01Z,ann,/\n2026-01-01T00:00:02Z,bob,/cart\n")
    df = datagen.read_csv(csv, timestamp="time")
    assert str(df["time"].dt.tz) == "UTC"
    app = test_app("frames")
    views = app.topic("views", key_type=str, value_type=datagen.PageView)
    seen: list[tuple[str, float, str]] = []

    @app.agent(views)
    async def read(stream: Any) -> None:
        async for event in stream.events():
            seen.append((event.key, event.message.timestamp, event.value.page))

    async with app:
        frame = df.assign(id=["1", "2"])
        assert await views.send_dataframe(frame, key="user", timestamp="time", columns=["id", "user", "page"]) == 2
        await settle(app)
        with pytest.raises(faust.ValidationError, match="PageView.id: required field missing"):
            await views.send_dataframe(df, key="user", timestamp="time")  # no id column: refused at once
        with pytest.raises(faust.ConfigurationError, match="no column 'who'"):
            await views.send_dataframe(frame, key="who")
    base = pd.Timestamp("2026-01-01", tz="UTC").timestamp()
    assert sorted(seen) == [("ann", base + 1, "/"), ("bob", base + 2, "/cart")]  # (two keys, two partitions)
