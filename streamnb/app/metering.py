"""An App's metrics: its registry, what it reads from agents and tables, its history and ``/metrics``.

A mixin of :class:`~streamnb.app.App`. ``app.monitor`` is the app's
:class:`~streamnb.metrics.Metrics` (``App(metrics=False)``: a monitor that
records nothing); sources, commits, agents and topics report to it. While the
app runs, a background task samples every second what needs the broker
(consumer lag, restore progress) and keeps the last minutes of every sample
(``app.metrics_history()``). The worker's web server answers
``GET /metrics`` in Prometheus' text format; ``App(metrics_port=N)`` serves
it on its own port too (in a notebook as well).

>>> from streamnb import App
>>> app = App("demo-metering", broker="memory://")
>>> frame = app.metrics()
>>> frame.columns[0], frame.columns[-1]
('metric', 'value')
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from ..metrics import NO_MONITOR, SPECS, History, Metrics, Monitor, Sample
from ..transport.base import TP, Transport

if TYPE_CHECKING:
    import pandas as pd

    from ..processing.agents import Agent
    from ..tables.table import Table
    from ..worker.web import Web

__all__ = ["CONTENT_TYPE", "Metering"]

logger = logging.getLogger("streamnb")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The Prometheus text format's content type (``prometheus_client.exposition.CONTENT_TYPE_LATEST``)."""

LABELS = {label for spec in SPECS.values() for label in spec.labels} | {"le"}
"""Every label column of ``app.metrics()`` (``le``: a histogram bucket's upper bound)."""

SAMPLE_EVERY = 1.0
"""Seconds between two samples of lag, restore progress and history."""


