"""The stack locked down: containers, Redis's password, closed ports, Flower, headers, secrets.

One stack for the module, with the stack's own defaults (Secure cookies: the other stack
tests turn them off for their HTTP client). Each container is inspected as Docker runs it
and from inside (its PID 1); Redis is asked without its password from inside the stack's
network; the image, built with this stack's secrets in Compose's environment, is scanned
layer by layer (``docker save``) and in its history for every one of them.
"""

from __future__ import annotations

import json
import subprocess
import tarfile
import typing as t
import uuid
import zlib
from pathlib import Path

import pytest
import requests

from flasker.security import DEFAULT_CSP

from .conftest import ROOT, wait_for
from .conftest_stack import (
    TEST_IMAGE,
    Stack,
    build_image,
    example_variables,
    run,
    stack_environ,
    stack_test,
)

pytestmark = [pytest.mark.docker, pytest.mark.faults, stack_test]

RUNNING = ("web", "worker", "beat", "flower", "postgres", "redis")
NODE_PREFIX = "houses-and-cats@"
# What proves that the scan reads the layers' files: the reference app's name, in its .cfg.
MARKER = b"NAME = Houses and Cats"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[Stack]:
    build_image()
    locked = Stack(tmp_path_factory.mktemp("lockdown"))
    # The stack's own default, as 'make up' runs it.
    locked.values.pop("FLASKER__APP__SESSION_COOKIE_SECURE", None)
    locked.env_file.write_text("".join(f"{k}={v}\n" for k, v in locked.values.items()))
    locked.up()
    yield locked
    locked.down()


@pytest.fixture(scope="module")
def containers(stack: Stack) -> dict[str, dict[str, t.Any]]:
    """``docker inspect`` of each container of the stack, by service."""
    ids = {c["Service"]: c["ID"] for c in stack.containers()}
    found = json.loads(run(["docker", "inspect", *ids.values()]).stdout)
    by_id = {c["Id"]: c for c in found}
    return {service: next(c for i, c in by_id.items() if i.startswith(short))
            for service, short in ids.items()}


def secrets(stack: Stack) -> dict[str, str]:
    """The stack's generated secrets: the variables that are 'change-me' in .env.example."""
    found = {k: stack.values[k] for k, v in example_variables().items() if v == "change-me"}
    assert sorted(found) == ["FLASKER__APP__SECRET_KEY", "FLOWER_PASSWORD",
                             "POSTGRES_PASSWORD", "REDIS_PASSWORD"]
    assert all(len(v) >= 16 for v in found.values())
    return found


# -- the containers ---------------------------------------------------------------------------


def _proc_status(container_id: str) -> dict[str, str]:
    text = run(["docker", "exec", container_id, "cat", "/proc/1/status"]).stdout
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


def test_every_container_runs_locked_down(containers: dict[str, dict[str, t.Any]]) -> None:
    assert set(RUNNING) <= set(containers)
    for service, info in containers.items():
        host, config = info["HostConfig"], info["Config"]
        user = config["User"]
        assert user and user.split(":")[0] not in ("root", "0"), (service, user)
        assert host["ReadonlyRootfs"] is True, service
        assert "/tmp" in (host["Tmpfs"] or {}), service
        assert host["CapDrop"] == ["ALL"] and not host["CapAdd"], service
        assert "no-new-privileges:true" in (host["SecurityOpt"] or []), service
        assert host["Privileged"] is False, service
        if service not in RUNNING:
            continue  # migrate: done (exit 0) before the others started
        assert info["State"]["Running"], service
        # What runs is what was asked: PID 1 is not root, holds no capability, gains none.
        status = _proc_status(info["Id"])
        assert "0" not in status["Uid"].split(), (service, status["Uid"])
        assert int(status["CapEff"], 16) == 0 and int(status["CapPrm"], 16) == 0, service
        assert status["NoNewPrivs"] == "1", service
        wrote = run(["docker", "exec", info["Id"], "sh", "-c",
                     "touch /tmp/probe && rm /tmp/probe && touch /probe"], check=False)
        assert wrote.returncode != 0 and "Read-only file system" in wrote.stderr, (
            service, wrote.stderr)


