"""The ``registry`` fixture: the test schema registry (``scripts/schema_registry.py``), fresh per test.

Registered from ``tests/conftest.py`` (``pytest_plugins``). Apicurio Registry
cannot be run from Maven Central's artifacts (see that script), so the Avro
tests talk to its small server over real HTTP on 127.0.0.1.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from schema_registry import SchemaRegistryServer  # noqa: E402

__all__ = ["registry", "tls_files"]


@pytest.fixture
def registry() -> Iterator[SchemaRegistryServer]:
    """A fresh schema registry on 127.0.0.1 (its ``url``, ``requests`` and ``state``)."""
    server = SchemaRegistryServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 and its key, as PEM files: ``(certfile, keyfile)``."""
    folder = tmp_path_factory.mktemp("registry-tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return str(cert), str(key)
