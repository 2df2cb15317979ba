"""Standby replicas on real Kafka (streamnb/tables/standby.py): two worker processes, the owner killed.

Each worker has its own datadir (as on two machines) and
``table_standby_replicas=1``: each follows the changelog of the other's
partition into its own RocksDB store. When the owner of a partition is
killed with SIGKILL, the survivor takes the partition over and its restore
reads only the changelog written since its standby's last read, not the
whole changelog; the counts it goes on with are exact.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from conftest import kafka_bootstrap
from kafkahelpers import (
    FAST_GROUP,
    REPO,
    Producer,
    Worker,
    changelog_state,
    create_topic,
    end_offsets,
    unique,
    wait_for,
)

import streamnb as faust
from streamnb import naming
from streamnb.notebook.dashboard import _tables_html
from streamnb.notebook.magics import status_text
from streamnb.tables.progress import StandbyProgress
from streamnb.testing import wait_until
from streamnb.transport.base import ProducerRecord

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

SCRIPT = REPO / "tests" / "workers" / "standby_worker.py"
PARTITIONS = 2
KEYS = 4000
TABLE_STORES = ["rocksdb://"]  # (the workers name their store)


def events(start: int, n: int) -> list[tuple[str, Any]]:
    return [(f"k{i % KEYS}", i) for i in range(start, start + n)]


async def committed(bootstrap: str, group: str) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in found.items()}


async def poll(check: Callable[[], Awaitable[bool]], timeout: float, what: str, workers: list[Worker]) -> None:
    """Await ``check()`` until true; fail with the workers' reports when one exits or time runs out."""
    deadline = time.monotonic() + timeout
    while not await check():
        dead = [w for w in workers if not w.alive()]
        if dead or time.monotonic() > deadline:
            raise AssertionError(f"{what}: {'a worker exited' if dead else 'timed out'}\n"
                                 + "\n".join(w.describe() for w in workers))
        await asyncio.sleep(0.2)


def config(bootstrap: str, app_id: str, topic: str, datadir: Path) -> dict[str, Any]:
    return {"bootstrap": bootstrap, "app_id": app_id, "topic": topic, "partitions": PARTITIONS,
            "datadir": str(datadir), "replicas": 1, "kafka": FAST_GROUP}


async def test_the_standby_takes_over_a_killed_owners_partition_reading_only_the_tail(tmp_path: Path) -> None:
    bootstrap = kafka_bootstrap()
    app_id, topic = unique("standby"), unique("events")
    changelog = naming.changelog_topic(app_id, "counts")
    await create_topic(bootstrap, topic, PARTITIONS)
    a = Worker("a", config(bootstrap, app_id, topic, tmp_path / "a"), tmp_path, SCRIPT)
    b = Worker("b", config(bootstrap, app_id, topic, tmp_path / "b"), tmp_path, SCRIPT)
    workers = [a, b]
    n = 20_000
    async with Producer(bootstrap) as producer:
        try:
            await a.start()
            await wait_for(lambda: set(a.state.get("assigned", ())) == {0, 1}, 90, "a owns everything", workers)
            await b.start()

            def split() -> bool:
                sa, sb = set(a.state.get("assigned", ())), set(b.state.get("assigned", ()))
                return (len(sa) == 1 and len(sb) == 1 and sa | sb == {0, 1}
                        and set(a.state.get("standby", ())) == sb and set(b.state.get("standby", ())) == sa)

            await wait_for(split, 90, "one partition each, each the other's standby", workers)
            await producer.send(topic, events(0, n))
            victim = a.assigned.pop()  # a's partition: b keeps its standby

            async def settled() -> bool:
                ends = await end_offsets(bootstrap, changelog)
                offsets = await committed(bootstrap, naming.consumer_group(app_id, "count"))
                return (
                    a.state["processed"] + b.state["processed"] >= n
                    and offsets == await end_offsets(bootstrap, topic)
                    and b.state["positions"].get(str(victim)) == ends[victim]
                )

            await poll(settled, 120, "all committed, b's standby caught up", workers)
            whole = (await end_offsets(bootstrap, changelog))[victim]
            follows = b.state["standby_records"]
            await a.kill()
            await wait_for(lambda: str(victim) in b.state.get("recovered", {}) and b.assigned == {0, 1},
                           90, "b took the partition over", workers)
            await producer.send(topic, events(n, 2000))
            await wait_for(lambda: b.state["processed"] + a.state["processed"] >= n + 2000, 90,
                           "b processed the events after the takeover", workers)
        finally:
            await asyncio.gather(*(w.stop() for w in workers))
    read_at_takeover = b.state["recovered"][str(victim)][-1]
    print(f"\npartition {victim}: changelog of {whole} records; the standby read {follows} records while "
          f"following, the takeover read {read_at_takeover} (the tail); "
          f"first event {b.state['takeover'].get(str(victim), float('nan')):.2f} s after the rebalance began")
    assert whole > 1000, "the changelog should be long enough to tell the tail from the whole"
    assert read_at_takeover < whole / 20, "the takeover read the whole changelog, not the tail"
    truth = await changelog_state(bootstrap, changelog)
    assert truth == dict(Counter(f"k{i % KEYS}" for i in range(n + 2000))), "the counts after the takeover are off"
    assert a.state.get("errors", 0) == b.state.get("errors", 0) == 0


