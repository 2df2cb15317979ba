"""An App on a TLS listener, through the App's pass-through options.

The second broker (``secure_broker``, from ``tests/kafka_tls.py``: a
self-signed certificate made with keytool, shared with the transport tests)
is reached with ``security_protocol="SSL"`` and an ``ssl_context`` that
trusts that certificate.
"""

from __future__ import annotations

import ssl
import uuid

import pytest

import streamnb as faust
from streamnb.testing import settle, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


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


async def test_app_counts_over_tls(secure_broker: dict[str, str]) -> None:
    context = ssl.create_default_context(cafile=secure_broker["cafile"])
    app_id = f"tls{uuid.uuid4().hex[:8]}"
    app, words, counts, count = tls_app(app_id, secure_broker["ssl"], context)
    sent = ["tls", "kafka", "tls", "app", "tls"] * 20
    async with app:
        assert getattr(app.transport, "security_protocol", None) == "SSL"
        for word in sent:
            await words.send(key=word, value=word)
        await settle(app, timeout=60)
        count.raise_if_crashed()  # type: ignore[attr-defined]
        assert dict(counts.data) == {"tls": 60, "kafka": 20, "app": 20}

    # A new worker of the same app rebuilds the table from the changelog, over TLS too.
    app2, _words, counts2, _count = tls_app(app_id, secure_broker["ssl"], context)
    async with app2:
        want = {"tls": 60, "kafka": 20, "app": 20}
        await wait_until(lambda: dict(counts2.data) == want, timeout=60, what="the new worker recovered the table")

    # The same listener without the certificate: the handshake fails, and the error says so.
    plain = faust.App(f"{app_id}-nocert", broker=f"kafka://{secure_broker['ssl']}", security_protocol="SSL",
                      request_timeout=5.0)
    with pytest.raises(faust.BrokerUnavailableError, match="handshake failed"):
        await plain.start()
    await plain.stop()
