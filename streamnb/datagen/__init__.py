"""Data to play with: seeded generators of page views, orders with payments, and sensor readings.

A generator describes a stream: its rate, its share of out-of-order events
(and how far out of order), its share of late events (and how late). The
same seed gives the same events. :func:`produce` writes them to topics, in
real time on the app's clock (a replay's virtual clock too) or as fast as
possible; :func:`sample` shows the first ones as a DataFrame. Your own data:
:func:`read_csv`, then ``await topic.send_dataframe(df, key=..., timestamp=...)``.

Example (in a notebook)::

    from streamnb import datagen
    views = datagen.page_views(rate=20, out_of_order=0.1, max_delay=3, late=0.02, lateness=60, seed=42)
    datagen.sample(views, 5)                                   # what it makes
    await datagen.produce(views, page_views_topic, n=300)      # 20 a second on the app's clock
    await datagen.produce(views, page_views_topic, n=10_000, realtime=False)   # as fast as possible
    shop = datagen.orders(rate=5, paid=0.8, seed=1)            # orders, and payments that follow them
    await datagen.produce(shop, {"orders": orders, "payments": payments}, seconds=60)

Event times are ``start`` (default: the app's clock when :func:`produce`
starts) plus the event's offset; an out-of-order event's time is moved back
by up to ``max_delay`` seconds, a late one's by ``lateness`` seconds (more
than a window's grace, so windows that closed count it as late).

>>> " ".join(event.value.page for event in page_views(seed=7).take(3))
'/checkout / /products'
>>> sample(sensor_readings(sensors=2, seed=1), 2).columns.tolist()
['stream', 'key', 'timestamp', 'sensor', 'temperature']

:mod:`streamnb.datagen.demo` is the demo pipeline over such data (``streamnb-demo``,
``bash scripts/demo.sh``).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import ConfigurationError
from ..models.record import Record
from ..topics import Topic

if TYPE_CHECKING:
    from pathlib import Path

    import pandas as pd

__all__ = [
    "PAGES", "Event", "Generator", "Order", "PageView", "Payment", "Reading", "orders", "page_views", "produce",
    "read_csv", "sample", "sensor_readings",
]

PAGES = {"/": 40, "/products": 25, "/products/42": 15, "/cart": 10, "/checkout": 6, "/about": 4}
"""The pages of :func:`page_views` and how often each is viewed."""


class PageView(Record):
    """A page view: ``id``, ``user``, ``page``."""

    id: str
    user: str
    page: str


class Order(Record):
    """An order: ``id``, ``user``, ``amount`` (in ``currency``)."""

    id: str
    user: str
    amount: float
    currency: str


class Payment(Record):
    """The payment of an order: ``id``, ``order_id``, ``amount``."""

    id: str
    order_id: str
    amount: float


class Reading(Record):
    """A sensor reading: ``sensor``, ``temperature`` (°C)."""

    sensor: str
    temperature: float


class Event(NamedTuple):
    """One generated message: which stream, key, value, event time and when it is sent (seconds from the start)."""

    stream: str
    key: str
    value: Any
    timestamp: float
    at: float


@dataclass(frozen=True)
class Generator:
    """A seeded stream description; :meth:`events` yields its :class:`Event` s in sending order."""

    name: str
    make: Callable[[random.Random, int], list[tuple[str, str, Any, float]]]
    """``(rng, i) -> [(stream, key, value, delay)]``: the ``i``-th step's events (``delay`` after the step)."""
    rate: float = 10.0
    out_of_order: float = 0.0
    max_delay: float = 5.0
    late: float = 0.0
    lateness: float = 60.0
    seed: int = 42

    def events(self) -> Iterator[Event]:
        """Every event, in the order they are sent (endless: stop with ``n=`` or ``seconds=``)."""
        rng = random.Random(self.seed)
        pending: list[tuple[float, int, Event]] = []
        step, order = 0, 0
        while True:
            now = step / self.rate
            for stream, key, value, delay in self.make(rng, step):
                at = now + delay
                heapq.heappush(pending, (at, order, Event(stream, key, value, self._event_time(rng, at), at)))
                order += 1
            step += 1
            while pending and pending[0][0] <= step / self.rate:
                yield heapq.heappop(pending)[2]

    def _event_time(self, rng: random.Random, at: float) -> float:
        draw = rng.random()
        if draw < self.late:
            return at - self.lateness
        if draw < self.late + self.out_of_order:
            return at - rng.uniform(0.0, self.max_delay)
        return at

    def take(self, n: int) -> list[Event]:
        """The first ``n`` events."""
        out: list[Event] = []
        for event in self.events():
            if len(out) == n:
                break
            out.append(event)
        return out


