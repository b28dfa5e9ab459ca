"""The containerized stack: the image, compose.yaml, the roles' settings and the reference app.

Tests marked ``docker`` build the image once per session (``make build``) and run the stack
under a unique compose project name, always taken down with its volumes. The others check
the pieces the stack is made of (gunicorn and Flower settings, ``flasker ping``, the
reference app's migrations) without Docker.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import typing as t
import uuid
from pathlib import Path

import pytest
import requests

from .conftest import ROOT, SECRET, free_port, unavailable, unique_package, wait_for, write_project
from .conftest_stack import (
    Stack,
    build_image,
    example_variables,
    make_env_file,
    run,
    stack_environ,
    stack_test,
)

if t.TYPE_CHECKING:
    from .conftest import Process

VENV_BIN = Path(sys.executable).parent
APP_SERVICES = ("web", "worker", "beat", "flower")
SERVICES = (*APP_SERVICES, "postgres", "redis")
NODE_PREFIX = "houses-and-cats@"
QUEUE = "houses-and-cats"
CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


# -- reading the reference app's pages ---------------------------------------------------------


def csrf_token(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, f"no CSRF token in the page:\n{html[:2000]}"
    return match.group(1)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def count_rows(stack: Stack) -> tuple[int, int]:
    """The numbers of houses and cats, read in the web container by 'flasker shell'."""
    out = stack.shell(
        "import sqlalchemy as sa\n"
        "count = lambda m: db.scalar(sa.select(sa.func.count()).select_from(m))\n"
        "print('COUNTS', count(House), count(Cat))\n"
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("COUNTS"))
    houses, cats = line.split()[1:]
    return int(houses), int(cats)


# -- files: compose config, env generation, lint ---------------------------------------------


@pytest.mark.docker
def test_compose_config_accepts_the_example_env() -> None:
    if shutil.which("docker") is None:
        unavailable("the docker CLI is not installed")
    run(["docker", "compose", "--env-file", ".env.example", "config", "--quiet"],
        env=stack_environ())
    config = json.loads(run(["docker", "compose", "--env-file", ".env.example", "config",
                             "--format", "json"], env=stack_environ()).stdout)
    services = config["services"]
    assert set(services) == {*SERVICES, "migrate"}
    # Only web and flower are published, and on 127.0.0.1 by default.
    published = {name: s.get("ports", []) for name, s in services.items() if s.get("ports")}
    assert sorted(published) == ["flower", "web"]
    assert [(p["host_ip"], p["published"], p["target"]) for p in published["web"]] == [
        ("127.0.0.1", "8000", 8000)]
    assert [(p["host_ip"], p["published"], p["target"]) for p in published["flower"]] == [
        ("127.0.0.1", "5555", 5555)]
    # One image for every role, the base images from the variables' public defaults.
    assert {services[s]["image"] for s in (*APP_SERVICES, "migrate")} == {"flasker:dev"}
    env = stack_environ()
    if "POSTGRES_IMAGE" not in env:
        assert services["postgres"]["image"] == "postgres:17"
    if "REDIS_IMAGE" not in env:
        assert services["redis"]["image"] == "redis:7"
    assert services["web"]["build"]["args"]["PYTHON_IMAGE"] == env.get(
        "PYTHON_IMAGE", "python:3.12-slim")
    for name in ("web", "worker", "beat"):
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully")
    for name in SERVICES:
        assert services[name]["healthcheck"]["test"], name
    # Every setting of the app comes as a FLASKER__ variable.
    app_env = services["worker"]["environment"]
    assert app_env["FLASKER__CELERY__BROKER_URL"] == "redis://:change-me@redis:6379/0"
    assert app_env["FLASKER__PROJECT__DB_URL"].startswith("postgresql+psycopg://flasker:")


@pytest.mark.docker
@pytest.mark.parametrize("missing", ["FLASKER__APP__SECRET_KEY", "POSTGRES_PASSWORD",
                                     "REDIS_PASSWORD", "FLOWER_USER", "FLOWER_PASSWORD"])
def test_compose_refuses_a_missing_required_variable(tmp_path: Path, missing: str) -> None:
    if shutil.which("docker") is None:
        unavailable("the docker CLI is not installed")
    values = example_variables()
    del values[missing]
    env_file = tmp_path / "partial.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    result = run(["docker", "compose", "--env-file", env_file, "config", "--quiet"],
                 env=stack_environ(), check=False)
    assert result.returncode != 0
    assert f"required variable {missing} is missing" in result.stderr
    assert "set " in result.stderr and ".env" in result.stderr


def test_make_writes_env_with_fresh_secrets(tmp_path: Path) -> None:
    first = make_env_file(tmp_path / "one.env")
    second = make_env_file(tmp_path / "two.env")
    example = example_variables()
    secrets = [k for k, v in example.items() if v == "change-me"]
    assert sorted(secrets) == ["FLASKER__APP__SECRET_KEY", "FLOWER_PASSWORD",
                               "POSTGRES_PASSWORD", "REDIS_PASSWORD"]
    for key in secrets:
        assert re.fullmatch(r"[0-9a-f]{48}", first[key]), (key, first[key])
        assert first[key] != second[key]
    assert len({first[k] for k in secrets}) == len(secrets)
    # Everything else is the example's, comments included.
    assert {k: v for k, v in first.items() if k not in secrets} == {
        k: v for k, v in example.items() if k not in secrets}
    assert (tmp_path / "one.env").stat().st_mode & 0o077 == 0
    # Never rewritten: the secrets of a running stack stay as they are.
    before = (tmp_path / "one.env").read_text()
    make_env_file(tmp_path / "one.env")
    assert (tmp_path / "one.env").read_text() == before


def test_make_help_lists_the_stack_targets() -> None:
    out = run(["make", "-s", "help"]).stdout
    for target in ("up", "down", "logs", "ps", "shell", "migrate", "build", "push", "test",
                   "bench", "lint", "clean", "help"):
        assert re.search(rf"^  make {target} +\S", out, re.M), target


def test_make_push_needs_a_registry() -> None:
    result = run(["make", "-s", "-o", "build", "push", "REGISTRY="], check=False)
    assert result.returncode != 0
    assert "make push REGISTRY=host:port" in result.stderr


def _tool(name: str) -> str:
    path = shutil.which(name, path=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if path is None:
        unavailable(f"{name} is not installed (pip install 'flasker[test]' brings it)")
    return path


def test_dockerfile_passes_hadolint() -> None:
    result = run([_tool("hadolint"), "Dockerfile"], check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_shell_scripts_pass_shellcheck() -> None:
    scripts = [ROOT / ".ci" / "run", *sorted(ROOT.glob("services/**/*.sh"))]
    result = run([_tool("shellcheck"), *scripts], check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerignore_keeps_secrets_and_tests_out() -> None:
    rules = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in rules  # everything stays out of the build unless allowed below
    allowed = [r[1:] for r in rules if r.startswith("!")]
    assert not [a for a in allowed if a.startswith(("tests", ".env", ".venv"))]
    dockerfile = (ROOT / "Dockerfile").read_text()
    froms = re.findall(r"^FROM (\S+)", dockerfile, re.M)
    assert froms == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"]
    assert not re.search(r"COPY --from=(?!build\b)", dockerfile)
    assert 'ENTRYPOINT ["flasker"]' in dockerfile


# -- the roles' settings, without Docker -----------------------------------------------------

WHOAMI = """
from flask import request
from flasker import current_project

