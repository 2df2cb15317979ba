"""The admin side of ``kafka://``: topics (never auto-created) and committed offsets.

:class:`TopicAdmin` wraps the transport's started ``AIOKafkaAdminClient``.
It describes topics with a metadata request that asks the broker not to
auto-create them, creates topics (running a notebook cell twice is no error:
the existing partition count wins), waits until a new topic's partitions
have leaders, remembers the partition counts it has seen, and reads a
group's committed offsets (retrying while the group coordinator loads).

Example (on a running loop, ``client`` a started ``AIOKafkaAdminClient``)::

    admin = TopicAdmin(client, request_timeout=15.0, brokers=1)
    count = await admin.create_topic(TopicSpec("orders", 8))
    have, missing = await admin.existing([TP("orders", 0), TP("orders", 9)])
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterable, Mapping

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic, RecordsToDelete
from aiokafka.errors import (
    CoordinatorLoadInProgressError,
    CoordinatorNotAvailableError,
    LeaderNotAvailableError,
    NoError,
    NotCoordinatorError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
    for_code,
)

from ...errors import BrokerError
from ..base import TP, TopicSpec
from .clients import broker_errors, log, metadata_without_auto_create

__all__ = ["TopicAdmin"]

_RETRIABLE_COORDINATOR = (CoordinatorLoadInProgressError, CoordinatorNotAvailableError, NotCoordinatorError)
_OK = NoError.errno
_TOPIC_ALREADY_EXISTS = TopicAlreadyExistsError.errno
_UNKNOWN_TOPIC = UnknownTopicOrPartitionError.errno
_LEADER_NOT_AVAILABLE = LeaderNotAvailableError.errno


class TopicAdmin:
    """A started ``AIOKafkaAdminClient``, for topics and committed offsets.

    Made by ``KafkaTransport.start``; ``brokers`` (the cluster's size) caps
    the replication factor of the topics it creates at 3.
    """

    def __init__(self, client: AIOKafkaAdminClient, request_timeout: float, brokers: int) -> None:
        self.client = client
        self.request_timeout = request_timeout
        self.brokers = brokers
        self.partitions: dict[str, int] = {}
        """Partition counts of the topics known to exist."""

    async def metadata(self, topics: list[str]) -> dict[str, int | None]:
        """Partition counts of ``topics`` (``None`` when missing), never creating one."""
        return {name: count for name, (count, _ready) in (await self.describe(topics)).items()}

    async def describe(self, topics: list[str]) -> dict[str, tuple[int | None, bool]]:
        """``(partition count or None, every partition has a leader)`` per topic.

        aiokafka's own metadata calls let the broker auto-create topics; this
        request asks it not to.
        """
        with broker_errors(f"describe topics {topics}"):
            response = await metadata_without_auto_create(self.client, topics)
        found: dict[str, tuple[int | None, bool]] = {}
        for topic in response["topics"]:
            name, code, partitions = topic["topic"], topic["error_code"], topic["partitions"]
            if code == _UNKNOWN_TOPIC or (code == _LEADER_NOT_AVAILABLE and not partitions):
                found[name] = (None, False)
            elif code and code != _LEADER_NOT_AVAILABLE:  # that one: just created, no leader yet
                raise BrokerError(f"Kafka could not describe topic {name!r}: {for_code(code).__name__}")
            else:
                self.partitions[name] = len(partitions)
                ready = code == _OK and all(p["error_code"] == _OK and p["leader"] >= 0 for p in partitions)
                found[name] = (len(partitions), ready)
        return found

    async def create_topic(self, spec: TopicSpec) -> int:
        """Create the topic unless it exists; return its actual partition count.

        Example (on a running loop)::

            count = await admin.create_topic(TopicSpec("orders", 8))
        """
        configs: dict[str, str] = {}
        if spec.compacted:
            configs["cleanup.policy"] = "compact"
        if spec.retention is not None:
            configs["retention.ms"] = "-1" if math.isinf(spec.retention) else str(int(spec.retention * 1000))
        new = NewTopic(spec.name, spec.partitions, min(3, self.brokers), topic_configs=configs)
        with broker_errors(f"create topic {spec.name!r}"):
            response = await self.client.create_topics([new])
        for entry in response.topic_errors:
            name, code = entry[0], entry[1]
            message = entry[2] if len(entry) > 2 else None
            if code == _OK:
                self.partitions[name] = spec.partitions
                await self.wait_visible(spec)
                return spec.partitions
            if code != _TOPIC_ALREADY_EXISTS:
                raise BrokerError(
                    f"Kafka refused to create topic {name!r} ({spec.partitions} partitions): "
                    f"{for_code(code).__name__}: {message or 'no details'}"
                )
        # It existed already (maybe being created right now): ask for its size.
        deadline = time.monotonic() + self.request_timeout
        while True:
            count = (await self.metadata([spec.name])).get(spec.name)
            if count is not None:
                return count
            if time.monotonic() > deadline:
                raise BrokerError(f"Kafka says topic {spec.name!r} exists but does not describe it; try again.")
            await asyncio.sleep(0.1)

    async def wait_visible(self, spec: TopicSpec) -> None:
        """Wait (bounded) until the new topic's partitions have leaders.

        The controller answers before the brokers' metadata shows the topic;
        a consumer subscribing in between would get no partitions.
        """
        deadline = time.monotonic() + self.request_timeout
        while time.monotonic() < deadline:
            count, ready = (await self.describe([spec.name])).get(spec.name, (None, False))
            if ready and count == spec.partitions:
                return
            await asyncio.sleep(0.02)
        log.warning("topic %r was created but its partitions have no leader yet", spec.name)

    async def partition_count(self, topic: str) -> int | None:
        """Partition count of ``topic``, or ``None`` when it does not exist (never creates it)."""
        return (await self.metadata([topic])).get(topic)

    async def existing(self, tps: Iterable[TP]) -> tuple[list[TP], list[TP]]:
        """Split ``tps`` into (partitions that exist, partitions that do not)."""
        tps = list(tps)
        known = self.partitions
        unknown = sorted({tp.topic for tp in tps if tp.partition >= known.get(tp.topic, 0)})
        if unknown:
            await self.metadata(unknown)
        have: list[TP] = []
        missing: list[TP] = []
        for tp in tps:
            (have if tp.partition < self.partitions.get(tp.topic, 0) else missing).append(tp)
        return have, missing

    async def delete_records(self, offsets: Mapping[TP, int]) -> None:
        """Delete the records of each partition before its offset (``DeleteRecords``)."""
        if not offsets:
            return
        with broker_errors(f"delete records of {sorted({tp.topic for tp in offsets})}"):
            await self.client.delete_records(
                {TopicPartition(tp.topic, tp.partition): RecordsToDelete(offset) for tp, offset in offsets.items()},
                timeout_ms=int(self.request_timeout * 1000),
            )

    async def committed(self, group: str, tps: Iterable[TP]) -> dict[TP, int]:
        """The group's committed offsets; partitions with none are left out."""
        tps = list(tps)
        if not tps:
            return {}
        deadline = time.monotonic() + self.request_timeout
        while True:
            try:
                with broker_errors(f"read the offsets of group {group!r}"):
                    found = await self.client.list_consumer_group_offsets(
                        group, partitions=[TopicPartition(tp.topic, tp.partition) for tp in tps]
                    )
                break
            except BrokerError as exc:
                # The group coordinator may still be loading (just after the broker started).
                if not isinstance(exc.__cause__, _RETRIABLE_COORDINATOR) or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        wanted = set(tps)
        out: dict[TP, int] = {}
        for atp, meta in found.items():
            tp = TP(atp.topic, atp.partition)
            if tp in wanted and meta.offset >= 0:
                out[tp] = meta.offset
        return out
