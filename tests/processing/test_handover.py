"""Agent RPC's in-process fast path (streamnb.processing.handover), on every broker.

An ask answered by an agent of the same app instance is resolved in memory
once the agent's commit stored the reply; the reply is still written to the
reply topic, and the copy read back is skipped (never delivered twice). A
commit that fails hands nothing over: the asker gets the reply of the
processing that committed. Asks of another app instance (a restart, another
worker) keep getting their replies through the topic (see also
``test_rpc.py``: the restart test and the two Kafka workers test).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

import streamnb as faust
from streamnb.errors import RemoteAgentError
from streamnb.processing.handover import ASKER_HEADER, HandedOver, asker_of
from streamnb.processing.replies import decode_reply, replies_of, reply_topic_name, request_headers, request_of
from streamnb.testing import wait_until
from streamnb.transport.base import TP
from streamnb.transport.kafka.transactions import PartitionTransactions


def echo_app(broker: str, app_id: str, **options: Any) -> tuple[faust.App, Any]:
    app = faust.App(app_id, broker=broker, topic_partitions=4, **options)

    @app.agent(value_type=int)
    async def triple(stream):
        async for n in stream:
            if n < 0:
                raise ValueError(f"negative: {n}")
            yield {"n": n, "triple": 3 * n}

    return app, triple


async def replies_in_topic(app: faust.App) -> list[Any]:
    """Every reply stored in the app's reply topic (read_committed on Kafka)."""
    transport = app.require_transport()
    tp = TP(reply_topic_name(app), 0)
    end = (await transport.end_offsets([tp]))[tp]
    return [decode_reply(m.value) for m in await transport.read(tp, 0, end, max_records=100_000)]


async def test_asks_answered_here_are_handed_over_and_their_replies_are_still_in_the_topic_once(
    broker: str, app_id: str
) -> None:
    app, triple = echo_app(broker, app_id)
    async with app:
        replies = replies_of(app)
        asked = [await triple.ask(n, key=str(n), correlation_id=f"c-{n}") for n in range(20)]
        together = await asyncio.gather(*(triple.ask(n, key=str(n)) for n in range(20, 220)))
        assert [r["triple"] for r in asked + together] == [3 * n for n in range(220)]  # none crossed
        handed = replies.handed
        # On Kafka the reply consumer may read a reply before the commit's acknowledgement
        # reaches the agent: that ask is answered from the topic. Never both.
        assert handed.count > 0 if broker.startswith("kafka") else handed.count == 220
        # every reply is in the topic once; each one handed over is read back and skipped, not delivered again
        await wait_until(lambda: handed.read_back == handed.count, timeout=30, what="the copies are read back")
        in_topic = await replies_in_topic(app)
        assert Counter(r.correlation_id for r in in_topic if r.correlation_id.startswith("c-")) == {
            f"c-{n}": 1 for n in range(20)
        }
        assert len(in_topic) == 220 and replies.unmatched == 0 and replies.waiting == {}
        assert len(handed) == 0  # nothing left to skip


async def test_an_error_reply_is_handed_over_too(broker: str, app_id: str) -> None:
    app, triple = echo_app(broker, app_id)
    async with app:
        with pytest.raises(RemoteAgentError, match="negative: -1"):
            await asyncio.wait_for(triple.ask(-1), 30)
        handed = replies_of(app).handed
        if not broker.startswith("kafka"):
            assert handed.count == 1
        await wait_until(lambda: handed.read_back == handed.count, timeout=30, what="the copy is read back")
        assert [r.error for r in await replies_in_topic(app)] == [("ValueError", "negative: -1")]
        assert replies_of(app).unmatched == 0


def flaky_app(broker: str, app_id: str, **options: Any) -> tuple[faust.App, Any, dict[int, int]]:
    """An agent whose first commit of each request fails (a table value that no longer encodes at the commit)."""
    app = faust.App(app_id, broker=broker, topic_partitions=1, **options)
    notes = app.Table("notes", default=list, partitions=1)
    attempts: Counter[int] = Counter()

    @app.agent(value_type=int)
    async def attempt(stream):
        async for n in stream:
            attempts[n] += 1
            kept: list[object] = []
            notes[n] = kept
            yield {"n": n, "attempt": attempts[n]}  # the reply joins the transaction...
            if attempts[n] == 1:
                kept.append(object())  # ...whose commit fails: the table value no longer encodes

    return app, attempt, attempts