def _check(rate: float, out_of_order: float, late: float, max_delay: float, lateness: float) -> None:
    if rate <= 0:
        raise ConfigurationError(f"rate must be > 0 events per second, got {rate!r}")
    for name, share in (("out_of_order", out_of_order), ("late", late)):
        if not 0.0 <= share <= 1.0:
            raise ConfigurationError(f"{name} is a share of the events, between 0 and 1; got {share!r}")
    if out_of_order + late > 1.0:
        raise ConfigurationError(f"out_of_order + late is at most 1 (every event); got {out_of_order + late!r}")
    if max_delay < 0 or lateness < 0:
        raise ConfigurationError(f"max_delay and lateness are seconds >= 0; got {max_delay!r}, {lateness!r}")


def page_views(
    *, rate: float = 20.0, users: int = 20, pages: Mapping[str, int] | None = None, out_of_order: float = 0.0,
    max_delay: float = 5.0, late: float = 0.0, lateness: float = 60.0, seed: int = 42,
) -> Generator:
    """Page views (:class:`PageView`, keyed by user) on the ``pages`` (default :data:`PAGES`, by weight)."""
    _check(rate, out_of_order, late, max_delay, lateness)
    weighted = dict(pages or PAGES)
    names, weights = list(weighted), list(weighted.values())

    def make(rng: random.Random, i: int) -> list[tuple[str, str, Any, float]]:
        user = f"user{rng.randrange(users)}"
        return [("page_views", user, PageView(id=str(i), user=user, page=rng.choices(names, weights)[0]), 0.0)]

    return Generator("page_views", make, rate, out_of_order, max_delay, late, lateness, seed)


def orders(
    *, rate: float = 5.0, users: int = 20, paid: float = 0.9, pay_within: float = 30.0, out_of_order: float = 0.0,
    max_delay: float = 5.0, late: float = 0.0, lateness: float = 60.0, seed: int = 42,
) -> Generator:
    """Orders (:class:`Order`, keyed by user) and, for a share ``paid`` of them, a :class:`Payment`
    (keyed by order id) up to ``pay_within`` seconds later: streams ``orders`` and ``payments``."""
    _check(rate, out_of_order, late, max_delay, lateness)

    def make(rng: random.Random, i: int) -> list[tuple[str, str, Any, float]]:
        user = f"user{rng.randrange(users)}"
        amount = round(rng.lognormvariate(3.0, 0.8), 2)
        order = Order(id=f"o{i}", user=user, amount=amount, currency="EUR")
        out: list[tuple[str, str, Any, float]] = [("orders", user, order, 0.0)]
        if rng.random() < paid:
            payment = Payment(id=f"p{i}", order_id=order.id, amount=amount)
            out.append(("payments", order.id, payment, rng.uniform(1.0, pay_within)))
        return out

    return Generator("orders", make, rate, out_of_order, max_delay, late, lateness, seed)


def sensor_readings(
    *, rate: float = 10.0, sensors: int = 5, out_of_order: float = 0.0, max_delay: float = 5.0, late: float = 0.0,
    lateness: float = 60.0, seed: int = 42,
) -> Generator:
    """Temperature readings (:class:`Reading`, keyed by sensor), each sensor drifting around its own mean."""
    _check(rate, out_of_order, late, max_delay, lateness)
    base = random.Random(seed).sample(range(15, 30), k=min(sensors, 15)) + [20] * max(0, sensors - 15)

    def make(rng: random.Random, i: int) -> list[tuple[str, str, Any, float]]:
        index = i % sensors
        name = f"sensor{index}"
        return [("readings", name, Reading(sensor=name, temperature=round(rng.gauss(base[index], 1.5), 2)), 0.0)]

    return Generator("readings", make, rate, out_of_order, max_delay, late, lateness, seed)


