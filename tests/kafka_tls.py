"""The ``secure_broker`` fixture: one second Kafka broker with TLS and SASL, per session.

Registered from ``tests/conftest.py`` (``pytest_plugins``), so the transport
tests (``tests/transport/test_kafka_transport.py``) and the App tests
(``tests/transport/test_kafka_tls.py``) share one broker instead of each starting
its own. It is ``scripts/kafka.sh`` in its own folder and ports, with a
self-signed certificate for 127.0.0.1 made here with keytool, an SSL listener
and a SASL_PLAINTEXT listener (mechanism PLAIN, user ``alice:wonderland``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import kafka_bootstrap

__all__ = ["SASL_PASSWORD", "SASL_USER", "secure_broker"]

REPO = Path(__file__).resolve().parents[1]
SASL_USER, SASL_PASSWORD = "alice", "wonderland"


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.fixture(scope="session")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A second broker: ``{"ssl": address, "sasl": address, "cafile": PEM path, "pidfile": its process id file}``.

    Tests may pause it (SIGSTOP, to play a broker that died) if they resume it (SIGCONT) before they end.
    """
    kafka_bootstrap()  # skips without Kafka; when the main broker runs, Java is there
    assert shutil.which("keytool") is not None, "keytool (Java) is needed for the TLS and SASL tests"
    folder = tmp_path_factory.mktemp("secure-kafka")
    keystore, cert = folder / "broker.p12", folder / "ca.pem"
    subprocess.run(
        ["keytool", "-genkeypair", "-keystore", str(keystore), "-storetype", "PKCS12", "-storepass", "changeit",
         "-keypass", "changeit", "-alias", "broker", "-keyalg", "RSA", "-keysize", "2048", "-validity", "2",
         "-dname", "CN=127.0.0.1", "-ext", "SAN=ip:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        ["keytool", "-exportcert", "-rfc", "-keystore", str(keystore), "-storepass", "changeit",
         "-alias", "broker", "-file", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    plain, controller, tls, sasl = _free_ports(4)
    env = {
        **os.environ,
        "KAFKA_DIR": str(folder / "kafka"),
        "KAFKA_PORT": str(plain),
        "KAFKA_CONTROLLER_PORT": str(controller),
        "KAFKA_SSL_PORT": str(tls),
        "KAFKA_SSL_KEYSTORE": str(keystore),
        "KAFKA_SSL_PASSWORD": "changeit",
        "KAFKA_SASL_PORT": str(sasl),
        "KAFKA_SASL_USERS": f"{SASL_USER}:{SASL_PASSWORD}",
        "KAFKA_HEAP_OPTS": "-Xms256m -Xmx256m",
    }
    script = str(REPO / "scripts" / "kafka.sh")
    up = subprocess.run(["bash", script, "up"], env=env, capture_output=True, text=True, timeout=180, check=False)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        yield {
            "ssl": f"127.0.0.1:{tls}", "sasl": f"127.0.0.1:{sasl}", "cafile": str(cert),
            "pidfile": str(folder / "kafka" / "kafka.pid"),
        }
    finally:
        subprocess.run(["bash", script, "down"], env=env, capture_output=True, timeout=120, check=False)
