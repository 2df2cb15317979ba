"""Forks and recordings killed at random moments: a fork is all or nothing, a recording resumes exactly.

A worker subprocess (``tests/workers/copy_worker.py``) prints a line per
step; the test kills it with SIGKILL after a random one (never after a fixed
sleep), checks what the folder holds, and does it again.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from streamnb.errors import BrokerError, ConfigurationError
from streamnb.playback.fork import fork_of
from streamnb.playback.recording import recordings, source_offset
from streamnb.transport import open_transport
from streamnb.transport.base import TP, ProducerRecord, TopicSpec

WORKER = Path(__file__).parents[1] / "workers" / "copy_worker.py"
ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
T0 = 1_700_000_000.0
PAGES = ["/", "/cart", "/about", "/help", "/search"]


def start(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(WORKER), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=ENV)


def run_until(proc: subprocess.Popen[bytes], progress_lines: int) -> bool:
    """Read the worker's lines; kill it (SIGKILL) at its ``progress_lines``-th progress line. False if it finished."""
    assert proc.stdout is not None
    seen = 0
    while True:
        line = proc.stdout.readline()
        if not line:
            proc.wait(timeout=60)
            assert proc.returncode == 0, proc.stderr.read().decode()[-3000:] if proc.stderr else ""
            return False
        if line.startswith(b"progress"):
            seen += 1
            if seen == progress_lines:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
                return True
        if line.strip() == b"done":
            proc.wait(timeout=60)
            return False


def finish(proc: subprocess.Popen[bytes]) -> None:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0 and b"done" in out, err.decode()[-3000:]


async def contents(url: str) -> dict[str, Any]:
    """Everything a folder holds: each topic's messages, and the fork marker of app ``forked``."""
    transport = open_transport(url, client_id="check")
    await transport.start()
    try:
        out: dict[str, Any] = {}
        for name in await transport.list_topics():
            count = await transport.partition_count(name) or 0
            out[name] = []
            for p in range(count):
                msgs = await transport.read(TP(name, p), 0, 10**9, 10**9)
                out[name].append([(m.offset, m.key, m.value, m.timestamp, m.headers) for m in msgs])
        info = await fork_of(transport, "forked")
        if info is not None:
            out["committed"] = {
                group: await transport.committed(group, [TP(t, p) for t, p, _o in offsets])
                for group, offsets in info["groups"].items()
            }
        return out
    finally:
        await transport.stop()


async def write_views(folder: Path, n: int) -> None:
    transport = open_transport(f"local://{folder}", client_id="writer")
    await transport.start()
    try:
        await transport.create_topic(TopicSpec("views", 4))
        records = [
            ProducerRecord("views", i % 4, f"u{i % 7}".encode(), json.dumps({"page": PAGES[i * 3 % 5]}).encode(),
                           T0 + i * 0.01)
            for i in range(n)
        ]
        for at in range(0, n, 10_000):
            await transport.send(records[at : at + 10_000])
    finally:
        await transport.stop()


@pytest.mark.slow
async def test_a_fork_killed_at_any_moment_leaves_nothing_and_forking_again_works(tmp_path: Path) -> None:
    rng = random.Random(23)
    source = tmp_path / "slice"
    await write_views(source, 60_000)
    at = str(T0 + 300.0)
    finish(start("fork", str(source), f"local://{tmp_path / 'reference'}", at))
    expected = await contents(f"local://{tmp_path / 'reference'}")
    assert sum(len(p) for p in expected["views"]) == 60_000 and expected["committed"]
    target = tmp_path / "fork"
    killed = 0
    for _ in range(5):
        if not run_until(start("fork", str(source), f"local://{target}", at), rng.randint(1, 8)):
            break
        killed += 1
        leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".fork.forking-")]
        if target.exists():  # killed after the rename: the fork is whole
            assert await contents(f"local://{target}") == expected
            break
        # Killed before: nothing at the target; the temporary folder says what it is if opened.
        for leftover in leftovers:
            if (leftover / "INCOMPLETE").exists():
                with pytest.raises(BrokerError, match="incomplete copy.*Delete it"):
                    await contents(f"local://{leftover}")
    assert killed >= 1
    if not target.exists():
        finish(start("fork", str(source), f"local://{target}", at))
    assert await contents(f"local://{target}") == expected
    assert not [p for p in tmp_path.iterdir() if ".forking-" in p.name]  # the next fork cleaned up after the dead ones
    # Forking into a folder that holds something says what to do.
    with pytest.raises(ConfigurationError, match=r"not empty.*rm -r"):
        from streamnb.playback.fork import _Folder

        _Folder(f"local://{target}")


