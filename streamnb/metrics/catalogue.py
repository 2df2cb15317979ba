"""The metrics streamnb exports: names, kinds, labels and meaning, in one table.

Every metric carries the label ``app`` (the app id) first; the other labels
are listed per metric. Names follow Prometheus' conventions: counters end in
``_total``, durations are in seconds. The Metrics page (docs/metrics.md) and the
registry (:mod:`streamnb.metrics.registry`) are both made from this table.

>>> SPECS["streamnb_consumer_lag"].labels
('app', 'agent', 'topic', 'partition')
>>> SPECS["streamnb_events_total"].kind
'counter'
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["COMMIT_BUCKETS", "EVENT_BUCKETS", "SPECS", "Spec", "base_name"]


class Spec(NamedTuple):
    """One metric."""

    name: str
    """Its full name (counters with ``_total``)."""
    kind: str
    """``counter``, ``gauge`` or ``histogram``."""
    labels: tuple[str, ...]
    """Its label names, ``app`` first."""
    help: str
    """What it counts or measures (the ``# HELP`` line)."""


_SPECS = [
    Spec("streamnb_events_total", "counter", ("app", "agent"),
         "Events an agent processed (dead-lettered ones included), counted per batch."),
    Spec("streamnb_events_sent_total", "counter", ("app", "topic"),
         "Messages written, by topic: sends, sinks, changelog and dead-letter records, once their commit landed."),
    Spec("streamnb_dead_letters_total", "counter", ("app", "agent"),
         "Events sent to the agent's dead-letter topic (counted once their commit landed)."),
    Spec("streamnb_agent_errors_total", "counter", ("app", "agent"),
         "Times the agent crashed (it restarts from its last commit)."),
    Spec("streamnb_late_events_total", "counter", ("app", "table", "partition"),
         "Events that came after every window they belong to had closed."),
    Spec("streamnb_late_windows_total", "counter", ("app", "table", "partition"),
         "Window updates refused because the window had closed (Kafka Streams' dropped records)."),
    Spec("streamnb_consumer_lag", "gauge", ("app", "agent", "topic", "partition"),
         "End offset minus committed offset of a partition this worker reads (as kafka-consumer-groups.sh)."),
    Spec("streamnb_stream_time_lag_seconds", "gauge", ("app", "table", "partition"),
         "Wall clock minus stream time (the newest event time) of a windowed table's partition."),
    Spec("streamnb_table_keys", "gauge", ("app", "table"),
         "Keys a table holds on this worker."),
    Spec("streamnb_restore_remaining_records", "gauge", ("app", "table", "partition"),
         "Changelog records a table partition still has to read before it is restored (0 once restored)."),
    Spec("streamnb_standby_lag_records", "gauge", ("app", "table", "partition"),
         "Changelog records a standby replica of a table partition is behind its changelog's end (Kafka)."),
    Spec("streamnb_commit_seconds", "histogram", ("app", "agent"),
         "Seconds from the start of a processing commit until it landed."),
    Spec("streamnb_event_seconds", "histogram", ("app", "agent"),
         "An agent's seconds per event, one sample per batch (the batch's time over its events)."),
    Spec("streamnb_rebalances_total", "counter", ("app", "agent"),
         "Partition assignments an agent's consumers received (one per rebalance)."),
    Spec("streamnb_assigned_partitions", "gauge", ("app", "agent"),
         "Partitions assigned to the agent's consumers on this worker."),
    Spec("streamnb_transactions_total", "counter", ("app", "agent", "outcome"),
         "Exactly-once: transactions by outcome (committed, aborted, fenced)."),
]

SPECS: dict[str, Spec] = {spec.name: spec for spec in _SPECS}
"""Every metric by its full name."""

COMMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Upper bounds (seconds) of ``streamnb_commit_seconds``."""
EVENT_BUCKETS = (1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 1e-2, 0.1, 1.0)
"""Upper bounds (seconds) of ``streamnb_event_seconds``."""


def base_name(name: str) -> str:
    """A counter's name as ``prometheus_client`` takes it (without ``_total``).

    >>> base_name("streamnb_events_total"), base_name("streamnb_consumer_lag")
    ('streamnb_events', 'streamnb_consumer_lag')
    """
    return name.removesuffix("_total")
