"""Playback: record a slice of Kafka, replay it under a virtual clock, travel back in time.

:mod:`~streamnb.playback.recording` (``streamnb.record``), :mod:`~streamnb.playback.clock`
(the virtual clock), :mod:`~streamnb.playback.rounds` (deterministic rounds),
:mod:`~streamnb.playback.replay` (``streamnb.replay``, resets, forks) and
:mod:`~streamnb.playback.playback` (what an App adds: ``now()``, ``fork()``, ``player()``).
"""

__all__: list[str] = []