class Metering:
    """The metrics side of an App (a mixin of :class:`~streamnb.app.App`)."""

    id: str
    state: str
    transport: Transport | None
    agents: dict[str, Agent]
    tables: dict[str, Table[Any, Any]]
    web: Web
    conf: Any

    def owned_partitions(self) -> set[int]:
        """Partition numbers this worker holds (the App's)."""
        raise NotImplementedError

    def spawn(self, coro: Any, what: str) -> asyncio.Task[Any] | None:
        """Run ``coro`` in the background (the App's)."""
        raise NotImplementedError

    def _init_metrics(self, metrics: bool, metrics_port: int | None, history_seconds: int = 300) -> None:
        if not isinstance(metrics, bool):
            raise ConfigurationError(f"metrics must be True or False, got {metrics!r}")
        if metrics_port is not None and (not isinstance(metrics_port, int) or not 0 <= metrics_port < 65536):
            raise ConfigurationError(f"metrics_port must be a port number (0: any free one), got {metrics_port!r}")
        if metrics_port is not None and not metrics:
            raise ConfigurationError("metrics_port serves the metrics, but metrics=False turns them off: drop one")
        self.metrics_port = metrics_port
        """The port of the app's own ``/metrics`` server (``App(metrics_port=N)``), or None."""
        self.metrics_url: str | None = None
        """``http://HOST:PORT/metrics`` while that server runs."""
        self.monitor: Monitor = Metrics(self.id) if metrics else NO_MONITOR
        """Where the app's parts report their numbers (:mod:`streamnb.metrics`)."""
        self._lag: dict[tuple[str, str, int], int] = {}
        self._restoring: dict[tuple[str, int], int] = {}
        self._history = History(history_seconds)
        self._metrics_runner: Any = None
        if isinstance(self.monitor, Metrics):
            self.monitor.add_reader(self._read_metrics)
            self.web.add_endpoint("/metrics", self._exposition)

    # -- reading ----------------------------------------------------------------------------------

    def _exposition(self) -> tuple[bytes, str]:
        monitor = self.monitor
        assert isinstance(monitor, Metrics)
        return monitor.exposition(), CONTENT_TYPE

    def _read_metrics(self) -> list[Sample]:
        """The pulled metrics now: gauges of agents and tables, the tables' late counters, the sampled lag."""
        out: list[Sample] = []
        for agent in list(self.agents.values()):
            out.append(("streamnb_assigned_partitions", (agent.name,), float(len(agent.assignment()))))
        for (agent_name, topic, partition), lag in list(self._lag.items()):
            out.append(("streamnb_consumer_lag", (agent_name, topic, str(partition)), float(lag)))
        now = time.time()
        for table in list(self.tables.values()):
            out.append(("streamnb_table_keys", (table.name,), float(table.estimated_len())))
            for p, standby in sorted(table.standby_progress.items()):
                out.append(("streamnb_standby_lag_records", (table.name, str(p)), float(standby.behind)))
            window = table.window
            if window is not None:
                for p, n in window.late_events_by_partition().items():
                    out.append(("streamnb_late_events_total", (table.name, str(p)), float(n)))
                for p, n in dict(window.state.late_windows).items():
                    out.append(("streamnb_late_windows_total", (table.name, str(p)), float(n)))
                for p in sorted(table.recovered_partitions):
                    stream_time = window.stream_time(p)
                    if stream_time is not None:
                        out.append(("streamnb_stream_time_lag_seconds", (table.name, str(p)), now - stream_time))
        for (table_name, partition), remaining in list(self._restoring.items()):
            out.append(("streamnb_restore_remaining_records", (table_name, str(partition)), float(remaining)))
        return out

    def metrics(self) -> pd.DataFrame:
        """The app's metrics now: one row per sample, columns ``metric``, its labels, ``value``.

        Histograms show as Prometheus' ``_bucket``, ``_count`` and ``_sum`` rows.

        >>> from streamnb import App
        >>> app = App("demo-metrics", broker="memory://")
        >>> app.metrics().query("metric == 'streamnb_table_keys'").empty
        True
        """
        import pandas as pd

        monitor = self.monitor
        samples = monitor.samples() if isinstance(monitor, Metrics) else []
        return _frame(pd, [(name, labels, value) for name, labels, value in samples], None)

    def metrics_history(self, seconds: float | None = None) -> pd.DataFrame:
        """The samples of the last minutes (one snapshot a second while the app runs): ``time`` first.

        ``seconds``: only the newest ones (default: all kept, 5 minutes).

        >>> from streamnb import App
        >>> App("demo-history", broker="memory://").metrics_history().empty
        True
        """
        import pandas as pd

        since = None if seconds is None else time.time() - seconds
        rows = self._history.rows(since)
        return _frame(pd, [(name, labels, value) for _t, name, labels, value in rows], [r[0] for r in rows])

    # -- sampling ---------------------------------------------------------------------------------

    def _start_sampling(self) -> None:
        """The app started: sample every second."""
        if isinstance(self.monitor, Metrics):
            self.spawn(self._sample_forever(), f"sample the metrics of app {self.id!r}")

    async def _stop_metrics(self) -> None:
        """The app stops: the metrics server goes (the sampler is a background task, cancelled with the rest)."""
        runner, self._metrics_runner = self._metrics_runner, None
        self.metrics_url = None
        if runner is not None:
            await runner.cleanup()
        self._lag.clear()
        self._restoring.clear()

    async def _sample_forever(self) -> None:
        monitor = self.monitor
        assert isinstance(monitor, Metrics)
        while self.state in ("starting", "running"):
            try:
                await self.sample_metrics()
            except Exception as exc:  # noqa: BLE001 - the broker may be away for a moment: try next second
                logger.debug("app %r: metrics sample failed: %r", self.id, exc)
            await asyncio.sleep(SAMPLE_EVERY)

    async def sample_metrics(self) -> None:
        """Read consumer lag and restore progress from the broker now, and keep a snapshot in the history.

        The app does it every second while it runs; call it to get fresh numbers at once.

        >>> await app.sample_metrics()  # doctest: +SKIP
        """
        transport = self.transport
        if transport is not None:
            self._lag = await _lag_of(transport, list(self.agents.values()))
            owned = self.owned_partitions() if transport.distributed else None  # (embedded: every partition)
            self._restoring = await _restoring(transport, list(self.tables.values()), owned)
        monitor = self.monitor
        if isinstance(monitor, Metrics):
            self._history.record(time.time(), monitor.samples())

    async def _serve_metrics(self) -> None:
        """``App(metrics_port=N)``: ``GET /metrics`` on ``web_bind:N``, the app's own server."""
        port = self.metrics_port
        if port is None or self._metrics_runner is not None:
            return
        try:
            from aiohttp import web as aioweb
        except ImportError as exc:
            raise ConfigurationError(
                "metrics_port needs aiohttp: pip install 'streamnb[web]' (or drop metrics_port)"
            ) from exc

        async def handle(_request: aioweb.Request) -> aioweb.Response:
            body, content_type = self._exposition()
            return aioweb.Response(body=body, headers={"Content-Type": content_type})

        application = aioweb.Application()
        application.router.add_get("/metrics", handle)
        runner = aioweb.AppRunner(application, access_log=None)
        await runner.setup()
        bind = self.conf.web_bind
        try:
            await aioweb.TCPSite(runner, bind, port).start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigurationError(
                f"app {self.id!r} cannot serve its metrics on {bind}:{port} ({exc.strerror or exc}): "
                "choose another metrics_port (0: any free one)"
            ) from exc
        self._metrics_runner = runner
        self.metrics_url = f"http://{bind}:{int(runner.addresses[0][1])}/metrics"
        logger.info("app %r serves its metrics at %s", self.id, self.metrics_url)


