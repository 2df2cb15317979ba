"""Metrics: one registry per app, fed by the parts that know the numbers.

- :mod:`~streamnb.metrics.catalogue`: every metric's name, kind, labels and meaning;
- :mod:`~streamnb.metrics.sink`: the :class:`Monitor` protocol the parts report to (and its no-op);
- :mod:`~streamnb.metrics.registry`: :class:`Metrics`, a ``prometheus_client`` registry of the app's own;
- :mod:`~streamnb.metrics.history`: the last minutes of samples, one a second.

The app owns one :class:`Metrics` (``app.monitor``); its worker serves it at
``GET /metrics``, ``app.metrics()`` shows it as a DataFrame.

>>> metrics = Metrics("shop")
>>> metrics.enabled
True
"""

from __future__ import annotations

from .catalogue import SPECS, Spec
from .history import History
from .registry import PULLED, Metrics, Reader, Sample
from .sink import NO_MONITOR, OUTCOMES, Monitor, NullMonitor

__all__ = [
    "NO_MONITOR", "OUTCOMES", "PULLED", "SPECS", "History", "Metrics", "Monitor", "NullMonitor", "Reader",
    "Sample", "Spec",
]
