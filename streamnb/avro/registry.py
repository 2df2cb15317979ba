"""A client for the schema registry's REST API (Confluent's, also served by Apicurio and Karapace).

streamnb uses five calls: register a schema under a subject (``POST
/subjects/{subject}/versions``), look one up (``POST /subjects/{subject}``),
the latest version of a subject, a schema by id (``GET /schemas/ids/{id}``),
and, for tests and tools, the compatibility level. Answers are cached both
ways: ``(subject, schema) -> id`` for writers and ``id -> schema`` for
readers, so a topic asks the registry once per schema, not once per message.

The client is the standard library's ``urllib`` (no extra dependency), so
the same code serves the rare synchronous call and, through a worker thread
(``asyncio.to_thread``), the asynchronous ones that topics and agents make;
a handful of requests per schema do not need a connection pool.

Example::

    registry = SchemaRegistry("https://registry.example:8081", auth=("user", "secret"), cafile="ca.pem")
    schema_id = await registry.register("orders-value", {"type": "string"})
    await registry.schema(schema_id)        # {'type': 'string'} (cached from now on)

Errors: :class:`~streamnb.errors.SchemaRegistryUnavailableError` when
nothing answers (or the registry answers 5xx: agents wait and retry), and
:class:`~streamnb.errors.SchemaRegistryError` when it refuses a request,
carrying the registry's message and what to do.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, NamedTuple

from ..errors import ConfigurationError, SchemaRegistryError, SchemaRegistryUnavailableError, SerializationError

__all__ = ["OPTIONS", "Registered", "SchemaRegistry", "registry_from_options"]

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"

OPTIONS = ("auth", "cafile", "certfile", "keyfile", "ssl_context", "timeout")
"""``App(schema_registry_<option>=...)``: the :class:`SchemaRegistry` keywords an App passes on."""


class Registered(NamedTuple):
    """A schema the registry holds: its global id and its schema (JSON data)."""

    id: int
    schema: Any


class _Refused(Exception):
    """The registry answered 4xx: ``status``, its ``error_code`` and ``message``."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class SchemaRegistry:
    """A schema registry at ``url`` (``http://`` or ``https://``), with optional basic auth and TLS.

    Args:
        url: the registry's base URL, e.g. ``http://127.0.0.1:8081`` (a path
            such as Apicurio's ``/apis/ccompat/v7`` is kept). Credentials in
            the URL (``https://user:secret@host``) are used for basic auth.
        auth: ``("user", "password")`` or ``"user:password"`` for HTTP basic auth.
        cafile: PEM file of the certificate authorities to trust (https).
        certfile / keyfile: a client certificate and its key (https, mutual TLS).
        ssl_context: an ``ssl.SSLContext`` to use instead of cafile/certfile/keyfile.
        timeout: seconds one request may take.

    >>> registry = SchemaRegistry("http://127.0.0.1:8081", auth=("ada", "secret"))
    >>> registry
    <SchemaRegistry http://127.0.0.1:8081 (basic auth as 'ada')>
    >>> SchemaRegistry("http://127.0.0.1:8081", cafile="ca.pem")
    Traceback (most recent call last):
    ...
    streamnb.errors.ConfigurationError: schema registry 'http://127.0.0.1:8081': cafile applies only to \
https:// registries; use an https:// URL, or remove cafile
    """

    def __init__(
        self,
        url: str,
        *,
        auth: tuple[str, str] | str | None = None,
        cafile: str | None = None,
        certfile: str | None = None,
        keyfile: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 10.0,
    ) -> None:
        parts, self.url = _base_url(url)
        credentials = _credentials(parts, auth, self.url)
        self.user: str | None = None if credentials is None else credentials[0]
        self._headers = {"Accept": CONTENT_TYPE, "Content-Type": CONTENT_TYPE}
        if credentials is not None:
            token = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode("ascii")
            self._headers["Authorization"] = f"Basic {token}"
        self._context = _tls_context(
            self.url, parts.scheme, cafile=cafile, certfile=certfile, keyfile=keyfile, ssl_context=ssl_context
        )
        if not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ConfigurationError(f"schema registry timeout must be a positive number of seconds, got {timeout!r}")
        self.timeout = float(timeout)
        self._ids: dict[tuple[str, str], int] = {}  # (subject, schema JSON) -> id
        self._schemas: dict[int, Any] = {}  # id -> schema (JSON data)
        self._lock = threading.Lock()
        self.requests = 0
        """HTTP requests sent (answered or not): what the caches save."""
        self.failures = 0
        """Requests that found nobody answering (or a 5xx answer)."""

    # -- the API (async: what topics and agents call) ------------------------------------------

    async def register(self, subject: str, schema: Any) -> int:
        """Register ``schema`` under ``subject`` (or find it registered); return its global id.

        Raises :class:`SchemaRegistryError` naming the subject when the
        registry refuses it (an incompatible change, an invalid schema).
        """
        text = _text(schema)
        found = self._ids.get((subject, text))
        if found is not None:
            return found
        return await asyncio.to_thread(self.register_sync, subject, schema)

    async def lookup(self, subject: str, schema: Any) -> int:
        """The id of ``schema`` registered under ``subject``, without registering it."""
        text = _text(schema)
        found = self._ids.get((subject, text))
        if found is not None:
            return found
        return await asyncio.to_thread(self.lookup_sync, subject, schema)

    async def latest(self, subject: str) -> Registered:
        """The latest version of ``subject``: its id and schema (asked every time: it changes)."""
        return await asyncio.to_thread(self.latest_sync, subject)

    async def schema(self, schema_id: int) -> Any | None:
        """The schema with this global id (``None`` when the registry has none)."""
        found = self._schemas.get(schema_id)
        if found is not None:
            return found
        return await asyncio.to_thread(self.schema_sync, schema_id)

    def cached_schema(self, schema_id: int) -> Any | None:
        """The schema with this id if it was fetched before (no request)."""
        return self._schemas.get(schema_id)

    # -- the same, blocking ---------------------------------------------------------------------

    def register_sync(self, subject: str, schema: Any) -> int:
        """:meth:`register`, blocking the calling thread."""
        text = _text(schema)
        try:
            answer = self._call("POST", f"/subjects/{_quote(subject)}/versions", {"schema": text})
        except _Refused as exc:
            raise self._refused(exc, subject, "register the schema") from None
        schema_id = int(answer["id"])
        self._remember(subject, text, schema_id, schema)
        return schema_id

    def lookup_sync(self, subject: str, schema: Any) -> int:
        """:meth:`lookup`, blocking the calling thread."""
        text = _text(schema)
        try:
            answer = self._call("POST", f"/subjects/{_quote(subject)}", {"schema": text})
        except _Refused as exc:
            if exc.status == 404:
                raise SchemaRegistryError(
                    f"schema registry {self.url}: the schema is not registered under subject {subject!r} "
                    f"({exc.message}); register it (auto_register=True), or write with a schema registered there",
                    subject=subject,
                ) from None
            raise self._refused(exc, subject, "look the schema up") from None
        schema_id = int(answer["id"])
        self._remember(subject, text, schema_id, schema)
        return schema_id

    def latest_sync(self, subject: str) -> Registered:
        """:meth:`latest`, blocking the calling thread."""
        try:
            answer = self._call("GET", f"/subjects/{_quote(subject)}/versions/latest")
        except _Refused as exc:
            if exc.status == 404:
                raise SchemaRegistryError(
                    f"schema registry {self.url}: subject {subject!r} has no schema ({exc.message}); "
                    "declare the topic's value_type (a Record) or give AvroCodec(schema=...) so there is one to "
                    "write with",
                    subject=subject,
                ) from None
            raise self._refused(exc, subject, "read the latest schema") from None
        schema = json.loads(answer["schema"])
        schema_id = int(answer["id"])
        self._remember(subject, _text(schema), schema_id, schema)
        return Registered(schema_id, schema)

    def schema_sync(self, schema_id: int) -> Any | None:
        """:meth:`schema`, blocking the calling thread."""
        found = self._schemas.get(schema_id)
        if found is not None:
            return found
        try:
            answer = self._call("GET", f"/schemas/ids/{int(schema_id)}")
        except _Refused as exc:
            if exc.status == 404:
                return None
            raise self._refused(exc, None, f"read schema id {schema_id}") from None
        if answer.get("schemaType", "AVRO") != "AVRO":
            raise SerializationError(
                f"schema id {schema_id} in the registry at {self.url} is a {answer['schemaType']} schema, "
                "not Avro: read this topic with the codec its producer used"
            )
        schema = json.loads(answer["schema"])
        with self._lock:
            self._schemas[schema_id] = schema
        return schema

    def compatibility(self, subject: str | None = None) -> str:
        """The compatibility level (``BACKWARD``, ``NONE``, ...) of ``subject``, or the registry's default."""
        path = "/config" if subject is None else f"/config/{_quote(subject)}?defaultToGlobal=true"
        try:
            answer = self._call("GET", path)
        except _Refused as exc:
            raise self._refused(exc, subject, "read the compatibility level") from None
        return str(answer.get("compatibilityLevel") or answer.get("compatibility"))

    # -- HTTP -----------------------------------------------------------------------------------

    def _remember(self, subject: str, text: str, schema_id: int, schema: Any) -> None:
        with self._lock:
            self._ids[(subject, text)] = schema_id
            self._schemas.setdefault(schema_id, schema)

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=self._headers)
        self.requests += 1
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self._context) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
            try:
                payload = json.loads(raw)
                code, message = int(payload.get("error_code", status)), str(payload.get("message", raw))
            except (ValueError, AttributeError, TypeError):
                code, message = status, raw.decode("utf-8", "replace")[:300] or exc.reason
            if status >= 500:
                self.failures += 1
                raise SchemaRegistryUnavailableError(
                    f"the schema registry at {self.url} answered {status} ({message}) to {method} {path}: "
                    "it is up but failing; check its logs (agents wait and retry)"
                ) from None
            raise _Refused(status, code, message) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise SchemaRegistryError(
                    f"the schema registry at {self.url} has a certificate this client does not trust ({reason}): "
                    "give schema_registry_cafile= the CA that signed it"
                ) from None
            self.failures += 1
            raise SchemaRegistryUnavailableError(
                f"the schema registry at {self.url} cannot be reached ({reason}): check that it runs and that "
                "the URL is right (agents wait and retry)"
            ) from None
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            raise SchemaRegistryError(
                f"{self.url}{path} did not answer JSON ({raw[:80]!r}): is it a schema registry's URL? "
                "(Apicurio serves Confluent's API under /apis/ccompat/v7)"
            ) from None

    def _refused(self, exc: _Refused, subject: str | None, doing: str) -> SchemaRegistryError:
        where = f" for subject {subject!r}" if subject else ""
        if exc.status in (401, 403):
            advice = "check schema_registry_auth= (user and password) and the user's permissions"
        elif exc.status == 409:
            advice = (
                "the new schema is not compatible with the versions registered before under the subject's "
                f"compatibility level ({self._level(subject)}): give added fields a default, keep the type of "
                "existing fields, or write to a new subject (a new topic, or subject_name_strategy='record'); "
                "an administrator can also change the subject's compatibility (PUT /config/<subject>)"
            )
        elif exc.status == 422:
            advice = "the registry does not accept this schema as valid Avro: fix the schema"
        else:
            advice = "check the request against the registry's documentation"
        return SchemaRegistryError(
            f"schema registry {self.url} refused to {doing}{where}: {exc.message} (HTTP {exc.status}, "
            f"error code {exc.code}); {advice}",
            subject=subject,
        )

    def _level(self, subject: str | None) -> str:
        try:
            return self.compatibility(subject)
        except Exception:
            return "unknown"

    def __repr__(self) -> str:
        auth = f" (basic auth as {self.user!r})" if self.user is not None else ""
        return f"<SchemaRegistry {self.url}{auth}>"


