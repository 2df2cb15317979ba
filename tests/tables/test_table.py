"""Tables: dict behaviour, changelog records, recovery, views."""

from __future__ import annotations

import json

import pytest

import streamnb as faust
from streamnb.testing import settle, test_app
from streamnb.transport.base import TP


class Total(faust.Record):
    count: int
    amount: float


async def test_table_is_a_dict_with_a_default_and_a_changelog(broker: str, app_id: str) -> None:
    app = faust.App(app_id, broker=broker, topic_partitions=2)
    topic = app.topic(f"{app_id}-orders", value_type=dict)
    totals = app.Table("totals", default=int)
    objects = app.Table("objects", value_type=Total)

    @app.agent(topic)
    async def tally(stream):
        async for order in stream:
            totals[order["user"]] += order["amount"]
            prev = objects.get(order["user"]) or Total(count=0, amount=0.0)
            objects[order["user"]] = Total(count=prev.count + 1, amount=prev.amount + order["amount"])
            if order["amount"] < 0:
                del totals[order["user"]]

    async with app:
        for user, amount in [("ann", 3), ("bob", 4), ("ann", 5), ("cid", 1), ("cid", -1)]:
            await topic.send(key=user, value={"user": user, "amount": amount})
        await settle(app)
        assert dict(totals) == {"ann": 8, "bob": 4}
        assert totals["nobody"] == 0 and "nobody" not in totals
        assert objects["ann"] == Total(count=2, amount=8.0)
        transport = app.transport
        assert transport is not None
        # The changelog is plain JSON on the partition of the event that wrote it.
        records = []
        for p in range(2):
            tp = TP(f"{app_id}-totals-changelog", p)
            records += [(p, m) for m in await transport.read(tp, 0, (await transport.end_offsets([tp]))[tp])]
        latest = {}
        for p, m in records:
            latest[json.loads(m.key)] = (p, None if m.value is None else json.loads(m.value))
        assert latest["ann"][1] == 8 and latest["cid"][1] is None
        df = totals.as_dataframe()
        assert sorted(df["key"]) == ["ann", "bob"]
        text = totals.as_ansitable()
        assert "ann" in text and "| 8" in text
        odf = objects.as_dataframe()
        assert set(odf.columns) >= {"key", "count", "amount"}


async def test_table_redefined_keeps_its_contents() -> None:
    app = test_app(topic_partitions=1)
    topic = app.topic("t", value_type=str)
    counts = app.Table("counts", default=int)

    @app.agent(topic)
    async def count(stream):
        async for word in stream:
            app.tables["counts"][word] += 1

    async with app:
        await topic.send(value="a")
        await settle(app)
        again = app.Table("counts", default=int)
        assert again is not counts and again["a"] == 1
        await topic.send(value="a")
        await settle(app)
        assert again["a"] == 2


async def test_recovery_reads_the_whole_changelog(tmp_path) -> None:
    url = f"local://{tmp_path / 'b'}"

    def build() -> tuple[faust.App, faust.Topic, faust.Table]:
        app = faust.App("rec", broker=url, topic_partitions=4)
        topic = app.topic("words", value_type=str)
        counts = app.Table("counts", default=int)

        @app.agent(topic)
        async def count(stream):
            async for word in stream.group_by(lambda w: w, name="word"):
                counts[word] += 1

        return app, topic, counts

    app, topic, counts = build()
    async with app:
        for i in range(3000):
            await topic.send(value=f"w{i % 500}")
        await settle(app)
    app, topic, counts = build()
    await app.start()
    # Recovery happens before agents take events.
    assert len(counts) == 500 and all(v == 6 for v in counts.values())
    await app.stop()


def test_write_outside_agent_message() -> None:
    app = test_app()
    table = app.Table("t")
    with pytest.raises(faust.TableWriteError, match="send an event to a topic"):
        table["k"] = 1
    with pytest.raises(faust.TableWriteError):
        del table["k"]
    with pytest.raises(KeyError):
        app.Table("nodefault")["missing"]
