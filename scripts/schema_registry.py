"""A small schema registry for tests and benchmarks: the part of Confluent's REST API streamnb uses.

Apicurio Registry cannot be run from what Maven Central serves (its
``apicurio-registry-app`` needs ``apicurio-registry-schema-util-provider``,
which is not published there), so the tests run this instead. It keeps
schemas in memory and serves, with Confluent's paths, bodies and error codes:

- ``GET /subjects``, ``GET /subjects/{s}/versions``, ``GET /subjects/{s}/versions/{n|latest}``
- ``POST /subjects/{s}/versions`` (register; the same schema gets the same global id)
- ``POST /subjects/{s}`` (look a schema up), ``DELETE /subjects/{s}``
- ``GET /schemas/ids/{id}``
- ``GET|PUT /config`` and ``/config/{s}`` (compatibility level, ``BACKWARD`` by default)
- ``POST /compatibility/subjects/{s}/versions/{n|latest}``

Compatibility is checked with fastavro's schema resolution: records generated
from one schema are written with it and read with the other (BACKWARD: the
new schema reads what the latest version wrote; FORWARD: the other way;
FULL: both; ``*_TRANSITIVE``: against every version; NONE: no check).
Optional basic auth and TLS (a certificate and key in PEM files).

    python scripts/schema_registry.py [--port 8081] [--user U --password P] [--certfile C --keyfile K]

or, in Python (tests)::

    server = SchemaRegistryServer().start()      # 127.0.0.1, a free port
    server.url                                   # 'http://127.0.0.1:PORT'
    server.stop(); server.start()                # an outage: the same port and schemas afterwards
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = ["LEVELS", "RegistryState", "SchemaRegistryServer", "compatible"]

LEVELS = ("BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE", "NONE")


def _can_read(reader: Any, writer: Any, samples: int = 25) -> str | None:
    """None if ``reader`` reads what ``writer`` writes (by fastavro's resolution), else why not."""
    from fastavro import parse_schema, schemaless_reader, schemaless_writer
    from fastavro.utils import generate_many

    try:
        parsed_writer, parsed_reader = parse_schema(writer), parse_schema(reader)
        for record in generate_many(writer, samples):
            buf = io.BytesIO()
            schemaless_writer(buf, parsed_writer, record)
            buf.seek(0)
            schemaless_reader(buf, parsed_writer, parsed_reader)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def compatible(level: str, new: Any, versions: list[Any]) -> str | None:
    """None if ``new`` may follow ``versions`` (oldest first) under ``level``, else the reason."""
    if level == "NONE" or not versions:
        return None
    against = versions if level.endswith("_TRANSITIVE") else versions[-1:]
    for old in reversed(against):
        if level.startswith(("BACKWARD", "FULL")):
            problem = _can_read(new, old)
            if problem:
                return f"the new schema cannot read data written with an earlier one: {problem}"
        if level.startswith(("FORWARD", "FULL")):
            problem = _can_read(old, new)
            if problem:
                return f"an earlier schema cannot read data written with the new one: {problem}"
    return None


class RegistryState:
    """Subjects, versions and schemas: kept across a server's stop and start."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.schemas: dict[int, str] = {}  # id -> schema text
        self.ids: dict[str, int] = {}  # canonical text -> id
        self.subjects: dict[str, list[int]] = {}  # subject -> schema id of each version
        self.level = "BACKWARD"
        self.levels: dict[str, str] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request served

    def canonical(self, text: str) -> str:
        from fastavro.schema import to_parsing_canonical_form

        return json.dumps(json.loads(text), sort_keys=True) + "|" + to_parsing_canonical_form(json.loads(text))


class _Reply(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status)
        self.status, self.body = status, body


def _error(status: int, code: int, message: str) -> _Reply:
    return _Reply(status, {"error_code": code, "message": message})


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._serve("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        state = self.server.state
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        state.requests.append((method, path))
        try:
            auth = self.server.auth
            if auth is not None:
                expected = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
                if self.headers.get("Authorization") != expected:
                    raise _error(401, 401, "Unauthorized")
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                raise _error(400, 400, "the request body is not JSON") from None
            with state.lock:
                status, answer = 200, route(state, method, path, body)
        except _Reply as reply:
            status, answer = reply.status, reply.body
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def route(state: RegistryState, method: str, path: str, body: Any) -> Any:
    """Answer one request (``_Reply`` carries errors)."""
    parts = [unquote(p) for p in path.strip("/").split("/")] if path.strip("/") else []
    if parts == ["subjects"] and method == "GET":
        return sorted(state.subjects)
    if parts[:1] == ["subjects"] and len(parts) >= 2:
        subject = parts[1]
        rest = parts[2:]
        if not rest and method == "POST":
            return _lookup(state, subject, body)
        if not rest and method == "DELETE":
            versions = state.subjects.pop(subject, None)
            if versions is None:
                raise _error(404, 40401, f"Subject '{subject}' not found.")
            return list(range(1, len(versions) + 1))
        if rest == ["versions"] and method == "GET":
            return list(range(1, len(_versions(state, subject)) + 1))
        if rest == ["versions"] and method == "POST":
            return _register(state, subject, body)
        if len(rest) == 2 and rest[0] == "versions" and method == "GET":
            versions = _versions(state, subject)
            number = _version(rest[1], versions)
            schema_id = versions[number - 1]
            return {"subject": subject, "version": number, "id": schema_id, "schema": state.schemas[schema_id]}
    if parts[:2] == ["schemas", "ids"] and len(parts) == 3 and method == "GET":
        try:
            schema_id = int(parts[2])
        except ValueError:
            raise _error(404, 40403, f"Schema {parts[2]} not found") from None
        if schema_id not in state.schemas:
            raise _error(404, 40403, f"Schema {schema_id} not found")
        return {"schema": state.schemas[schema_id]}
    if parts[:1] == ["config"] and len(parts) <= 2:
        subject = parts[1] if len(parts) == 2 else None
        if method == "GET":
            level = state.levels.get(subject, state.level) if subject else state.level
            return {"compatibilityLevel": level}
        if method == "PUT":
            level = str((body or {}).get("compatibility", "")).upper()
            if level not in LEVELS:
                raise _error(422, 42203, f"Invalid compatibility level {level!r}")
            if subject:
                state.levels[subject] = level
            else:
                state.level = level
            return {"compatibility": level}
    if parts[:2] == ["compatibility", "subjects"] and len(parts) == 5 and parts[3] == "versions" and method == "POST":
        subject = parts[2]
        versions = _versions(state, subject)
        number = _version(parts[4], versions)
        new = _schema_of(body)
        problem = compatible(_level(state, subject), new, [json.loads(state.schemas[versions[number - 1]])])
        return {"is_compatible": problem is None}
    raise _error(404, 404, f"no route for {method} {path}")


def _level(state: RegistryState, subject: str) -> str:
    return state.levels.get(subject, state.level)


def _versions(state: RegistryState, subject: str) -> list[int]:
    versions = state.subjects.get(subject)
    if not versions:
        raise _error(404, 40401, f"Subject '{subject}' not found.")
    return versions


def _version(text: str, versions: list[int]) -> int:
    if text in ("latest", "-1"):
        return len(versions)
    if not text.isdigit() or not 1 <= int(text) <= len(versions):
        raise _error(404, 40402, f"Version {text} not found.")
    return int(text)


def _schema_of(body: Any) -> Any:
    if not isinstance(body, dict) or not isinstance(body.get("schema"), str):
        raise _error(422, 42201, "Either the input schema or one of its references is invalid: no 'schema' string")
    if body.get("schemaType", "AVRO") != "AVRO":
        raise _error(422, 42201, f"this test registry only serves AVRO schemas, not {body['schemaType']}")
    try:
        from fastavro import parse_schema

        schema = json.loads(body["schema"])
        parse_schema(schema)
    except Exception as exc:
        raise _error(422, 42201, f"Invalid schema: {exc}") from None
    return schema


def _register(state: RegistryState, subject: str, body: Any) -> Any:
    schema = _schema_of(body)
    text = json.dumps(schema, separators=(",", ":"))
    key = state.canonical(text)
    versions = state.subjects.get(subject, [])
    known = state.ids.get(key)
    if known is not None and known in versions:
        return {"id": known}
    problem = compatible(_level(state, subject), schema, [json.loads(state.schemas[i]) for i in versions])
    if problem:
        raise _error(
            409, 409,
            f'Schema being registered is incompatible with an earlier schema for subject "{subject}", '
            f"details: [{problem}]",
        )
    if known is None:
        known = max(state.schemas, default=0) + 1
        state.schemas[known] = text
        state.ids[key] = known
    state.subjects.setdefault(subject, []).append(known)
    return {"id": known}


def _lookup(state: RegistryState, subject: str, body: Any) -> Any:
    schema = _schema_of(body)
    versions = _versions(state, subject)
    known = state.ids.get(state.canonical(json.dumps(schema, separators=(",", ":"))))
    if known is None or known not in versions:
        raise _error(404, 40403, "Schema not found")
    return {"subject": subject, "version": versions.index(known) + 1, "id": known, "schema": state.schemas[known]}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    state: RegistryState
    auth: tuple[str, str] | None


class SchemaRegistryServer:
    """The registry on 127.0.0.1, served from a thread; ``stop()`` and ``start()`` keep port and schemas."""

    def __init__(
        self,
        port: int = 0,
        *,
        auth: tuple[str, str] | None = None,
        certfile: str | None = None,
        keyfile: str | None = None,
        state: RegistryState | None = None,
    ) -> None:
        self.port = port
        self.auth = auth
        self.certfile, self.keyfile = certfile, keyfile
        self.state = state or RegistryState()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.certfile else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[tuple[str, str]]:
        """``(method, path)`` of every request served so far."""
        return self.state.requests

    def start(self) -> SchemaRegistryServer:
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.state, server.auth = self.state, self.auth
        if self.certfile:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.certfile, self.keyfile)
            server.socket = context.wrap_socket(server.socket, server_side=True)
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="schema-registry", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> SchemaRegistryServer:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--certfile")
    parser.add_argument("--keyfile")
    args = parser.parse_args()
    auth = (args.user, args.password or "") if args.user else None
    server = SchemaRegistryServer(args.port, auth=auth, certfile=args.certfile, keyfile=args.keyfile).start()
    print(f"schema registry on {server.url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
