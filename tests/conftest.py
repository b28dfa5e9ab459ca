"""Shared fixtures: real PostgreSQL and Redis (testcontainers or FLASKER_TEST_* servers),
projects written into temporary folders, and a clean environment for every test."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
import typing as t
import uuid
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from flasker import Project
from flasker.testing import postgresql_url
from flasker.testing import redis_url as redis_url_of_tests

pytest_plugins = ["tests.conftest_api", "tests.conftest_stack"]  # API and stack tests' fixtures

ROOT = Path(__file__).resolve().parent.parent
FLASKER = shutil.which("flasker", path=str(Path(sys.executable).parent)) or "flasker"
SECRET = "test-secret-key-0123456789abcdef"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's shell must not leak FLASKER__* or FLASKER_CONFIG into a test.

    Nor one test into the next: a command run in-process sets FLASKER_CONFIG for its
    children (``cli/context.py``), and setting it here first makes monkeypatch remove it
    again at the end of the test.
    """
    monkeypatch.setenv("FLASKER_CONFIG", "")
    for name in list(os.environ):
        if name.startswith("FLASKER__") or name == "FLASKER_CONFIG":
            monkeypatch.delenv(name)


# -- real servers ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_url() -> t.Iterator[str]:
    """A PostgreSQL URL: $FLASKER_TEST_DATABASE_URL, else a container from $POSTGRES_IMAGE."""
    with postgresql_url() as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> t.Iterator[str]:
    """A Redis URL: $FLASKER_TEST_REDIS_URL, else a container from $REDIS_IMAGE."""
    with redis_url_of_tests() as url:
        yield url


@pytest.fixture
def clean_pg(pg_url: str) -> t.Iterator[str]:
    """``pg_url`` with every table dropped afterwards, so tests do not see each other's rows."""
    yield pg_url
    import sqlalchemy as sa

    engine = sa.create_engine(pg_url)
    with engine.begin() as connection:
        connection.execute(sa.text("DROP SCHEMA public CASCADE"))
        connection.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Run a database test on the embedded SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.sqlite'}"
    return t.cast(str, request.getfixturevalue("clean_pg"))


# -- projects ----------------------------------------------------------------------------------


def write_project(folder: Path, cfg: str, files: t.Mapping[str, str] | None = None) -> Path:
    """Write ``default.cfg`` (dedented) and ``files`` (relative path → source) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "default.cfg"
    path.write_text(textwrap.dedent(cfg).lstrip())
    for name, source in (files or {}).items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(source).lstrip())
    return path


def prepend_path(monkeypatch: pytest.MonkeyPatch, folder: str | Path) -> None:
    """Put ``folder`` first on ``sys.path`` for the test, as the ``flasker`` command does.

    Not ``monkeypatch.syspath_prepend``: it calls ``importlib.invalidate_caches()``, whose
    walk over ``sys.path_importer_cache`` races with imports in background threads (a
    worker's, a container library's) on Python 3.11. A new folder needs no invalidation.
    """
    monkeypatch.setattr(sys, "path", [str(folder), *sys.path])


def unique_package() -> str:
    """A package name no other test uses, so that projects never share modules."""
    return f"proj_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def make_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                 ) -> t.Iterator[t.Callable[..., Project]]:
    """``make_project(cfg_text, files={...}, overrides=...)`` → a started :class:`Project`.

    The project's folder is put on ``sys.path`` for the test (as the ``flasker`` command
    does), and every project made is closed after it (connections, and its models).
    """
    made: list[Project] = []

    def make(cfg: str = "[PROJECT]\nNAME = Test\n", files: t.Mapping[str, str] | None = None,
             overrides: t.Mapping[str, t.Mapping[str, t.Any]] | None = None,
             folder: Path | None = None) -> Project:
        path = write_project(folder or tmp_path, cfg, files)
        prepend_path(monkeypatch, path.parent)
        merged = {"APP": {"TESTING": True, "SECRET_KEY": SECRET}}
        for section, values in (overrides or {}).items():
            merged.setdefault(section, {}).update(values)
        project = Project(path, overrides=merged)
        made.append(project)
        return project

    yield make
    for project in made:
        project.close()


@pytest.fixture
def project(make_project: t.Callable[..., Project]) -> Project:
    return make_project()


@pytest.fixture
def app(project: Project) -> t.Any:
    return project.app


@pytest.fixture
def client(app: t.Any) -> t.Any:
    return app.test_client()


_LIBRARY_FOLDERS = tuple({sys.prefix, sys.base_prefix, str(ROOT / "shared")})


def _is_project_module(module: t.Any) -> bool:
    """A module of a test's project (not the standard library, a package, or flasker)."""
    path = getattr(module, "__file__", None)
    return path is not None and not path.startswith(_LIBRARY_FOLDERS)


