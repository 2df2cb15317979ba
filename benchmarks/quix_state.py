"""Quix Streams' side of ``benchmarks/state.py restart --quix PYTHON``, run by an interpreter with ``quixstreams``.

    PYTHON benchmarks/quix_state.py fill BOOTSTRAP INPUT_TOPIC KEYS GROUP STATE_DIR
    PYTHON benchmarks/quix_state.py restore BOOTSTRAP INPUT_TOPIC KEYS GROUP STATE_DIR

``fill`` builds Quix Streams' state of ``KEYS`` keys the way an application
does: a stateful step keeps each input record's value under its key (one
record per key in ``INPUT_TOPIC``), so Quix writes its own changelog topic;
it stops once every record was processed (and committed).

``restore`` starts the same application (same consumer group) on an empty
``STATE_DIR``: Quix restores the store from its changelog before it
processes anything. Timed from ``Application.run`` until its recovery ends
(``RecoveryManager.do_recovery`` returns), wall clock and CPU time of this
process; prints one JSON line ``{"seconds", "cpu", "records",
"recovery_seconds", "partitions"}`` (``records``: the changelog records
there were to read, by the changelog's high watermarks;
``recovery_seconds``: the recovery alone, without joining the group;
``partitions``: the changelog partitions Quix reported restored;
``peak_mb``: this process's peak RSS).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from typing import Any

from quixstreams import Application  # type: ignore[import-not-found]
from quixstreams.state.recovery import RecoveryManager, RecoveryPartition  # type: ignore[import-not-found]

IDLE = 3.0
STORE_KEY = "value"


def keep(value: Any, state: Any) -> None:
    state.set(STORE_KEY, value)


def build(bootstrap: str, topic: str, group: str, state_dir: str) -> tuple[Any, Any]:
    app = Application(broker_address=bootstrap, consumer_group=group, auto_offset_reset="earliest",
                      state_dir=state_dir, use_changelog_topics=True)
    sdf = app.dataframe(app.topic(topic, key_deserializer="str", value_deserializer="json"))
    sdf.update(keep, stateful=True)
    return app, sdf


def fill(bootstrap: str, topic: str, keys: int, group: str, state_dir: str) -> None:
    app, _sdf = build(bootstrap, topic, group, state_dir)
    app.run(count=keys, timeout=600)
    print(json.dumps({"filled": keys}))


def restore(bootstrap: str, topic: str, group: str, state_dir: str) -> None:
    timing: dict[str, float] = {}
    records = {"n": 0, "done": 0}
    original, completed = RecoveryManager.do_recovery, RecoveryPartition.complete_recovery

    def timed(self: Any) -> None:
        records["n"] = max(records["n"], sum(rp.changelog_highwater for parts in self.partitions.values()
                                             for rp in parts.values()))
        began = time.perf_counter()
        original(self)
        timing["recovery"] = timing.get("recovery", 0.0) + time.perf_counter() - began
        timing["seconds"] = time.perf_counter() - timing["started"]
        timing["cpu"] = time.process_time() - timing["started_cpu"]

    def counted(self: Any) -> None:
        records["done"] += 1
        completed(self)

    RecoveryManager.do_recovery, RecoveryPartition.complete_recovery = timed, counted
    app, _sdf = build(bootstrap, topic, group, state_dir)
    timing["started"], timing["started_cpu"] = time.perf_counter(), time.process_time()
    app.run(timeout=IDLE)
    print(json.dumps({"seconds": timing.get("seconds"), "cpu": timing.get("cpu"), "records": records["n"],
                      "recovery_seconds": timing.get("recovery"), "partitions": records["done"],
                      "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    what, bootstrap, topic, keys, group, state_dir = sys.argv[1:7]
    if what == "fill":
        fill(bootstrap, topic, int(keys), group, state_dir)
    else:
        restore(bootstrap, topic, group, state_dir)


if __name__ == "__main__":
    main()
