"""Benchmark: the kernel time of one live-view refresh, and of a freeze's static SVG.

    python benchmarks/live_views.py [--keys 10000] [--series 50] [--rounds 20]

A live table of ``--keys`` keys (every value changed before each refresh,
so each refresh re-renders), a live chart of a windowed table with
``--series`` keys over 60 one-minute windows (a tenth of the rows changed
before each refresh, as a busy pipeline does), and the static SVG a chart
draws when it freezes (``vl-convert``). Each figure is the median over
``--rounds`` refreshes of the time spent in the kernel (the widget's
``refresh()``: reading the table, rendering, setting traits), measured with
``time.perf_counter``; no front end is attached. Targets (issue 19): a
refresh under 50 ms, a frozen chart's SVG under 200 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from streamnb.notebook import live_table
from streamnb.notebook.chart import live_chart
from streamnb.testing import test_app

TARGET_REFRESH_MS = 50.0
TARGET_SVG_MS = 200.0


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


async def main(keys: int, series: int, rounds: int) -> None:
    app = test_app("bench-live")
    counts = app.Table("counts", default=int)
    per_minute = app.Table("per_minute", default=int).tumbling(60, expires=7200)
    for i in range(keys):
        counts.data[f"/page/{i}"] = i  # state as recovery writes it (no agent needed to measure rendering)
    windowed_rows: list[tuple[str, tuple[float, float]]] = [
        (f"s{k}", (1_700_000_000.0 + 60 * w, 1_700_000_060.0 + 60 * w)) for k in range(series) for w in range(60)
    ]
    for n, (key, window) in enumerate(windowed_rows):
        per_minute.state.load((key, window), n, 0)
    view = live_table(counts, sort_by="value", interval=3600)
    chart = live_chart(per_minute, interval=3600)
    table_times, chart_times, svg_times = [], [], []
    for r in range(rounds):
        for key in list(counts.data)[:: max(1, keys // 1000)]:
            counts.data[key] += 1
        t0 = time.perf_counter()
        view.refresh()
        table_times.append(time.perf_counter() - t0)
        for key, window in windowed_rows[r % 10 :: 10]:
            per_minute.state.load((key, window), r + 10_000, 0)
        t0 = time.perf_counter()
        chart.refresh()
        chart_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        svg = chart.to_svg()
        svg_times.append(time.perf_counter() - t0)
        assert svg.startswith("<svg")
    rows = [
        ("live table refresh", f"{keys:,} keys", median_ms(table_times), TARGET_REFRESH_MS),
        ("live chart refresh", f"{series} series x 60 windows", median_ms(chart_times), TARGET_REFRESH_MS),
        ("frozen chart SVG", f"{series} series x 60 windows", median_ms(svg_times), TARGET_SVG_MS),
    ]
    print(f"{'what':<20} {'size':<26} {'median ms':>10} {'target ms':>10} {'ratio':>7}")
    for what, size, ms, target in rows:
        print(f"{what:<20} {size:<26} {ms:>10.1f} {target:>10.0f} {ms / target:>7.2f}")
    view.close()
    chart.close()


def run(argv: Any = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--series", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args(argv)
    asyncio.run(main(args.keys, args.series, args.rounds))


if __name__ == "__main__":
    run()
