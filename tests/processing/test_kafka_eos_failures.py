"""Exactly-once on Kafka when a transaction fails: aborted, rewound, undone, never retried forever.

An App in this process, ``processing_guarantee="exactly_once"``, with a fault
injected into its commit through
:attr:`streamnb.transport.kafka.transactions.PartitionTransactions.fault_hook`:

* a transaction that fails after its records and offset were sent is aborted
  (the partition's next producer fences it), the consumer goes back to the
  committed offsets and the table writes are undone (aiokafka #920), so the
  events count once, and the failure does not count against the event;
* a transaction that fails while the agent goes on with another
  partition's events (a commit runs while the next batch is processed):
  those events' table writes, in no commit yet, are undone too;
* a broker that stops answering in the middle of a transaction (the second
  broker of ``tests/kafka_tls.py``, paused with SIGSTOP) makes the commit
  fail within ``request_timeout`` instead of being retried forever
  (aiokafka #905), and once the broker is back the agent catches up exactly.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import kafka_bootstrap
from kafka_tls import SASL_PASSWORD, SASL_USER
from kafkahelpers import FAST_GROUP, Producer, changelog_state, create_topic, read_topic

import streamnb as faust
from streamnb.testing import settle, wait_until
from streamnb.transport.base import TP
from streamnb.transport.kafka.transactions import PartitionTransactions

pytestmark = [pytest.mark.kafka]

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon"]


@pytest.fixture
def fault_hook() -> Iterator[list[Any]]:
    """Install ``hooks[0]`` (set by the test) as the commit's fault hook for the test's duration."""
    hooks: list[Any] = []

    def hook(step: str, tp: TP) -> Any:
        return hooks[0](step, tp) if hooks else None

    PartitionTransactions.fault_hook = hook
    try:
        yield hooks
    finally:
        PartitionTransactions.fault_hook = None


def word_app(app_id: str, broker: str, **options: Any) -> tuple[faust.App, Any, Any, Any]:
    app = faust.App(
        app_id, broker=broker, topic_partitions=2, processing_guarantee="exactly_once", **FAST_GROUP, **options
    )
    words = app.topic(f"{app_id}-words", value_type=str)
    out = app.topic(f"{app_id}-out")
    counts = app.Table("counts", default=int)

    @app.agent(words, sink=[out])
    async def count(stream):  # type: ignore[no-untyped-def]
        async for word in stream:
            counts[word] += 1
            yield word

    return app, words, counts, count


async def test_a_failed_transaction_is_aborted_rewound_and_undone(app_id: str, fault_hook: list[Any]) -> None:
    bootstrap = kafka_bootstrap()
    app, _words, counts, count = word_app(app_id, f"kafka://{bootstrap}")
    for name in (f"{app_id}-words", f"{app_id}-out"):
        await create_topic(bootstrap, name, 2)
    failed: list[TP] = []

    def fail_three_commits(step: str, tp: TP) -> None:
        # Once per commit (its first partition to get there), for three commits in a row --
        # as often as an event may crash its agent before it is dead-lettered.
        if step == "offsets_sent" and len(failed) < count.max_retries and count.crashes == len(failed):
            failed.append(tp)  # its records and offset are stored in the transaction: it must not commit
            raise RuntimeError("injected: the transaction fails after sending its records and offset")

    fault_hook.append(fail_three_commits)
    sent = [WORDS[i % len(WORDS)] for i in range(500)]
    async with Producer(bootstrap) as producer:
        await producer.send(f"{app_id}-words", [(word, word) for word in sent])
    async with app:
        await settle(app, timeout=90)
        assert len(failed) == count.max_retries, "the fault was not injected"
        assert count.crashes == count.max_retries and "injected" in repr(count.last_error.__cause__)
        # A failed commit is not an event's fault: no event is one crash closer to the dead-letter topic.
        assert count.dead_lettered == 0 and not count.poison and not count._retries
        assert dict(counts.data) == dict(Counter(sent))  # undone, then counted again: once
    committed = await read_topic(bootstrap, f"{app_id}-out", isolation_level="read_committed")
    assert Counter(json.loads(r.value) for r in committed) == Counter(sent)
    everything = await read_topic(bootstrap, f"{app_id}-out", isolation_level="read_uncommitted")
    assert len(everything) > len(sent), "the failed transaction's records should be in the log, aborted"
    changelog = await changelog_state(bootstrap, f"{app_id}-counts-changelog", "read_committed")
    assert changelog == dict(Counter(sent))


async def test_a_failed_commit_undoes_the_writes_of_the_batch_processed_meanwhile(
    app_id: str, fault_hook: list[Any]
) -> None:
    bootstrap = kafka_bootstrap()
    # commit_interval=0: a commit starts after every partition's batch, and runs while the agent
    # processes the next one (the other partition's).
    app, _words, counts, count = word_app(app_id, f"kafka://{bootstrap}", commit_interval=0.0)
    for name in (f"{app_id}-words", f"{app_id}-out"):
        await create_topic(bootstrap, name, 2)
    sent = [WORDS[i % len(WORDS)] for i in range(500)]
    failed: list[TP] = []
    uncommitted: list[int] = []  # changes and records in no commit yet when the commit failed

    async def fail_once_the_rest_is_processed(step: str, tp: TP) -> None:
        if step == "offsets_sent" and not failed:
            failed.append(tp)
            try:
                await wait_until(lambda: count.events_processed == len(sent), timeout=20,
                                 what="the agent processes the other partition's events during the commit")
            finally:
                uncommitted.append(sum(len(source.txn) for source in count._sources))
            raise RuntimeError("injected: the transaction fails after the agent processed the next batch")

    fault_hook.append(fail_once_the_rest_is_processed)
    async with Producer(bootstrap) as producer:
        await producer.send(f"{app_id}-words", [(word, word) for word in sent])
    async with app:
        await settle(app, timeout=90)
        assert failed and uncommitted[0] > 0, "the agent processed no event while the failing commit was under way"
        assert count.crashes == 1 and "injected" in repr(count.last_error.__cause__)
        # The rows the other partition's events wrote were undone with the failed commit's: once each.
        assert dict(counts.data) == dict(Counter(sent))
    committed = await read_topic(bootstrap, f"{app_id}-out", isolation_level="read_committed")
    assert Counter(json.loads(r.value) for r in committed) == Counter(sent)
    changelog = await changelog_state(bootstrap, f"{app_id}-counts-changelog", "read_committed")
    assert changelog == dict(Counter(sent))


def _sender_tasks() -> int:
    """aiokafka producers' background sender tasks still running in this loop."""
    return sum(1 for t in asyncio.all_tasks() if "_sender_routine" in repr(t.get_coro()))