def _frame(pd: Any, samples: list[tuple[str, dict[str, str], float]], times: list[float] | None) -> pd.DataFrame:
    """A DataFrame of samples: (``time``), ``metric``, one column per label (sorted), ``value``."""
    labels = sorted({name for _n, ls, _v in samples for name in ls} | LABELS)
    data: dict[str, list[Any]] = {}
    if times is not None:
        data["time"] = pd.to_datetime(times, unit="s", utc=True)
    data["metric"] = pd.Series([name for name, _ls, _v in samples], dtype=object)
    for label in labels:
        data[label] = pd.Series([ls.get(label) for _n, ls, _v in samples], dtype=object)
    data["value"] = pd.Series([value for _n, _ls, value in samples], dtype=float)
    return pd.DataFrame(data)


async def _lag_of(transport: Transport, agents: list[Agent]) -> dict[tuple[str, str, int], int]:
    """End offset minus committed offset of every partition each agent reads on this worker."""
    out: dict[tuple[str, str, int], int] = {}
    for agent in agents:
        tps = sorted(agent.assignment())
        if not tps:
            continue
        ends = await transport.end_offsets(tps)
        committed: dict[TP, int] = {}
        for group in agent.consumer_groups():
            for tp, offset in (await transport.committed(group, tps)).items():
                committed[tp] = max(offset, committed.get(tp, -1))
        missing = [tp for tp in tps if tp not in committed]
        begins = await transport.beginning_offsets(missing) if missing else {}
        for tp in tps:
            start = committed.get(tp, begins.get(tp, 0))
            out[(agent.name, tp.topic, tp.partition)] = max(ends[tp] - start, 0)
    return out


async def _restoring(
    transport: Transport, tables: list[Table[Any, Any]], owned: set[int] | None
) -> dict[tuple[str, int], int]:
    """Per table partition this worker holds (``None``: all): changelog records left to read (0 once restored).

    A partition being restored counts what its restore has left
    (``table.restore_progress``); one not started yet, its changelog's whole
    length (from its beginning to its end offset).
    """
    out: dict[tuple[str, int], int] = {}
    for table in tables:
        recovered = table.recovered_partitions
        held = range(table.changelog.partition_count) if owned is None else owned
        waiting = sorted(p for p in held if p not in recovered)
        for p in recovered:
            out[(table.name, p)] = 0
        progress = table.restore_progress
        for p in [p for p in waiting if p in progress]:
            out[(table.name, p)] = progress[p].remaining
        waiting = [p for p in waiting if p not in progress]
        if waiting:
            tps = [TP(table.changelog.name, p) for p in waiting]
            with contextlib.suppress(Exception):
                ends = await transport.end_offsets(tps)
                begins = await transport.beginning_offsets(tps)
                for tp in tps:
                    out[(table.name, tp.partition)] = max(ends[tp] - begins[tp], 0)
    return out
