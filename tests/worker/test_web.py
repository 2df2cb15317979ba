"""Web views: served by workers (and in a notebook only when asked), errors as JSON 500, routing by owner.

Routing between two real workers on Kafka is in tests/worker/test_cli.py.
"""

from __future__ import annotations

import datetime
import json
import socket
import uuid
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import make_mocked_request

import streamnb as faust
from streamnb.errors import ConfigurationError
from streamnb.testing import settle
from streamnb.worker import web
from streamnb.worker.directory import WorkerDirectory


class Order(faust.Record):
    id: str
    amount: float


def memory_app(**options: Any) -> faust.App:
    name = f"web-{uuid.uuid4().hex[:8]}"
    return faust.App(name, broker=f"memory://{name}", **options)


async def fetch(url: str, method: str = "GET") -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.request(method, url) as response:
        text = await response.text()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text


def test_dumps_converts_what_views_return() -> None:
    when = datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.UTC)
    assert json.loads(web.dumps({"order": Order(id="1", amount=2.5), "tags": {"b", "a"}, "at": when})) == {
        "order": {"id": "1", "amount": 2.5}, "tags": ["a", "b"], "at": "2024-05-01T12:00:00+00:00",
    }
    with pytest.raises(TypeError, match="not JSON serializable"):
        web.dumps(object())


async def test_a_notebook_serves_views_only_when_asked() -> None:
    app = memory_app()

    @app.page("/hello/")
    async def hello(self: web.View, request: Any) -> Any:
        return self.json({"hello": "world"})

    async with app:
        assert app.web.url is None  # not a worker: no server
    asked = memory_app(web_enabled=True, web_port=0)
    asked.page("/hello/")(hello)
    async with asked:
        assert asked.web.url is not None and asked.web.url.startswith("http://127.0.0.1:")
        assert await fetch(asked.web.url + "/hello/") == (200, {"hello": "world"})
        assert await fetch(asked.web.url + "/hello") == (200, {"hello": "world"})
    assert asked.web.url is None


async def test_a_worker_serves_its_metrics_and_views() -> None:
    bare = memory_app(web_port=0, metrics=False)  # no views, no metrics: no server
    bare.worker_mode = True
    async with bare:
        assert bare.web.url is None
    metered = memory_app(web_port=0)  # no views: the server answers /metrics alone
    metered.worker_mode = True
    async with metered:
        assert metered.web.url is not None
        status, text = await fetch(metered.web.url + "/metrics")
        assert status == 200 and "# TYPE streamnb_events_total counter" in text
        assert (await fetch(metered.web.url + "/x/"))[0] == 404
    app = memory_app(web_port=0)
    app.worker_mode = True
    app.page("/x/")(lambda self, request: None)
    async with app:
        assert app.web.url is not None


async def test_a_failing_view_answers_500_and_the_server_goes_on() -> None:
    app = memory_app(web_enabled=True, web_port=0)
    calls = []

    @app.page("/boom/{n}/")
    async def boom(self: web.View, request: Any, n: str) -> Any:
        calls.append(n)
        if n == "1":
            raise KeyError("no such order")
        if n == "2":
            return "a plain string"
        if n == "3":
            return {"plain": "dict"}
        return self.notfound("nothing here", n=n)

    async with app:
        base = app.web.url
        status, body = await fetch(f"{base}/boom/1/")
        assert status == 500 and body["type"] == "KeyError" and "no such order" in body["error"]
        assert body["path"] == "/boom/1/"
        status, body = await fetch(f"{base}/boom/2/")
        assert status == 500 and "returned str" in body["error"] and "web.json" in body["error"]
        assert await fetch(f"{base}/boom/3/") == (200, {"plain": "dict"})
        assert await fetch(f"{base}/boom/4/") == (404, {"error": "nothing here", "n": "4"})
        assert (await fetch(f"{base}/missing/"))[0] == 404
    assert calls == ["1", "2", "3", "4"]