def _text(schema: Any) -> str:
    """The schema as compact JSON text: what is sent, and the cache key."""
    return json.dumps(schema, separators=(",", ":"))


def _quote(subject: str) -> str:
    return urllib.parse.quote(subject, safe="")


def _base_url(url: str) -> tuple[urllib.parse.SplitResult, str]:
    """``url`` split, and the registry's base URL: scheme, host, port and path, without credentials or a last ``/``."""
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(
            f"schema_registry must be a URL such as 'http://127.0.0.1:8081', got {url!r}"
        )
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"schema registry {url!r}: use an http:// or https:// URL with a host, e.g. 'http://127.0.0.1:8081'"
        )
    netloc = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    if ":" in parts.hostname:  # IPv6
        netloc = f"[{parts.hostname}]" + (f":{parts.port}" if parts.port else "")
    return parts, urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def _credentials(
    parts: urllib.parse.SplitResult, auth: tuple[str, str] | str | None, url: str
) -> tuple[str, str] | None:
    """Basic auth's ``(user, password)``: from ``auth=`` (a pair or ``"user:password"``) or the URL, or None."""
    if parts.username is not None:
        if auth is not None:
            raise ConfigurationError(
                f"schema registry {url!r}: credentials are given both in the URL and as auth=; keep one"
            )
        return urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password or "")
    if isinstance(auth, str):
        user, sep, password = auth.partition(":")
        if not sep:
            raise ConfigurationError("schema registry auth as a str must be 'user:password'")
        auth = (user, password)
    if auth is not None and not (isinstance(auth, tuple) and len(auth) == 2 and all(isinstance(a, str) for a in auth)):
        raise ConfigurationError(f"schema registry auth must be ('user', 'password'), got {auth!r}")
    return auth


