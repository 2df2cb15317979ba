"""A kernel restart with a large ``rocksdb://`` table: it comes back from its store, reading no changelog.

The first kernel writes a changelog of :data:`KEYS` keys (as a long-running
app leaves it) and starts the app once: the cold restore copies it into the
table's RocksDB stores. After "Kernel > Restart Kernel" the same cells find
every key while the restore reads 0 records of the changelog (what the log
says), where a ``memory://`` table reads all of them at every start.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from nbhelpers import notebook, text_of
from test_notebooks import _client, _kernel_env, _run_cells, _start, _stop

pytestmark = pytest.mark.notebook

KEYS = 1_000_000

DEFINE = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s", force=True)
import streamnb as faust
app = faust.App("restart-big", broker="local://broker", topic_partitions=4, store="rocksdb://")
users = app.Table("users", default=int)
"""

WRITE = """
from streamnb.topics import partition_for_key
from streamnb.transport.base import ProducerRecord
transport = await app.connect()
await users.changelog.declare()
for at in range(0, {keys}, 50_000):
    records = []
    for i in range(at, at + 50_000):
        key = b'"user%d"' % i
        records.append(ProducerRecord(users.changelog.name, partition_for_key(key, 4), key, b"%d" % i, 1.0, ()))
    await transport.send(records)
await app.stop()
"""

START = """
await app.start()
print("rows:", len(users), users["user123"])
await app.stop()
"""


def restored(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"table 'users' restored partitions 0-3 from \S+: (\d+) records", text)]


@pytest.mark.slow
def test_a_kernel_restart_reads_no_changelog_on_rocksdb(tmp_path: Path) -> None:
    define = DEFINE
    nb = notebook(define, WRITE.format(keys=KEYS), START, define, START)
    client = _client(nb, tmp_path, timeout=600)
    env = _kernel_env()

    async def run() -> None:
        await _start(client, env)
        try:
            await _run_cells(client, range(3))  # write the changelog, then a first (cold) start
            await _stop(client)  # what "Kernel > Restart Kernel" does: everything in memory is gone
            await _start(client, env)
            await _run_cells(client, range(3, 5))
        finally:
            await _stop(client)

    asyncio.run(run())
    first, again = text_of(nb.cells[2]), text_of(nb.cells[4])
    assert f"rows: {KEYS} 123" in first and f"rows: {KEYS} 123" in again
    assert restored(first) == [KEYS]  # the cold start reads the whole changelog (as memory:// does at every start)
    assert restored(again) == [0], again  # after the restart: the store, and no changelog