async def test_class_views_and_response_helpers() -> None:
    app = memory_app(web_enabled=True, web_port=0)

    @app.page("/orders/{id}/", name="order")
    class OrderView(web.View):
        async def get(self, request: Any, id: str) -> Any:
            return self.text(f"order {id}")

        async def post(self, request: Any, id: str) -> Any:
            return self.html(f"<b>{id}</b>", status=201)

    assert OrderView.view_name == "order" and app.web.views == [OrderView]
    async with app:
        base = app.web.url
        assert await fetch(f"{base}/orders/7/") == (200, "order 7")
        assert await fetch(f"{base}/orders/7/", "POST") == (201, "<b>7</b>")
        status, body = await fetch(f"{base}/orders/7/", "DELETE")
        assert status == 405 and "DELETE is not allowed" in body["error"]
    view = web.View(app, app.web)
    assert view.bytes(b"\x00", content_type="application/x").body == b"\x00"


async def test_a_busy_port_says_what_to_do() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        app = memory_app(web_enabled=True, web_port=port)
        app.page("/x/")(lambda self, request: None)
        with pytest.raises(ConfigurationError, match="--web-port"):
            await app.start()
        await app.stop()


def test_bad_definitions() -> None:
    app = memory_app()
    table = app.Table("t")
    with pytest.raises(ConfigurationError, match="start with '/'"):
        app.page("no-slash")
    with pytest.raises(ConfigurationError, match="match_info="):
        app.table_route(table=table)
    with pytest.raises(ConfigurationError, match="subclass of streamnb.worker.web.View"):
        app.page("/x/")(type("NotAView", (), {}))
    with pytest.raises(ConfigurationError, match="cors"):
        app.page("/x/", cors_options={})


async def test_table_and_topic_routes_answer_locally_off_kafka() -> None:
    app = memory_app(web_enabled=True, web_port=0, topic_partitions=4)
    orders = app.topic("orders", key_type=str, value_type=Order)
    totals = app.Table("totals", default=float)

    @app.agent(orders)
    async def total(stream):  # type: ignore[no-untyped-def]
        async for order in stream:
            totals[order.id] += order.amount

    @app.page("/total/")
    @app.table_route(table=totals, query_param="id")
    async def get_total(self: web.View, request: Any) -> Any:
        return self.json({"total": totals[request.query["id"]]})

    @app.page("/by-topic/{id}/")
    @app.topic_route(topic=orders, match_info="id")
    async def by_topic(self: web.View, request: Any, id: str) -> Any:
        return self.json({"id": id})

    async with app:
        await orders.send(key="a", value=Order(id="a", amount=2.0))
        await orders.send(key="a", value=Order(id="a", amount=3.0))
        await settle(app)
        assert await fetch(f"{app.web.url}/total/?id=a") == (200, {"total": 5.0})
        assert await fetch(f"{app.web.url}/by-topic/zz/") == (200, {"id": "zz"})
        assert app.web.table_partition(totals, "a") is None  # held here


async def test_the_worker_directory_names_the_newest_owner() -> None:
    app = memory_app()
    owned: list[set[int]] = [{0, 1}]
    app.owned_partitions = lambda: owned[0]  # type: ignore[method-assign]
    async with app:
        first = WorkerDirectory(app, "http://127.0.0.1:1")
        await first.start()
        owned[0] = {1, 2}
        second = WorkerDirectory(app, "http://127.0.0.1:2")
        await second.start()
        assert await second.owner_of(0) == "http://127.0.0.1:1"
        assert await second.owner_of(1) == "http://127.0.0.1:2"  # both list it: the newest record wins
        assert await second.owner_of(3) is None
        await first.stop()  # a tombstone: the first worker is gone
        assert await second.owner_of(0) is None
        assert second.workers() == {"http://127.0.0.1:2": {1, 2}}
        await second.stop()


async def test_forwarding_to_a_worker_that_does_not_answer_is_a_503() -> None:
    app = memory_app()
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    request = make_mocked_request("GET", "/count/x/")
    response = await app.web.forward(request, f"http://127.0.0.1:{port}")
    await app.web.stop()
    assert response.status == 503
    assert json.loads(response.text or "")["owner"] == f"http://127.0.0.1:{port}"
