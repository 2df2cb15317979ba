"""``GET /metrics`` of real worker processes (``python -m streamnb -A metrics_worker worker``), scraped over HTTP.

The worker module is tests/workers/metrics_worker.py (no web views: the
server runs for ``/metrics`` alone). Values are parsed with
``prometheus_client.parser`` and checked against what was processed; on
Kafka, lag is checked against the group's offsets as Kafka's admin API
reports them (what ``kafka-consumer-groups.sh --describe`` prints as LAG).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import uuid
from pathlib import Path

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition
from conftest import kafka_bootstrap
from prometheus_client.parser import text_string_to_metric_families

import streamnb
from streamnb import naming
from streamnb.testing import wait_until

REPO = Path(__file__).resolve().parents[2]
WORKERS = REPO / "tests" / "workers"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class Worker:
    """``python -m streamnb -A metrics_worker worker`` in a subprocess, and its ``/metrics``."""

    def __init__(self, folder: Path, env: dict[str, str], *args: str) -> None:
        self.name = f"w{uuid.uuid4().hex[:6]}"
        self.stderr_path = folder / f"{self.name}.stderr"
        self.env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{WORKERS}", **env}
        self.args = args
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""

    async def __aenter__(self) -> Worker:
        with open(self.stderr_path, "wb") as stderr:  # noqa: ASYNC230 - a local file, once
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "streamnb", "-A", "metrics_worker", "worker", "-l", "info", *self.args,
                stdout=asyncio.subprocess.DEVNULL, stderr=stderr, env=self.env,
            )
        await wait_until(lambda: "streamnb worker: running" in self.stderr() or self.exited(), 60,
                         what="the worker running")
        assert not self.exited(), self.stderr()
        found = re.search(r"web views at (http://\S+)", self.stderr())
        assert found, self.stderr()
        self.url = found.group(1)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def exited(self) -> bool:
        return self.proc is not None and self.proc.returncode is not None

    async def scrape(self) -> Samples:
        async with aiohttp.ClientSession() as session, session.get(self.url + "/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = await response.text()
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
        }


def total(samples: Samples, name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls)


def env_of(app_id: str, broker: str, **more: str) -> dict[str, str]:
    return {"WORKER_APP_ID": app_id, "BROKER_URL": broker, "WORKER_TOPIC": f"{app_id}-clicks", **more}


async def wait_for_samples(worker: Worker, check: object, what: str, timeout: float = 60) -> Samples:
    """Scrape until ``check(samples)`` holds; return those samples."""
    found: list[Samples] = []

    async def ok() -> bool:
        samples = await worker.scrape()
        found[:] = [samples]
        return bool(check(samples))  # type: ignore[operator]

    try:
        await wait_until(ok, timeout, 0.2, what=what)
    except TimeoutError:
        raise AssertionError(f"{what}; last scrape: {found[-1] if found else None}\n{worker.stderr()}") from None
    return found[0]


def settled(good: int, bad: int) -> object:
    def check(s: Samples) -> bool:
        return (total(s, "streamnb_events_total", agent="count") == good + bad
                and total(s, "streamnb_dead_letters_total", agent="count") == bad
                and bool([k for k in s if k[0] == "streamnb_consumer_lag"])
                and total(s, "streamnb_consumer_lag", agent="count") == 0)
    return check


def check_processed(s: Samples, app_id: str, good: int, bad: int) -> None:
    assert total(s, "streamnb_events_total", app=app_id, agent="count") == good + bad
    assert total(s, "streamnb_dead_letters_total", agent="count") == bad
    assert total(s, "streamnb_events_sent_total", topic=f"{app_id}-count-dlq") == bad
    assert total(s, "streamnb_table_keys", table="pages") == min(good, 5)
    commits = total(s, "streamnb_commit_seconds_count", agent="count")
    assert commits >= 1 and total(s, "streamnb_commit_seconds_bucket", agent="count", le="+Inf") == commits
    assert total(s, "streamnb_event_seconds_count", agent="count") >= 1
    assert total(s, "streamnb_assigned_partitions", agent="count") == 4
    assert total(s, "streamnb_restore_remaining_records", table="pages") == 0


@pytest.mark.parametrize("kind", ["memory", "local"])
async def test_a_worker_serves_its_metrics(kind: str, tmp_path: Path) -> None:
    app_id = f"mw-{uuid.uuid4().hex[:8]}"
    broker = f"memory://{app_id}" if kind == "memory" else f"local://{tmp_path / 'broker'}"
    guarantee = "exactly_once" if kind == "local" else "at_least_once"
    env = env_of(app_id, broker, WORKER_PRODUCE="30,2", WORKER_GUARANTEE=guarantee)
    async with Worker(tmp_path, env, "--web-port", "0") as worker:
        samples = await wait_for_samples(worker, settled(30, 2), "30 clicks and 2 dead letters processed")
    check_processed(samples, app_id, 30, 2)
    committed = total(samples, "streamnb_transactions_total", outcome="committed")
    assert (committed >= 1) if guarantee == "exactly_once" else committed == 0


async def test_several_workers_on_one_machine_serve_their_own(tmp_path: Path) -> None:
    ids = [f"mw-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    # No --web-port: the default port can be taken (the first worker, or anything else on the machine).
    async with Worker(tmp_path, env_of(ids[0], f"memory://{ids[0]}", WORKER_PRODUCE="7,0")) as a, \
            Worker(tmp_path, env_of(ids[1], f"memory://{ids[1]}", WORKER_PRODUCE="11,0")) as b:
        assert a.url != b.url
        sa = await wait_for_samples(a, settled(7, 0), "worker a processed its 7")
        sb = await wait_for_samples(b, settled(11, 0), "worker b processed its 11")
    assert {dict(ls)["app"] for (_n, ls) in sa if ls} == {ids[0]}
    assert {dict(ls)["app"] for (_n, ls) in sb if ls} == {ids[1]}


async def kafka_lag(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """LAG per partition as ``kafka-consumer-groups.sh --describe`` computes it: log end minus committed offset."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        tps = [TopicPartition(topic, p) for p in range(4)]
        ends = await consumer.end_offsets(tps)
        return {tp.partition: ends[tp] - committed[tp].offset for tp in tps if tp in committed}
    finally:
        await consumer.stop()
        await admin.close()