@pytest.fixture
def runner() -> t.Any:
    """``runner.invoke([...])`` runs ``flasker`` in this process, as if in a process of its own.

    A command imports the project's MODULES, which a real ``flasker`` process imports
    afresh: each invocation runs without the test's project modules and forgets those it
    imported.
    """
    from click.testing import CliRunner

    from flasker.cli import cli

    class Runner(CliRunner):
        def invoke(self, *args: t.Any, **kwargs: t.Any) -> t.Any:
            # The command starts without the test's project modules, and they come back after.
            kept = {n: m for n, m in sys.modules.items() if _is_project_module(m)}
            for name in kept:
                del sys.modules[name]
            try:
                return super().invoke(cli, *args, **kwargs)
            finally:
                for name in [n for n, m in sys.modules.items() if _is_project_module(m)]:
                    del sys.modules[name]
                sys.modules.update(kept)

    return Runner()


# -- the fake OpenID provider (tests/oidc_provider.py) -------------------------------------------


@pytest.fixture(scope="module")
def provider_server() -> t.Iterator[t.Any]:
    """The fake OpenID provider on a loopback port, once per test module."""
    from .oidc_provider import FakeProvider

    server = FakeProvider().start()
    yield server
    server.stop()


@pytest.fixture
def provider(provider_server: t.Any) -> t.Any:
    """The fake provider with every fault switch reset."""
    provider_server.reset()
    return provider_server


@pytest.fixture
def build_auth(tmp_path: Path, provider: t.Any, monkeypatch: pytest.MonkeyPatch
               ) -> t.Iterator[t.Callable[..., Project]]:
    """``build_auth(db_url=..., emails=..., extra=..., overrides=...)``: an auth project.

    The auth extension signs in through the fake provider; the tables are made unless
    ``create_tables=False``; every project is closed at the end of the test.
    """
    from .oidc_provider import auth_cfg, auth_files

    count = 0
    built: list[Project] = []

    def make(db_url: str | None = None, *, emails: str = "alice@corp.com, Bob@Example.org",
             extra: str = "", testing: bool = True,
             overrides: t.Mapping[str, t.Mapping[str, t.Any]] | None = None,
             create_tables: bool = True, views: str | None = None) -> Project:
        nonlocal count
        count += 1
        folder = tmp_path / f"project{count}"
        package = unique_package()
        url = db_url or f"sqlite:///{folder / 'db.sqlite'}"
        files = auth_files(package) if views is None else auth_files(package, views)
        path = write_project(folder, auth_cfg(provider, package, url, testing=testing,
                                              emails=emails, extra=extra), files)
        prepend_path(monkeypatch, str(folder))
        project = Project(path, overrides=overrides)
        built.append(project)
        if create_tables:
            project.metadata.create_all(project.engine)
        return project

    yield make
    for project in built:
        project.close()


# -- what the machine has -----------------------------------------------------------------------


def unavailable(reason: str) -> t.NoReturn:
    """Skip a test whose tool is missing here; in CI ($CI set) that is a failure instead.

    CI installs everything (.ci/run), so a missing tool there is a broken run, never a pass.
    """
    if os.environ.get("CI"):
        pytest.fail(f"CI must provide this: {reason}")
    pytest.skip(reason)


def serve(app: t.Any) -> t.Iterator[str]:
    """Serve ``app`` on 127.0.0.1 with Werkzeug's threaded server; yield its base URL."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()


# Debian's chromium (.ci/run installs it), driven by Playwright.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def require_chromium() -> str:
    """The path of Debian's chromium, or the test is unavailable (skipped, failed in CI)."""
    if not CHROMIUM.exists():
        unavailable("Debian's chromium is not installed: apt-get install -y chromium")
    return str(CHROMIUM)


# -- processes ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: t.Callable[[], t.Any], timeout: float = 30.0, interval: float = 0.2,
             what: str = "condition") -> t.Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except Exception as e:  # the thing polled is not up yet
            last_error = e
        else:
            if value:
                return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}: {last_error!r}")


class Process:
    """A ``flasker`` subprocess whose output is kept in a file, stopped at teardown."""

    def __init__(self, args: t.Sequence[str], cwd: Path, env: t.Mapping[str, str] | None = None,
                 log: Path | None = None) -> None:
        self.log = log or cwd / f"{args[0]}-{uuid.uuid4().hex[:6]}.log"
        self._file = self.log.open("wb")
        full_env = {**os.environ, **(env or {})}
        self.popen = subprocess.Popen([FLASKER, *args], cwd=cwd, env=full_env,
                                      stdout=self._file, stderr=subprocess.STDOUT,
                                      start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 20.0) -> int:
        import signal

        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        self._file.close()
        return self.popen.returncode


@pytest.fixture
def spawn() -> t.Iterator[t.Callable[..., Process]]:
    """``spawn(["worker"], cwd=folder, env={...})`` runs ``flasker worker``; stopped afterwards."""
    started: list[Process] = []

    def start(args: t.Sequence[str], cwd: Path, env: t.Mapping[str, str] | None = None) -> Process:
        process = Process(args, cwd, env)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