async def test_of_three_workers_the_one_with_the_standby_gets_the_killed_owners_partition(tmp_path: Path) -> None:
    """Three workers, three partitions, one standby each: the partition goes to its standby's worker."""
    bootstrap = kafka_bootstrap()
    app_id, topic = unique("standby3"), unique("events")
    changelog = naming.changelog_topic(app_id, "counts")
    await create_topic(bootstrap, topic, 3)
    workers = [
        Worker(name, {**config(bootstrap, app_id, topic, tmp_path / name), "partitions": 3}, tmp_path, SCRIPT)
        for name in "abc"
    ]
    n = 9000
    async with Producer(bootstrap) as producer:
        try:
            for worker in workers:
                await worker.start()

            def spread() -> bool:
                owned = [set(w.state.get("assigned", ())) for w in workers]
                standby = [set(w.state.get("standby", ())) for w in workers]
                return (all(len(o) == 1 for o in owned) and set().union(*owned) == {0, 1, 2}
                        and all(len(s) == 1 and not s & o for s, o in zip(standby, owned, strict=True))
                        and set().union(*standby) == {0, 1, 2})

            await wait_for(spread, 120, "one partition and one standby each", workers)
            await producer.send(topic, events(0, n))
            victim_worker = workers[0]
            victim = victim_worker.assigned.pop()
            holder = next(w for w in workers if victim in w.state["standby"])
            other = next(w for w in workers if w is not holder and w is not victim_worker)

            async def settled() -> bool:
                ends = await end_offsets(bootstrap, changelog)
                offsets = await committed(bootstrap, naming.consumer_group(app_id, "count"))
                return (offsets == await end_offsets(bootstrap, topic)
                        and holder.state["positions"].get(str(victim)) == ends[victim])

            await poll(settled, 120, "all committed, the standby caught up", workers)
            whole = (await end_offsets(bootstrap, changelog))[victim]
            restores = len(holder.state["recovered"].get(str(victim), []))
            await victim_worker.kill()
            survivors = [holder, other]

            def taken_over() -> bool:
                restored = len(holder.state["recovered"].get(str(victim), [])) > restores
                lost = victim in other.assigned and str(victim) in other.state["recovered"]
                return holder.assigned | other.assigned == {0, 1, 2} and (restored or lost)

            await wait_for(taken_over, 90, "the survivors took everything", survivors)
        finally:
            await asyncio.gather(*(w.stop() for w in workers))
    print(f"\npartition {victim} of {victim_worker.name} ({whole} changelog records) went to {holder.name}, "
          f"which kept its standby; {other.name} did not")
    assert victim in holder.assigned and victim not in other.assigned, holder.describe() + other.describe()
    assert holder.state["recovered"][str(victim)][-1] < whole / 20


