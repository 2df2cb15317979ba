"""Several worker processes of one App on a real Kafka: sharing, SIGKILL, restart.

Each worker is ``tests/workers/kafka_worker.py`` (group_by(user) + a count
table) in its own process; the test produces with a plain aiokafka
producer and takes the final table from the changelog topic with a plain
aiokafka consumer (the latest value per key: what any client sees).

Kafka is at-least-once: after a SIGKILL some events may be counted twice
(the output says how many), but no event may be lost.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import kafka_bootstrap
from kafkahelpers import (
    FAST_GROUP,
    Feeder,
    Producer,
    Worker,
    changelog_state,
    create_topic,
    end_offsets,
    unique,
    wait_for,
)

from streamnb.codecs import get_codec
from streamnb.testing import wait_until
from streamnb.topics import partition_for_key

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

PARTITIONS = 4
USERS = 40
ALL = set(range(PARTITIONS))


def views(start: int, n: int) -> list[tuple[str, dict[str, Any]]]:
    return [(str(i), {"user": f"u{i % USERS}", "n": i}) for i in range(start, start + n)]


def expected(start: int, stop: int) -> Counter[str]:
    return Counter(f"u{i % USERS}" for i in range(start, stop))


def partition_of_user(user: str) -> int:
    """Where group_by puts a user (JSON key, murmur2), so which worker holds it."""
    return partition_for_key(get_codec("json").dumps(user), PARTITIONS)


def worker_config(bootstrap: str, app_id: str, topic: str) -> dict[str, Any]:
    return {"bootstrap": bootstrap, "app_id": app_id, "topic": topic, "partitions": PARTITIONS, "kafka": FAST_GROUP}


def feed_views(producer: Producer, topic: str) -> Feeder:
    """Produces batches of views in the background until stopped."""

    async def send_batch(first: int, count: int) -> None:
        await producer.send(topic, views(first, count))

    return Feeder(send_batch)


def check_no_loss(truth: dict[str, int], want: Counter[str], label: str) -> int:
    """Every key counted at least as often as produced; returns (and prints) the duplicates."""
    lost = {k: (n, truth.get(k, 0)) for k, n in want.items() if truth.get(k, 0) < n}
    assert not lost, f"{label}: events lost (key: (produced, counted)): {lost}"
    assert set(truth) == set(want), f"{label}: unexpected keys {set(truth) ^ set(want)}"
    duplicates = sum(truth.values()) - sum(want.values())
    per_key = {k: truth[k] - n for k, n in want.items() if truth[k] != n}
    print(f"\n{label}: {sum(want.values())} events produced, {duplicates} counted twice "
          f"(at-least-once) on {len(per_key)} of {len(want)} keys: {per_key}")
    return duplicates


async def test_two_workers_split_the_partitions_and_count_exactly(tmp_path: Path) -> None:
    bootstrap = kafka_bootstrap()
    app_id, topic = unique("share"), unique("views")
    await create_topic(bootstrap, topic, PARTITIONS)
    config = worker_config(bootstrap, app_id, topic)
    a, b = Worker("a", config, tmp_path), Worker("b", config, tmp_path)
    n = 3000
    async with Producer(bootstrap) as producer:
        await producer.send(topic, views(0, 1000))  # waiting before the workers start
        await asyncio.gather(a.start(), b.start())
        try:

            def split() -> bool:
                return bool(a.assigned) and bool(b.assigned) and a.assigned | b.assigned == ALL

            await wait_for(split, 90, "both workers own partitions", [a, b])
            await producer.send(topic, views(1000, n - 1000))

            def done() -> bool:
                return (
                    split() and not (a.assigned & b.assigned)
                    and a.state["lag"] == 0 and b.state["lag"] == 0
                    and a.state["total"] + b.state["total"] == n
                )

            await wait_for(done, 90, f"the two workers' tables cover all {n} events", [a, b])
        finally:
            await asyncio.gather(a.stop(), b.stop())
    print(f"\nworker a owns {sorted(a.assigned)} ({a.state['total']} events), "
          f"worker b owns {sorted(b.assigned)} ({b.state['total']} events)")
    assert a.state["total"] > 0 and b.state["total"] > 0
    # Each worker holds exactly the table partitions it owns.
    for worker in (a, b):
        assert {partition_of_user(u) for u in worker.counts} <= worker.assigned, worker.describe()
    union = {**a.counts, **b.counts}
    truth = await changelog_state(bootstrap, f"{app_id}-counts-changelog")
    assert truth == dict(expected(0, n)), "the changelog is not the exact count"
    assert union == truth
    assert a.state["errors"] == b.state["errors"] == 0


async def test_sigkill_moves_partitions_to_the_survivor_and_loses_nothing(tmp_path: Path) -> None:
    bootstrap = kafka_bootstrap()
    app_id, topic = unique("kill"), unique("views")
    await create_topic(bootstrap, topic, PARTITIONS)
    config = worker_config(bootstrap, app_id, topic)
    a, b = Worker("a", config, tmp_path), Worker("b", config, tmp_path)
    async with Producer(bootstrap) as producer:
        await asyncio.gather(a.start(), b.start())
        try:
            await wait_for(
                lambda: bool(a.assigned) and bool(b.assigned) and not (a.assigned & b.assigned)
                and a.assigned | b.assigned == ALL,
                90, "both workers own partitions", [a, b],
            )
            feeder = feed_views(producer, topic)
            # Kill a once it has counted (and committed) a good part of the stream.
            await wait_for(lambda: a.state.get("total", 0) >= 300 and a.state.get("processed", 0) >= 600,
                           60, "worker a processes events", [a, b])
            owned_by_a = set(a.assigned)

            async def in_changelog() -> bool:  # a committed some of its work in each partition it owns
                ends = await end_offsets(bootstrap, f"{app_id}-counts-changelog")
                return all(ends.get(p, 0) > 0 for p in owned_by_a)

            await wait_until(in_changelog, timeout=60, interval=0.2, what="worker a's counts in the changelog")
            counted_by_a = a.state["total"]
            await a.kill()
            sent_at_kill = feeder.sent
            n = await feeder.stop_after(batches=20)  # keep producing after the kill
            assert n > sent_at_kill, "the kill did not land mid-stream"

            def took_over() -> bool:
                return b.assigned == ALL and b.state["lag"] == 0 and b.state["total"] >= n

            await wait_for(took_over, 120, f"worker b owns every partition and counted all {n} events", [a, b])
        finally:
            await asyncio.gather(a.stop(), b.stop())
    truth = await changelog_state(bootstrap, f"{app_id}-counts-changelog")
    print(f"\nkilled worker a (owned {sorted(owned_by_a)}, counted {counted_by_a}) after {sent_at_kill} "
          f"of {n} events were produced")
    duplicates = check_no_loss(truth, expected(0, n), "SIGKILL of one of two workers")
    assert duplicates >= 0
    # The survivor's table is what the changelog says, including a's old partitions,
    # which it rebuilt from the changelog (not from scratch).
    assert b.counts == truth, b.describe()
    recovered = {int(p): keys for p, keys in b.state["recovered"].items()}
    assert owned_by_a and all(recovered.get(p, 0) > 0 for p in owned_by_a), (owned_by_a, recovered)
    assert b.state["errors"] == 0, b.describe()


async def test_worker_restarted_after_sigkill_recovers_its_tables(tmp_path: Path) -> None:
    bootstrap = kafka_bootstrap()
    app_id, topic = unique("restart"), unique("views")
    await create_topic(bootstrap, topic, PARTITIONS)
    config = worker_config(bootstrap, app_id, topic)
    first = Worker("first", config, tmp_path)
    again = Worker("again", config, tmp_path)
    changelog = f"{app_id}-counts-changelog"
    async with Producer(bootstrap) as producer:
        await first.start()
        try:
            await first.wait_for(lambda: first.assigned == ALL, 90, "the worker owns every partition")
            feeder = feed_views(producer, topic)
            await first.wait_for(lambda: first.state.get("total", 0) >= 500, 60, "the worker counts")

            async def in_changelog() -> bool:  # part of the count was committed
                return sum((await end_offsets(bootstrap, changelog)).values()) > 0

            await wait_until(in_changelog, timeout=60, interval=0.2, what="the worker's counts in the changelog")
            counted_before_kill = first.state["total"]
            await first.kill()
            sent_at_kill = feeder.sent
            n = await feeder.stop_after(batches=10)
            assert n > sent_at_kill, "the kill did not land mid-stream"

            # The same worker again (same app id): it must rebuild its table from the changelog.
            await again.start()
            await again.wait_for(
                lambda: again.assigned == ALL and again.state["lag"] == 0 and again.state["total"] >= n,
                120, f"the restarted worker counted all {n} events",
            )
            truth = await changelog_state(bootstrap, changelog)
            print(f"\nkilled the worker after it counted {counted_before_kill} of {sent_at_kill} events produced")
            check_no_loss(truth, expected(0, n), "SIGKILL and restart of a single worker")
            assert again.counts == truth, again.describe()
            recovered = sum(again.state["recovered"].values())
            assert recovered > 0, "the restarted worker did not recover anything from the changelog"

            # Processing resumes: new events are counted exactly once on top of the recovered state.
            more = 400
            await producer.send(topic, views(n, more))
            total_before = again.state["total"]
            await again.wait_for(
                lambda: again.state["lag"] == 0 and again.state["total"] >= total_before + more,
                60, "the restarted worker counts new events",
            )
        finally:
            await asyncio.gather(first.stop(), again.stop())
    after = await changelog_state(bootstrap, changelog)
    assert {k: after[k] - truth.get(k, 0) for k in after} == dict(expected(n, n + more))
    assert again.counts == after
    assert again.state["errors"] == 0


async def test_a_rebalance_rereads_only_the_table_partitions_that_changed_hands(tmp_path: Path) -> None:
    """Kafka revokes every partition at each rebalance: the ones that come back untouched keep their rows."""
    bootstrap = kafka_bootstrap()
    app_id, topic = unique("sticky"), unique("views")
    await create_topic(bootstrap, topic, PARTITIONS)
    config = worker_config(bootstrap, app_id, topic)
    a, b = Worker("a", config, tmp_path), Worker("b", config, tmp_path)
    async with Producer(bootstrap) as producer:
        await a.start()
        try:
            await producer.send(topic, views(0, 1000))
            await a.wait_for(
                lambda: a.assigned == ALL and a.state["lag"] == 0 and a.state["total"] == 1000,
                90, "worker a alone counts the first 1000 events",
            )
            read_alone = {int(p): n for p, n in a.state["recovered"].items()}

            await b.start()

            def split() -> bool:
                return bool(a.assigned) and bool(b.assigned) and a.assigned | b.assigned == ALL

            await wait_for(split, 90, "worker b takes some partitions", [a, b])
            await producer.send(topic, views(1000, 1000))
            await wait_for(
                lambda: split() and a.state["lag"] == 0 and a.state["total"] + b.state["total"] == 2000,
                90, "the two workers count the next 1000 events", [a, b],
            )
            kept, moved = set(a.assigned), set(b.assigned)
            read_split = {int(p): n for p, n in a.state["recovered"].items()}
            # a kept its rows of the partitions it still owns: nothing of them was read again.
            assert {p: read_split.get(p, 0) for p in kept} == {p: read_alone.get(p, 0) for p in kept}, a.describe()

            await b.stop()  # b leaves: its partitions, whose changelogs b wrote, come back to a
            await a.wait_for(
                lambda: a.assigned == ALL and a.state["lag"] == 0 and a.state["total"] == 2000,
                90, "worker a alone again holds all 2000 events",
            )
            read_back = {int(p): n for p, n in a.state["recovered"].items()}
            # Those were read again from their changelogs (b's writes are in them); a's own were not.
            assert all(read_back.get(p, 0) > read_split.get(p, 0) for p in moved), a.describe()
            assert {p: read_back.get(p, 0) for p in kept} == {p: read_alone.get(p, 0) for p in kept}, a.describe()
        finally:
            await asyncio.gather(a.stop(), b.stop())
    truth = await changelog_state(bootstrap, f"{app_id}-counts-changelog")
    assert truth == dict(expected(0, 2000))
    assert a.counts == truth
    assert a.state["errors"] == b.state["errors"] == 0
