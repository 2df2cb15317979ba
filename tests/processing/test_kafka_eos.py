"""Exactly-once on a real Kafka: worker processes killed, paused and rebalanced, outputs read back.

Each worker is ``tests/workers/kafka_worker.py`` with ``guarantee="exactly_once"``:
page views are repartitioned by user (``group_by``: a send inside the
transaction), counted per user (a table: changelog writes) and per user and
one-second window of event time (a windowed table whose final results go to
a topic when a window closes), and every view is sent to a sink topic. The
views are keyed by their user, so each table partition is fed by one input
partition in event-time order: no event is ever late, whatever is killed,
and the closed windows are known from the input alone.

At the end a plain ``read_committed`` consumer -- what any consumer of an
exactly-once app's outputs must use -- reads the sink, the changelogs and
the final results: every input exactly once. A ``read_uncommitted`` read of
the sink shows that aborted output existed (what the guarantee hides).
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
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
    read_topic,
    unique,
    wait_for,
)

from streamnb.codecs import get_codec
from streamnb.topics import partition_for_key

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

PARTITIONS = 4
USERS = 40
ALL = set(range(PARTITIONS))
T0_MS = 1_700_000_000_000
STEP_MS = 10  # event time between consecutive views: a one-second window holds 100 views


def user_of(i: int) -> str:
    return f"u{i % USERS}"


def key_of(user: str) -> bytes:
    """The key group_by(View.user) gives a view (JSON): views keyed so stay in their partition."""
    return get_codec("json").dumps(user)


def partition_of(user: str) -> int:
    return partition_for_key(key_of(user), PARTITIONS)


def feed_views(producer: Producer, topic: str) -> Feeder:
    """Produces views ``{"user", "n"}`` keyed by user, event time ``T0 + n * STEP``, until stopped."""

    async def send_batch(first: int, count: int) -> None:
        futures = []
        for i in range(first, first + count):
            user = user_of(i)
            futures.append(await producer.producer.send(
                topic, value={"user": user, "n": i}, key=key_of(user).decode(), timestamp_ms=T0_MS + i * STEP_MS,
            ))
        await asyncio.gather(*futures)

    return Feeder(send_batch)


def eos_config(bootstrap: str, app_id: str, topic: str, **extra: Any) -> dict[str, Any]:
    return {
        "bootstrap": bootstrap, "app_id": app_id, "topic": topic, "partitions": PARTITIONS,
        "kafka": {**FAST_GROUP, **extra.pop("kafka", {})}, "guarantee": "exactly_once",
        "sink": f"{app_id}-sink", "final": f"{app_id}-final", **extra,
    }


async def create_topics(bootstrap: str, app_id: str, topic: str) -> None:
    for name in (topic, f"{app_id}-sink", f"{app_id}-final"):
        await create_topic(bootstrap, name, PARTITIONS)


def expected_windows(n: int) -> tuple[dict[Any, int], dict[Any, int]]:
    """(every window's count, the windows closed once all n views were processed) per (user, (start, end))."""
    windows: Counter[Any] = Counter()
    newest: dict[int, int] = {}  # per table partition: the newest event time (ms), its stream time
    for i in range(n):
        user, ts = user_of(i), T0_MS + i * STEP_MS
        start = ts // 1000 * 1.0
        windows[(user, (start, start + 1.0))] += 1
        newest[partition_of(user)] = max(newest.get(partition_of(user), 0), ts)
    closed = {w: c for w, c in windows.items() if (w[1][1] * 1000) <= newest[partition_of(w[0])]}  # grace 0
    return dict(windows), closed


async def check_exactly_once(bootstrap: str, app_id: str, n: int) -> int:
    """A read_committed consumer sees each of the n views exactly once; returns the aborted sink records."""
    committed = await read_topic(bootstrap, f"{app_id}-sink", isolation_level="read_committed")
    numbers = Counter(json.loads(r.value)["n"] for r in committed)
    twice = {k: c for k, c in numbers.items() if c > 1}
    missing = sorted(set(range(n)) - set(numbers))
    assert not twice and not missing and len(numbers) == n, (
        f"sink: {len(twice)} views more than once (e.g. {list(twice.items())[:5]}), {len(missing)} missing "
        f"(e.g. {missing[:5]}), of {n}"
    )
    counts = await changelog_state(bootstrap, f"{app_id}-counts-changelog", "read_committed")
    assert counts == dict(Counter(user_of(i) for i in range(n))), "the counts changelog is not the exact count"

    all_windows, closed = expected_windows(n)
    windows = await changelog_state(bootstrap, f"{app_id}-per_second-changelog", "read_committed")
    assert windows == all_windows, "the windowed table's changelog is not the exact count per window"
    finals = Counter()
    final_values = {}
    for record in await read_topic(bootstrap, f"{app_id}-final", isolation_level="read_committed"):
        value = json.loads(record.value)
        window = (value["key"], (value["window_start"], value["window_end"]))
        finals[window] += 1
        final_values[window] = value["value"]
    assert closed, "no window closed: the test would check nothing"
    assert max(finals.values()) == 1, f"final results emitted twice: {[w for w, c in finals.items() if c > 1][:5]}"
    assert final_values == closed, "the final results are not exactly the closed windows and their counts"

    everything = await read_topic(bootstrap, f"{app_id}-sink", isolation_level="read_uncommitted")
    print(f"\n{n} views: sink, changelogs and {len(closed)} final window results exact (read_committed); "
          f"the sink holds {len(everything) - n} aborted records (read_uncommitted)")
    return len(everything) - n


async def wait_done(workers: list[Worker], n: int, timeout: float = 180) -> None:
    def done() -> bool:
        owned = [w.assigned for w in workers]
        return (
            set().union(*owned) == ALL and sum(len(o) for o in owned) == PARTITIONS
            and all(w.state.get("lag") == 0 for w in workers)
            and sum(w.state.get("total", 0) for w in workers) == n
        )

    try:
        await wait_for(done, timeout, f"the workers counted all {n} views and committed", workers)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- what Kafka holds ---\n{await committed_summary(workers, n)}") from None


async def committed_summary(workers: list[Worker], n: int) -> str:
    """What read_committed consumers see of the sink and the counts changelog (to tell lost work from a stall)."""
    bootstrap, app_id = workers[0].config["bootstrap"], workers[0].config["app_id"]
    sink = Counter(json.loads(r.value)["n"] for r in
                   await read_topic(bootstrap, f"{app_id}-sink", isolation_level="read_committed"))
    counts = await changelog_state(bootstrap, f"{app_id}-counts-changelog", "read_committed")
    expected = Counter(user_of(i) for i in range(n))
    wrong = {u: (counts.get(u), c) for u, c in expected.items() if counts.get(u) != c}
    return (
        f"sink: {len(sink)} distinct of {n}, {sum(c > 1 for c in sink.values())} more than once, "
        f"missing e.g. {sorted(set(range(n)) - set(sink))[:10]}\n"
        f"counts changelog: {len(wrong)} users wrong (changelog, expected), by partition: "
        + ", ".join(f"{u}@{partition_of(u)}: {v}" for u, v in sorted(wrong.items())[:12])
    )


async def split(workers: list[Worker], timeout: float = 90) -> None:
    def ok() -> bool:
        owned = [w.assigned for w in workers]
        return all(owned) and set().union(*owned) == ALL and sum(len(o) for o in owned) == PARTITIONS

    await wait_for(ok, timeout, "the workers share the partitions", workers)


async def wait_exit(worker: Worker, timeout: float, what: str) -> int:
    assert worker.proc is not None
    try:
        return await asyncio.wait_for(worker.proc.wait(), timeout)
    except TimeoutError:
        raise AssertionError(f"not within {timeout} s: {what}\n{worker.describe()}") from None


async def test_kill9_of_workers_again_and_again_keeps_every_output_exactly_once(tmp_path: Path) -> None:
    bootstrap = kafka_bootstrap()
    app_id, topic = unique("eoskill"), unique("views")
    await create_topics(bootstrap, app_id, topic)
    config = eos_config(bootstrap, app_id, topic)
    # A worker that kills itself inside a commit: its third transaction of a repartition
    # partition stored its records (sink, changelog) and its offset, but never commits.
    faulty = {**config, "fault": {"step": "offsets_sent", "topic_suffix": "-repartition", "after": 3, "action": "kill"}}
    rng = random.Random(20)
    workers = {"a": Worker("a0", config, tmp_path), "b": Worker("b0", config, tmp_path)}
    kills = 0
    async with Producer(bootstrap) as producer:
        await asyncio.gather(*(w.start() for w in workers.values()))
        try:
            await split(list(workers.values()))
            feeder = feed_views(producer, topic)
            for round_, action in enumerate(["kill", "fault", "kill", "kill"]):
                name = rng.choice(sorted(workers))
                victim = workers[name]
                # Let the victim work for a random while (and at least process something) first.
                seen = victim.state.get("processed", 0)
                await wait_for(lambda v=victim, s=seen: v.state.get("processed", 0) > s, 60,
                               f"worker {victim.name} processes views", list(workers.values()))
                await asyncio.sleep(rng.uniform(0.2, 1.5))
                await victim.kill()
                kills += 1
                if action == "fault":
                    doomed = workers[name] = await Worker(f"{name}{round_}f", faulty, tmp_path).start()
                    code = await wait_exit(doomed, 90, "the faulty worker kills itself inside a commit")
                    assert code == -signal.SIGKILL, doomed.describe()
                    assert "fault: kill at offsets_sent" in doomed.stderr(), doomed.describe()
                    kills += 1
                workers[name] = await Worker(f"{name}{round_}", config, tmp_path).start()
            n = await feeder.stop_after(batches=10)
            await wait_done(list(workers.values()), n)
        finally:
            await asyncio.gather(*(w.stop() for w in workers.values()))
    assert kills >= 5
    aborted = await check_exactly_once(bootstrap, app_id, n)
    assert aborted > 0, "no aborted output in the sink: the kills never landed inside a transaction"


async def test_a_paused_worker_is_fenced_when_it_wakes_up(tmp_path: Path) -> None:
    """SIGSTOP inside a commit, past the session timeout: the partitions move; on SIGCONT the late commit is fenced."""
    bootstrap = kafka_bootstrap()
    app_id, topic = unique("eoszombie"), unique("views")
    await create_topics(bootstrap, app_id, topic)
    config = eos_config(bootstrap, app_id, topic)
    zombie_config = {
        **config, "kafka": {**config["kafka"], "request_timeout": 60},  # the pause must not time the commit out
        "fault": {"step": "offsets_sent", "topic_suffix": "-repartition", "after": 3, "action": "stop"},
    }
    zombie, other = Worker("zombie", zombie_config, tmp_path), Worker("other", config, tmp_path)
    async with Producer(bootstrap) as producer:
        await asyncio.gather(zombie.start(), other.start())
        try:
            await split([zombie, other])
            feeder = feed_views(producer, topic)
            assert zombie.proc is not None
            await wait_for(lambda: _stopped(zombie), 60, "the zombie stops itself inside a commit", [zombie, other])
            assert "fault: stop at offsets_sent" in zombie.stderr()
            taken = other.state.get("processed", 0)
            await wait_for(lambda: other.assigned == ALL and other.state.get("processed", 0) > taken, 60,
                           "the other worker takes every partition over and goes on", [other])
            zombie.proc.send_signal(signal.SIGCONT)
            await wait_for(lambda: "fenced" in (zombie.state.get("last_error") or ""), 60,
                           "the zombie's late commit is fenced", [zombie, other])
            await wait_for(lambda: zombie.state.get("transactions", {}).get("fenced", 0) >= 1, 30,
                           "the zombie's metrics count the fenced transaction", [zombie])
            n = await feeder.stop_after(batches=10)
            await wait_done([zombie, other], n)
        finally:
            if zombie.proc is not None and zombie.proc.returncode is None:
                zombie.proc.send_signal(signal.SIGCONT)
            await asyncio.gather(zombie.stop(), other.stop())
    aborted = await check_exactly_once(bootstrap, app_id, n)
    assert aborted > 0, "the zombie's fenced output should be in the log, aborted"


def _stopped(worker: Worker) -> bool:
    assert worker.proc is not None
    try:
        state = Path(f"/proc/{worker.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state == "T"


async def test_workers_joining_and_leaving_while_transactions_are_open(tmp_path: Path) -> None:
    bootstrap = kafka_bootstrap()
    app_id, topic = unique("eosrebalance"), unique("views")
    await create_topics(bootstrap, app_id, topic)
    # The agent awaits in the middle of each event: a rebalance must still wait
    # for the batch in hand to end, never commit half an event.
    config = eos_config(bootstrap, app_id, topic, await_mid_event=True)
    first = Worker("first", config, tmp_path)
    async with Producer(bootstrap) as producer:
        await first.start()
        guests: list[Worker] = []
        try:
            await first.wait_for(lambda: first.assigned == ALL, 90, "the first worker owns every partition")
            feeder = feed_views(producer, topic)
            for round_ in range(3):
                guest = await Worker(f"guest{round_}", config, tmp_path).start()
                guests.append(guest)
                await split([first, guest])
                await wait_for(lambda g=guest: g.state.get("processed", 0) > 0, 60, "the guest processes views",
                               [first, guest])
                await guest.stop()  # a clean leave: its partitions go back while the first one commits
                await first.wait_for(lambda: first.assigned == ALL, 60, "the first worker owns every partition again")
            n = await feeder.stop_after(batches=10)
            await wait_done([first], n)
        finally:
            await asyncio.gather(first.stop(), *(g.stop() for g in guests))
    assert first.state["errors"] == 0, first.describe()
    await check_exactly_once(bootstrap, app_id, n)

