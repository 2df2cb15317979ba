"""One app's metrics: a ``prometheus_client`` registry of its own, fed by a :class:`~streamnb.metrics.sink.Monitor`.

:class:`Metrics` is the monitor an app reports to and the registry its
``/metrics`` endpoint, ``app.metrics()`` and the dashboard read. Each app
has its own :class:`prometheus_client.CollectorRegistry` (never the global
default one), so several apps in one kernel or process keep their numbers
apart. Counters and histograms are updated by the parts that know them
(:meth:`processed` once per batch, :meth:`committed` once per commit, ...);
gauges and the tables' own counters are read when the registry is collected,
from the readers added with :meth:`add_reader`.

Example::

    >>> metrics = Metrics("shop")
    >>> metrics.processed("count", 3, 0.003)
    >>> metrics.add_reader(lambda: [("streamnb_table_keys", ("totals",), 7.0)])
    >>> [(name, labels["agent"], value) for name, labels, value in metrics.samples()
    ...  if name == "streamnb_events_total"]
    [('streamnb_events_total', 'count', 3.0)]
    >>> b'streamnb_table_keys{app="shop",table="totals"} 7.0' in metrics.exposition()
    True
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..errors import ConfigurationError
from .catalogue import COMMIT_BUCKETS, EVENT_BUCKETS, SPECS, base_name
from .sink import OUTCOMES

__all__ = ["PULLED", "Metrics", "Reader", "Sample"]

logger = logging.getLogger("streamnb")

Sample = tuple[str, tuple[str, ...], float]
"""A value a reader reports: the metric's full name, its label values after ``app``, the value."""
Reader = Callable[[], Iterable[Sample]]
"""Returns the current samples of pulled metrics (called on every collection)."""

PULLED = (
    "streamnb_late_events_total", "streamnb_late_windows_total", "streamnb_consumer_lag",
    "streamnb_stream_time_lag_seconds", "streamnb_table_keys", "streamnb_restore_remaining_records",
    "streamnb_standby_lag_records", "streamnb_assigned_partitions",
)
"""Metrics read from the app's parts when collected (the rest are pushed through the monitor)."""


class _Pulled:
    """The collector of the pulled metrics (see :meth:`Metrics.add_reader`)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
        for name in PULLED:
            spec = SPECS[name]
            kind = CounterMetricFamily if spec.kind == "counter" else GaugeMetricFamily
            families[name] = kind(base_name(name), spec.help, labels=spec.labels)
        app = self.metrics.app
        for reader in list(self.metrics.readers):
            try:
                samples = list(reader())
            except Exception:  # a reader must never break a scrape
                logger.exception("a metrics reader of app %r failed", app)
                continue
            for name, labels, value in samples:
                families[name].add_metric((app, *labels), value)
        yield from families.values()


class Metrics:
    """The metrics of one app: its registry, and the :class:`~streamnb.metrics.sink.Monitor` feeding it."""

    enabled = True

    def __init__(self, app: str) -> None:
        self.app = app
        self.registry = CollectorRegistry(auto_describe=True)
        """This app's registry (``prometheus_client.generate_latest(metrics.registry)``)."""
        self.readers: list[Reader] = []
        """What :meth:`add_reader` added."""
        reg = self.registry
        self._events = self._counter("streamnb_events_total", reg)
        self._sent = self._counter("streamnb_events_sent_total", reg)
        self._dead = self._counter("streamnb_dead_letters_total", reg)
        self._errors = self._counter("streamnb_agent_errors_total", reg)
        self._rebalances = self._counter("streamnb_rebalances_total", reg)
        self._transactions = self._counter("streamnb_transactions_total", reg)
        spec = SPECS["streamnb_commit_seconds"]
        self._commit = Histogram(spec.name, spec.help, spec.labels, registry=reg, buckets=COMMIT_BUCKETS)
        spec = SPECS["streamnb_event_seconds"]
        self._event = Histogram(spec.name, spec.help, spec.labels, registry=reg, buckets=EVENT_BUCKETS)
        reg.register(_Pulled(self))
        self._children: dict[tuple[int, str], Any] = {}  # (instrument id, label) -> child: labels() once

    @staticmethod
    def _counter(name: str, registry: CollectorRegistry) -> Counter:
        spec = SPECS[name]
        return Counter(base_name(name), spec.help, spec.labels, registry=registry)

    def _child(self, instrument: Counter | Histogram, label: str) -> Any:
        key = (id(instrument), label)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = instrument.labels(self.app, label)
        return child

    def __repr__(self) -> str:
        return f"<Metrics app={self.app!r}>"

    # -- the monitor ----------------------------------------------------------------------------

    def processed(self, agent: str, events: int, seconds: float) -> None:
        """``agent`` finished ``events`` in ``seconds`` (one sample of ``streamnb_event_seconds``)."""
        if events <= 0:
            return
        self._child(self._events, agent).inc(events)
        if seconds >= 0:
            self._child(self._event, agent).observe(seconds / events)

    def committed(self, agent: str, seconds: float, sent: Mapping[str, int]) -> None:
        """A commit of ``agent`` landed after ``seconds``, having written ``sent`` records by topic."""
        self._child(self._commit, agent).observe(seconds)
        for topic, count in sent.items():
            self._child(self._sent, topic).inc(count)

    def sent(self, topic: str, count: int) -> None:
        """``count`` messages were written to ``topic`` outside a commit."""
        self._child(self._sent, topic).inc(count)

    def dead_lettered(self, agent: str, count: int) -> None:
        """``count`` events of ``agent`` were dead-lettered."""
        if count:
            self._child(self._dead, agent).inc(count)

    def crashed(self, agent: str) -> None:
        """``agent`` crashed."""
        self._child(self._errors, agent).inc()

    def rebalanced(self, agent: str) -> None:
        """A consumer of ``agent`` was assigned partitions."""
        self._child(self._rebalances, agent).inc()

    def transactions(self, agent: str, outcome: str, count: int) -> None:
        """``count`` exactly-once transactions of ``agent`` ended with ``outcome``."""
        if outcome not in OUTCOMES:
            raise ConfigurationError(f"transaction outcome must be one of {OUTCOMES}, got {outcome!r}")
        if count:
            self._transactions.labels(self.app, agent, outcome).inc(count)

    # -- reading --------------------------------------------------------------------------------

    def add_reader(self, reader: Reader) -> None:
        """Read pulled metrics (:data:`PULLED`) from ``reader`` at every collection."""
        self.readers.append(reader)

    def samples(self) -> list[tuple[str, dict[str, str], float]]:
        """Every sample now: ``(name, labels, value)``, histograms as ``_bucket``/``_count``/``_sum``.

        ``_created`` timestamps (a Prometheus client's own bookkeeping) are left out.
        """
        out: list[tuple[str, dict[str, str], float]] = []
        for family in self.registry.collect():
            for sample in family.samples:
                if not sample.name.endswith("_created"):
                    out.append((sample.name, dict(sample.labels), float(sample.value)))
        return out

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format (``prometheus_client.generate_latest``)."""
        return generate_latest(self.registry)