def test_postgres_and_redis_are_not_published(
        containers: dict[str, dict[str, t.Any]]) -> None:
    for service in ("postgres", "redis"):
        assert run(["docker", "port", containers[service]["Id"]]).stdout.strip() == "", service
        assert not containers[service]["HostConfig"]["PortBindings"], service
    # Only web and flower are, on the loopback address.
    for service, port in (("web", 8000), ("flower", 5555)):
        published = run(["docker", "port", containers[service]["Id"], str(port)]).stdout
        assert published.strip().startswith("127.0.0.1:"), (service, published)


PING = """
import os, redis
url = os.environ["FLASKER__CELERY__BROKER_URL"]
try:
    redis.Redis(host="redis", port=6379, socket_timeout=5).ping()
    print("ANONYMOUS pong")
except redis.exceptions.AuthenticationError as e:
    print("ANONYMOUS refused:", e)
try:
    redis.Redis(host="redis", port=6379, password="not-the-password-0000",
                socket_timeout=5).ping()
    print("WRONG pong")
except redis.exceptions.AuthenticationError as e:
    print("WRONG refused:", e)
print("PASSWORD", redis.Redis.from_url(url, socket_timeout=5).ping())
"""


def test_redis_asks_for_its_password_inside_the_network(
        stack: Stack, containers: dict[str, dict[str, t.Any]]) -> None:
    out = stack.compose("exec", "-T", "web", "python", "-c", PING).stdout
    # redis-py asks "HELLO" or "PING" first, depending on its version: refused either way.
    assert "ANONYMOUS refused:" in out and "authenticated" in out.lower(), out
    assert "WRONG refused: invalid username-password pair" in out, out
    assert "PASSWORD True" in out, out
    # The app reaches Redis with it: the broker is ready and a task runs through it.
    result = stack.shell("from app.tasks import census\n"
                         "print('CENSUS', census.delay().get(timeout=60))\n").stdout
    assert "CENSUS {'houses':" in result
    # The password is in no command line: not in the container's command, nor in PID 1's.
    password = stack.values["REDIS_PASSWORD"]
    redis_info = containers["redis"]
    assert password not in json.dumps([redis_info["Config"]["Cmd"], redis_info["Args"],
                                       redis_info["Path"]])
    cmdline = run(["docker", "exec", redis_info["Id"], "cat", "/proc/1/cmdline"]).stdout
    assert "redis-server" in cmdline and password not in cmdline


def test_redis_refuses_a_short_password(stack: Stack) -> None:
    short = stack.compose("run", "--rm", "--no-deps", "-T", "-e", "REDISCLI_AUTH=change-me",
                          "redis", check=False, timeout=120)
    assert short.returncode == 1
    assert "REDIS_PASSWORD is shorter than 16 characters" in short.stderr


def test_flower_refuses_without_credentials(stack: Stack) -> None:
    flower = stack.url("flower", 5555)
    user, password = stack.values["FLOWER_USER"], stack.values["FLOWER_PASSWORD"]
    for path in ("/", "/api/workers", "/tasks", "/broker"):
        assert requests.get(flower + path, timeout=10).status_code == 401, path
        wrong = requests.get(flower + path, auth=(user, "not-the-password-0000"), timeout=10)
        assert wrong.status_code == 401, path
    assert requests.get(flower, auth=(user, password), timeout=10).status_code == 200

    def workers() -> list[str]:
        reply = requests.get(f"{flower}/api/workers", params={"refresh": "1"},
                             auth=(user, password), timeout=20)
        return [name for name in reply.json() if name.startswith(NODE_PREFIX)]

    # Flower reaches the workers through the password-protected broker.
    assert wait_for(workers, timeout=60, interval=2, what="flower to see the worker")


# -- what web answers -------------------------------------------------------------------------


