"""An App on a TLS listener, through the App's pass-through options.

A second broker (``scripts/kafka.sh`` with ``KAFKA_SSL_*``, in its own
folder and ports) gets a self-signed certificate made here with keytool; the
App reaches it with ``security_protocol="SSL"`` and an ``ssl_context`` that
trusts that certificate.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import uuid
from collections.abc import Iterator

import pytest
from conftest import kafka_bootstrap
from kafkahelpers import REPO

import streamnb as faust
from streamnb.testing import settle, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A second broker with an SSL listener (self-signed certificate for 127.0.0.1)."""
    kafka_bootstrap()  # the jars and Java are there when the main broker runs
    assert shutil.which("keytool") is not None, "keytool (Java) is needed for the TLS test"
    folder = tmp_path_factory.mktemp("tls-kafka")
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
    plain, controller, tls = _free_ports(3)
    env = {
        **os.environ,
        "KAFKA_DIR": str(folder / "kafka"),
        "KAFKA_PORT": str(plain),
        "KAFKA_CONTROLLER_PORT": str(controller),
        "KAFKA_SSL_PORT": str(tls),
        "KAFKA_SSL_KEYSTORE": str(keystore),
        "KAFKA_SSL_PASSWORD": "changeit",
        "KAFKA_HEAP_OPTS": "-Xms256m -Xmx256m",
    }
    script = str(REPO / "scripts" / "kafka.sh")
    up = subprocess.run(["bash", script, "up"], env=env, capture_output=True, text=True, timeout=180, check=False)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        yield {"ssl": f"127.0.0.1:{tls}", "cafile": str(cert)}
    finally:
        subprocess.run(["bash", script, "down"], env=env, capture_output=True, timeout=120, check=False)


def tls_app(app_id: str, address: str, context: ssl.SSLContext) -> tuple[faust.App, faust.Topic, faust.Table, object]:
    app = faust.App(
        app_id, broker=f"kafka://{address}", topic_partitions=2, commit_interval=0.1,
        security_protocol="SSL", ssl_context=context,
    )
    words = app.topic(f"{app_id}-words", value_type=str)
    counts = app.Table("counts", default=int)

    @app.agent(words)
    async def count(stream):  # type: ignore[no-untyped-def]
        async for word in stream:
            counts[word] += 1

    return app, words, counts, count


async def test_app_counts_over_tls(tls_broker: dict[str, str]) -> None:
    context = ssl.create_default_context(cafile=tls_broker["cafile"])
    app_id = f"tls{uuid.uuid4().hex[:8]}"
    app, words, counts, count = tls_app(app_id, tls_broker["ssl"], context)
    sent = ["tls", "kafka", "tls", "app", "tls"] * 20
    async with app:
        assert getattr(app.transport, "security_protocol", None) == "SSL"
        for word in sent:
            await words.send(key=word, value=word)
        await settle(app, timeout=60)
        count.raise_if_crashed()  # type: ignore[attr-defined]
        assert dict(counts.data) == {"tls": 60, "kafka": 20, "app": 20}

    # A new worker of the same app rebuilds the table from the changelog, over TLS too.
    app2, _words, counts2, _count = tls_app(app_id, tls_broker["ssl"], context)
    async with app2:
        want = {"tls": 60, "kafka": 20, "app": 20}
        await wait_until(lambda: dict(counts2.data) == want, timeout=60, what="the new worker recovered the table")

    # The same listener without the certificate: the handshake fails, and the error says so.
    plain = faust.App(f"{app_id}-nocert", broker=f"kafka://{tls_broker['ssl']}", security_protocol="SSL",
                      request_timeout=5.0)
    with pytest.raises(faust.BrokerUnavailableError, match="handshake failed"):
        await plain.start()
    await plain.stop()