app = current_project.app

@app.get("/whoami")
def whoami():
    return {"addr": request.remote_addr, "scheme": request.scheme, "host": request.host}
"""


def _web_project(tmp_path: Path) -> tuple[Path, str]:
    package = unique_package()
    write_project(tmp_path, f"""
        [PROJECT]
        NAME = Web Test
        MODULES = {package}.views
        STATE_FOLDER = {tmp_path / 'state'}
        """, {f"{package}/__init__.py": "", f"{package}/views.py": WHOAMI})
    return tmp_path, package


def _gunicorn(spawn: t.Callable[..., Process], folder: Path, port: int,
              **env: str) -> Process:
    return spawn(["web", "-b", f"127.0.0.1:{port}"], cwd=folder, env={
        "FLASKER_GUNICORN_CONFIG": str(ROOT / "services/web/gunicorn.conf.py"),
        "FLASKER__APP__SECRET_KEY": SECRET, **env})


def test_gunicorn_settings_trust_the_proxy_only_when_told(
        tmp_path: Path, spawn: t.Callable[..., Process]) -> None:
    folder, _ = _web_project(tmp_path)
    forged = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https",
              "X-Forwarded-Host": "example.org"}
    for hops, expected in (("0", {"addr": "127.0.0.1", "scheme": "http"}),
                           ("1", {"addr": "203.0.113.9", "scheme": "https",
                                  "host": "example.org"})):
        port = free_port()
        server = _gunicorn(spawn, folder, port, WEB_CONCURRENCY="1", WEB_THREADS="2",
                           WEB_PROXY_HOPS=hops)
        url = f"http://127.0.0.1:{port}/whoami"

        def answer(url: str = url) -> requests.Response:
            return requests.get(url, headers=forged, timeout=2)

        reply = wait_for(answer, timeout=30, what=f"gunicorn on {port}")
        assert reply.status_code == 200
        body = reply.json()
        assert {k: body[k] for k in expected} == expected, body
        assert server.stop() == 0
        output = server.output()
        # The access log goes to the container's output, with the request and its status.
        assert '"GET /whoami HTTP/1.1" 200' in output
        assert "Booting worker with pid" in output and output.count("Booting worker") == 1
        assert "Using worker: ThreadWorker" in output  # gthread's, subclassed in the settings


@pytest.mark.parametrize(("name", "value"), [("WEB_CONCURRENCY", "many"),
                                             ("WEB_THREADS", "0"),
                                             ("WEB_PROXY_HOPS", "-1")])
def test_gunicorn_settings_refuse_a_bad_number(tmp_path: Path, spawn: t.Callable[..., Process],
                                               name: str, value: str) -> None:
    folder, _ = _web_project(tmp_path)
    server = _gunicorn(spawn, folder, free_port(), **{name: value})
    assert server.popen.wait(60) != 0
    assert f"environment variable '{name}' has value {value!r}: expected a whole number" in (
        server.output())


def _flower_project(tmp_path: Path) -> Path:
    write_project(tmp_path, f"""
        [PROJECT]
        NAME = Flower Test
        STATE_FOLDER = {tmp_path / 'state'}
        """)
    return tmp_path


@pytest.mark.parametrize(("env", "message"), [
    ({}, "refusing to start without credentials"),
    ({"FLOWER_BASIC_AUTH": "admin:change-me"}, "the password of 'admin'"),
    ({"FLOWER_BASIC_AUTH": "admin:short"}, "shorter than 16 characters"),
    ({"FLOWER_BASIC_AUTH": "no-colon-here-at-all"}, "must hold 'user:password' pairs"),
    ({"FLOWER_BASIC_AUTH_FILE": "/nonexistent/flower-auth"}, "cannot be read"),
    ({"FLOWER_BASIC_AUTH": "admin:0123456789abcdef0123", "FLOWER_KEEP_TASKS": "lots"},
     "'FLOWER_KEEP_TASKS' has value 'lots'"),
])
def test_flower_settings_refuse_to_start_unprotected(
        tmp_path: Path, spawn: t.Callable[..., Process], env: dict[str, str],
        message: str) -> None:
    folder = _flower_project(tmp_path)
    flower = spawn(["flower", "-p", str(free_port()), "--",
                    f"--conf={ROOT / 'services/flower/flowerconfig.py'}"],
                   cwd=folder, env={"FLASKER__APP__SECRET_KEY": SECRET, **env})
    assert flower.popen.wait(60) != 0
    assert message in flower.output()


def test_flower_settings_read_credentials_from_a_secret_file(
        tmp_path: Path, spawn: t.Callable[..., Process], redis_url: str) -> None:
    folder = _flower_project(tmp_path)
    secret = tmp_path / "flower-auth"
    secret.write_text("admin:0123456789abcdef0123\n")
    port = free_port()
    flower = spawn(["flower", "-p", str(port), "--",
                    f"--conf={ROOT / 'services/flower/flowerconfig.py'}"],
                   cwd=folder, env={"FLASKER__APP__SECRET_KEY": SECRET,
                                    "FLASKER__CELERY__BROKER_URL": redis_url,
                                    "FLOWER_BASIC_AUTH_FILE": str(secret),
                                    "FLOWER_DB": str(tmp_path / "flower.db")})
    base = f"http://127.0.0.1:{port}"
    assert wait_for(lambda: requests.get(f"{base}/healthcheck", timeout=2).text == "OK",
                    timeout=30, what="flower")
    assert requests.get(base, timeout=5).status_code == 401
    assert requests.get(base, auth=("admin", "wrong-password-000000"),
                        timeout=5).status_code == 401
    assert requests.get(base, auth=("admin", "0123456789abcdef0123"),
                        timeout=10).status_code == 200
    assert flower.stop() in (0, -15)


# -- flasker ping ------------------------------------------------------------------------------


class _Status(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        status = int(self.path.strip("/") or 200)
        body = json.dumps({"status": "unavailable", "checks": {"database": "down"}}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: t.Any) -> None:
        pass


@pytest.fixture
def status_server() -> t.Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Status)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_ping_url(runner: t.Any, status_server: str) -> None:
    ok = runner.invoke(["ping", "url", f"{status_server}/200"])
    assert ok.exit_code == 0, ok.output
    unavailable = runner.invoke(["ping", "url", f"{status_server}/503"])
    assert unavailable.exit_code == 1
    assert "answered 503" in unavailable.output and '"database": "down"' in unavailable.output
    refused = runner.invoke(["ping", "url", f"http://127.0.0.1:{free_port()}/healthz"])
    assert refused.exit_code == 1 and "cannot be reached" in refused.output
    bad = runner.invoke(["ping", "url", "localhost:8000/healthz"])
    assert bad.exit_code == 2 and "must start with 'http://'" in bad.output


def _celery_project(tmp_path: Path, broker: str) -> Path:
    return write_project(tmp_path, f"""
        [PROJECT]
        NAME = Ping {uuid.uuid4().hex[:8]}
        STATE_FOLDER = {tmp_path / 'state'}
        [APP]
        SECRET_KEY = {SECRET}
        [CELERY]
        BROKER_URL = {broker}
        """)


def test_ping_beat_checks_the_heartbeat(runner: t.Any, tmp_path: Path) -> None:
    cfg = _celery_project(tmp_path, "memory://")
    missing = runner.invoke(["-c", str(cfg), "ping", "beat"])
    assert missing.exit_code == 1 and "No heartbeat file" in missing.output
    heartbeat = tmp_path / "state" / "beat-heartbeat"
    heartbeat.parent.mkdir(parents=True, exist_ok=True)
    heartbeat.touch()
    fresh = runner.invoke(["-c", str(cfg), "ping", "beat"])
    assert fresh.exit_code == 0, fresh.output
    old = time.time() - 200
    os.utime(heartbeat, (old, old))
    stale = runner.invoke(["-c", str(cfg), "ping", "beat"])
    assert stale.exit_code == 1 and "limit 90 s" in stale.output
    assert runner.invoke(["-c", str(cfg), "ping", "beat", "--max-age", "300"]).exit_code == 0


def test_ping_beat_against_a_running_beat(tmp_path: Path, spawn: t.Callable[..., Process],
                                          runner: t.Any, redis_url: str) -> None:
    cfg = _celery_project(tmp_path, redis_url)
    beat = spawn(["-c", str(cfg), "beat"], cwd=tmp_path)
    wait_for(lambda: (tmp_path / "state" / "beat-heartbeat").exists(), timeout=30,
             what="beat's heartbeat")
    result = runner.invoke(["-c", str(cfg), "ping", "beat"])
    assert result.exit_code == 0, result.output + beat.output()
    assert beat.stop() == 0


def test_ping_worker_pings_this_hosts_node(tmp_path: Path, spawn: t.Callable[..., Process],
                                           runner: t.Any, redis_url: str) -> None:
    cfg = _celery_project(tmp_path, redis_url)
    absent = runner.invoke(["-c", str(cfg), "ping", "worker", "--timeout", "1"])
    assert absent.exit_code == 1 and "did not answer within 1 s" in absent.output
    worker = spawn(["-c", str(cfg), "worker", "--concurrency", "1"], cwd=tmp_path)
    wait_for(lambda: " ready." in worker.output(), timeout=60, what="the worker")
    result = runner.invoke(["-c", str(cfg), "ping", "worker"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith("pong")
    other = runner.invoke(["-c", str(cfg), "ping", "worker", "--node", "someone@elsewhere",
                           "--timeout", "1"])
    assert other.exit_code == 1 and "'someone@elsewhere' did not answer" in other.output
    worker.stop()


def test_ping_worker_reports_an_unreachable_broker(runner: t.Any, tmp_path: Path) -> None:
    cfg = _celery_project(tmp_path, f"redis://127.0.0.1:{free_port()}/0")
    result = runner.invoke(["-c", str(cfg), "ping", "worker", "--timeout", "1"])
    assert result.exit_code == 1
    assert "the broker is unreachable" in result.output


# -- the reference application, without Docker -----------------------------------------------


MIGRATIONS_CHECK = """
import json

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from flasker import migrate

