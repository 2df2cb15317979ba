"""Helpers for the App-level Kafka tests: plain aiokafka clients and worker processes.

Everything here talks to the broker the way any other Kafka client would
(plain ``aiokafka``, JSON by hand), so what the tests read back is what any
consumer of those topics sees.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Self

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

REPO = Path(__file__).resolve().parents[1]
WORKER = REPO / "tests" / "workers" / "kafka_worker.py"

# The broker's group.min.session.timeout.ms is 6000 by default: the fastest a
# group can notice a worker killed with SIGKILL.
FAST_GROUP: dict[str, Any] = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 500}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def describe(bootstrap: str, name: str) -> tuple[int, bool]:
    """(partition count, every partition has a leader) of an existing topic; (0, False) if missing."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        for topic in await admin.describe_topics([name]):
            if topic["topic"] == name and topic["error_code"] in (0, 5):  # 5: no leader yet
                parts = topic["partitions"]
                return len(parts), topic["error_code"] == 0 and all(p["leader"] >= 0 for p in parts)
        return 0, False
    finally:
        await admin.close()


async def partition_count(bootstrap: str, name: str) -> int:
    return (await describe(bootstrap, name))[0]


async def create_topic(bootstrap: str, name: str, partitions: int, configs: dict[str, str] | None = None) -> None:
    """Create a topic with a plain admin client and wait until it has leaders."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1, topic_configs=configs or {})])
    finally:
        await admin.close()
    deadline = time.monotonic() + 15
    while (await describe(bootstrap, name)) != (partitions, True):
        if time.monotonic() > deadline:
            raise TimeoutError(f"topic {name} has no leaders after 15 s")
        await asyncio.sleep(0.05)


async def end_offsets(bootstrap: str, topic: str, beginning: bool = False) -> dict[int, int]:
    """The end (or ``beginning``: log start) offset of each partition of ``topic`` ({} while it does not exist)."""
    tps = [TopicPartition(topic, p) for p in range(await partition_count(bootstrap, topic))]
    if not tps:
        return {}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        found = await (consumer.beginning_offsets(tps) if beginning else consumer.end_offsets(tps))
        return {tp.partition: offset for tp, offset in found.items()}
    finally:
        await consumer.stop()


async def topic_config(bootstrap: str, name: str, overrides: bool = False) -> dict[str, str]:
    """The topic's configuration as the broker describes it (describe_configs);
    ``overrides``: only what was set on the topic itself (not the broker's defaults)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + 10
        while True:
            responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
            for response in responses:
                for code, _msg, _type, topic, entries in response.resources:
                    if code == 0 and topic == name:
                        # DescribeConfigs v1+: entry[3] is the config source, 1 = set on the topic
                        return {entry[0]: entry[1] for entry in entries if not overrides or entry[3] == 1}
            if time.monotonic() > deadline:
                raise AssertionError(f"the broker does not describe topic {name}")
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


class Feeder:
    """Calls ``send_batch(first, count)`` in the background (count messages numbered from first), until stopped."""

    def __init__(
        self, send_batch: Callable[[int, int], Awaitable[None]], batch: int = 100, pause: float = 0.03
    ) -> None:
        self.send_batch, self.batch, self.pause = send_batch, batch, pause
        self.sent = 0
        self._stop = asyncio.Event()
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while not self._stop.is_set():
            await self.send_batch(self.sent, self.batch)
            self.sent += self.batch
            await asyncio.sleep(self.pause)

    async def stop_after(self, batches: int) -> int:
        """Stop once ``batches`` more batches were sent; return how many messages were sent in all."""
        target = self.sent + batches * self.batch
        while self.sent < target and not self.task.done():
            await asyncio.sleep(0.02)
        self._stop.set()
        await self.task
        return self.sent


class Producer:
    """A plain aiokafka producer sending JSON values (keys as UTF-8 strings)."""

    def __init__(self, bootstrap: str) -> None:
        self.producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", linger_ms=5,
            value_serializer=lambda v: json.dumps(v).encode(),
            key_serializer=lambda k: None if k is None else k.encode(),
        )

    async def __aenter__(self) -> Self:
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()

    async def send(self, topic: str, items: Sequence[tuple[str | None, Any]], timestamp_ms: int | None = None) -> None:
        futures = [await self.producer.send(topic, value=v, key=k, timestamp_ms=timestamp_ms) for k, v in items]
        await asyncio.gather(*futures)


