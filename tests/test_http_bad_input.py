"""Bad input over HTTP, against the web role as the stack runs it: ``flasker web`` (gunicorn with
``services/web/gunicorn.conf.py``) serving a reference-like project (houses and their cats, the
REST API, a page with a form) on PostgreSQL.

- schemathesis: at least 2,000 generated requests against the API's own OpenAPI document, with
  every check schemathesis has (``--checks all``: not a server error, status codes, content
  types, response schemas, headers, negative data refused, positive data accepted...);
- malformed bodies and headers sent over raw sockets: each a 4xx with problem details;
- a body over the size limit: 413 problem details under the API, Flask's page elsewhere;
- slow clients sending their headers a byte a second, more of them than threads: normal
  requests are still answered, and the slow ones get 408.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
import typing as t
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
import schemathesis
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS, is_check_class
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from flasker import Project

from .conftest import FLASKER, ROOT, SECRET, Process, free_port, unique_package, wait_for

GUNICORN_CONFIG = ROOT / "services" / "web" / "gunicorn.conf.py"
WORKERS, THREADS = 2, 4  # the stack's defaults (WEB_CONCURRENCY, WEB_THREADS)
HEADER_TIMEOUT = 3  # WEB_HEADER_TIMEOUT, shorter than the stack's 10 s to keep the test short
MIB = 1024 * 1024
PROBLEM = "application/problem+json"

MODELS = '''
from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, ForeignKey, String, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from flasker import Model, current_project
from flasker.ext.api import APIManager

current_project.register_manager(APIManager(add_all_models=True))


class House(Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True),
                                                    server_default=func.now())
    cats: Mapped[list[Cat]] = relationship(back_populates="house", cascade="all, delete-orphan",
                                           passive_deletes=True, order_by="Cat.name")


class Cat(Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    house_id: Mapped[int] = mapped_column(ForeignKey("houses.id", ondelete="CASCADE"),
                                          index=True)
    house: Mapped[House] = relationship(back_populates="cats")
'''

VIEWS = '''
from flask import request

from flasker import current_project

app = current_project.app


@app.get("/")
def index():
    return "<!doctype html><title>Houses</title><h1>Houses</h1>"


@app.post("/houses")
def add_house():
    return f"<!doctype html><title>Added</title><p>{len(request.form.get('name', ''))}</p>"
'''


@dataclass
class Web:
    """The running web role: its base URL, its log, and what was sent to it."""

    url: str
    port: int
    folder: Path
    process: Process
    sent: dict[str, int] = field(default_factory=dict)

    def count(self, what: str, n: int = 1) -> None:
        self.sent[what] = self.sent.get(what, 0) + n


@pytest.fixture(scope="module")
def database(pg_url: str) -> Iterator[str]:
    """A database of its own on the session's PostgreSQL, dropped afterwards."""
    name = f"bad_input_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield sa.make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory, database: str) -> Iterator[Web]:
    package = unique_package()
    folder = tmp_path_factory.mktemp("web")
    (folder / "default.cfg").write_text(
        f"[PROJECT]\nNAME = Houses API\nMODULES = {package}.models, {package}.views\n"
        f"DB_URL = {database}\n[APP]\nSECRET_KEY = {SECRET}\n")
    (folder / package).mkdir()
    (folder / package / "__init__.py").write_text("")
    (folder / package / "models.py").write_text(MODELS)
    (folder / package / "views.py").write_text(VIEWS)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("FLASKER__") and k != "FLASKER_CONFIG"}
    created = subprocess.run([FLASKER, "db", "create"], cwd=folder, capture_output=True,
                             text=True, timeout=60, env=env)
    assert created.returncode == 0, created.stderr
    port = free_port()
    process = Process(
        ["web", "--gunicorn-config", str(GUNICORN_CONFIG), "-b", f"127.0.0.1:{port}"],
        # This project's file, whatever an earlier test left in os.environ (module scope: the
        # function-scoped environment cleaning has not run yet).
        cwd=folder, env={"WEB_CONCURRENCY": str(WORKERS), "WEB_THREADS": str(THREADS),
                         "WEB_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
                         "FLASKER_CONFIG": str(folder / "default.cfg")})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: requests.get(f"{url}/healthz", timeout=2).ok, timeout=60,
                 what=f"flasker web; log {process.log}")
        yield Web(url, port, folder, process)
    finally:
        process.stop()


