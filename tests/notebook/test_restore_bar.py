"""``await app.start()`` in a real kernel shows one restore progress bar for a long restore, none for a short one.

The threshold (``streamnb.app.restorebar.BAR_AFTER``, 1 s) is set to 0 for
the long restore, so the bar appears whenever a restore is seen going on,
and left at 1 s for a restore of ten records: conditions, not timings.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from nbhelpers import notebook, text_of
from test_notebooks import _client, _kernel_env, _run_cells, _start, _stop

pytestmark = pytest.mark.notebook

KEYS = 300_000
WIDGET = "application/vnd.jupyter.widget-view+json"

DEFINE = """
import streamnb as faust
import streamnb.app.restorebar as restorebar
from streamnb.topics import partition_for_key
from streamnb.transport.base import ProducerRecord

async def make(name, keys):
    app = faust.App(name, broker="local://broker", topic_partitions=4)
    table = app.Table("users", default=int)
    transport = await app.connect()
    await table.changelog.declare()
    for at in range(0, keys, 50_000):
        records = []
        for i in range(at, min(at + 50_000, keys)):
            key = b'"user%d"' % i
            records.append(ProducerRecord(table.changelog.name, partition_for_key(key, 4), key, b"1", 1.0, ()))
        await transport.send(records)
    await app.stop()
    return faust.App(name, broker="local://broker", topic_partitions=4), name

big, _ = await make("big", {keys})
big_users = big.Table("users", default=int)
small, _ = await make("small", 10)
small_users = small.Table("users", default=int)
"""

LONG = """
restorebar.BAR_AFTER = 0.0  # any restore seen going on shows the bar
await big.start()
print("rows:", len(big_users))
await big.stop()
"""

SHORT = """
restorebar.BAR_AFTER = 1.0  # the default: ten records never take a second
await small.start()
print("rows:", len(small_users))
await small.stop()
"""


def widgets(cell: dict) -> int:
    return sum(1 for out in cell.get("outputs", []) if out.get("output_type") == "display_data" and WIDGET in out.data)


@pytest.mark.slow
def test_app_start_shows_one_bar_for_a_long_restore_and_none_for_a_short_one(tmp_path: Path) -> None:
    nb = notebook(DEFINE.format(keys=KEYS), LONG, SHORT)
    client = _client(nb, tmp_path, timeout=600)

    async def run() -> None:
        await _start(client, _kernel_env())
        try:
            await _run_cells(client, range(3))
            client.set_widgets_metadata()  # (the widgets' last state, as a saved notebook keeps it)
        finally:
            await _stop(client)

    asyncio.run(run())
    assert f"rows: {KEYS}" in text_of(nb.cells[1]) and "rows: 10" in text_of(nb.cells[2])
    assert widgets(nb.cells[1]) == 1, nb.cells[1].outputs  # one bar, for all four partitions
    assert widgets(nb.cells[2]) == 0, nb.cells[2].outputs
    state = json.dumps(nb.metadata.get("widgets", {}))
    assert f"restoring tables: {KEYS:,} records in" in state  # the bar ended with the whole restore
