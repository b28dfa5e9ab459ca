"""PostgreSQL or Redis lost: 503s within 2 s (never a 500 or a hang), and nothing lost.

The servers here are this module's own (testcontainers on fixed loopback ports, so that a
restart keeps its address), stopped and started by the tests; the shared session
containers are never touched. Pages and problems are read through the Flask test client;
answer times through a real ``flasker web`` (gunicorn), and tasks through a real
``flasker worker``.
"""

from __future__ import annotations

import json
import os
import re
import time
import typing as t
from collections import Counter
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa

from flasker import Project
from flasker.config import ConfigError, load_config
from flasker.db import engine_options
from flasker.health import run_checks
from flasker.outages import (
    BROKER,
    DATABASE,
    RESULT_BACKEND,
    OutagePolicy,
    find_outage,
)
from flasker.tasks import retry_backoff

from .conftest import (
    ROOT,
    SECRET,
    Process,
    free_port,
    prepend_path,
    unique_package,
    wait_for,
    write_project,
)

pytestmark = pytest.mark.faults

#: The bound the issue sets on every answer during an outage.
BOUND = 2.0

MODELS = """
import sqlalchemy as sa
from sqlalchemy import Column, Unicode

from flasker import Model


class Note(Model):
    key = Column(Unicode(64), primary_key=True)
"""

TASKS = """
import time

from flasker import current_project

from .models import Note

celery = current_project.celery
db = current_project.db


@celery.task
def write_note(key, delay=0.0):
    time.sleep(delay)
    if db.get(Note, key) is None:  # idempotent: a task runs at least once
        db.add(Note(key=key))
    return key


@celery.task(retry_on_outage=False)
def write_note_once(key):
    db.add(Note(key=key))
    return key
"""

VIEWS = """
import sqlalchemy as sa
from flask import jsonify, redirect, request

from flasker import current_project
from flasker.ext.api import APIManager

from .models import Note
from .tasks import write_note

app = current_project.app
db = current_project.db
current_project.register_manager(APIManager(add_all_models=True))


@app.get("/")
def index():
    count = db.scalar(sa.select(sa.func.count()).select_from(Note))
    return f"<p id='notes'>{count} notes</p>"


@app.get("/about")
def about():
    return "<p>A page that needs neither the database nor Redis.</p>"


@app.get("/notes.json")
def notes():
    return jsonify(sorted(db.scalars(sa.select(Note.key))))


@app.post("/notes")
def add_note():
    db.add(Note(key=request.json["key"]))
    db.commit()
    return {"added": request.json["key"]}


@app.post("/enqueue")
def enqueue():
    result = write_note.delay(request.form.get("key") or request.json["key"])
    return redirect(f"/?task={result.id}")
"""

OWN_PAGE = """<!doctype html><title>{{ title }}</title>
<h1 id="own">Our own outage page</h1><p>{{ message }} ({{ outage.service }})</p>
"""


# -- servers of this module's own -------------------------------------------------------------


class Server:
    """A testcontainers server on a fixed loopback port, that a test stops and starts."""

    def __init__(self, container: t.Any, port: int, url: str, stop_signal: str,
                 ready: t.Callable[[], object]) -> None:
        self.container = container
        self.port = port
        self.url = url
        self.stop_signal = stop_signal
        self.ready = ready

    def stop(self) -> None:
        wrapped = self.container.get_wrapped_container()
        wrapped.kill(signal=self.stop_signal)  # PostgreSQL's fast shutdown, Redis's save
        wrapped.wait(timeout=60)

    def start(self) -> float:
        """Start it again; the seconds until it answers."""
        started = time.monotonic()
        self.container.get_wrapped_container().start()
        wait_for(self.ready, timeout=60, interval=0.1, what=f"{self.url} to answer")
        return time.monotonic() - started


def _pg_ready(url: str) -> t.Callable[[], bool]:
    def ready() -> bool:
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as connection:
                return bool(connection.scalar(sa.text("SELECT 1")) == 1)
        finally:
            engine.dispose()

    return ready


