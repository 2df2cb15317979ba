"""The demo pipeline: windowed page-view counts on the embedded broker (``streamnb-demo``).

Run it with ``python -m streamnb.datagen.demo`` (or ``streamnb-demo``). It sends
simulated page views to a ``local://`` broker, counts them per page in
one-minute tumbling windows and in hopping windows through ``group_by``,
and prints the tables.

The same code is the quick-start notebook's, so this doubles as its
headless check.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import time
from typing import Any

import streamnb as faust
from streamnb.testing import settle


class PageView(faust.Record):
    """One page view."""

    id: str
    user: str
    page: str


__all__ = ["PageView", "build", "main", "simulate"]

PAGES = ["/", "/products", "/products/42", "/cart", "/checkout", "/about"]


def build(broker: str) -> tuple[faust.App, faust.Topic[Any, Any], faust.WindowedTable, faust.WindowedTable]:
    """The pipeline: a topic, two windowed tables and a counting agent."""
    app = faust.App("pageviews-demo", broker=broker, topic_partitions=4)
    page_views = app.topic("page_views", value_type=PageView)
    per_minute = app.Table("views_per_minute", default=int).tumbling(60, expires=3600)
    rolling = app.Table("views_rolling", default=int).hopping(60, 20, expires=3600)

    @app.agent(page_views)
    async def count_views(views: faust.Stream[PageView]) -> None:
        async for view in views.group_by(PageView.page):
            per_minute[view.page] += 1
            rolling[view.page] += 1

    return app, page_views, per_minute, rolling


async def simulate(topic: faust.Topic[Any, Any], n: int, start: float, seed: int = 1) -> None:
    """Send ``n`` page views spread over five minutes of event time from ``start``."""
    rng = random.Random(seed)
    weights = [40, 25, 15, 10, 6, 4]
    for i in range(n):
        page = rng.choices(PAGES, weights)[0]
        user = f"user{rng.randrange(50)}"
        await topic.send(key=user, value=PageView(id=str(i), user=user, page=page), timestamp=start + 300.0 * i / n)


async def main_async(broker: str, n: int) -> None:
    app, page_views, per_minute, rolling = build(broker)
    start = 60.0 * (time.time() // 60) - 300.0
    async with app:
        t0 = time.perf_counter()
        await simulate(page_views, n, start)
        await settle(app, timeout=120)
        elapsed = time.perf_counter() - t0
        print(per_minute.as_ansitable(title="page views per minute (tumbling 60 s)"))
        print()
        top = rolling.as_dataframe().sort_values("value", ascending=False).head(8)
        print("busiest 60 s windows (hopping 60 s every 20 s):")
        print(top.to_string(index=False))
        total = int(per_minute.as_dataframe()["value"].sum())
        print(f"\n{total} page views counted in {elapsed:.2f} s on {broker}")


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", default="local://.streamnb-demo", help="broker URL (default: %(default)s)")
    parser.add_argument("-n", type=int, default=5000, help="page views to simulate (default: %(default)s)")
    parser.add_argument("--keep", action="store_true", help="keep the state of earlier runs (counts add up)")
    args = parser.parse_args()
    if args.broker == "local://.streamnb-demo" and not args.keep:
        shutil.rmtree(".streamnb-demo", ignore_errors=True)
    asyncio.run(main_async(args.broker, args.n))


if __name__ == "__main__":
    main()