@pytest.mark.kafka
async def test_a_kafka_worker_reports_the_lag_kafka_reports(tmp_path: Path) -> None:
    bootstrap = kafka_bootstrap()
    app_id = f"mw-{uuid.uuid4().hex[:8]}"
    broker = f"kafka://{bootstrap}"
    good = 200
    producer = streamnb.App(f"{app_id}-producer", broker=broker, topic_partitions=4)
    clicks = producer.topic(f"{app_id}-clicks", key_type=str)
    async with producer:
        for i in range(good):
            await clicks.send(key=f"k{i}", value={"page": f"p{i % 5}"})
    env = env_of(app_id, broker, WORKER_GUARANTEE="exactly_once", WORKER_DELAY="0.01")
    async with Worker(tmp_path, env, "--web-port", "0") as worker:
        # A backlog: 200 clicks at 10 ms each. The lag shows while the worker works through it.
        await wait_for_samples(
            worker, lambda s: 0 < total(s, "streamnb_consumer_lag", agent="count") < good, "lag during the backlog",
        )
        samples = await wait_for_samples(worker, settled(good, 0), "the backlog processed", timeout=120)
        group = naming.consumer_group(app_id, "count")
        theirs = await kafka_lag(bootstrap, group, clicks.name)
        ours = {int(dict(ls)["partition"]): v for (n, ls), v in samples.items() if n == "streamnb_consumer_lag"}
    assert ours == theirs == {p: 0 for p in range(4)}
    check_processed(samples, app_id, good, 0)
    assert total(samples, "streamnb_transactions_total", outcome="committed") >= 1
    assert total(samples, "streamnb_transactions_total", outcome="fenced") == 0
