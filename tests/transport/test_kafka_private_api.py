"""The one private aiokafka attribute streamnb relies on, checked so an aiokafka upgrade cannot break it silently.

``streamnb.transport.kafka.clients.metadata_without_auto_create`` sends a
``MetadataRequest(allow_auto_topic_creation=False)`` through
``AIOKafkaAdminClient._client`` (no public aiokafka call takes that flag).
When a test here fails after an aiokafka upgrade: look for a public metadata
call with ``allow_auto_topic_creation`` in the new aiokafka first; otherwise
adapt ``metadata_without_auto_create`` to the moved attribute and widen the
``aiokafka`` pin in pyproject.toml only after these tests and
tests/transport/test_kafka_transport.py pass.
"""

from __future__ import annotations

import inspect
import os
import re
import tomllib
import uuid
from pathlib import Path

import aiokafka
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import UnknownTopicOrPartitionError
from aiokafka.protocol.metadata import MetadataRequest, MetadataRequest_v4
from packaging.requirements import Requirement

from streamnb.transport.kafka.clients import metadata_without_auto_create

WHAT_TO_CHECK = (
    "aiokafka {version} moved what streamnb.transport.kafka.clients.metadata_without_auto_create uses: {what}. "
    "Find a public metadata call that takes allow_auto_topic_creation in this aiokafka, or adapt that function, "
    "then update the aiokafka pin in pyproject.toml."
)


def explain(what: str) -> str:
    return WHAT_TO_CHECK.format(version=aiokafka.__version__, what=what)


def test_installed_aiokafka_is_within_the_pinned_range() -> None:
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    pins = [Requirement(d) for d in pyproject["project"]["dependencies"] if re.match(r"aiokafka\b", d)]
    assert len(pins) == 1, "pyproject.toml must name aiokafka once among the dependencies"
    specifier = pins[0].specifier
    assert any(spec.operator == "<" for spec in specifier), (
        "the aiokafka dependency needs an upper bound: streamnb uses AIOKafkaAdminClient._client"
    )
    assert specifier.contains(aiokafka.__version__), (
        f"aiokafka {aiokafka.__version__} is installed but pyproject.toml pins {specifier}: run this file's tests "
        "and tests/transport/test_kafka_transport.py against it before widening the pin"
    )


async def test_admin_client_keeps_its_private_client_with_send_and_get_random_node() -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers="127.0.0.1:9092")  # not started: no connection is made
    client = getattr(admin, "_client", None)
    assert client is not None, explain("AIOKafkaAdminClient has no _client attribute")
    send = getattr(client, "send", None)
    assert inspect.iscoroutinefunction(send), explain("AIOKafkaAdminClient._client.send is not a coroutine function")
    parameters = list(inspect.signature(send).parameters)
    assert parameters[:2] == ["node_id", "request"], explain(f"_client.send takes {parameters}, not (node_id, request)")
    get_random_node = getattr(client, "get_random_node", None)
    assert callable(get_random_node), explain("AIOKafkaAdminClient._client.get_random_node is gone")
    assert not inspect.signature(get_random_node).parameters, explain("_client.get_random_node takes arguments")


def test_metadata_request_takes_allow_auto_topic_creation() -> None:
    parameters = inspect.signature(MetadataRequest).parameters
    assert "allow_auto_topic_creation" in parameters, explain("MetadataRequest has no allow_auto_topic_creation")
    built = MetadataRequest(["orders"], allow_auto_topic_creation=False).build(MetadataRequest_v4)
    assert built.allow_auto_topic_creation is False, explain("MetadataRequest ignores allow_auto_topic_creation")
    assert built.topics == ["orders"], explain("MetadataRequest does not send the topics it is given")


@pytest.mark.kafka
async def test_metadata_without_auto_create_leaves_a_missing_topic_missing() -> None:
    bootstrap = os.environ.get("STREAMNB_KAFKA", "")
    if not bootstrap:
        pytest.skip("no Kafka: start one with `bash scripts/kafka.sh up` and set STREAMNB_KAFKA=127.0.0.1:9092")
    name = f"never-created-{uuid.uuid4().hex[:12]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        response = await metadata_without_auto_create(admin, [name])
        described = {t["topic"]: t["error_code"] for t in response["topics"]}
        assert described == {name: UnknownTopicOrPartitionError.errno}
        assert name not in await admin.list_topics()
    finally:
        await admin.close()
