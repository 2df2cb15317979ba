"""Shared fixtures: the ``broker`` fixture runs a behaviour test on every backend.

``kafka`` joins when ``STREAMNB_KAFKA`` names a running broker (``.ci/run``
starts one with ``scripts/kafka.sh up`` and fails if Kafka tests were skipped).
``kafka-eos`` is the same broker with every App of the test defaulting to
``processing_guarantee="exactly_once"`` (a Kafka transaction per input partition).
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# The ``secure_broker`` fixture (a second broker with TLS and SASL), shared by the
# transport and App-level Kafka tests so a run starts it once; the ``registry``
# fixture (a schema registry) of the Avro tests.
pytest_plugins = ["kafka_tls", "registry_fixtures"]

# Scripts the tests start as subprocesses: they run when imported, so the doctest
# collection (``--doctest-modules`` in pyproject.toml) must not import them.
collect_ignore = ["workers"]

# Shared helpers (kafkahelpers, nbhelpers, conftest's own functions) import by their module names.
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "notebook"))

KAFKA = os.environ.get("STREAMNB_KAFKA", "")
BACKENDS = ["memory", "local", "kafka", "kafka-eos"]


def kafka_bootstrap() -> str:
    """The Kafka bootstrap address, or skip the test when no broker was started."""
    if not KAFKA:
        pytest.skip("no Kafka: start one with `bash scripts/kafka.sh up` and set STREAMNB_KAFKA=127.0.0.1:9092")
    return KAFKA


def exactly_once_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Apps made during the test default to ``processing_guarantee="exactly_once"`` (the ``kafka-eos`` backend)."""
    import streamnb

    defaults = dict(streamnb.App.__init__.__kwdefaults__ or {})
    defaults["processing_guarantee"] = "exactly_once"
    monkeypatch.setattr(streamnb.App.__init__, "__kwdefaults__", defaults)


def broker_url(kind: str, tmp_path: Path) -> str:
    if kind == "memory":
        return f"memory://test-{uuid.uuid4().hex[:12]}"
    if kind == "local":
        return f"local://{tmp_path / 'broker'}"
    return f"kafka://{kafka_bootstrap()}"


@pytest.fixture(params=BACKENDS)
def broker(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A broker URL for each backend (a fresh one per test)."""
    if request.param.startswith("kafka"):
        request.applymarker(pytest.mark.kafka)
    if request.param == "kafka-eos":
        exactly_once_by_default(monkeypatch)
    return broker_url(request.param, tmp_path)


@pytest.fixture(params=["local", "kafka", "kafka-eos"])
def durable_broker(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A broker URL for the backends that keep data across an app restart."""
    if request.param.startswith("kafka"):
        request.applymarker(pytest.mark.kafka)
    if request.param == "kafka-eos":
        exactly_once_by_default(monkeypatch)
    return broker_url(request.param, tmp_path)


@pytest.fixture
def app_id() -> str:
    """A unique app id, so Kafka tests never share topics or groups."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture(autouse=True)
def _fresh_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run each test in its own folder, so the default local://.streamnb never leaks."""
    monkeypatch.chdir(tmp_path)
    yield


TABLE_STORES = ["memory://", "rocksdb://"]
"""The table suite (tests/tables) runs every test on both stores, unless its module sets ``TABLE_STORES``."""


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "table_store" in metafunc.fixturenames and _in_table_suite(metafunc.module):
        metafunc.parametrize("table_store", getattr(metafunc.module, "TABLE_STORES", TABLE_STORES), indirect=True)


def _in_table_suite(module: object) -> bool:
    return Path(getattr(module, "__file__", "")).parent.name == "tables"


@pytest.fixture(autouse=True)
def table_store(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """In tests/tables: the default store of every App the test makes (``memory://``, then ``rocksdb://``).

    ``rocksdb://`` files go under the test's own folder (its working directory).
    """
    store: str | None = getattr(request, "param", None)
    if store is not None:
        from streamnb.tables import stores

        monkeypatch.setattr(stores, "DEFAULT", store)
    return store


REQUIRE_KAFKA = os.environ.get("STREAMNB_REQUIRE_KAFKA") == "1"
_kafka_ran: list[str] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """With STREAMNB_REQUIRE_KAFKA=1 (CI), a skipped Kafka test is a failure."""
    outcome = yield
    report = outcome.get_result()
    if item.get_closest_marker("kafka") is None:
        return
    if REQUIRE_KAFKA and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"Kafka test skipped but STREAMNB_REQUIRE_KAFKA=1: {report.longrepr}"


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Count passed Kafka tests (with pytest-xdist: in the controller, which sees every worker's reports)."""
    if report.when == "call" and report.passed and "kafka" in report.keywords:
        _kafka_ran.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if hasattr(session.config, "workerinput"):  # a pytest-xdist worker: the controller checks
        return
    if REQUIRE_KAFKA and not _kafka_ran and session.testscollected and not session.config.option.collectonly:
        session.exitstatus = 1
        print("\nSTREAMNB_REQUIRE_KAFKA=1 but no Kafka test passed: is the broker up?")
