"""The deployed app's surface: web views (:mod:`~streamnb.worker.web`), the directory of
workers that routes table reads (:mod:`~streamnb.worker.directory`), and what an App
offers the worker command (:mod:`~streamnb.worker.surface`; the command is :mod:`streamnb.cli`).
"""

__all__: list[str] = []