async def test_a_restarted_worker_gets_back_the_partitions_it_has_state_for_and_reads_only_the_tail(
    tmp_path: Path,
) -> None:
    """Four partitions, no standbys: a stops, b takes its two partitions, a comes back on the same datadir.

    a's subscription carries the offsets of the stores it left on disk, so
    the leader gives it back its own partitions (b keeps those only b has
    state for) and a's restores read only what b wrote meanwhile. Told
    nothing, the leader would let b keep a's partitions and give a b's,
    whose whole changelogs it would read.
    """
    bootstrap = kafka_bootstrap()
    app_id, topic = unique("restart"), unique("events")
    changelog = naming.changelog_topic(app_id, "counts")
    await create_topic(bootstrap, topic, 4)
    a, b = (Worker(name, {**config(bootstrap, app_id, topic, tmp_path / name), "partitions": 4, "replicas": 0},
                   tmp_path, SCRIPT) for name in "ab")
    workers = [a, b]
    n, away, after = 20_000, 1000, 1000
    async with Producer(bootstrap) as producer:
        try:
            await a.start()
            await wait_for(lambda: a.assigned == {0, 1, 2, 3}, 90, "a owns everything", workers)
            await b.start()
            await wait_for(lambda: len(a.assigned) == len(b.assigned) == 2 and a.assigned | b.assigned == {0, 1, 2, 3},
                           90, "two partitions each", workers)
            mine, theirs = a.assigned, b.assigned
            await producer.send(topic, events(0, n))

            async def settled() -> bool:
                offsets = await committed(bootstrap, naming.consumer_group(app_id, "count"))
                return offsets == await end_offsets(bootstrap, topic)

            await poll(settled, 120, "all committed", workers)
            await a.stop()  # (a clean stop: it leaves the group at once)
            await wait_for(lambda: b.assigned == {0, 1, 2, 3} and all(str(p) in b.state["recovered"] for p in mine),
                           90, "b took a's partitions", [b])
            await producer.send(topic, events(n, away))
            await poll(settled, 120, "b committed what came while a was away", [b])
            whole = await end_offsets(bootstrap, changelog)
            await a.start()  # the same datadir
            await wait_for(lambda: a.assigned | b.assigned == {0, 1, 2, 3} and a.assigned and b.assigned
                           and all(str(p) in a.state.get("recovered", {}) for p in a.assigned),
                           90, "a is back", workers)
            await producer.send(topic, events(n + away, after))
            await poll(settled, 120, "everything committed after the restart", workers)
        finally:
            await asyncio.gather(*(w.stop() for w in workers))
    reads = {int(p): r[-1] for p, r in a.state["recovered"].items()}
    print(f"\na held {sorted(mine)} and gets back {sorted(a.assigned)}; its restores read {reads} changelog "
          f"records of {({p: whole[p] for p in reads})} (b wrote {away} events' worth meanwhile)")
    assert a.assigned == mine and b.assigned == theirs, "a was not given back the partitions it has state for"
    assert all(whole[p] > 1000 for p in mine), "the changelog should be long enough to tell the tail from the whole"
    assert all(reads[p] < whole[p] / 10 for p in mine), "a restore read the whole changelog, not the tail"
    assert sum(reads.values()) > 0, "what b wrote while a was away should be read"
    truth = await changelog_state(bootstrap, changelog)
    assert truth == dict(Counter(f"k{i % KEYS}" for i in range(n + away + after))), "the counts are off"
    assert a.state.get("errors", 0) == b.state.get("errors", 0) == 0


def standby_lag(app: faust.App) -> dict[str, float]:
    """``{partition: records behind}`` of the app's ``streamnb_standby_lag_records`` samples."""
    frame = app.metrics().query("metric == 'streamnb_standby_lag_records' and table == 'counts'")
    return {str(p): float(v) for p, v in zip(frame["partition"], frame["value"], strict=True)}