# -- raw HTTP ---------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def problem(self) -> dict[str, t.Any]:
        """The problem details of the reply, checked for their shape."""
        assert self.headers.get("content-type") == PROBLEM, self
        problem = json.loads(self.body)
        assert problem["status"] == self.status
        assert problem["title"] and problem["detail"] and problem["type"]
        return t.cast(dict[str, t.Any], problem)


def raw(web: Web, data: bytes, *, timeout: float = 10.0) -> Reply:
    """Send ``data`` as it is on a new connection; read the whole reply."""
    web.count("raw requests")
    with socket.create_connection(("127.0.0.1", web.port), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
    return parse(received)


def parse(received: bytes) -> Reply:
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 "), received[:200]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Reply(int(lines[0].split()[1]), headers, body)


def request(method: str, path: str, headers: t.Sequence[tuple[bytes, bytes]] = (),
            body: bytes = b"", content_length: bytes | None = None) -> bytes:
    """An HTTP/1.1 request, byte for byte (closing the connection after it)."""
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1"]
    lines += [name + b": " + value for name, value in headers]
    if content_length is not None:
        lines.append(b"Content-Length: " + content_length)
    elif body:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


JSON = (b"Content-Type", b"application/json")
HOUSES = "/api/houses/"


@dataclass(frozen=True)
class Malformed:
    name: str
    data: bytes
    status: int

    def __str__(self) -> str:
        return self.name


MALFORMED = [
    # Bodies: the API reads them.
    Malformed("truncated JSON", request("POST", HOUSES, [JSON], b'{"name": "x"'), 400),
    Malformed("a body declared text/plain",
              request("POST", HOUSES, [(b"Content-Type", b"text/plain")], b'{"name": "x"}'),
              415),
    Malformed("no Content-Type", request("POST", HOUSES, [], b'{"name": "x"}'), 415),
    Malformed("a form instead of JSON",
              request("POST", HOUSES, [(b"Content-Type", b"application/x-www-form-urlencoded")],
                      b"name=x"), 415),
    Malformed("invalid UTF-8", request("POST", HOUSES, [JSON], b'{"name": "\xff\xfe"}'), 400),
    Malformed("Latin-1 declared",
              request("POST", HOUSES, [(b"Content-Type", b"application/json; charset=latin-1")],
                      b'{"name": "caf\xe9"}'), 400),
    Malformed("a huge integer key",
              request("POST", HOUSES, [JSON], b'{"name": "h", "id": 1' + b"0" * 40 + b"}"), 422),
    Malformed("an integer past 64 bits",
              request("POST", HOUSES, [JSON], b'{"name": "h", "id": 9223372036854775808}'), 422),
    Malformed("a number past a double",
              request("POST", HOUSES, [JSON], b'{"name": "h", "id": 1e400}'), 400),
    Malformed("a number where a name goes",
              request("POST", HOUSES, [JSON], b'{"name": 123456789012345678901234567890}'), 422),
    Malformed("deeply nested arrays",
              request("POST", HOUSES, [JSON], b"[" * 100_000 + b"]" * 100_000), 400),
    Malformed("deeply nested objects",
              request("POST", HOUSES, [JSON], b'{"a":' * 10_000 + b"1" + b"}" * 10_000), 400),
    Malformed("JSON that is not an object", request("POST", HOUSES, [JSON], b'"house"'), 422),
    Malformed("Content-Length shorter than the body",
              request("POST", HOUSES, [JSON], b'{"name": "abcdefgh"}', content_length=b"5"), 400),
    Malformed("bad chunked encoding",
              b"POST /api/houses/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
              400),
    # Headers and request lines: gunicorn refuses them before the app sees them.
    Malformed("Content-Length not a number",
              request("POST", HOUSES, [JSON], b'{"name": "x"}', content_length=b"abc"), 400),
    Malformed("Content-Length negative",
              request("POST", HOUSES, [JSON], b'{"name": "x"}', content_length=b"-1"), 400),
    Malformed("Content-Length twice",
              request("POST", HOUSES, [JSON, (b"Content-Length", b"3")], b'{"name": "x"}'), 400),
    Malformed("Content-Length with Transfer-Encoding",
              b"POST /api/houses/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\nConnection: close\r\n\r\n"
              b"0\r\n\r\n", 400),
    Malformed("a NUL in a header", request("GET", HOUSES, [(b"X-Thing", b"a\x00b")]), 400),
    Malformed("a CR in a header", request("GET", HOUSES, [(b"X-Thing", b"a\rb")]), 400),
    Malformed("a bare LF in a header", request("GET", HOUSES, [(b"X-Thing", b"a\nb")]), 400),
    Malformed("a CR in X-Request-ID", request("GET", HOUSES, [(b"X-Request-ID", b"ab\rcd")]),
              400),
    Malformed("an over-long header line", request("GET", HOUSES, [(b"X-Long", b"a" * 10_000)]),
              431),
    Malformed("too many headers",
              request("GET", HOUSES, [(f"X-H{i}".encode(), b"v") for i in range(150)]), 431),
    Malformed("an over-long URL", request("GET", HOUSES + "?" + "a" * 9000), 414),
    Malformed("raw UTF-8 in the URL",
              b"GET /api/houses/caf\xc3\xa9 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 400),
    Malformed("raw UTF-8 in the query",
              b"GET /api/houses/?sort=\xc3\xa9 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
              400),
    Malformed("a malformed method",
              b"G@T /api/houses/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 400),
    Malformed("an unknown HTTP version",
              b"GET /api/houses/ HTTP/9.9\r\nHost: x\r\nConnection: close\r\n\r\n", 400),
    Malformed("an unknown expectation", request("POST", HOUSES, [JSON, (b"Expect", b"200-ok")],
                                                b'{"name": "x"}'), 417),
    # URLs the app decodes.
    Malformed("percent-encoded non-ASCII key",
              request("GET", "/api/houses/caf%C3%A9"), 404),
    Malformed("percent-encoding that is not UTF-8", request("GET", "/api/houses/%ff%fe"), 404),
    Malformed("a broken percent-encoding", request("GET", "/api/houses/%zz"), 404),
    Malformed("a filter that is not UTF-8", request("GET", "/api/houses/?filter=%ff"), 400),
    Malformed("an unknown sort column", request("GET", "/api/houses/?sort=price"), 400),
    Malformed("a limit that is not a number", request("GET", "/api/houses/?limit=%F0%9F%98%80"),
              400),
]


@pytest.mark.parametrize("case", MALFORMED, ids=str)
def test_malformed_input_gets_a_4xx_problem(web: Web, case: Malformed) -> None:
    reply = raw(web, case.data)
    assert reply.status == case.status, reply
    reply.problem()


def test_odd_but_valid_headers_are_served(web: Web) -> None:
    for name, value in [(b"Accept", b"\xff\xfe;q=abc"), (b"If-None-Match", b'"\xff'),
                        (b"Authorization", b"Bearer \xff\xfe"), (b"Cookie", b"s=\xff; a=b=c;;"),
                        (b"Range", b"bytes=9-1"), (b"X-Forwarded-For", b"\xff"),
                        (b"Accept-Language", b"*" * 2000)]:
        reply = raw(web, request("GET", HOUSES, [(name, value)]))
        assert reply.status == 200, (name, reply)
        assert reply.headers["content-type"] == "application/json"


# -- the size limit ---------------------------------------------------------------------------


def test_the_default_limit_is_16_mib_and_overridable(tmp_path: Path) -> None:
    path = tmp_path / "default.cfg"
    path.write_text("[PROJECT]\nNAME = Limits\n")
    project = Project(path, environ={}, overrides={"APP": {"TESTING": True}})
    assert project.app.config["MAX_CONTENT_LENGTH"] == 16 * MIB
    project.close()
    project = Project(path, environ={"FLASKER__APP__MAX_CONTENT_LENGTH": "1024"},
                      overrides={"APP": {"TESTING": True}})
    assert project.app.config["MAX_CONTENT_LENGTH"] == 1024
    project.close()


def test_a_declared_body_over_the_limit_gets_413_at_once(web: Web) -> None:
    # The server answers from Content-Length alone, before any of the body is sent.
    reply = raw(web, request("POST", HOUSES, [JSON], content_length=str(16 * MIB + 1).encode()))
    assert reply.status == 413
    problem = reply.problem()
    assert problem["type"].endswith("payload-too-large")
    assert "16,777,216 bytes" in problem["detail"]


def test_a_chunked_body_over_the_limit_gets_413(web: Web) -> None:
    head = (b"POST /api/houses/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    chunk = b"%x\r\n" % MIB + b" " * MIB + b"\r\n"
    with socket.create_connection(("127.0.0.1", web.port), timeout=30) as sock:
        web.count("raw requests")

        def send() -> None:
            try:
                sock.sendall(head + chunk * 20 + b"0\r\n\r\n")  # 20 MiB
            except OSError:
                pass  # the server may close once it has answered

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        sender.join(30)
    reply = parse(received)
    assert reply.status == 413
    assert reply.problem()["type"].endswith("payload-too-large")


def test_a_body_at_the_limit_is_read(web: Web) -> None:
    # 16 MiB of JSON: a string too long for the column, so refused for what it says (422).
    body = b'{"name": "' + b"a" * (16 * MIB - 12) + b'"}'
    assert len(body) == 16 * MIB
    web.count("HTTP requests")
    response = requests.post(f"{web.url}{HOUSES}", data=body, timeout=30,
                             headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text[:300]
    assert response.headers["Content-Type"] == PROBLEM


def test_a_form_with_broken_chunked_encoding_gets_400_not_500(web: Web) -> None:
    reply = raw(web, b"POST /houses HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\n"
                     b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                     b"zz\r\nabc\r\n0\r\n\r\n")
    assert reply.status == 400
    assert reply.headers["content-type"].startswith("text/html")


def test_a_form_over_the_limit_gets_flasks_page_elsewhere(web: Web) -> None:
    reply = raw(web, request("POST", "/houses",
                             [(b"Content-Type", b"application/x-www-form-urlencoded")],
                             content_length=str(16 * MIB + 1).encode()))
    assert reply.status == 413
    assert reply.headers["content-type"].startswith("text/html")
    assert b"Request Entity Too Large" in reply.body


# -- schemathesis ----------------------------------------------------------------------------

CASES = 2000


def _negative_data_rejected(ctx: t.Any, response: t.Any, case: t.Any) -> bool | None:
    """schemathesis's negative_data_rejection, 414 counted as a refusal too.

    gunicorn refuses a request line over 8,190 bytes with 414 before the app reads it; no
    schema bounds a URL in bytes (a filter's character may take 12 percent-encoded), so a
    request made invalid by repeating parameters may get it instead of the API's 400. The
    API itself answers 413 only past MAX_CONTENT_LENGTH (16 MiB), a body no case sends.
    """
    if response.status_code == 414:
        return None
    return negative_data_rejection(ctx, response, case)


@pytest.mark.faults  # a load held for about a minute
def test_schemathesis_with_every_check_finds_nothing_in_2000_cases(web: Web) -> None:
    schema = schemathesis.openapi.from_url(f"{web.url}/api/openapi.json")
    operations = [t.cast(t.Any, result).ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    # Two modes per operation: valid requests, and requests the schema says are invalid; a
    # quarter more than an even share, as an operation without parameters has fewer cases.
    examples = CASES * 5 // 4 // (2 * len(operations)) + 1
    calls: dict[str, int] = {}
    # Every check schemathesis has ('--checks all'), positive data acceptance as it ships:
    # the document says exactly which requests the server accepts (filters, sort and fields
    # by their patterns); what no schema can say (a related key or a cursor that names
    # nothing) is a 404 or a 409, which a valid request may get. Negative data rejection
    # counts the web server's 414 as the refusal it is.
    checks = [check for check in CHECKS.get_all()
              if not is_check_class(check) and check is not negative_data_rejection]
    checks.append(_negative_data_rejected)
    assert positive_data_acceptance in checks
    assert len(checks) >= 10, [c.__name__ for c in checks]
    unsatisfiable = []
    session = requests.Session()
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                      suppress_health_check=list(HealthCheck))
            def check(case: t.Any) -> None:
                calls[case.operation.label] = calls.get(case.operation.label, 0) + 1
                case.call_and_validate(session=session, checks=checks)

            try:
                check()
            except Unsatisfiable:  # nothing to make invalid: no parameter, no body
                unsatisfiable.append(operation.label)
    total = sum(calls.values())
    web.count("schemathesis cases", total)
    print(f"schemathesis: {total} cases over {len(operations)} operations, checks"
          f" {sorted(c.__name__ for c in checks)}")
    assert total >= CASES
    assert set(unsatisfiable) <= {"GET /", "GET /openapi.json"}


# -- slow clients ----------------------------------------------------------------------------


def _slowloris(port: int, stop: threading.Event, replies: list[bytes]) -> None:
    """Send a request's head a byte a second; keep what the server answers."""
    head = b"GET /api/houses/ HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100 + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.settimeout(1.0)
        for byte in head:
            if stop.is_set():
                return
            try:
                sock.sendall(bytes([byte]))
                answer = sock.recv(65536)
            except TimeoutError:
                continue  # nothing yet: send the next byte
            except OSError:
                return
            if answer:
                replies.append(answer)
                return


@pytest.mark.faults  # a fault held for a few seconds
def test_slow_clients_do_not_stall_the_web_role(web: Web) -> None:
    slow = 3 * WORKERS * THREADS  # three times as many as the threads of every worker
    stop = threading.Event()
    replies: list[bytes] = []
    threads = [threading.Thread(target=_slowloris, args=(web.port, stop, replies), daemon=True)
               for _ in range(slow)]
    for thread in threads:
        thread.start()
    web.count("slow connections", slow)
    time.sleep(1.5)  # every slow connection has sent a byte or two
    latencies = []
    try:
        deadline = time.monotonic() + HEADER_TIMEOUT + 1
        while time.monotonic() < deadline:
            started = time.monotonic()
            # A stalled server would let this time out: every thread held by a slow client.
            response = requests.get(f"{web.url}/api/houses/?limit=1", timeout=10)
            latencies.append(time.monotonic() - started)
            web.count("HTTP requests")
            assert response.status_code == 200
            time.sleep(0.25)
        # Past the header timeout, the slow clients are told so and let go.
        for thread in threads:
            thread.join(HEADER_TIMEOUT + 10)
    finally:
        stop.set()
    print(f"normal requests beside {slow} slow clients: {len(latencies)},"
          f" slowest {max(latencies) * 1000:.0f} ms")
    assert len(replies) == slow
    for received in replies:
        reply = parse(received)
        assert reply.status == 408
    log = web.process.output()
    assert log.count("its request's head did not come within") >= slow


# -- what the server logged ---------------------------------------------------------------------


def test_no_request_was_a_server_error(web: Web) -> None:
    """Last: the access log of every request above holds no 500, the log no traceback."""
    log = web.process.output()
    assert '" 500 ' not in log, [line for line in log.splitlines() if '" 500 ' in line][:5]
    assert "Traceback" not in log
    print(f"requests sent: {web.sent}")