def _tls_context(
    url: str,
    scheme: str,
    *,
    cafile: str | None,
    certfile: str | None,
    keyfile: str | None,
    ssl_context: ssl.SSLContext | None,
) -> ssl.SSLContext | None:
    """The TLS context of an https:// registry (None for http://), checking that the TLS options fit together."""
    tls = {"cafile": cafile, "certfile": certfile, "keyfile": keyfile, "ssl_context": ssl_context}
    given = [name for name, value in tls.items() if value is not None]
    if given and scheme != "https":
        raise ConfigurationError(
            f"schema registry {url!r}: {', '.join(given)} applies only to https:// registries; "
            f"use an https:// URL, or remove {', '.join(given)}"
        )
    if ssl_context is not None and len(given) > 1:
        raise ConfigurationError(
            "schema registry: give ssl_context= or cafile/certfile/keyfile, not both "
            "(load the files into the context yourself)"
        )
    if keyfile is not None and certfile is None:
        raise ConfigurationError("schema registry: keyfile= needs certfile= (the client certificate)")
    if scheme != "https" or ssl_context is not None:
        return ssl_context
    try:
        context = ssl.create_default_context(cafile=cafile)
        if certfile is not None:
            context.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"schema registry {url!r}: cannot load the TLS files ({exc})") from exc
    return context


