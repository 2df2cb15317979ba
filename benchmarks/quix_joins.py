"""Quix Streams' side of benchmarks/joins.py, run by an interpreter that has ``quixstreams`` installed.

    PYTHON benchmarks/quix_joins.py stream-stream|stream-table BOOTSTRAP LEFT_TOPIC RIGHT_TOPIC EXPECTED_INPUTS

Reads the two topics benchmarks/joins.py wrote from the beginning with
``join_interval(backward_ms=60000, forward_ms=60000, grace_ms=61000)``
(stream–stream, inner) or ``join_asof(how="left")`` (stream–table), counts the
results, and prints one JSON line: ``{"seconds": .., "results": ..}``. Timed
from ``Application.run`` until the last input record was processed (Quix
stops after 3 s without input; those 3 s are not counted).
"""

from __future__ import annotations

import json
import sys
import time
import uuid

from quixstreams import Application  # type: ignore[import-not-found]

IDLE = 3.0


def main() -> None:
    join, bootstrap, left_name, right_name, expected = sys.argv[1:6]
    app = Application(broker_address=bootstrap, consumer_group=f"quix-bench-{uuid.uuid4().hex[:6]}",
                      auto_offset_reset="earliest", state_dir=f"/tmp/quix-bench-{uuid.uuid4().hex[:6]}",
                      use_changelog_topics=True)
    left = app.dataframe(app.topic(left_name, key_deserializer="str", value_deserializer="json"))
    right = app.dataframe(app.topic(right_name, key_deserializer="str", value_deserializer="json"))
    seen = {"results": 0, "last": 0.0, "last_cpu": 0.0}

    def counted(value: object) -> None:
        seen["results"] += 1
        seen["last"] = time.perf_counter()
        seen["last_cpu"] = time.process_time()

    if join == "stream-stream":
        joined = left.join_interval(right, how="inner", on_merge=lambda a, b: (a, b), grace_ms=61_000,
                                    backward_ms=60_000, forward_ms=60_000)
    else:
        joined = left.join_asof(right, how="left", on_merge=lambda a, b: (a, b))
    joined.update(counted)
    started, started_cpu = time.perf_counter(), time.process_time()
    app.run(timeout=IDLE, collect=False)
    end = seen["last"] or time.perf_counter() - IDLE
    end_cpu = seen["last_cpu"] or time.process_time()
    print(json.dumps({"seconds": end - started, "cpu_seconds": end_cpu - started_cpu, "results": seen["results"],
                      "inputs": int(expected)}))


if __name__ == "__main__":
    main()