def _redis_ready(url: str) -> t.Callable[[], bool]:
    import redis  # noqa: PLC0415 (as the library's own modules do: optional)

    def ready() -> bool:
        client = redis.Redis.from_url(url, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()

    return ready


@pytest.fixture(scope="module")
def pg() -> t.Iterator[Server]:
    from testcontainers.community.postgres import PostgresContainer

    port = free_port()
    container = PostgresContainer(os.environ.get("POSTGRES_IMAGE", "postgres:17"),
                                  driver="psycopg").with_bind_ports(5432, port)
    with container:
        url = container.get_connection_url().replace(
            f":{container.get_exposed_port(5432)}/", f":{port}/")
        yield Server(container, port, url, "SIGINT", _pg_ready(url))


@pytest.fixture(scope="module")
def redis_server() -> t.Iterator[Server]:
    from testcontainers.community.redis import RedisContainer

    port = free_port()
    container = (RedisContainer(os.environ.get("REDIS_IMAGE", "redis:7"))
                 .with_bind_ports(6379, port)
                 .with_command("redis-server --appendonly yes"))
    with container:
        url = f"redis://127.0.0.1:{port}"
        yield Server(container, port, url, "SIGTERM", _redis_ready(url))


# -- projects ---------------------------------------------------------------------------------


def _write(folder: Path, db_url: str, redis_url: str | None,
           files: t.Mapping[str, str] | None = None) -> tuple[Path, str]:
    package = unique_package()
    celery = (f"[CELERY]\nBROKER_URL = {redis_url}/0\nRESULT_BACKEND = {redis_url}/1\n"
              # A message whose worker lost it comes back within seconds, not 30.
              'BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 6}\n'
              if redis_url else "")
    path = write_project(folder, f"""
        [PROJECT]
        NAME = Outages {package}
        MODULES = {package}.models, {package}.tasks, {package}.views
        DB_URL = {db_url}
        STATE_FOLDER = {folder / 'state'}
        TASK_RETRY_BACKOFF = 0.5
        TASK_RETRY_BACKOFF_MAX = 2
        TASK_RETRY_MAX = 30
        [APP]
        SECRET_KEY = {SECRET}
        """, {f"{package}/__init__.py": "", f"{package}/models.py": MODELS,
              f"{package}/tasks.py": TASKS, f"{package}/views.py": VIEWS, **(files or {})})
    path.write_text(path.read_text() + celery)
    return path, package


@pytest.fixture
def make(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> t.Iterator[t.Callable[..., Project]]:
    """``make(db_url, redis_url)``: a started project (tables created afresh)."""
    made: list[Project] = []

    def build(db_url: str, redis_url: str | None = None,
              files: t.Mapping[str, str] | None = None, create: bool = True) -> Project:
        folder = tmp_path / f"p{len(made)}"
        path, _ = _write(folder, db_url, redis_url, files)
        prepend_path(monkeypatch, folder)
        project = Project(path, overrides={"APP": {"TESTING": True}})
        made.append(project)
        if create:
            project.metadata.drop_all(project.engine)
            project.metadata.create_all(project.engine)
        return project

    yield build
    for project in made:
        project.close()


def _closed_pg() -> str:
    return f"postgresql+psycopg://nobody:nothing@127.0.0.1:{free_port()}/none"


HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
JSON = {"Accept": "application/json"}


def _timed(call: t.Callable[[], t.Any]) -> tuple[t.Any, float]:
    started = time.monotonic()
    answer = call()
    return answer, time.monotonic() - started


def _assert_page(reply: t.Any, service: str) -> None:
    assert reply.status_code == 503
    assert reply.headers["Retry-After"] == "5"
    assert reply.headers["Content-Type"].startswith("text/html")
    text = reply.get_data(as_text=True) if hasattr(reply, "get_data") else reply.text
    assert f'data-service="{service}"' in text, text
    assert "Try again in a few seconds." in text
    assert "Traceback" not in text


def _assert_problem(reply: t.Any, service: str) -> dict[str, t.Any]:
    assert reply.status_code == 503
    assert reply.headers["Content-Type"] == "application/problem+json"
    assert reply.headers["Retry-After"] == "5"
    body = t.cast(dict[str, t.Any], reply.get_json() if hasattr(reply, "get_json")
                  else reply.json())
    assert body["status"] == 503 and "cannot be reached" in body["detail"], body
    return body


# -- which errors are outages, and the options ------------------------------------------------


def test_outages_are_told_from_bugs_by_real_errors(make: t.Callable[..., Project],
                                                   tmp_path: Path) -> None:
    # The database: a server that refuses connections.
    down = make(_closed_pg(), create=False)
    with pytest.raises(sa.exc.OperationalError) as refused:
        with down.engine.connect():
            pass
    outage = find_outage(refused.value)
    assert outage is not None and outage.service == DATABASE
    assert "cannot be reached" in outage.detail

    # Not outages: a constraint, a missing table, a bug.
    local = make(f"sqlite:///{tmp_path / 'bugs.sqlite'}")
    with local.engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO notes (key) VALUES ('a')"))
    with pytest.raises(sa.exc.IntegrityError) as duplicate, local.engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO notes (key) VALUES ('a')"))
    with pytest.raises(sa.exc.OperationalError) as missing, local.engine.begin() as connection:
        connection.execute(sa.text("SELECT * FROM no_such_table"))
    for error in (duplicate.value, missing.value, ValueError("a bug"), KeyError("key")):
        assert find_outage(error) is None, error

    # The broker and the result backend: Redis that refuses connections. The task is
    # refused within the bound, not after Celery's 19 s of retries.
    gone = f"redis://127.0.0.1:{free_port()}"
    project = make(f"sqlite:///{tmp_path / 'tasks.sqlite'}", gone)
    task = next(t for n, t in project.celery.tasks.items() if n.endswith(".write_note"))
    kinds = []
    for _ in range(2):  # the first send meets the result backend, the next the broker...
        started = time.monotonic()
        with pytest.raises(Exception) as failed:  # noqa: PT011 (Celery's kinds vary)
            task.delay("k")
        assert time.monotonic() - started < BOUND
        found = find_outage(failed.value)
        assert found is not None, repr(failed.value)
        kinds.append(found.service)
    assert set(kinds) <= {BROKER, RESULT_BACKEND}


@pytest.mark.parametrize(("key", "value", "message"), [
    ("RETRY_AFTER", "0", "Config 'PROJECT.RETRY_AFTER' has value 0 \\(.*default.cfg:4\\)."
                         " It must be at least 1."),
    ("TASK_RETRY_MAX", "-1", "'PROJECT.TASK_RETRY_MAX' has value -1 .* at least 0"),
    ("TASK_RETRY_MAX", "many", "'PROJECT.TASK_RETRY_MAX' has value 'many' .*Not an integer"),
    ("TASK_RETRY_BACKOFF", "soon", "'PROJECT.TASK_RETRY_BACKOFF' has value 'soon'"),
    ("TASK_RETRY_BACKOFF_MAX", "0.1", "'PROJECT.TASK_RETRY_BACKOFF_MAX' \\(0.1, .*default.cfg:4\\)"
                                      " is less than 'PROJECT.TASK_RETRY_BACKOFF'"
                                      " \\(2, built-in default\\)"),
])
def test_a_bad_outage_option_stops_start_up(tmp_path: Path, key: str, value: str,
                                            message: str) -> None:
    path = write_project(tmp_path, f"""
        [PROJECT]
        NAME = Options
        STATE_FOLDER = {tmp_path / 'state'}
        {key} = {value}
        [APP]
        SECRET_KEY = {SECRET}
        """)
    with pytest.raises(ConfigError, match=message):
        Project(path, load_modules=False)


def test_task_retries_back_off_with_jitter() -> None:
    policy = OutagePolicy(retry_after=5, task_retry_max=10, task_retry_backoff=2.0,
                          task_retry_backoff_max=60.0)
    for retries, ceiling in ((0, 2), (1, 4), (3, 16), (5, 60), (9, 60)):
        waits = [retry_backoff(policy, retries) for _ in range(200)]
        assert all(ceiling / 2 <= w <= ceiling for w in waits), (retries, min(waits))
        assert len(set(waits)) > 100  # jitter: tasks failed together come back apart
    # Ten retries wait at least half the doubling: longer than a 30 s outage.
    assert sum(min(60.0, 2.0 * 2 ** n) / 2 for n in range(10)) > 30


def test_engine_defaults_bound_the_wait_for_a_database_server(tmp_path: Path) -> None:
    def options(url: str, **engine: t.Any) -> dict[str, t.Any]:
        config = load_config(None, search=False, overrides={
            "PROJECT": {"NAME": "x"}, "ENGINE": engine})
        return engine_options(config, url)

    pg = "postgresql+psycopg://u:p@db/x"
    bounded = {"connect_timeout": 2, "tcp_user_timeout": 1000}
    assert options(pg) == {"pool_pre_ping": True, "echo": False, "echo_pool": False,
                           "hide_parameters": False, "connect_args": bounded,
                           "pool_timeout": 2.0}
    own = options(pg, connect_args={"connect_timeout": 10, "application_name": "me"},
                  pool_timeout=30.0)
    assert own["connect_args"] == {"connect_timeout": 10, "tcp_user_timeout": 1000,
                                   "application_name": "me"}
    assert own["pool_timeout"] == 30.0
    assert options(pg, connect_args={"sslmode": "require"})["connect_args"] == {
        "sslmode": "require", **bounded}
    # Drivers that take other arguments get none of these.
    assert "connect_args" not in options("postgresql+asyncpg://u:p@db/x")
    sqlite = options(f"sqlite:///{tmp_path / 'x.sqlite'}")
    assert "connect_args" not in sqlite and "pool_timeout" not in sqlite



# -- pages and problems, through the test client ----------------------------------------------


def test_a_database_outage_is_a_503_page_or_problem_never_a_500(
        make: t.Callable[..., Project], caplog: pytest.LogCaptureFixture) -> None:
    project = make(_closed_pg(), create=False)
    client = project.app.test_client()
    caplog.set_level("WARNING", logger="flasker.outages")

    page, took = _timed(lambda: client.get("/", headers=HTML))
    _assert_page(page, DATABASE)
    assert "the database cannot be reached" in page.get_data(as_text=True)
    assert took < BOUND
    assert client.get("/about", headers=HTML).status_code == 200

    problem = _assert_problem(client.get("/notes.json", headers=JSON), DATABASE)
    assert problem["type"] == "about:blank" and problem["service"] == DATABASE
    # A JSON body, or a bearer token, asks for a problem too.
    _assert_problem(client.post("/notes", json={"key": "k"}, headers=HTML), DATABASE)
    _assert_problem(client.get("/", headers={**HTML, "Authorization": "Bearer x"}), DATABASE)
    # The API answers its own problems, with Retry-After too.
    api = client.get("/api/notes/", headers=HTML)
    body = _assert_problem(api, DATABASE)
    assert body["type"] == "tag:flasker,2024:api/database-unavailable"

    ready, took = _timed(lambda: client.get("/readyz"))
    assert ready.status_code == 503 and took < BOUND
    assert ready.headers["Retry-After"] == "5"
    assert ready.get_json()["checks"]["database"].startswith("database unreachable")
    assert "broker" not in ready.get_json()["checks"]

    # One line per outage and service, no traceback per request.
    lines = [r for r in caplog.records if r.name == "flasker.outages"]
    assert lines and all(r.levelname == "WARNING" and r.exc_info is None for r in lines)
    assert lines[0].getMessage().startswith("database unavailable (OperationalError:")
    assert len(lines) < 3, [r.getMessage() for r in lines]


def test_the_app_may_serve_its_own_outage_page(make: t.Callable[..., Project]) -> None:
    own = make(_closed_pg(), create=False,
               files={"app/templates/errors/503.html": OWN_PAGE})
    reply = own.app.test_client().get("/", headers=HTML)
    assert reply.status_code == 503 and reply.headers["Retry-After"] == "5"
    assert '<h1 id="own">Our own outage page</h1>' in reply.get_data(as_text=True)
    assert "(database)" in reply.get_data(as_text=True)

    # A page of the app's that cannot be rendered now (it needs the database, say) gives
    # way to flasker's own, still a 503.
    broken = make(_closed_pg(), create=False,
                  files={"app/templates/errors/503.html": "{{ no_such_function() }}"})
    _assert_page(broken.app.test_client().get("/", headers=HTML), DATABASE)


def test_readyz_checks_are_bounded_and_run_side_by_side(make: t.Callable[..., Project],
                                                        tmp_path: Path) -> None:
    project = make(f"sqlite:///{tmp_path / 'x.sqlite'}")

    def hangs(_: Project) -> str | None:
        time.sleep(3)
        return None

    def fails(_: Project) -> str | None:
        time.sleep(0.3)
        return "broker unreachable: it said no"

    found, took = _timed(lambda: run_checks(project, {"database": hangs, "broker": fails},
                                            timeout=0.5))
    assert found == {"database": "database did not answer within 0.5 s",
                     "broker": "broker unreachable: it said no"}
    assert took < 1.5  # side by side: not 0.5 + 0.3, and never the 3 s of the hung one


def test_bugs_are_still_500s_and_http_errors_unchanged(make: t.Callable[..., Project],
                                                      tmp_path: Path) -> None:
    project = make(f"sqlite:///{tmp_path / 'x.sqlite'}")
    project.app.testing = False
    project.app.config["PROPAGATE_EXCEPTIONS"] = False

    @project.app.get("/bug")
    def bug() -> str:
        raise ValueError("a bug")

    client = project.app.test_client()
    assert client.get("/bug").status_code == 500
    assert client.get("/nowhere").status_code == 404
    assert client.post("/about").status_code == 405
    assert client.get("/about").status_code == 200


def test_a_database_restart_costs_503s_then_the_first_request_succeeds(
        make: t.Callable[..., Project], pg: Server) -> None:
    project = make(pg.url)
    client = project.app.test_client()
    assert client.get("/", headers=HTML).status_code == 200  # a pooled connection exists
    pg.stop()
    try:
        for _ in range(3):
            page, took = _timed(lambda: client.get("/", headers=HTML))
            _assert_page(page, DATABASE)
            assert took < BOUND
        _assert_problem(client.get("/api/notes/", headers=JSON), DATABASE)
    finally:
        pg.start()
    first = client.get("/", headers=HTML)  # pool_pre_ping replaces the closed connections
    assert first.status_code == 200 and "0 notes" in first.get_data(as_text=True)


def test_a_redis_outage_refuses_only_what_needs_redis(
        make: t.Callable[..., Project], pg: Server, redis_server: Server,
        caplog: pytest.LogCaptureFixture) -> None:
    project = make(pg.url, redis_server.url)
    client = project.app.test_client()
    caplog.set_level("INFO")
    assert client.post("/enqueue", data={"key": "before"}).status_code == 302
    redis_server.stop()
    try:
        # Pages that do not send tasks keep working.
        assert client.get("/", headers=HTML).status_code == 200
        assert client.get("/about", headers=HTML).status_code == 200
        for _ in range(3):
            page, took = _timed(lambda: client.post("/enqueue", data={"key": "x"},
                                                    headers=HTML))
            assert took < BOUND
            assert page.status_code == 503 and page.headers["Retry-After"] == "5"
            assert "Try again in a few seconds." in page.get_data(as_text=True)
        problem, took = _timed(lambda: client.post("/enqueue", json={"key": "y"}))
        assert took < BOUND
        assert _assert_problem(problem, BROKER)["service"] in (BROKER, RESULT_BACKEND)
        ready, took = _timed(lambda: client.get("/readyz"))
        assert took < BOUND and ready.status_code == 503
        checks = ready.get_json()["checks"]
        assert checks["broker"].startswith("broker unreachable") and "database" not in checks
    finally:
        redis_server.start()
    # One WARNING of flasker's, not Celery's ERROR and CRITICAL "must be restarted" for each.
    loud = [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    assert not loud, [r.getMessage() for r in loud]
    assert [r for r in caplog.records if r.name == "flasker.outages"]
    sent = client.post("/enqueue", data={"key": "after"})  # the first request after it
    assert sent.status_code == 302, sent.get_data(as_text=True)


# -- a real web server and a real worker ------------------------------------------------------


def _spawn_web(spawn: t.Callable[..., Process], project: Project, port: int) -> str:
    assert project.config.path is not None
    spawn(["-c", str(project.config.path), "web", "-b", f"127.0.0.1:{port}"], cwd=project.root,
          env={"FLASKER_GUNICORN_CONFIG": str(ROOT / "services/web/gunicorn.conf.py"),
               "WEB_CONCURRENCY": "2", "WEB_THREADS": "4"})
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: requests.get(f"{base}/healthz", timeout=2).ok, timeout=60,
             what="flasker web")
    return base


def _spawn_worker(spawn: t.Callable[..., Process], project: Project,
                  concurrency: int = 2) -> Process:
    assert project.config.path is not None
    worker = spawn(["-c", str(project.config.path), "worker", "--concurrency",
                    str(concurrency)], cwd=project.root)
    wait_for(lambda: project.celery.control.ping(timeout=0.5), timeout=60,
             what=f"the worker to answer; log {worker.log}")
    return worker


class Probe:
    """Requests sent during an outage: every status and answer time."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.statuses: Counter[int] = Counter()

    def send(self, method: str, url: str, **kwargs: t.Any) -> requests.Response | None:
        started = time.monotonic()
        try:
            reply = requests.request(method, url, timeout=10, allow_redirects=False, **kwargs)
        except requests.RequestException:
            self.statuses[0] += 1  # no answer at all
            self.times.append(time.monotonic() - started)
            return None
        self.times.append(time.monotonic() - started)
        self.statuses[reply.status_code] += 1
        return reply

    def figures(self) -> dict[str, t.Any]:
        ordered = sorted(self.times)
        return {"sent": len(ordered), "statuses": dict(self.statuses),
                "max": round(ordered[-1], 3),
                "p99": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3)}


def _rows(project: Project) -> set[str]:
    with project.engine.connect() as connection:
        return set(connection.execute(sa.text("SELECT key FROM notes")).scalars())


def test_web_and_worker_ride_out_a_database_outage(
        make: t.Callable[..., Project], pg: Server, redis_server: Server,
        spawn: t.Callable[..., Process]) -> None:
    project = make(pg.url, redis_server.url)
    base = _spawn_web(spawn, project, free_port())
    worker = _spawn_worker(spawn, project)
    task = next(t for n, t in project.celery.tasks.items() if n.endswith(".write_note"))
    keys = [f"db-{n}" for n in range(40)]
    for key in keys:  # 40 tasks of 0.2 s on 2 processes: 4 s of work, busy when it stops
        task.delay(key, delay=0.2)
    project.engine.dispose()
    time.sleep(1)
    pg.stop()
    probe = Probe()
    try:
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            page = probe.send("GET", f"{base}/", headers=HTML)
            assert page is not None and page.status_code == 503, page and page.text
            assert page.headers["Retry-After"] == "5" and "data-service=\"database\"" in page.text
            api = probe.send("GET", f"{base}/api/notes/", headers=JSON)
            assert api is not None and api.status_code == 503
            assert api.headers["Content-Type"] == "application/problem+json"
    finally:
        restarted = pg.start()
    assert max(probe.times) < BOUND, probe.figures()
    first = probe.send("GET", f"{base}/", headers=HTML)
    assert first is not None and first.status_code == 200, first and first.text
    wait_for(lambda: _rows(project) == set(keys), timeout=90, interval=0.5,
             what=f"all 40 rows; worker log {worker.log}")
    log = worker.output()
    retried = set(re.findall(r"write_note\[([0-9a-f-]{36})\] retry: Retry in", log))
    assert retried, log[-3000:]
    assert "flasker.outages" in log and "Traceback" not in log
    print(json.dumps({"fault": "postgresql stopped 8 s", **probe.figures(),
                      "restart_s": round(restarted, 2), "tasks": len(keys),
                      "tasks_retried": len(retried), "rows": len(_rows(project))}))


def test_a_task_that_opts_out_is_not_retried(
        make: t.Callable[..., Project], redis_server: Server,
        spawn: t.Callable[..., Process]) -> None:
    project = make(_closed_pg(), redis_server.url, create=False)
    worker = _spawn_worker(spawn, project, concurrency=1)
    once = next(t for n, t in project.celery.tasks.items() if n.endswith(".write_note_once"))
    result = once.delay("k")
    # Celery hands the error back as its text: SQLAlchemy's errors do not travel.
    with pytest.raises(Exception, match="OperationalError.*Connection refused"):
        result.get(timeout=30, propagate=True)
    assert result.state == "FAILURE"
    assert "retries in" not in worker.output()


def test_the_worker_resumes_after_redis_restarts_and_runs_every_queued_task(
        make: t.Callable[..., Project], pg: Server, redis_server: Server,
        spawn: t.Callable[..., Process]) -> None:
    project = make(pg.url, redis_server.url)
    base = _spawn_web(spawn, project, free_port())
    worker = _spawn_worker(spawn, project, concurrency=1)
    task = next(t for n, t in project.celery.tasks.items() if n.endswith(".write_note"))
    keys = [f"redis-{n}" for n in range(30)]
    for key in keys:  # 30 tasks of 0.3 s on one process: most still queued when it stops
        task.delay(key, delay=0.3)
    wait_for(lambda: _rows(project), timeout=30, what="the first task to run")
    redis_server.stop()  # SIGTERM: Redis writes its append-only file, then exits
    queued_at_stop = len(keys) - len(_rows(project))
    probe = Probe()
    try:
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            page = probe.send("GET", f"{base}/", headers=HTML)
            assert page is not None and page.status_code == 200
            sent = probe.send("POST", f"{base}/enqueue", data={"key": "during"}, headers=HTML)
            assert sent is not None and sent.status_code == 503, sent and sent.text
            assert sent.headers["Retry-After"] == "5"
    finally:
        restarted = redis_server.start()
    assert max(probe.times) < BOUND, probe.figures()
    came_back = time.monotonic()
    # The first request after it succeeds, and every task queued before it runs.
    first = probe.send("POST", f"{base}/enqueue", data={"key": "after"}, headers=HTML)
    assert first is not None and first.status_code == 302, first and first.text
    wait_for(lambda: _rows(project) >= {*keys, "after"}, timeout=90, interval=0.5,
             what=f"every queued task; worker log {worker.log}")
    assert worker.popen.poll() is None  # the same worker, never restarted
    assert "during" not in _rows(project)  # refused with a 503: never sent
    print(json.dumps({"fault": "redis stopped 6 s", **probe.figures(),
                      "restart_s": round(restarted, 2), "queued_at_stop": queued_at_stop,
                      "all_done_after_s": round(time.monotonic() - came_back, 1),
                      "rows": len(_rows(project))}))