def registry_from_options(registry: Any, options: dict[str, Any]) -> SchemaRegistry | None:
    """The App's registry: ``schema_registry=`` (a URL or a :class:`SchemaRegistry`) and the
    ``schema_registry_<option>=`` keywords, which this removes from ``options``.

    >>> options = {"schema_registry_timeout": 2, "request_timeout": 5}
    >>> registry_from_options("http://127.0.0.1:8081", options).timeout, options
    (2.0, {'request_timeout': 5})
    >>> registry_from_options(None, {"schema_registry_auth": ("a", "b")})
    Traceback (most recent call last):
    ...
    streamnb.errors.ConfigurationError: schema_registry_auth=... applies only with a schema registry: \
add schema_registry='http://HOST:PORT', or remove it
    """
    given = {key: options.pop(key) for key in [k for k in options if k.startswith("schema_registry_")]}
    unknown = [key for key in given if key.removeprefix("schema_registry_") not in OPTIONS]
    if unknown:
        import difflib

        valid = [f"schema_registry_{name}" for name in OPTIONS]
        close = difflib.get_close_matches(unknown[0], valid, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ConfigurationError(f"unknown option {unknown[0]!r}; {hint}the schema registry takes {', '.join(valid)}")
    settings = {key.removeprefix("schema_registry_"): value for key, value in given.items() if value is not None}
    if registry is None:
        if settings:
            name = next(f"schema_registry_{key}" for key in settings)
            raise ConfigurationError(
                f"{name}=... applies only with a schema registry: add schema_registry='http://HOST:PORT', or remove it"
            )
        return None
    if isinstance(registry, SchemaRegistry):
        if settings:
            raise ConfigurationError(
                "schema_registry= is a SchemaRegistry already: give its options to SchemaRegistry(...), "
                f"not as {', '.join('schema_registry_' + k for k in settings)}"
            )
        return registry
    return SchemaRegistry(registry, **settings)
