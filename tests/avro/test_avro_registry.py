"""The schema registry client (streamnb/avro/registry.py) and the App's registry options."""

from __future__ import annotations

import re
import ssl
import uuid
from typing import Any

import pytest
from schema_registry import SchemaRegistryServer

from streamnb import App, ConfigurationError, SchemaRegistry, SchemaRegistryError, SchemaRegistryUnavailableError

POINT = {"type": "record", "name": "Point", "fields": [{"name": "x", "type": "long"}]}


def make_app(**options: Any) -> App:
    return App(f"r{uuid.uuid4().hex[:8]}", broker=f"memory://{uuid.uuid4().hex}", **options)


async def test_register_lookup_latest_and_schema_by_id(registry: SchemaRegistryServer) -> None:
    client = SchemaRegistry(registry.url)
    schema_id = await client.register("points-value", POINT)
    assert await client.register("points-value", POINT) == schema_id  # cached: no second request
    assert registry.requests == [("POST", "/subjects/points-value/versions")]
    fresh = SchemaRegistry(registry.url)
    assert await fresh.lookup("points-value", POINT) == schema_id
    assert await fresh.schema(schema_id) == POINT  # known from the lookup's answer
    latest = await fresh.latest("points-value")
    assert (latest.id, latest.schema) == (schema_id, POINT)
    other = SchemaRegistry(registry.url)
    assert await other.schema(schema_id) == POINT
    assert await other.schema(schema_id) == POINT
    assert registry.requests.count(("GET", f"/schemas/ids/{schema_id}")) == 1
    assert await other.schema(12345) is None
    assert other.compatibility() == "BACKWARD"


async def test_basic_auth(registry: SchemaRegistryServer) -> None:
    registry.stop()
    secured = SchemaRegistryServer(registry.port, auth=("ada", "s3cret"), state=registry.state).start()
    try:
        with pytest.raises(SchemaRegistryError, match="HTTP 401") as info:
            await SchemaRegistry(secured.url).register("p-value", POINT)
        assert "schema_registry_auth=" in str(info.value)
        with pytest.raises(SchemaRegistryError, match="HTTP 401"):
            await SchemaRegistry(secured.url, auth=("ada", "wrong")).register("p-value", POINT)
        assert await SchemaRegistry(secured.url, auth=("ada", "s3cret")).register("p-value", POINT) == 1
        assert await SchemaRegistry(secured.url, auth="ada:s3cret").schema(1) == POINT
        in_url = secured.url.replace("http://", "http://ada:s3cret@")
        client = SchemaRegistry(in_url)
        assert client.url == secured.url and "s3cret" not in repr(client)
        assert await client.lookup("p-value", POINT) == 1
        app = make_app(schema_registry=secured.url, schema_registry_auth=("ada", "s3cret"))
        topic = app.topic("p", value_serializer="avro")
        assert topic.decode_value(b"\x00\x00\x00\x00\x01\x06") == {"x": 3}
    finally:
        secured.stop()


async def test_tls_with_a_trusted_ca(tls_files: tuple[str, str]) -> None:
    cert, key = tls_files
    server = SchemaRegistryServer(certfile=cert, keyfile=key).start()
    try:
        assert server.url.startswith("https://127.0.0.1:")
        with pytest.raises(SchemaRegistryError, match="does not trust") as info:
            await SchemaRegistry(server.url).register("p-value", POINT)
        assert "schema_registry_cafile=" in str(info.value)
        assert await SchemaRegistry(server.url, cafile=cert).register("p-value", POINT) == 1
        context = ssl.create_default_context(cafile=cert)
        assert await SchemaRegistry(server.url, ssl_context=context).schema(1) == POINT
        app = make_app(schema_registry=server.url, schema_registry_cafile=cert)
        topic = app.topic("p", value_serializer="avro")
        await topic.prepare()
        assert topic.decode_value(topic.encode_value({"x": 4})) == {"x": 4}
    finally:
        server.stop()


async def test_unreachable_and_failing_registries_are_unavailable_not_refused(registry: SchemaRegistryServer) -> None:
    client = SchemaRegistry(registry.url, timeout=2)
    registry.stop()
    with pytest.raises(SchemaRegistryUnavailableError, match="cannot be reached"):
        await client.register("p-value", POINT)
    assert client.failures == 1
    registry.start()
    assert await client.register("p-value", POINT) == 1