async def read_topic(
    bootstrap: str, topic: str, timeout: float = 30.0, isolation_level: str = "read_uncommitted"
) -> list[Any]:
    """Every record of every partition, up to the end offsets as of now (plain consumer).

    ``isolation_level="read_committed"`` reads what a consumer of an
    exactly-once app's outputs sees: records of aborted (or still open)
    transactions are left out.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
        isolation_level=isolation_level,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(await partition_count(bootstrap, topic))]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic} to its end within {timeout} s")
            for records in (await consumer.getmany(timeout_ms=200, max_records=50_000)).values():
                out.extend(r for r in records if r.offset < ends[TopicPartition(r.topic, r.partition)])
        return out
    finally:
        await consumer.stop()


def hashable(obj: Any) -> Any:
    return tuple(hashable(x) for x in obj) if isinstance(obj, list) else obj


async def changelog_state(bootstrap: str, topic: str, isolation_level: str = "read_uncommitted") -> dict[Any, Any]:
    """A table as any client sees it: the latest JSON value per JSON key of its changelog."""
    state: dict[Any, Any] = {}
    for record in await read_topic(bootstrap, topic, isolation_level=isolation_level):
        key = hashable(json.loads(record.key))
        if record.value is None:
            state.pop(key, None)
        else:
            state[key] = json.loads(record.value)
    return state


class Worker:
    """``tests/workers/kafka_worker.py`` (or another worker ``script``) in a subprocess; its JSON reports are kept."""

    def __init__(self, name: str, config: dict[str, Any], folder: Path, script: Path = WORKER) -> None:
        self.name = name
        self.config = config
        self.script = script
        self.stderr_path = folder / f"{name}.stderr"
        self.proc: asyncio.subprocess.Process | None = None
        self.state: dict[str, Any] = {}
        self.reports = 0
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> Worker:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with open(self.stderr_path, "ab") as stderr:  # noqa: ASYNC230 - a local file, once
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, str(self.script), json.dumps(self.config),
                stdout=asyncio.subprocess.PIPE, stderr=stderr, env=env,
            )
        self.state = {}
        self._reader = asyncio.ensure_future(self._read(self.proc))
        return self

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            try:
                state = json.loads(line)
            except ValueError:
                continue
            self.state = state
            self.reports += 1

    @property
    def assigned(self) -> set[int]:
        return set(self.state.get("assigned", ()))

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.state.get("counts", {}))

    def stderr(self, tail: int = 4000) -> str:
        text = self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""
        return text[-tail:]

    def describe(self, tail: int = 4000) -> str:
        summary = {k: v for k, v in self.state.items() if k != "counts"}
        return f"{self.name}: {summary}\n--- stderr (tail) ---\n{self.stderr(tail)}"

    async def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        await wait_for(predicate, timeout, what, [self])

    async def kill(self) -> None:
        """SIGKILL: no commit, no leaving the group."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()
        if self._reader is not None:
            await self._reader
        assert self.proc.returncode == -signal.SIGKILL

    async def stop(self) -> None:
        """SIGTERM (a clean stop), then SIGKILL if it lingers; safe to call twice."""
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        if self._reader is not None:
            await self._reader

    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None


async def wait_for(predicate: Callable[[], bool], timeout: float, what: str, workers: list[Worker]) -> None:
    """Poll ``predicate``; on timeout fail with every worker's last report and stderr."""
    deadline = time.monotonic() + timeout
    while not predicate():
        for worker in workers:
            if worker.proc is not None and worker.proc.returncode not in (None, -signal.SIGKILL):
                raise AssertionError(f"worker exited ({worker.proc.returncode}) while waiting for {what}\n"
                                     + worker.describe())
        if time.monotonic() > deadline:
            for worker in workers:  # kafka_worker.py prints its tasks' stacks on SIGUSR1
                if worker.alive() and worker.proc is not None:
                    worker.proc.send_signal(signal.SIGUSR1)
            await asyncio.sleep(1.0)
            raise AssertionError(
                f"not within {timeout} s: {what}\n" + "\n".join(w.describe(tail=20_000) for w in workers)
            )
        await asyncio.sleep(0.1)
