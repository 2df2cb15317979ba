"""The registry of broker schemes: URL -> transport class, options and guarantees checked without connecting."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from streamnb.errors import ConfigurationError
from streamnb.transport import SCHEMES, check_broker, open_transport, transport_class
from streamnb.transport.base import Transport
from streamnb.transport.kafka import KafkaTransport
from streamnb.transport.local import LocalTransport
from streamnb.transport.memory import MemoryTransport

EMBEDDED = ["memory://", "local://data"]
KAFKA_ONLY: dict[str, Any] = {
    "security_protocol": "SSL",
    "sasl_mechanism": "PLAIN",
    "sasl_plain_username": "user",
    "sasl_plain_password": "secret",
    "ssl_context": object(),
    "request_timeout": 5.0,
    "session_timeout_ms": 5,
    "heartbeat_interval_ms": 500,
    "max_poll_records": 10,
}


def test_each_scheme_maps_to_its_transport_class() -> None:
    assert list(SCHEMES) == ["memory", "local", "kafka"]
    assert transport_class("memory://") is MemoryTransport
    assert transport_class("memory://other") is MemoryTransport
    assert transport_class("local://data?sync=full") is LocalTransport
    assert transport_class("kafka://127.0.0.1:9092,127.0.0.1:9093") is KafkaTransport
    for name, entry in SCHEMES.items():
        cls = entry.load()
        assert issubclass(cls, Transport) and cls.scheme == name
        assert entry.form.startswith(f"{name}://") and entry.description


@pytest.mark.parametrize("url", ["redis://127.0.0.1", "127.0.0.1:9092", "", "Kafka://127.0.0.1"])
def test_a_missing_or_unknown_scheme_lists_the_valid_forms(url: str) -> None:
    forms = r"memory://\[NAME\], local://PATH\[\?sync=full\], kafka://HOST:PORT\[,HOST:PORT\.\.\.\]"
    for call in (transport_class, lambda u: check_broker(u, {}), open_transport):
        with pytest.raises(ConfigurationError, match=forms):
            call(url)


@pytest.mark.parametrize("url", ["kafka://", "kafka://:9092", "local://data?sync=maybe", "local://data?fast=1"])
def test_a_malformed_url_is_rejected_without_connecting(url: str) -> None:
    with pytest.raises(ConfigurationError, match=r"kafka://HOST:PORT|sync"):
        check_broker(url, {})


@pytest.mark.parametrize("url", EMBEDDED)
@pytest.mark.parametrize("name", sorted(KAFKA_ONLY))
def test_a_kafka_option_on_an_embedded_broker_says_where_it_applies(url: str, name: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        check_broker(url, {name: KAFKA_ONLY[name]})
    message = str(info.value)
    assert message.startswith(f"{name}=... applies only to kafka:// brokers, not to {url!r}"), message
    with pytest.raises(ConfigurationError, match="applies only to kafka://"):
        open_transport(url, client_id="orders", **{name: KAFKA_ONLY[name]})


@pytest.mark.parametrize("url", EMBEDDED)
def test_an_option_no_backend_takes_is_unknown_with_a_suggestion(url: str) -> None:
    scheme = url.partition("://")[0]
    with pytest.raises(ConfigurationError, match=rf"unknown option 'client' for {scheme}://.*did you mean 'client_id'"):
        check_broker(url, {"client": "orders"})


def test_an_unknown_kafka_option_names_the_closest_valid_one() -> None:
    with pytest.raises(ConfigurationError, match=r"'sesion_timeout_ms'.*did you mean 'session_timeout_ms'"):
        check_broker("kafka://127.0.0.1", {"sesion_timeout_ms": 6000})
    with pytest.raises(ConfigurationError, match=r"'heartbeat_ms'.*did you mean 'heartbeat_interval_ms'"):
        open_transport("kafka://127.0.0.1", client_id="x", heartbeat_ms=500)
    with pytest.raises(ConfigurationError, match=r"unknown option 'colour'.*AIOKafkaConsumer") as info:
        check_broker("kafka://127.0.0.1", {"colour": "blue"})
    assert "did you mean" not in str(info.value)


def test_kafka_options_streamnb_sets_itself_or_bad_values_are_rejected() -> None:
    for name in ("group_id", "enable_auto_commit", "isolation_level", "bootstrap_servers"):
        with pytest.raises(ConfigurationError, match=f"{name}=... is set by streamnb itself"):
            check_broker("kafka://127.0.0.1", {name: "x"})
    with pytest.raises(ConfigurationError, match="security_protocol='TLS': use PLAINTEXT, SSL, SASL_PLAINTEXT or"):
        check_broker("kafka://127.0.0.1", {"security_protocol": "TLS"})
    with pytest.raises(ConfigurationError, match="is set by streamnb itself"):
        KafkaTransport("kafka://127.0.0.1", client_id="x", group_id="mine")


def test_valid_options_pass_and_reach_the_transport() -> None:
    assert check_broker("memory://", {"client_id": "orders"}) is MemoryTransport
    assert check_broker("local://data", {"client_id": "orders"}) is LocalTransport
    assert check_broker("kafka://127.0.0.1", {**KAFKA_ONLY, "client_id": "orders"}) is KafkaTransport
    memory = open_transport("memory://", client_id="orders")
    assert isinstance(memory, MemoryTransport) and memory.client_id == "orders"
    kafka = open_transport("kafka://127.0.0.1", client_id="orders", session_timeout_ms=6000, security_protocol="ssl")
    assert isinstance(kafka, KafkaTransport)  # built, not connected
    assert kafka.consumer_options == {"session_timeout_ms": 6000} and kafka.security_protocol == "SSL"


def test_every_backend_declares_its_guarantees() -> None:
    both = {"at_least_once", "exactly_once"}
    assert MemoryTransport.guarantees == both and MemoryTransport.exactly_once is True
    assert LocalTransport.guarantees == both and LocalTransport.exactly_once is True
    assert KafkaTransport.guarantees == both and KafkaTransport.exactly_once is True  # through transactions
    for entry in SCHEMES.values():
        cls = entry.load()
        assert "at_least_once" in cls.guarantees and cls.guarantees <= both
        assert "client_id" in cls.options  # the App passes its id to every backend


def test_an_embedded_broker_does_not_import_the_kafka_transport() -> None:
    script = textwrap.dedent(
        """
        import sys
        from streamnb.transport.schemes import check_broker, open_transport
        check_broker("memory://", {"client_id": "x"})
        open_transport("local://data", client_id="x")
        try:
            check_broker("redis://x", {})
        except Exception:
            pass
        print(sorted(m for m in sys.modules if m.startswith("streamnb.transport.")))
        """
    )
    root = Path(__file__).parents[2]
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, env={"PYTHONPATH": str(root)}
    ).stdout
    assert "streamnb.transport.memory" in out and "streamnb.transport.local" in out
    assert "streamnb.transport.kafka" not in out