async def ask_the_flaky_agent(app: faust.App, attempt: Any, attempts: Counter[int]) -> None:
    async with app:
        reply = await asyncio.wait_for(attempt.ask(7), 60)
        # The first processing's commit failed: its reply was never stored, so never handed over.
        assert attempts[7] >= 2 and attempt.crashes >= 1
        assert reply["attempt"] >= 2
        in_topic: list[Any] = []

        async def landed() -> bool:  # (Kafka exactly-once: readable once the commit markers land, just after)
            in_topic[:] = [r.value for r in await replies_in_topic(app)]
            return reply in in_topic

        await wait_until(landed, timeout=30, what="the reply is readable in the reply topic")
        assert {"n": 7, "attempt": 1} not in in_topic


async def test_a_failed_commit_hands_nothing_over(broker: str, app_id: str) -> None:
    app, attempt, attempts = flaky_app(broker, app_id)
    await ask_the_flaky_agent(app, attempt, attempts)


@pytest.mark.parametrize("kind", ["memory", "local"])
async def test_a_failed_commit_hands_nothing_over_exactly_once(kind: str, tmp_path: Any, app_id: str) -> None:
    broker = f"memory://{app_id}" if kind == "memory" else f"local://{tmp_path / 'broker'}"
    app, attempt, attempts = flaky_app(broker, app_id, processing_guarantee="exactly_once")
    await ask_the_flaky_agent(app, attempt, attempts)


@pytest.fixture
def fail_first_transaction() -> Iterator[list[TP]]:
    """Kafka exactly-once: the first transaction to send its offset fails after its records (the reply) were sent."""
    failed: list[TP] = []

    def hook(step: str, tp: TP) -> None:
        if step == "offsets_sent" and not failed:
            failed.append(tp)
            raise RuntimeError("injected: the transaction fails after sending its records and offset")

    PartitionTransactions.fault_hook = hook
    try:
        yield failed
    finally:
        PartitionTransactions.fault_hook = None


@pytest.mark.kafka
async def test_an_aborted_kafka_transaction_hands_nothing_over(app_id: str, fail_first_transaction: list[TP]) -> None:
    from conftest import kafka_bootstrap

    app = faust.App(app_id, broker=f"kafka://{kafka_bootstrap()}", topic_partitions=1,
                    processing_guarantee="exactly_once")
    attempts: Counter[int] = Counter()

    @app.agent(value_type=int)
    async def attempt(stream):
        async for n in stream:
            attempts[n] += 1
            yield {"n": n, "attempt": attempts[n]}

    async with app:
        reply = await asyncio.wait_for(attempt.ask(5), 90)
        assert fail_first_transaction, "the fault was not injected"
        # The aborted transaction held the first reply: the asker got the committed one.
        assert reply == {"n": 5, "attempt": 2} and attempt.crashes == 1
        # The reply was handed over once the transaction committed; the coordinator writes the commit
        # markers right after, and only then does a read_committed reader see it: wait for that.
        stored: list[Any] = []

        async def landed() -> bool:
            stored[:] = [r.value for r in await replies_in_topic(app)]
            return bool(stored)

        await wait_until(landed, timeout=30, what="the committed reply is readable")
        assert stored == [reply]  # read_committed: the aborted one is not there


async def test_a_request_of_another_app_instance_is_answered_through_the_topic(app_id: str) -> None:
    """An ask waiting here with the same correlation id as another instance's request is not handed that reply."""
    app, triple = echo_app(f"memory://{app_id}", app_id)
    async with app:
        replies = replies_of(app)
        name = reply_topic_name(app)
        # Another instance's request (its own asker token) with a correlation id an ask here waits for too:
        waiting = await replies.expect(name, "shared")
        headers = request_headers(None, name, "shared", asker="another-instance")
        await triple.channel.send(key="k", value=4, headers=headers)
        reply = await asyncio.wait_for(waiting, 30)  # (read from the topic, as before)
        assert reply.value == {"n": 4, "triple": 12}
        assert replies.handed.count == 0
        assert (await triple.ask(5))["triple"] == 15 and replies.handed.count == 1


def test_request_headers_name_the_asker_once() -> None:
    headers = request_headers([(ASKER_HEADER, b"old"), ("a", b"1")], "replies", "c", asker="new")
    assert request_of(headers) == ("replies", "c") and asker_of(headers) == "new"
    assert [name for name, _ in headers].count(ASKER_HEADER) == 1
    assert asker_of(request_headers(None, "replies", "c")) is None


def test_handed_over_ids_are_skipped_once_per_hand_over_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from streamnb.processing import handover

    handed = HandedOver()
    handed.add("same")
    handed.add("same")  # (a correlation id given twice by its asker)
    assert [handed.copy_read("same") for _ in range(3)] == [True, True, False]
    monkeypatch.setattr(handover, "LIMIT", 3)
    for n in range(5):
        handed.add(f"c-{n}")
    assert len(handed) == 3 and not handed.copy_read("c-0") and handed.copy_read("c-4")