async def produce(
    generator: Generator, topics: Topic[Any, Any] | Mapping[str, Topic[Any, Any]], *, n: int | None = None,
    seconds: float | None = None, realtime: bool = True, start: float | None = None,
) -> dict[str, int]:
    """Send ``n`` events (or ``seconds`` of them) to ``topics``; how many went to each stream.

    ``topics``: one topic, or ``{stream: topic}`` (``orders`` makes ``orders``
    and ``payments``). ``realtime``: each event is sent at its time on the
    app's clock (the wall clock, or a replay's virtual clock); else all at
    once. Event times are ``start`` (default: the app's clock now) plus the
    event's offset.
    """
    if (n is None) == (seconds is None):
        raise ConfigurationError("produce() needs how much: n=<events> or seconds=<of event time>, one of them")
    targets = _targets(generator, topics)
    app = next(iter(targets.values())).app
    origin = app.now() if start is None else float(start)
    sent = dict.fromkeys(targets, 0)
    for count, event in enumerate(generator.events()):
        if (n is not None and count >= n) or (seconds is not None and event.at >= seconds):
            break
        topic = targets.get(event.stream)
        if topic is None:
            continue
        if realtime:
            await app.clock.sleep_until(origin + event.at)
        value = event.value
        declared = topic.value_type
        if isinstance(declared, type) and issubclass(declared, Record) and not isinstance(value, declared):
            value = value.asdict()  # your own Record class with these fields: sent as a mapping, checked
        await topic.send(key=event.key, value=value, timestamp=origin + event.timestamp)
        sent[event.stream] += 1
    return sent


def _targets(generator: Generator, topics: Topic[Any, Any] | Mapping[str, Topic[Any, Any]]) -> dict[str, Any]:
    streams = {"page_views": ["page_views"], "orders": ["orders", "payments"], "readings": ["readings"]}
    names = streams.get(generator.name, [generator.name])
    if isinstance(topics, Topic):
        if len(names) > 1:
            raise ConfigurationError(
                f"{generator.name} makes {len(names)} streams ({', '.join(names)}): pass {{name: topic}} for them"
            )
        return {names[0]: topics}
    unknown = sorted(set(topics) - set(names))
    if unknown:
        raise ConfigurationError(f"{generator.name} makes the streams {', '.join(names)}, not {', '.join(unknown)}")
    return dict(topics)


def sample(generator: Generator, n: int = 10) -> pd.DataFrame:
    """The first ``n`` events as a DataFrame: ``stream, key, timestamp`` (seconds from the start) and the fields."""
    import pandas as pd

    rows = [
        {"stream": e.stream, "key": e.key, "timestamp": round(e.timestamp, 3), **e.value.asdict()}
        for e in generator.take(n)
    ]
    return pd.DataFrame(rows)


def read_csv(path: str | Path, *, timestamp: str | None = None, **options: Any) -> pd.DataFrame:
    """A CSV file as a DataFrame (``pandas.read_csv(path, **options)``), ``timestamp`` parsed as UTC times.

    Send it with ``await topic.send_dataframe(df, key="user", timestamp="time")``.
    """
    import pandas as pd

    df = pd.read_csv(path, **options)
    if timestamp is not None:
        if timestamp not in df.columns:
            known = ", ".join(map(str, df.columns))
            raise ConfigurationError(f"no column {timestamp!r} in {path}; columns are {known}")
        column = df[timestamp]
        numeric = pd.api.types.is_numeric_dtype(column)
        df[timestamp] = pd.to_datetime(column, unit="s", utc=True) if numeric else pd.to_datetime(column, utc=True)
    return df
