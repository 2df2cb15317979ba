"""%peek and %%produce on Avro topics, through a real IPython InteractiveShell and a real schema registry."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pandas as pd
import pytest
from IPython.core.error import UsageError
from nbhelpers import Shell, memory_url, shell_fixture
from schema_registry import SchemaRegistryServer

import streamnb
from streamnb.transport.base import ProducerRecord, TopicSpec

ipy = shell_fixture


APP_CELL = """
import streamnb
from datetime import datetime
from decimal import Decimal

class Trade(streamnb.Record):
    symbol: str
    price: Decimal
    at: datetime

app = streamnb.App("avro-magics", broker="{url}", topic_partitions=2, schema_registry="{registry}")
trades = app.topic("trades", value_type=Trade, value_serializer="avro")
"""


async def make_app(ipy: Shell, registry: SchemaRegistryServer) -> streamnb.App:
    await ipy.ok(APP_CELL.replace("{url}", memory_url()).replace("{registry}", registry.url))
    await ipy.ok("%streamnb start")
    return ipy.ns["app"]


async def test_produce_encodes_json_lines_with_the_topic_s_schema_and_peek_decodes_them(
    ipy: Shell, registry: SchemaRegistryServer
) -> None:
    app = await make_app(ipy, registry)
    await ipy.ok(
        "%%produce trades --key symbol\n"
        '{"symbol": "ACME", "price": "12.50", "at": "2024-01-02T03:04:05+00:00"}\n'
        '{"symbol": "INIT", "price": 7, "at": "2024-01-02T03:04:06+00:00"}'
    )
    assert registry.state.subjects == {"trades-value": [1]}
    raw = await app.transport.read(  # type: ignore[union-attr]
        streamnb.transport.base.TP("trades", streamnb.topics.partition_for_key(b"ACME", 2)), 0, 1
    )
    assert raw[0].value[:5] == b"\x00\x00\x00\x00\x01"  # Confluent's framing, schema id 1
    df = await ipy.ok("%peek trades")
    assert isinstance(df, pd.DataFrame) and len(df) == 2
    values = sorted(df["value"], key=lambda t: t.symbol)
    trade = ipy.ns["Trade"]
    assert values == [
        trade(symbol="ACME", price=Decimal("12.5"), at=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
        trade(symbol="INIT", price=Decimal(7), at=datetime(2024, 1, 2, 3, 4, 6, tzinfo=UTC)),
    ]


async def test_produce_to_an_untyped_avro_topic_uses_the_subject_s_latest_schema(
    ipy: Shell, registry: SchemaRegistryServer, capsys: pytest.CaptureFixture[str]
) -> None:
    await make_app(ipy, registry)
    await ipy.ok('%%produce trades\n{"symbol": "ACME", "price": "1.5", "at": "2024-01-02T03:04:05+00:00"}')
    await ipy.ok('raw = app.topic("trades", value_serializer="avro")')  # no type: the registry's schema
    await ipy.ok('%%produce trades\n{"symbol": "RAW", "price": 2.25, "at": "2024-01-02T03:04:07+00:00"}')
    df = await ipy.ok("%peek trades")
    assert sorted(v["symbol"] for v in df["value"]) == ["ACME", "RAW"]  # dicts: read with the writer schema
    raw_value = next(v for v in df["value"] if v["symbol"] == "RAW")
    assert raw_value["price"] == Decimal("2.25") and raw_value["at"] == datetime(2024, 1, 2, 3, 4, 7, tzinfo=UTC)
    capsys.readouterr()
    result = await ipy.run('%%produce trades\n{"symbol": 5, "price": 1, "at": "2024-01-02T03:04:05+00:00"}')
    assert isinstance(result.error_in_exec, UsageError)
    message = str(result.error_in_exec)
    assert message.startswith("line 1: ") and "does not fit the Avro schema" in message and "\n" not in message
    assert "Trade.symbol is <5> of type <class 'int'> expected string" in message


async def test_peek_decodes_avro_of_a_topic_the_app_does_not_define(
    ipy: Shell, registry: SchemaRegistryServer
) -> None:
    app = await make_app(ipy, registry)
    await ipy.ok('%%produce trades\n{"symbol": "ACME", "price": "1.5", "at": "2024-01-02T03:04:05+00:00"}')
    first = (await app.transport.read(streamnb.transport.base.TP("trades", 0), 0, 1)  # type: ignore[union-attr]
             or await app.transport.read(streamnb.transport.base.TP("trades", 1), 0, 1))  # type: ignore[union-attr]
    assert app.transport is not None
    await app.transport.create_topic(TopicSpec("copied", 1))
    await app.transport.send([
        ProducerRecord("copied", 0, None, first[0].value, 1.0),
        ProducerRecord("copied", 0, None, json.dumps({"a": 1}).encode(), 2.0),
    ])
    df = await ipy.ok("%peek copied")
    assert df["value"].tolist() == [
        {"symbol": "ACME", "price": Decimal("1.500000000"), "at": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)},
        {"a": 1},
    ]
    registry.stop()  # an unreachable registry: shown best effort, no error
    df = await ipy.ok("%peek copied")
    assert df["value"].tolist()[1] == {"a": 1} and len(df) == 2
