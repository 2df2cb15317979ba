"""How each kind of table keeps its rows and closes its windows.

:mod:`~streamnb.tables.state.base` (the ``TableState`` protocol, plain tables),
:mod:`~streamnb.tables.state.event_time` (stream time per partition),
:mod:`~streamnb.tables.state.fixed` (tumbling and hopping windows),
:mod:`~streamnb.tables.state.sliding` (with :mod:`~streamnb.tables.state.sliding_rules`),
:mod:`~streamnb.tables.state.sessions`,
:mod:`~streamnb.tables.state.history` (every change, for time travel),
:mod:`~streamnb.tables.state.store` (a key's windows),
:mod:`~streamnb.tables.state.stored` (plain rows on ``rocksdb://``),
:mod:`~streamnb.tables.state.stored_windows`, :mod:`~streamnb.tables.state.stored_sessions`,
:mod:`~streamnb.tables.state.stored_sliding` (with :mod:`~streamnb.tables.state.sliding_cache`)
and :mod:`~streamnb.tables.state.window_cache` (tumbling, hopping, session and sliding windows on
``rocksdb://``) and
:mod:`~streamnb.tables.state.windowing` (which state a window kind gets).
Windows close in each state's ``before_commit``.
"""

__all__: list[str] = []