def test_web_answers_with_security_headers_and_secure_cookies(stack: Stack) -> None:
    web = stack.url("web", 8000)
    for path, status in (("/", 200), ("/static/bootstrap.min.css", 200), ("/readyz", 200),
                         ("/houses/999999", 404), ("/tasks", 405)):
        reply = requests.get(web + path, timeout=10)
        assert reply.status_code == status, path
        assert reply.headers["Content-Security-Policy"] == DEFAULT_CSP, path
        assert reply.headers["X-Content-Type-Options"] == "nosniff", path
        assert reply.headers["Referrer-Policy"] == "strict-origin-when-cross-origin", path
        # Plain HTTP, and a client cannot claim otherwise: no proxy is trusted (hops 0).
        assert "Strict-Transport-Security" not in reply.headers, path
    forged = requests.get(web, headers={"X-Forwarded-Proto": "https"}, timeout=10)
    assert "Strict-Transport-Security" not in forged.headers
    cookie = requests.get(web, timeout=10).headers["Set-Cookie"]
    assert cookie.startswith("session=")
    assert "; Secure" in cookie and "; HttpOnly" in cookie and "; SameSite=Lax" in cookie


# -- no secret in the image -------------------------------------------------------------------


def _scan(chunks: t.Iterable[bytes], needles: t.Collection[bytes]) -> set[bytes]:
    """The needles found in a stream of bytes (gzip members decompressed by the caller)."""
    found: set[bytes] = set()
    keep = max(len(n) for n in needles) - 1
    tail = b""
    for chunk in chunks:
        window = tail + chunk
        found.update(n for n in needles if n not in found and n in window)
        tail = window[-keep:]
    return found


def _member_chunks(stream: t.IO[bytes], size: int = 1 << 20) -> t.Iterator[bytes]:
    """A member of 'docker save', decompressed when it is a gzip blob (OCI layouts)."""
    first = stream.read(size)
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if first[:2] == b"\x1f\x8b" else None
    chunk = first
    while chunk:
        yield inflate.decompress(chunk) if inflate else chunk
        chunk = stream.read(size)


def _scan_saved_image(image: str, needles: t.Collection[bytes]) -> set[bytes]:
    found: set[bytes] = set()
    with subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE) as save:
        assert save.stdout is not None
        with tarfile.open(fileobj=save.stdout, mode="r|") as archive:
            for member in archive:
                extracted = archive.extractfile(member) if member.isfile() else None
                if extracted is not None:
                    found |= _scan(_member_chunks(extracted), needles)
    assert save.returncode == 0
    return found


def test_no_secret_of_the_env_file_is_in_the_image(stack: Stack) -> None:
    """Built as 'make up' builds it, with this stack's .env in Compose's environment."""
    tag = f"lockdown-{uuid.uuid4().hex[:8]}"
    image = f"{TEST_IMAGE}:{tag}"
    run(["docker", "compose", "--project-name", stack.name, "--project-directory", ROOT,
         "--file", ROOT / "compose.yaml", "--env-file", stack.env_file, "build", "web"],
        env=stack_environ(FLASKER_TAG=tag), timeout=1500)
    try:
        values = secrets(stack)
        needles = {v.encode() for v in values.values()}
        history = run(["docker", "history", "--no-trunc", "--format", "{{.CreatedBy}}",
                       image]).stdout
        inspect = run(["docker", "image", "inspect", image]).stdout
        assert "compileall" in history  # the build's own steps are there to be read
        for key, value in values.items():
            assert value not in history, f"{key} is in the image's history"
            assert value not in inspect, f"{key} is in the image's configuration"
        found = _scan_saved_image(image, {*needles, MARKER})
        assert MARKER in found, "the scan read no file of the layers"
        leaked = [k for k, v in values.items() if v.encode() in found]
        assert leaked == [], f"{leaked} found in the image's layers"
    finally:
        run(["docker", "image", "rm", image], check=False)


def test_the_scan_finds_a_secret_where_there_is_one(tmp_path: Path) -> None:
    """The scanner itself: a needle across two chunks, and inside a gzip blob."""
    secret = b"0123456789abcdef" * 3
    data = b"x" * 1000 + secret + b"y" * 1000
    chunks = [data[:1010], data[1010:]]
    assert _scan(chunks, {secret, b"absent-needle"}) == {secret}
    blob = tmp_path / "blob"
    blob.write_bytes(zlib.compress(data, wbits=16 + zlib.MAX_WBITS))
    with blob.open("rb") as stream:
        assert _scan(_member_chunks(stream, size=512), {secret}) == {secret}