async def test_a_broker_that_stops_answering_mid_transaction_fails_the_commit_in_bounded_time(
    secure_broker: dict[str, str], app_id: str, fault_hook: list[Any]
) -> None:
    pid = int(Path(secure_broker["pidfile"]).read_text())
    app, words, counts, count = word_app(
        app_id, f"kafka://{secure_broker['sasl']}", request_timeout=3.0, security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN", sasl_plain_username=SASL_USER, sasl_plain_password=SASL_PASSWORD,
    )
    paused: list[Any] = []  # the sources committing when the broker was paused

    def pause_broker(step: str, tp: TP) -> None:
        if step == "offsets_sent" and not paused:
            os.kill(pid, signal.SIGSTOP)  # records and offset sent; the commit will find nobody
            paused.extend(count._sources)

    sent = [WORDS[i % len(WORDS)] for i in range(300)]
    async with app:
        transport = app.transport
        assert transport is not None
        # Everything is sent while the agent waits, so nothing but its commit meets the paused broker.
        count.pause()
        await transport.send([words.record(key=word, value=word) for word in sent])
        fault_hook.append(pause_broker)
        count.resume()
        try:
            await wait_until(lambda: bool(paused), timeout=60, what="a commit reaches the broker pause")
            # aiokafka alone retries a transactional request until the broker answers; here the
            # commit gives up after request_timeout (3 s, then 3 s to close the producer).
            await wait_until(lambda: all(s.commit_failed for s in paused), timeout=20,
                             what="the commit fails instead of waiting for the broker")
        finally:
            os.kill(pid, signal.SIGCONT)
        await settle(app, timeout=120)
        assert count.crashes >= 1 and "within 3 s" in str(count.errors), count.last_error
        # The commit's outcome was unknown to the agent (the broker may have committed it when it woke
        # up): the restarted agent rebuilt the table from the changelog, whatever Kafka decided.
        try:
            await wait_until(lambda: dict(counts.data) == dict(Counter(sent)), timeout=60, what="the table is exact")
        except TimeoutError:  # say how it differs
            assert dict(counts.data) == dict(Counter(sent)), f"crashes={count.crashes} errors={count.errors}"
        # No abandoned producer is still retrying: one sender task per open producer. (Counted live, once
        # the restarted agent reads again: the broker may have committed the transactions the agent gave
        # up on, so everything can be committed -- settled -- while the agent is still restarting.)
        def senders() -> tuple[int, int]:
            """(sender tasks expected: the open producers' and the transport's; -1 while restarting, running)."""
            consumers = [s.consumer for s in list(count._sources) if s.consumer is not None]
            if not consumers:
                return (-1, _sender_tasks())
            open_producers = sum(len(c.transactions.producers) for c in consumers if c.transactions is not None)
            return (open_producers + 1, _sender_tasks())

        try:
            await wait_until(lambda: len(set(senders())) == 1, timeout=30,
                             what="the sender tasks are those of the open producers once the agent reads again")
        except TimeoutError:  # say how they differ
            expected, running = senders()
            assert running == expected, f"{running} aiokafka sender tasks for {expected} open producers"
        out: Counter[str] = Counter()
        for p in range(2):
            tp = TP(f"{app_id}-out", p)
            end = (await transport.end_offsets([tp]))[tp]
            pos = 0
            while pos < end:
                msgs = await transport.read(tp, pos, end)  # read_committed
                if not msgs:
                    break
                out.update(json.loads(m.value) for m in msgs if m.value is not None)
                pos = msgs[-1].offset + 1
    assert out == Counter(sent)