def test_app_registry_options_are_checked() -> None:
    app = make_app(schema_registry="http://127.0.0.1:8081", schema_registry_auth=("u", "p"), schema_registry_timeout=3)
    assert isinstance(app.schema_registry, SchemaRegistry)
    assert app.schema_registry.user == "u" and app.schema_registry.timeout == 3.0
    assert make_app().schema_registry is None
    with pytest.raises(ConfigurationError, match="did you mean 'schema_registry_auth'"):
        make_app(schema_registry="http://127.0.0.1:8081", schema_registry_auht=("u", "p"))
    with pytest.raises(ConfigurationError, match="applies only with a schema registry"):
        make_app(schema_registry_auth=("u", "p"))
    with pytest.raises(ConfigurationError, match="applies only to https://"):
        make_app(schema_registry="http://127.0.0.1:8081", schema_registry_cafile="ca.pem")
    with pytest.raises(ConfigurationError, match="http:// or https://"):
        make_app(schema_registry="ftp://127.0.0.1")
    with pytest.raises(ConfigurationError, match="give its options to SchemaRegistry"):
        make_app(schema_registry=SchemaRegistry("http://127.0.0.1:8081"), schema_registry_timeout=3)
    with pytest.raises(ConfigurationError, match="both in the URL and as auth="):
        SchemaRegistry("http://a:b@127.0.0.1:8081", auth=("a", "b"))
    with pytest.raises(ConfigurationError, match="keyfile= needs certfile="):
        SchemaRegistry("https://127.0.0.1:8081", keyfile="k.pem")
    with pytest.raises(ConfigurationError, match="cannot load the TLS files"):
        SchemaRegistry("https://127.0.0.1:8081", cafile="/nonexistent/ca.pem")
    with pytest.raises(ConfigurationError, match="unknown option 'schema_registry_url'"):
        make_app(schema_registry_url="http://127.0.0.1:8081")


def test_registry_urls_are_normalised() -> None:
    assert SchemaRegistry("http://127.0.0.1:8081/").url == "http://127.0.0.1:8081"
    assert SchemaRegistry("http://[::1]:8081/apis/ccompat/v7/").url == "http://[::1]:8081/apis/ccompat/v7"
    assert SchemaRegistry("https://[::1]").url == "https://[::1]"
    client = SchemaRegistry("http://ada%40home:p%3Ass@127.0.0.1:8081")  # credentials in the URL, unquoted
    assert client.url == "http://127.0.0.1:8081" and client.user == "ada@home"


@pytest.mark.parametrize(
    "url, options, problem",
    [
        ("127.0.0.1:8081", {}, "schema_registry must be a URL such as"),
        (8081, {}, "schema_registry must be a URL such as"),
        ("http://", {}, "use an http:// or https:// URL with a host"),
        ("http://h:1", {"auth": "ada"}, "auth as a str must be 'user:password'"),
        ("http://h:1", {"auth": ("ada",)}, "auth must be ('user', 'password'), got ('ada',)"),
        ("http://h:1", {"auth": ["ada", "pw"]}, "auth must be ('user', 'password')"),
        ("http://h:1", {"certfile": "c.pem", "keyfile": "k.pem"}, "certfile, keyfile applies only to https://"),
        ("https://h:1", {"ssl_context": ssl.create_default_context(), "cafile": "ca.pem"}, "not both"),
        ("https://h:1", {"certfile": "/nonexistent/c.pem"}, "cannot load the TLS files"),
        ("http://h:1", {"timeout": 0}, "timeout must be a positive number of seconds, got 0"),
        ("http://h:1", {"timeout": "10"}, "timeout must be a positive number of seconds, got '10'"),
    ],
)
def test_registry_options_that_do_not_fit_say_why(url: Any, options: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(problem)):
        SchemaRegistry(url, **options)


def test_a_kafka_option_still_goes_to_kafka_and_is_checked_there() -> None:
    with pytest.raises(ConfigurationError, match="applies only to kafka://"):
        make_app(schema_registry="http://127.0.0.1:8081", security_protocol="SSL")
