"""Benchmark: the kernel time of one live-view refresh, and of a freeze's static SVG.

    python benchmarks/live_views.py [--keys 10000] [--series 50] [--rounds 20]

A live table of ``--keys`` keys (every value changed before each refresh,
so each refresh re-renders), a live chart of a windowed table with
``--series`` keys over 60 one-minute windows (a tenth of the rows changed
before each refresh, as a busy pipeline does), and the static SVG a chart
draws when it freezes or rests (``vl-convert``). Each figure is the median over
``--rounds`` refreshes of the time spent in the kernel (the widget's
``refresh()``: reading the table, rendering, setting traits), measured with
``time.perf_counter``, and of the CPU time of the whole process
(``time.process_time``: vl-convert works in a thread of its own, holding the
GIL), which other processes on a shared machine disturb less. No front end is
attached. Targets (issue 19): a refresh under 50 ms, a frozen chart's SVG
under 200 ms.

The SVG's cost, taken apart: vl-convert's first call in a process starts
its JavaScript engine (once per kernel: a chart's first display pays it, as
its output carries the SVG from the start, so no freeze does); compiling the
Vega-Lite spec to Vega; drawing. What grows is the drawing, with the rows:
the static spec leaves out pan and zoom, tooltips, unused columns and, above
``POINTS_LIMIT`` rows, the point per window (``streamnb/notebook/_chart_static.py``).
The "as before" row draws the live spec with every row and column, as the
SVG was made before.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

from streamnb.notebook import live_table
from streamnb.notebook._chart_spec import with_event_time
from streamnb.notebook._chart_static import POINTS_LIMIT
from streamnb.notebook.chart import live_chart
from streamnb.testing import test_app

TARGET_REFRESH_MS = 50.0
TARGET_SVG_MS = 200.0


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def timed(fn: Callable[[], Any], rounds: int) -> tuple[float, float]:
    """Median wall and CPU milliseconds of ``fn()``."""
    wall, cpu = [], []
    for _ in range(rounds):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return median_ms(wall), median_ms(cpu)


async def main(keys: int, series: int, rounds: int) -> None:
    import vl_convert

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

    tiny = {"mark": "point", "data": {"values": [{"a": 1}]}, "encoding": {"x": {"field": "a"}}}
    w0, c0 = time.perf_counter(), time.process_time()
    vl_convert.vegalite_to_svg(tiny)
    startup = ((time.perf_counter() - w0) * 1000, (time.process_time() - c0) * 1000)

    table_times, chart_times, svg_wall, svg_cpu = [], [], [], []
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
        w0, c0 = time.perf_counter(), time.process_time()
        svg = chart.to_svg()
        svg_wall.append(time.perf_counter() - w0)
        svg_cpu.append(time.process_time() - c0)
        assert svg.startswith("<svg")

    static = chart.static_spec()
    before = with_event_time(chart.spec, chart.event_time)
    before["data"] = {"values": chart.rows()}
    parts = [
        ("  static spec", timed(chart.static_spec, rounds)),
        ("  compile to Vega", timed(lambda: vl_convert.vegalite_to_vega(static), rounds)),
        ("  compile + draw", timed(lambda: vl_convert.vegalite_to_svg(static, allowed_base_urls=[]), rounds)),
        ("  as before (live spec)", timed(lambda: vl_convert.vegalite_to_svg(before, allowed_base_urls=[]), rounds)),
    ]
    size = f"{series} series x 60 windows"
    print(f"{'what':<26} {'size':<26} {'median ms':>10} {'cpu ms':>8} {'target ms':>10} {'ratio':>7}")
    rows: list[tuple[str, str, float, float | None, float]] = [
        ("live table refresh", f"{keys:,} keys", median_ms(table_times), None, TARGET_REFRESH_MS),
        ("live chart refresh", size, median_ms(chart_times), None, TARGET_REFRESH_MS),
        ("frozen chart SVG", size, median_ms(svg_wall), median_ms(svg_cpu), TARGET_SVG_MS),
    ]
    for what, label, ms, cpu, target in rows:
        cpu_text = f"{cpu:>8.1f}" if cpu is not None else f"{'':>8}"
        print(f"{what:<26} {label:<26} {ms:>10.1f} {cpu_text} {target:>10.0f} {ms / target:>7.2f}")
    print(f"the frozen chart SVG, taken apart ({len(chart.rows()):,} rows; points above {POINTS_LIMIT}):")
    print(f"  {'vl-convert first call':<24} {'once per process':<26} {startup[0]:>10.1f} {startup[1]:>8.1f}")
    for what, (ms, cpu) in parts:
        print(f"{what:<26} {size:<26} {ms:>10.1f} {cpu:>8.1f}")
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
