"""Agent RPC: ask/cast/send/map/kvmap/join/kvjoin through the reply topic, on every broker.

Replies are matched by correlation id: many concurrent asks each get their
own answer; an agent that gives up on a request answers with its error;
replies left from before an asker's restart are skipped, never mixed in;
requests older than ``reply_expires`` are not answered. Across processes on
Kafka: see ``test_asks_across_two_kafka_workers``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import streamnb as faust
from streamnb.errors import AppNotRunningError, ConfigurationError, RemoteAgentError
from streamnb.processing.replies import decode_reply, replies_of, request_headers, request_of
from streamnb.testing import test_app, wait_until
from streamnb.transport.base import TP

REPO = Path(__file__).resolve().parents[2]


class Add(faust.Record):
    a: int
    b: int


def adding_app(broker: str, app_id: str, **options: Any) -> tuple[faust.App, Any]:
    app = faust.App(app_id, broker=broker, topic_partitions=4, **options)

    @app.agent(value_type=Add)
    async def adding(stream):
        async for add in stream:
            if add.a < 0:
                raise ValueError(f"negative a: {add.a}")
            yield Add(a=add.a + add.b, b=add.b)

    return app, adding


async def test_ask_returns_what_the_agent_yielded_as_its_record(broker: str, app_id: str) -> None:
    app, adding = adding_app(broker, app_id)
    async with app:
        reply = await adding.ask(Add(a=2, b=3))
        assert reply == Add(a=5, b=3) and type(reply) is Add
        assert await adding.ask(Add(a=1, b=1), key="k", partition=2) == Add(a=2, b=1)
        promise = await adding.ask_nowait(Add(a=10, b=1))
        assert (await promise).a == 11


async def test_a_thousand_concurrent_asks_each_get_their_own_reply(broker: str, app_id: str) -> None:
    app, adding = adding_app(broker, app_id)
    async with app:
        replies = await asyncio.gather(*(adding.ask(Add(a=i, b=i % 7), key=str(i)) for i in range(1000)))
        assert [r.a for r in replies] == [i + i % 7 for i in range(1000)]
        assert [r.b for r in replies] == [i % 7 for i in range(1000)]
        assert replies_of(app).waiting == {}


async def test_join_map_kvmap_kvjoin(broker: str, app_id: str) -> None:
    app, adding = adding_app(broker, app_id)
    async with app:
        assert [r.a for r in await adding.join([Add(a=i, b=1) for i in range(50)])] == list(range(1, 51))
        assert [r.a for r in await adding.kvjoin([(str(i), Add(a=i, b=0)) for i in range(20)])] == list(range(20))

        async def values() -> Any:
            for i in range(30):
                yield Add(a=i, b=100)

        mapped = [r.a async for r in adding.map(values())]
        assert sorted(mapped) == list(range(100, 130))
        pairs = [r.a async for r in adding.kvmap((str(i), Add(a=i, b=0)) for i in range(30))]
        assert sorted(pairs) == list(range(30))
        assert await adding.join([]) == []


async def test_an_agent_that_gives_up_answers_with_its_error_and_goes_on(broker: str, app_id: str) -> None:
    app, adding = adding_app(broker, app_id)
    async with app:
        with pytest.raises(RemoteAgentError) as caught:
            await asyncio.wait_for(adding.ask(Add(a=-1, b=0)), 30)
        assert caught.value.remote_type == "ValueError"
        assert caught.value.remote_message == "negative a: -1"
        assert caught.value.agent == "adding"
        assert isinstance(caught.value, faust.StreamnbError)
        assert adding.dead_lettered == 1
        # the agent goes on answering; in a join, one failure raises it
        assert (await adding.ask(Add(a=1, b=1))).a == 2
        with pytest.raises(RemoteAgentError):
            await asyncio.wait_for(adding.join([Add(a=1, b=0), Add(a=-2, b=0)]), 30)


async def test_an_agent_can_ask_another_agent(broker: str, app_id: str) -> None:
    app, adding = adding_app(broker, app_id)

    @app.agent(value_type=int)
    async def twice(stream):
        async for n in stream:
            first = await adding.ask(Add(a=n, b=n))  # written at once: it does not wait for this agent's commit
            yield first.a * 2

    async with app:
        assert await twice.join(range(5)) == [0, 4, 8, 12, 16]


async def test_cast_send_with_reply_to_and_the_test_context(app_id: str) -> None:
    app, adding = adding_app(f"memory://{app_id}", app_id)
    answers = app.topic(f"{app_id}-answers", key_serializer="raw", value_serializer="raw")
    async with app:
        await adding.cast(Add(a=1, b=1))
        await adding.send(value=Add(a=5, b=5), reply_to=answers, correlation_id="mine")
        await adding.send(value=Add(a=6, b=6), reply_to=f"{app_id}-answers", correlation_id="other")
        transport = app.require_transport()
        tp = TP(answers.name, 0)
        await wait_until(lambda: _end(transport, tp, 2))
        got = [decode_reply(m.value) for m in await transport.read(tp, 0, 2)]
        # (the two requests, keyless, may sit on different partitions of the agent's topic: either answers first)
        assert sorted((r.correlation_id, r.value) for r in got) == [("mine", Add(a=10, b=5)),
                                                                    ("other", Add(a=12, b=6))]
        assert adding.events_processed == 3  # the cast was processed, and answered nowhere
    async with adding.test_context() as agent:
        event = await agent.put(Add(a=1, b=2), reply_to=answers, correlation_id="ctx")
        assert request_of(event.headers) == (answers.name, "ctx")
        assert agent.results[0] == Add(a=3, b=2)


async def _end(transport: Any, tp: TP, count: int) -> bool:
    return (await transport.end_offsets([tp]))[tp] >= count


async def test_asking_outside_a_running_app_or_an_agent_that_does_not_yield_is_a_clear_error() -> None:
    app = test_app()

    @app.agent()
    async def quiet(stream):
        async for _ in stream:
            pass

    @app.agent()
    async def echo(stream):
        async for value in stream:
            yield value

    with pytest.raises(AppNotRunningError, match=r"await app.start\(\)"):
        await echo.ask(1)
    with pytest.raises(AppNotRunningError):
        await echo.join([1, 2])
    async with app:
        with pytest.raises(ConfigurationError, match="does not yield"):
            await quiet.ask(1)
        with pytest.raises(ConfigurationError, match="reply_to="):
            await echo.ask(1, reply_to=42)
        assert await echo.ask({"x": 1}) == {"x": 1}
    with pytest.raises(AppNotRunningError):
        await echo.ask(1)
    with pytest.raises(ConfigurationError, match="use_reply_headers"):
        app.agent(use_reply_headers=False)


async def test_an_ask_pending_when_the_app_stops_fails_and_its_late_reply_is_never_mixed_in(tmp_path: Path,
                                                                                            app_id: str) -> None:
    broker = f"local://{tmp_path / 'broker'}"
    app, adding = adding_app(broker, app_id)
    await app.start()
    adding.pause()
    pending = asyncio.ensure_future(adding.ask(Add(a=1000, b=0), key="same", correlation_id="c-old"))
    await wait_until(lambda: "c-old" in replies_of(app).waiting)
    await app.stop()
    with pytest.raises(AppNotRunningError, match="stopped before the reply came"):
        await pending

    # The restarted asker (a new kernel: a new App) processes the old request now, and asks anew.
    app, adding = adding_app(broker, app_id)
    adding.pause()  # (so the old request's reply comes after this asker began reading)
    async with app:
        asks = asyncio.gather(*(adding.ask(Add(a=i, b=0), key="same") for i in range(5)))
        await wait_until(lambda: len(replies_of(app).waiting) == 5)
        adding.resume()
        assert [r.a for r in await asks] == list(range(5))
        await wait_until(lambda: replies_of(app).unmatched >= 1)  # the old request's reply: read, skipped
        assert adding.events_processed == 6
        # the new asks were handed over in memory; the old request's asker (the stopped App) was not this one
        assert replies_of(app).handed.count == 5


async def test_requests_older_than_reply_expires_are_processed_but_not_answered(app_id: str) -> None:
    app, adding = adding_app(f"memory://{app_id}", app_id, reply_expires=60.0)
    answers = app.topic(f"{app_id}-answers", key_serializer="raw", value_serializer="raw")
    async with app:
        old = time.time() - 3600
        await adding.send(value=Add(a=1, b=0), key="k", timestamp=old, reply_to=answers, correlation_id="old")
        await adding.send(value=Add(a=2, b=0), key="k", reply_to=answers, correlation_id="new")
        transport = app.require_transport()
        tp = TP(answers.name, 0)
        await wait_until(lambda: adding.events_processed == 2)
        await wait_until(lambda: _end(transport, tp, 1))
        got = [decode_reply(m.value).correlation_id for m in await transport.read(tp, 0, 10)]
        assert got == ["new"]
        assert app.conf.reply_expires == 60.0


def test_request_headers_replace_earlier_ones() -> None:
    headers = request_headers([("Faust-Ag-ReplyTo", b"x"), ("a", b"1")], "replies", "c")
    assert request_of(headers) == ("replies", "c")
    assert [name for name, _ in headers] == ["a", "Faust-Ag-ReplyTo", "Faust-Ag-CorrelationId"]


# -- across processes ----------------------------------------------------------------------------------

WORKER = '''
import asyncio, json, os, signal, sys
import streamnb as faust

config = json.loads(sys.argv[1])
app = faust.App(config["app_id"], broker=config["broker"], topic_partitions=config["partitions"])

@app.agent(value_type=int)
async def double(stream):
    async for n in stream:
        yield {"n": n, "double": 2 * n, "pid": os.getpid()}

async def main():
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await app.start()
    while not stop.is_set():
        print(json.dumps({"assigned": sorted(app.owned_partitions()), "processed": double.events_processed}),
              flush=True)
        try:
            await asyncio.wait_for(stop.wait(), 0.2)
        except asyncio.TimeoutError:
            pass
    await app.stop()

asyncio.run(main())
'''


@pytest.mark.kafka
async def test_asks_across_two_kafka_workers(tmp_path: Path, app_id: str) -> None:
    from conftest import kafka_bootstrap

    broker = f"kafka://{kafka_bootstrap()}"
    partitions = 4
    script = tmp_path / "rpc_worker.py"
    script.write_text(WORKER)
    config = {"app_id": app_id, "broker": broker, "partitions": partitions}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), json.dumps(config), stdout=asyncio.subprocess.PIPE,
        stderr=open(tmp_path / "worker.stderr", "wb"), env={**os.environ, "PYTHONPATH": str(REPO)},  # noqa: SIM115, ASYNC230
    )
    state: dict[str, Any] = {}

    async def read() -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            state.update(json.loads(line))

    reader = asyncio.ensure_future(read())
    app = faust.App(app_id, broker=broker, topic_partitions=partitions)

    @app.agent(value_type=int)
    async def double(stream):
        async for n in stream:
            yield {"n": n, "double": 2 * n, "pid": os.getpid()}

    try:
        await wait_until(lambda: bool(state.get("assigned")), timeout=60, what="the worker runs")
        async with app:
            # both workers hold some of the partitions (after the rebalance our agent's joining caused)
            await wait_until(lambda: 0 < len(state.get("assigned", ())) < partitions, timeout=60,
                             what="the partitions are split between the two workers")
            replies = await asyncio.wait_for(
                asyncio.gather(*(double.ask(n, key=f"k{n}") for n in range(1000))), 120
            )
            assert [r["n"] for r in replies] == list(range(1000))  # none lost, none crossed
            assert all(r["double"] == 2 * r["n"] for r in replies)
            pids = {r["pid"] for r in replies}
            assert pids == {os.getpid(), proc.pid}, pids  # answered by this worker and by the other
            assert replies_of(app).waiting == {}
            # answered here: handed over in memory (or read first from the topic); by the other worker: the topic
            handed = replies_of(app).handed.count
            assert 0 < handed <= sum(r["pid"] == os.getpid() for r in replies)
            # and with only the other worker running the agent, every answer comes from there
            await app.stop_agent("double")
            await wait_until(lambda: len(state.get("assigned", ())) == partitions, timeout=60,
                             what="the other worker took every partition")
            others = await asyncio.wait_for(double.join(range(100)), 60)
            assert [r["double"] for r in others] == [2 * n for n in range(100)]
            assert {r["pid"] for r in others} == {proc.pid}
            assert replies_of(app).handed.count == handed  # none of those was handed over here
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()
        reader.cancel()


def test_a_notebook_cell_awaits_an_ask(tmp_path: Path) -> None:
    from nbhelpers import execute, notebook, text_of

    nb = notebook(
        """
        import streamnb as faust
        app = faust.App("nb-rpc", broker="memory://nb-rpc")

        @app.agent()
        async def double(stream):
            async for n in stream:
                yield 2 * n
        """,
        "await app.start()",
        "await double.ask(21)",
        "print(await double.join([1, 2, 3]), [n async for n in double.map([5])])",
        "await app.stop()",
        "await double.ask(1)",
        allow_errors=(5,),
    )
    execute(nb, tmp_path)
    assert text_of(nb.cells[2]) == "42"
    assert text_of(nb.cells[3]).strip() == "[2, 4, 6] [10]"
    assert text_of(nb.cells[5]).startswith("AppNotRunningError: double.ask/map/join need the app running")