migrate.upgrade(project)
with project.engine.connect() as connection:
    diff = compare_metadata(MigrationContext.configure(connection), project.metadata)
migrate.downgrade(project, "base")
print(json.dumps({"diff": [repr(d) for d in diff], "models": sorted(project.models()),
                  "after_downgrade": sa.inspect(project.engine).get_table_names()}))
"""


def test_reference_migrations_match_the_models(clean_pg: str, tmp_path: Path) -> None:
    """'flasker db upgrade' builds exactly the schema the models describe, and goes back.

    In a process of its own ('flasker shell'), as the stack's 'migrate' service runs.
    """
    flasker = Path(sys.executable).parent / "flasker"
    result = subprocess.run(
        [str(flasker), "-c", str(ROOT / "reference" / "default.cfg"), "shell"],
        input=MIGRATIONS_CHECK, capture_output=True, text=True, timeout=120,
        env={**os.environ, "FLASKER__PROJECT__DB_URL": clean_pg,
             "FLASKER__PROJECT__STATE_FOLDER": str(tmp_path / "state"),
             "FLASKER__APP__SECRET_KEY": SECRET},
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["diff"] == []
    assert set(found["models"]) >= {"House", "Cat", "BeatRun"}
    assert found["after_downgrade"] == ["alembic_version"]


# -- the stack ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def web(stack: Stack) -> str:
    return stack.url("web", 8000)


@pytest.mark.docker
@stack_test
def test_image_runs_as_a_non_root_user_without_secrets_or_tests() -> None:
    image = build_image()
    info = json.loads(run(["docker", "image", "inspect", image]).stdout)[0]["Config"]
    assert info["Entrypoint"] == ["flasker"]
    assert info["User"] == "10001:10001"
    labels = info["Labels"]
    version = re.search(r'^version = "(.+)"', (ROOT / "shared/flasker/pyproject.toml")
                        .read_text(), re.M)
    assert version and labels["org.opencontainers.image.version"] == version.group(1)
    assert re.fullmatch(r"[0-9a-f]{12}(-dirty)?|unknown",
                        labels["org.opencontainers.image.revision"])
    assert labels["org.opencontainers.image.source"].startswith("https://")
    assert run(["docker", "run", "--rm", image, "--version"]).stdout.startswith("flasker ")
    probe = run(["docker", "run", "--rm", "--entrypoint", "python", image, "-c", (
        "import importlib.util as u, os, pathlib as p;"
        "print(os.getuid());"
        "print([m for m in ('pytest', 'playwright', 'testcontainers', 'flower', 'authlib')"
        " if u.find_spec(m)]);"
        "print(sorted(str(x) for x in p.Path('/app').rglob('*') if x.name in"
        " ('.env', 'tests', '.venv', 'conftest.py', 'db.sqlite')))")]).stdout.split("\n")
    assert probe[0] == "10001"
    assert probe[1] == "['flower', 'authlib']"  # the flower and auth extras, not the test one
    assert probe[2] == "[]"


@pytest.mark.docker
@stack_test
def test_every_service_is_healthy(stack: Stack) -> None:
    states = {c["Service"]: c for c in stack.containers()}
    for service in SERVICES:
        assert states[service]["State"] == "running", states[service]
        assert states[service]["Health"] == "healthy", states[service]
    assert states["migrate"]["State"] == "exited" and states["migrate"]["ExitCode"] == 0
    # PostgreSQL and Redis are reached by service name only.
    for service in ("postgres", "redis"):
        assert not [p for p in states[service].get("Publishers") or []
                    if p.get("PublishedPort")], states[service]["Publishers"]


@pytest.mark.docker
@stack_test
def test_reference_pages_answer_through_the_published_port(web: str) -> None:
    index = requests.get(web, timeout=10)
    assert index.status_code == 200
    assert "<title>Houses and Cats</title>" in index.text
    assert 'id="houses"' in index.text and 'id="census"' in index.text
    css = requests.get(f"{web}/static/bootstrap.min.css", timeout=10)
    assert css.status_code == 200 and "Bootstrap" in css.text[:500]
    assert requests.get(f"{web}/healthz", timeout=10).json() == {"status": "ok"}
    ready = requests.get(f"{web}/readyz", timeout=10)
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}
    missing = requests.get(f"{web}/houses/999999", timeout=10)
    assert missing.status_code == 404 and "No House with key 999999." in missing.text


@pytest.mark.docker
@stack_test
def test_houses_and_cats_through_the_web(stack: Stack, web: str) -> None:
    browser = requests.Session()
    token = csrf_token(browser.get(web, timeout=10).text)
    name = f"House {uuid.uuid4().hex[:6]}"
    created = browser.post(f"{web}/houses", data={"name": name, "csrf_token": token},
                           timeout=10)
    assert created.status_code == 200  # after the redirect to the list
    assert f"House &#39;{name}&#39; created." in created.text
    house_url = re.search(rf'href="(/houses/\d+)">{name}</a>', created.text)
    assert house_url, created.text
    house_page = browser.get(web + house_url.group(1), timeout=10)
    assert f'id="house-name">{name}</h2>' in house_page.text
    cat = browser.post(f"{web}{house_url.group(1)}/cats",
                       data={"name": "Tom", "csrf_token": csrf_token(house_page.text)},
                       timeout=10)
    assert "Tom moved into" in cat.text and "<span>Tom</span>" in cat.text
    # The same rows through the reference app's JSON API.
    house_id = int(house_url.group(1).rsplit("/", 1)[1])
    listed = requests.get(f"{web}/api/houses/{house_id}", params={"depth": 1}, timeout=10)
    assert listed.status_code == 200, listed.text
    assert listed.json()["name"] == name
    assert [c["name"] for c in listed.json()["cats"]] == ["Tom"]
    api_house = requests.post(f"{web}/api/houses/", json={"name": f"API {name}"}, timeout=10)
    assert api_house.status_code == 201, api_house.text
    assert requests.delete(api_house.headers["Location"], timeout=10).status_code == 204

    # Bad input gets a clear error and loses nothing.
    houses_before, cats_before = count_rows(stack)
    empty = browser.post(f"{web}/houses", data={"name": "  ", "csrf_token": token}, timeout=10)
    assert empty.status_code == 400 and "A house needs a name." in empty.text
    long_name = "x" * 101
    too_long = browser.post(f"{web}/houses", data={"name": long_name, "csrf_token": token},
                            timeout=10)
    assert too_long.status_code == 400 and "at most 100 characters" in too_long.text
    assert f'value="{long_name}"' in too_long.text  # what was typed is kept in the form
    duplicate = browser.post(f"{web}/houses", data={"name": name, "csrf_token": token},
                             timeout=10)
    assert duplicate.status_code == 409 and "exists already" in duplicate.text
    forged = requests.post(f"{web}/houses", data={"name": "Forged"}, timeout=10)
    assert forged.status_code == 400 and "The CSRF token is missing." in forged.text
    no_cat = browser.post(f"{web}{house_url.group(1)}/cats",
                          data={"name": "", "csrf_token": token}, timeout=10)
    assert no_cat.status_code == 400 and "A cat needs a name." in no_cat.text
    assert count_rows(stack) == (houses_before, cats_before)

    cat_delete = re.search(r'action="(/cats/\d+/delete)"', cat.text)
    assert cat_delete
    gone = browser.post(web + cat_delete.group(1), data={"csrf_token": token}, timeout=10)
    assert "Tom left." in gone.text and "No cats live here yet." in gone.text
    deleted = browser.post(f"{web}{house_url.group(1)}/delete", data={"csrf_token": token},
                           timeout=10)
    assert f"House &#39;{name}&#39; and its cats deleted." in deleted.text
    assert count_rows(stack) == (houses_before - 1, cats_before - 1)


@pytest.mark.docker
@stack_test
def test_task_enqueued_through_the_web_is_run_by_the_worker(stack: Stack, web: str) -> None:
    browser = requests.Session()
    token = csrf_token(browser.get(web, timeout=10).text)
    browser.post(f"{web}/houses", data={"name": f"Census {uuid.uuid4().hex[:6]}",
                                        "csrf_token": token}, timeout=10)
    houses, cats = count_rows(stack)
    sent = browser.post(f"{web}/tasks", data={"csrf_token": token}, allow_redirects=False,
                        timeout=10)
    assert sent.status_code == 302
    task_id = re.search(r"task=([0-9a-f-]{36})", sent.headers["Location"])
    assert task_id
    url = f"{web}/tasks/{task_id.group(1)}"
    done = wait_for(lambda: (r := browser.get(url, timeout=5).json())["state"] == "SUCCESS"
                    and r, timeout=60, interval=0.5, what="the worker to run the task")
    assert done["result"] == {"houses": houses, "cats": cats}
    page = browser.get(web + sent.headers["Location"], timeout=10).text
    assert f"{plural(houses, 'house')}, {plural(cats, 'cat')}" in page
    assert 'data-state="SUCCESS"' in page


@pytest.mark.docker
@stack_test
def test_a_beat_tick_is_seen_on_the_page(web: str) -> None:
    def runs() -> int | None:
        match = re.search(r"\((\d+) runs? so far\)", requests.get(web, timeout=10).text)
        return int(match.group(1)) if match else None

    first = wait_for(runs, timeout=60, interval=1, what="beat's first tick")
    wait_for(lambda: (runs() or 0) > first, timeout=60, interval=1, what="another beat tick")


@pytest.mark.docker
@stack_test
def test_flower_answers_with_its_credentials_only(stack: Stack) -> None:
    flower = stack.url("flower", 5555)
    credentials = (stack.values["FLOWER_USER"], stack.values["FLOWER_PASSWORD"])
    assert requests.get(f"{flower}/healthcheck", timeout=10).text == "OK"
    refused = requests.get(flower, timeout=10)
    assert refused.status_code == 401
    assert requests.get(flower, auth=(credentials[0], "not-the-password-0000"),
                        timeout=10).status_code == 401
    assert requests.get(f"{flower}/api/workers", timeout=10).status_code == 401
    page = requests.get(flower, auth=credentials, timeout=10)
    assert page.status_code == 200 and "Flower" in page.text

    def workers() -> list[str]:
        reply = requests.get(f"{flower}/api/workers", params={"refresh": "1"},
                             auth=credentials, timeout=20)
        return [n for n in reply.json() if n.startswith(NODE_PREFIX)]

    assert wait_for(workers, timeout=60, interval=2, what="flower to see the worker")


@pytest.mark.docker
@stack_test
def test_flasker_shell_runs_a_script_that_reads_the_database(stack: Stack, web: str) -> None:
    browser = requests.Session()
    token = csrf_token(browser.get(web, timeout=10).text)
    name = f"Shell {uuid.uuid4().hex[:6]}"
    browser.post(f"{web}/houses", data={"name": name, "csrf_token": token}, timeout=10)
    out = stack.shell("import sqlalchemy as sa\n"
                      "for house in db.scalars(sa.select(House).order_by(House.id)):\n"
                      "    print('HOUSE', house.name)\n").stdout
    assert f"HOUSE {name}" in out.splitlines()
    failed = stack.shell("raise RuntimeError('no such cat')\n", check=False)
    assert failed.returncode == 1
    assert "RuntimeError: no such cat" in failed.stderr


@pytest.mark.docker
@stack_test
def test_readyz_says_why_when_the_database_is_down(stack: Stack, web: str) -> None:
    stack.compose("stop", "postgres")
    try:
        def unavailable() -> dict[str, t.Any] | None:
            reply = requests.get(f"{web}/readyz", timeout=10)
            return t.cast(dict[str, t.Any], reply.json()) if reply.status_code == 503 else None

        body = wait_for(unavailable, timeout=60, what="/readyz to report the database")
        assert body["status"] == "unavailable"
        assert body["checks"]["database"].startswith("database unreachable")
        assert "broker" not in body["checks"]
        assert requests.get(f"{web}/healthz", timeout=10).status_code == 200
    finally:
        stack.compose("start", "postgres", timeout=180)
    wait_for(lambda: requests.get(f"{web}/readyz", timeout=10).status_code == 200,
             timeout=90, interval=1, what="/readyz to recover")


@pytest.mark.docker
@stack_test
def test_stack_stops_within_its_grace_periods_and_down_leaves_nothing(stack: Stack) -> None:
    # A task longer than the worker's soft shutdown (20 s) is running when the stack stops.
    task_id = stack.shell("from app.tasks import census\n"
                          "print('TASK', census.delay(delay=120).id)\n").stdout.split()[-1]
    active = ("ids = [t['id'] for ts in (celery.control.inspect(timeout=3).active() or {})"
              ".values() for t in ts]\nprint('ACTIVE', *ids)\n")
    wait_for(lambda: task_id in stack.shell(active).stdout, timeout=60, interval=1,
             what="the long task to start")
    containers = {c["Service"]: c["ID"] for c in stack.containers()}
    started = time.monotonic()
    stack.compose("stop", timeout=240)
    elapsed = time.monotonic() - started
    for service, container in containers.items():
        state = json.loads(run(["docker", "inspect", container]).stdout)[0]["State"]
        # Docker sends SIGKILL (exit 137) only when a container outlives its grace period.
        assert state["ExitCode"] != 137 and not state["OOMKilled"], (service, state)
        if service != "migrate":
            assert state["ExitCode"] == 0, (service, state)
    # Worker (30 s) and web (30 s) stop together, then PostgreSQL and Redis.
    assert elapsed < 60, elapsed
    logs = stack.compose("logs", "--no-color", "worker").stdout
    assert "Initiating Soft Shutdown, terminating in 20.0 seconds" in logs
    assert "Restoring 1 unacknowledged message(s)" in logs
    # The message is back in Redis for another worker (Redis alone, from its volume).
    stack.compose("start", "redis", timeout=120)
    queued = wait_for(lambda: stack.compose("exec", "-T", "redis", "redis-cli", "lrange",
                                            QUEUE, "0", "-1").stdout, timeout=30,
                      what="redis to answer")
    assert task_id in queued
    stack.compose("down", "--volumes", "--timeout", "40", timeout=180)
    assert stack.leftovers() == {"containers": [], "networks": [], "volumes": []}