async def test_the_standby_lag_is_readable_and_shown_while_it_catches_up(app_id: str, tmp_path: Path) -> None:
    """Two workers in this process (own datadirs): the second follows the first's partition, from far behind.

    ``table.standby_progress`` goes from some records behind to caught up,
    and ``%streamnb status`` and the dashboard show it as it goes.
    """
    bootstrap = kafka_bootstrap()
    records = 120_000  # per partition: several reads of 50,000
    topic = f"{app_id}-events"
    await create_topic(bootstrap, topic, PARTITIONS)

    def worker(name: str) -> tuple[faust.App, Any]:
        app = faust.App(app_id, broker=f"kafka://{bootstrap}", topic_partitions=PARTITIONS, store="rocksdb://",
                        datadir=str(tmp_path / name), table_standby_replicas=1, commit_interval=0.1, **FAST_GROUP)
        table = app.Table("counts", default=int)

        @app.agent(app.topic(topic, key_type=str, value_type=int))
        async def count(stream):  # type: ignore[no-untyped-def]
            async for key, _value in stream.items():
                table[key] += 1

        return app, table

    (a, counts_a), (b, counts_b) = worker("a"), worker("b")
    async with a:  # a holds both partitions; their changelogs get long (written as a long run would have)
        await wait_until(lambda: counts_a.recovered_partitions == {0, 1}, 60, what="a owns everything")
        transport = a.require_transport()
        name = counts_a.changelog.name
        for at in range(0, records, 20_000):
            await transport.send([ProducerRecord(name, p, b'"k%d-%d"' % (p, i), b"1", 1.0, ())
                                  for p in range(PARTITIONS) for i in range(at, at + 20_000)])
        seen: list[dict[int, StandbyProgress]] = []
        shown: list[tuple[str, str]] = []
        scraped: list[dict[str, float]] = []  # (the streamnb_standby_lag_records gauge, as b's metrics read it)

        async def watch() -> None:
            while True:
                now = counts_b.standby_progress
                if now and (not seen or now != seen[-1]):
                    seen.append(now)
                    shown.append((status_text(b), _tables_html(b)))
                    scraped.append(standby_lag(b))
                await asyncio.sleep(0)

        watcher = asyncio.ensure_future(watch())
        try:
            async with b:
                await wait_until(lambda: len(a.owned_partitions()) == len(b.owned_partitions()) == 1, 60,
                                 what="one partition each")
                (theirs,) = a.owned_partitions()
                await wait_until(lambda: counts_b.standby_progress.get(theirs, StandbyProgress(0, 1)).behind == 0
                                 and counts_b.standby_progress[theirs].offset >= records, 60,
                                 what="b's standby of a's partition caught up")
                # a's own standby of b's partition is listed once its first read asked for the changelog's end
                await wait_until(lambda: set(counts_a.standby_progress) == {1 - theirs}, 60,
                                 what="a follows b's partition")
                caught_up = (status_text(b), _tables_html(b), a.standby_partitions(), counts_a.standby_progress)
        finally:
            watcher.cancel()
    assert b.standby_partitions() == set() and counts_b.standby_progress == {}  # (stopped: none kept)
    behind = [s[theirs].behind for s in seen if theirs in s]
    print(f"\nb's standby of partition {theirs}, records behind as seen: {behind[:6]} ... {behind[-3:]}")
    assert all(set(s) == {theirs} for s in seen), "b keeps a standby only of a's partition"
    assert behind[-1] == 0 and any(0 < n < records for n in behind), "never seen catching up"
    assert behind == sorted(behind, reverse=True), "nothing was written meanwhile: the lag only shrinks"
    offsets = [s[theirs].offset for s in seen]
    assert offsets == sorted(offsets) and offsets[-1] >= records
    text, html = next(x for x, s in zip(shown, seen, strict=True) if 0 < s[theirs].behind < records)
    assert f"standby replicas of table 'counts': partition {theirs} " in text and "records behind (offset" in text
    assert f"standby replica of counts partition {theirs}: <progress value=" in html and "records behind" in html
    assert [s.get(str(theirs)) for s in scraped] == [float(n[theirs].behind) for n in seen]
    text, html, a_standbys, a_progress = caught_up
    assert f"standby replicas of table 'counts': partition {theirs} caught up (offset" in text
    assert "caught up" in html
    assert a_standbys == {1 - theirs} and set(a_progress) == {1 - theirs}  # (a keeps b's partition's)


async def test_a_group_mixing_stored_and_memory_tables_falls_back_to_range(app_id: str, tmp_path: Path) -> None:
    """One worker with ``rocksdb://`` tables (standby-aware assignor) and one with ``memory://`` (range) join one
    group: they share the partitions (range) instead of one failing with InconsistentGroupProtocolError."""
    bootstrap = kafka_bootstrap()
    topic = f"{app_id}-events"
    await create_topic(bootstrap, topic, PARTITIONS)

    def worker(name: str, store: str) -> faust.App:
        app = faust.App(app_id, broker=f"kafka://{bootstrap}", topic_partitions=PARTITIONS, store=store,
                        datadir=str(tmp_path / name), commit_interval=0.1, **FAST_GROUP)
        table = app.Table("counts", default=int)

        @app.agent(app.topic(topic, key_type=str, value_type=int))
        async def count(stream):  # type: ignore[no-untyped-def]
            async for key, _value in stream.items():
                table[key] += 1

        return app

    stored, in_memory = worker("a", "rocksdb://"), worker("b", "memory://")
    async with stored, in_memory:
        await wait_until(lambda: len(stored.owned_partitions()) == len(in_memory.owned_partitions()) == 1
                         and stored.owned_partitions() | in_memory.owned_partitions() == set(range(PARTITIONS)),
                         90, what="one partition each")
