"""Faust's settings on App(...) and app.conf: honoured, noted once, refused, or unknown with a suggestion."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import streamnb
from streamnb.app import settings
from streamnb.errors import ConfigurationError
from streamnb.testing import settle


def unique(prefix: str = "conf") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_faust_common_settings_are_accepted_and_noted_once(caplog: pytest.LogCaptureFixture) -> None:
    app_id = unique()
    with caplog.at_level(logging.INFO, logger="streamnb"):
        app = streamnb.App(app_id, broker="memory://", table_key_index_size=10, origin="proj.app",
                           table_cleanup_interval=1.0, stream_buffer_maxsize=16368, autodiscover=True)
        streamnb.App(app_id, broker="memory://", table_key_index_size=10)  # the same app again (a re-run cell)
    notes = [r for r in caplog.records if "without effect" in r.getMessage()]
    assert len(notes) == 1, [r.getMessage() for r in notes]
    message = notes[0].getMessage()
    for name in ("table_key_index_size", "origin", "table_cleanup_interval", "stream_buffer_maxsize", "autodiscover"):
        assert f"{name}=" in message
    assert "rebuilt from their changelog topics" in message  # what streamnb does instead
    assert app.conf.table_key_index_size == 10 and app.conf.origin == "proj.app"


def test_setting_a_noted_setting_on_conf_notes_it(caplog: pytest.LogCaptureFixture) -> None:
    app = streamnb.App(unique(), broker="memory://")
    with caplog.at_level(logging.INFO, logger="streamnb"):
        app.conf.table_cleanup_interval = 1.0
        app.conf.table_cleanup_interval = 2.0
    notes = [r.getMessage() for r in caplog.records if "without effect" in r.getMessage()]
    assert len(notes) == 1 and "windows close and expire at each commit" in notes[0]
    assert app.conf.table_cleanup_interval == 2.0


def test_unknown_setting_names_the_closest() -> None:
    with pytest.raises(ConfigurationError, match="unknown setting 'topic_partition'.*did you mean 'topic_partitions'"):
        streamnb.App(unique(), broker="memory://", topic_partition=4)
    with pytest.raises(ConfigurationError, match="did you mean 'table_cleanup_interval'"):
        streamnb.App(unique(), broker="memory://", table_cleanup_intervall=1)
    app = streamnb.App(unique(), broker="memory://")
    with pytest.raises(ConfigurationError, match="did you mean 'broker_commit_interval'"):
        app.conf.broker_comit_interval = 2
    with pytest.raises(AttributeError, match="did you mean 'web_port'"):
        app.conf.web_prt  # noqa: B018


def test_aiokafka_options_still_apply_only_to_kafka() -> None:
    with pytest.raises(ConfigurationError, match="applies only to kafka://"):
        streamnb.App(unique(), broker="memory://", session_timeout_ms=6000)


def test_settings_that_would_swap_a_class_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="Stream= is not supported"):
        streamnb.App(unique(), broker="memory://", Stream=object)
    with pytest.raises(ConfigurationError, match="sasl_plain_username"):
        streamnb.App(unique(), broker="memory://", broker_credentials=("user", "secret"))


def test_version_and_id_format_make_the_id() -> None:
    name = unique()
    assert streamnb.App(name, broker="memory://", version=1).id == name
    app = streamnb.App(name, broker="memory://", version=3)
    assert (app.id, app.conf.id, app.conf.name, app.conf.version) == (f"{name}-v3", f"{name}-v3", name, 3)
    assert app.Table("t").changelog.name == f"{name}-v3-t-changelog"
    assert streamnb.App(name, broker="memory://", version=2, id_format="{id}.{self.version}").id == f"{name}.2"
    with pytest.raises(ConfigurationError, match="version must be an int >= 1"):
        streamnb.App(name, broker="memory://", version=0)


def test_honoured_settings_under_faust_names() -> None:
    app = streamnb.App(unique(), broker="memory://", broker_commit_interval=timedelta(milliseconds=250),
                       broker_commit_every=500, web_port=7000)
    assert (app.commit_interval, app.commit_records) == (0.25, 500)
    assert (app.conf.broker_commit_interval, app.conf.broker_commit_every, app.conf.web_port) == (0.25, 500, 7000)
    assert (app.conf.topic_partitions, app.conf.key_serializer, app.conf.value_serializer) == (8, "raw", "json")
    app.conf.topic_partitions = 3
    assert app.topic("later").partition_count == 3
    with pytest.raises(ConfigurationError, match="cannot change after App"):
        app.conf.broker = "memory://other"


def test_faust_consumer_settings_become_aiokafka_options_on_kafka() -> None:
    resolved = settings.resolve(
        "shop", "kafka://127.0.0.1:9092",
        {"broker_session_timeout": 6, "broker_heartbeat_interval": timedelta(seconds=0.5),
         "broker_max_poll_records": 100, "broker_request_timeout": 20, "broker_client_id": "shop-1"},
        lambda: (),
    )
    assert resolved.kafka == {"session_timeout_ms": 6000, "heartbeat_interval_ms": 500, "max_poll_records": 100,
                              "request_timeout": 20.0, "client_id": "shop-1"}
    on_memory = settings.resolve("shop", "memory://", {"broker_session_timeout": 6}, lambda: ())
    assert on_memory.kafka == {} and on_memory.noted == {"broker_session_timeout": 6}
    app = streamnb.App(unique(), broker="kafka://127.0.0.1:9092", broker_session_timeout=6)
    assert app.conf.broker == "kafka://127.0.0.1:9092"


def test_broker_from_the_environment_and_faust_broker_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKER_URL", "memory://from-env")
    assert streamnb.App(unique()).broker == "memory://from-env"
    assert streamnb.App(unique(), broker="memory://given").broker == "memory://given"
    assert streamnb.App(unique(), url="memory://old-name").broker == "memory://old-name"
    assert streamnb.App(unique(), broker=["memory://listed"]).broker == "memory://listed"
    assert settings.resolve("x", "aiokafka://", {}, lambda: ()).broker == "kafka://localhost:9092"
    assert settings.resolve("x", "aiokafka://h:1", {}, lambda: ()).broker == "kafka://h:1"
    monkeypatch.delenv("BROKER_URL")
    assert streamnb.App(unique()).broker == "local://.streamnb"
    with pytest.raises(ConfigurationError, match="one broker URL"):
        streamnb.App(unique(), broker=["kafka://a:1", "kafka://b:1"])


def test_every_faust_setting_is_classified() -> None:
    # Faust 0.11's Settings(...) keyword arguments (faust/types/settings/settings.py).
    faust_settings = """
        autodiscover datadir tabledir debug env_prefix id_format origin timezone version agent_supervisor broker
        broker_consumer broker_producer broker_api_version broker_check_crcs broker_client_id broker_commit_every
        broker_commit_interval broker_commit_livelock_soft_timeout broker_credentials broker_heartbeat_interval
        broker_max_poll_interval broker_max_poll_records broker_rebalance_timeout broker_request_timeout
        broker_session_timeout ssl_context consumer_api_version consumer_max_fetch_size consumer_auto_offset_reset
        consumer_group_instance_id consumer_metadata_max_age_ms consumer_connections_max_idle_ms key_serializer
        value_serializer logging_config loghandlers producer_acks producer_api_version producer_compression_type
        producer_linger_ms producer_max_batch_size producer_max_request_size producer_partitioner
        producer_request_timeout producer_threaded producer_metadata_max_age_ms producer_connections_max_idle_ms
        reply_create_topic reply_expires reply_to reply_to_prefix processing_guarantee stream_buffer_maxsize
        stream_processing_timeout stream_publish_on_commit stream_recovery_delay stream_wait_empty store
        table_cleanup_interval table_key_index_size table_standby_replicas topic_allow_declare topic_disable_leader
        topic_partitions topic_replication_factor cache canonical_url web web_bind web_application_options
        web_cors_options web_enabled web_graph_enabled web_host web_in_thread web_metrics_enabled web_port
        web_router_enabled web_ssl_context web_stats_enabled web_tables_enabled web_transport
        worker_redirect_stdouts worker_redirect_stdouts_level Agent ConsumerScheduler Event Schema Stream Table
        SetTable GlobalTable SetGlobalTable TableManager Serializers Worker PartitionAssignor LeaderAssignor Router
        Topic HttpClient Monitor stream_ack_cancelled_tasks stream_ack_exceptions url
    """.split()
    known = settings.APP_SETTINGS | set(settings.KAFKA_SETTINGS) | set(settings.NOTES) | set(settings.UNSUPPORTED)
    assert set(faust_settings) - known == set()


def test_conf_store_sets_the_store_of_tables_defined_afterwards(tmp_path: Path) -> None:
    app = streamnb.App(f"s{uuid.uuid4().hex[:8]}", broker="memory://", datadir=tmp_path)
    assert app.conf.store == "memory://"
    app.conf.store = "memory://"  # Faust's testing fixture: no change, no error
    app.conf.store = "rocksdb"
    assert app.conf.store == app.store == "rocksdb://"
    assert app.Table("later").store == "rocksdb://"
    assert app.Table("own", store="memory://").store == "memory://"


def test_conf_store_after_tables_took_the_old_store_is_an_error() -> None:
    app = streamnb.App(f"s{uuid.uuid4().hex[:8]}", broker="memory://")
    app.Table("counts")
    with pytest.raises(ConfigurationError, match="after table.*'counts'.*App\\(..., store='rocksdb://'\\)"):
        app.conf.store = "rocksdb://"
    assert app.store == "memory://"
    with pytest.raises(ConfigurationError, match="not a table store"):
        app.conf.store = "redis://"


@pytest.mark.parametrize("name", ["url", "ssl_context", "datadir", "store_memory", "reply_create_topic"])
def test_settings_read_once_cannot_change_after_app(name: str) -> None:
    app = streamnb.App(f"s{uuid.uuid4().hex[:8]}", broker="memory://")
    with pytest.raises(ConfigurationError, match=f"app.conf.{name} cannot change after App.*{name}="):
        setattr(app.conf, name, None)


async def test_conf_store_memory_before_the_start_moves_tables_that_followed_the_app(tmp_path: Path) -> None:
    """Faust's testing fixture sets ``app.conf.store = "memory://"`` after the module defined its tables."""
    app = streamnb.App(f"s{uuid.uuid4().hex[:8]}", broker="memory://", store="rocksdb://", datadir=tmp_path)
    counts = app.Table("counts", default=int)
    windows = app.Table("windows", default=int).tumbling(10, expires=100)
    named = app.Table("named", default=int, store="rocksdb://")
    app.conf.store = "memory://"
    assert (counts.store, windows.table.store, named.store) == ("memory://", "memory://", "rocksdb://")
    assert counts.persistence is None and windows.table.persistence is None and named.persistence is not None
    clicks = app.topic("clicks", key_type=str, value_type=str)

    @app.agent(clicks)
    async def count(stream: Any) -> None:
        async for page in stream:
            counts[page] += 1
            windows[page] += 1

    async with app:
        for _ in range(3):
            await clicks.send(key="home", value="home", timestamp=5.0)
        await settle(app)
        assert counts["home"] == 3 and windows["home"][5.0] == 3
        assert dict(counts.items()) == {"home": 3}
    assert not (tmp_path / app.id / "counts").exists() and not (tmp_path / app.id / "windows").exists()