async def test_a_fork_that_fails_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import streamnb as faust
    from streamnb.playback import fork as forking

    source = tmp_path / "slice"
    await write_views(source, 2_000)
    app = faust.App("forked", broker=f"local://{source}", clock="virtual", topic_partitions=4)
    views = app.topic("views", partitions=4)
    counts = app.Table("counts", default=int)

    @app.agent(views)
    async def count(stream: Any) -> None:
        async for view in stream.group_by(lambda v: v["page"], name="page"):
            counts[view["page"]] += 1

    async with app:
        await app.clock.idle(timeout=60)

        async def broken(*args: Any) -> dict[str, str]:
            raise RuntimeError("disk on fire")

        monkeypatch.setattr(forking, "_write_tables", broken)
        with pytest.raises(RuntimeError, match="disk on fire"):
            await app.fork(at=T0 + 5, broker=f"local://{tmp_path / 'fork'}")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["slice"]
        assert app.broker == f"local://{source}"
        memory = f"memory://fork-{os.getpid()}"
        with pytest.raises(RuntimeError, match="disk on fire"):
            await app.fork(at=T0 + 5, broker=memory)
        monkeypatch.undo()
        await app.fork(at=T0 + 5, broker=memory)  # nothing was left there
        assert app.broker == memory
        assert sum(counts.data.values()) == sum(1 for i in range(2_000) if T0 + i * 0.01 <= T0 + 5)


@pytest.mark.kafka
@pytest.mark.slow
async def test_a_recording_killed_at_any_moment_is_consistent_and_resumes_exactly(tmp_path: Path) -> None:
    from aiokafka import AIOKafkaProducer
    from conftest import kafka_bootstrap
    from kafkahelpers import create_topic, unique

    bootstrap = kafka_bootstrap()
    topic = unique("recorded")
    await create_topic(bootstrap, topic, 3)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=256 * 1024)
    await producer.start()
    per_partition = 60_000
    try:
        for n in range(0, per_partition, 5_000):
            futures = [
                await producer.send(topic, json.dumps({"p": p, "n": i, "pad": "x" * 100}).encode(), partition=p,
                                    key=b"k%d" % (i % 97), timestamp_ms=int((T0 + i) * 1000))
                for i in range(n, n + 5_000) for p in range(3)
            ]
            await asyncio.gather(*futures)
    finally:
        await producer.stop()
    url = f"local://{tmp_path / 'slice'}"
    rng = random.Random(5)
    kills = 0
    for _ in range(4):
        if not run_until(start("record", bootstrap, topic, url), rng.randint(1, 4)):
            break
        kills += 1
        await check_recording(url, topic, complete=False)
    assert kills >= 1
    finish(start("record", bootstrap, topic, url))
    await check_recording(url, topic, complete=True, per_partition=per_partition)


async def check_recording(url: str, topic: str, *, complete: bool, per_partition: int = 0) -> None:
    """Every message in the folder is accounted for by the recordings, at its source offset, once."""
    transport = open_transport(url, client_id="check")
    await transport.start()
    try:
        recs = [r for r in await recordings(transport) if r.topic == topic]
        for p in range(3):
            msgs = await transport.read(TP(topic, p), 0, 10**9, 10**9)
            numbers = [json.loads(m.value or b"")["n"] for m in msgs]
            assert numbers == list(range(len(numbers)))  # in order, none twice, none skipped
            mine = [r for r in recs if r.partition == p]
            assert sum(r.messages for r in mine) == len(msgs)
            covered = sorted((local, count) for r in mine for local, _source, count in r.runs)
            assert sum(count for _local, count in covered) == len(msgs)
            for m in msgs[:: max(1, len(msgs) // 50)]:
                assert await source_offset(transport, topic, p, m.offset) == json.loads(m.value or b"")["n"]
            if complete:
                assert len(msgs) == per_partition
    finally:
        await transport.stop()
