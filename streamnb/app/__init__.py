"""The App and its parts: lifecycle (:mod:`~streamnb.app.base`), definitions of topics,
agents, tables and timers (:mod:`~streamnb.app.definitions`), partition membership and
rebalances (:mod:`~streamnb.app.membership`), Faust's settings (:mod:`~streamnb.app.settings`)
and signals (:mod:`~streamnb.app.signals`).

>>> from streamnb.app import App
>>> App("demo-app-package", broker="memory://").id
'demo-app-package'
"""

from .base import App

__all__ = ["App"]
