"""``flasker.testing``, the pytest plugin: a project written by ``flasker new`` runs its own
tests with it, in a pytest process of its own, on SQLite and the embedded broker, and on
PostgreSQL and Redis; its errors are sentences that name the option to use."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import typing as t
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from flasker import Project
from flasker.cli import cli
from flasker.testing import ProjectRunner

from .conftest import unique_package

# Checks added to the new project's own tests: each asserts what the plugin promises,
# whatever the scaffold's tests become. Their names keep them in this order.
CHECKS = '''
import os

import sqlalchemy as sa


def test_0_the_project_runs_on_the_tests_database_and_broker(project):
    assert project.engine.url.get_backend_name() == os.environ["EXPECT_DB"]
    assert project.engine.url.database != str(project.root / "db.sqlite")
    assert project.celery.conf.broker_url.startswith(os.environ["EXPECT_BROKER"])
    assert project.app.testing


def test_1_writes_through_its_session_and_a_request(db, client, csrf_token):
    from app.models import Note

    db.add(Note(text="from the session"))
    db.commit()
    answer = client.post("/notes", data={"text": "from a request", "csrf_token": csrf_token})
    assert answer.status_code == 302
    assert sorted(db.scalars(sa.select(Note.text))) == ["from a request", "from the session"]
    assert "from the session" in client.get("/").text


def test_2_finds_none_of_them(db):
    from app.models import Note

    assert db.scalar(sa.select(sa.func.count()).select_from(Note)) == 0


def test_3_a_real_worker_runs_the_tasks_on_the_committed_rows(db, celery_worker, project):
    from app.models import Note
    from app.tasks import add, tick

    assert project.celery.conf.task_always_eager is False
    sent = add.delay(20, 22)
    assert sent.get(timeout=30) == 42
    assert project.celery.AsyncResult(sent.id).state == "SUCCESS"
    db.add(Note(text="committed by the test"))
    db.commit()
    assert tick.delay().get(timeout=30) == 2
    assert db.scalar(sa.select(sa.func.count()).select_from(Note)) == 2


def test_4_the_worker_test_left_no_rows(db):
    from app.models import Note

    assert db.scalar(sa.select(sa.func.count()).select_from(Note)) == 0


def test_5_the_runner_runs_flasker_on_the_tests_database(runner):
    # The migrations ran on the tests' database: a project loaded afresh from
    # default.cfg (db.sqlite beside it) would have no revision.
    result = runner.invoke(["db", "current"])
    assert result.exit_code == 0, result.output
    assert "(head)" in result.output
'''
#: The scaffold's tests (tests/test_notes.py; tests/test_tasks.py for 'celery').
NOTES_TESTS = 7
TASKS_TESTS = 4
CHECK_TESTS = 6


def new_project(folder: Path, kind: str = "celery", checks: bool = True) -> Path:
    """``flasker new KIND`` into ``folder`` (no container stack), with ``CHECKS`` added."""
    result = CliRunner().invoke(cli, ["new", kind, str(folder), "--name", "Acme", "--no-stack"])
    assert result.exit_code == 0, result.output
    assert (folder / "tests" / "test_notes.py").is_file()
    if checks:
        (folder / "tests" / "test_plugin_checks.py").write_text(CHECKS)
    return folder


def run(folder: Path, *args: str, env: t.Mapping[str, str | None] | None = None,
        timeout: float = 300) -> pytest.RunResult:
    """pytest in ``folder``, in a process of its own, as a project's developer runs it.

    A process of its own: a project imports its modules once per process, and the
    run must not share this one's ``sys.modules`` nor its warning filters.
    ``env`` adds variables, or removes those set to ``None``.
    """
    environ = {k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"}
    for name, value in (env or {}).items():
        if value is None:
            environ.pop(name, None)
        else:
            environ[name] = value
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
         f"--basetemp={folder.parent / (folder.name + '-basetemp')}", *args],
        cwd=folder, env=environ, capture_output=True, text=True, timeout=timeout, check=False)
    return pytest.RunResult(done.returncode, done.stdout.splitlines(), done.stderr.splitlines(),
                            time.monotonic() - started)


def test_a_new_celery_project_passes_its_tests_on_sqlite_and_the_embedded_broker(
    tmp_path: Path,
) -> None:
    folder = new_project(tmp_path / "acme")
    result = run(folder, env={"EXPECT_DB": "sqlite", "EXPECT_BROKER": "sqla+sqlite://"})
    result.assert_outcomes(passed=NOTES_TESTS + TASKS_TESTS + CHECK_TESTS)
    # The project's own database and broker files were never touched.
    assert not (folder / "db.sqlite").exists()
    assert not (folder / ".flasker").exists()


def test_a_new_basic_project_passes_its_tests(tmp_path: Path) -> None:
    folder = new_project(tmp_path / "acme", "basic", checks=False)
    assert not (folder / "tests" / "test_tasks.py").exists()
    result = run(folder)
    result.assert_outcomes(passed=NOTES_TESTS)
    result.stdout.fnmatch_lines([f"flasker: {folder / 'default.cfg'} on sqlite, embedded broker"])


@pytest.mark.docker
def test_postgresql_and_redis_from_containers(tmp_path: Path) -> None:
    folder = new_project(tmp_path / "acme")
    result = run(folder, "--flasker-db", "postgresql", "--flasker-broker", "redis", env={
        "FLASKER_TEST_DATABASE_URL": None, "FLASKER_TEST_REDIS_URL": None,
        "EXPECT_DB": "postgresql", "EXPECT_BROKER": "redis://"})
    result.assert_outcomes(passed=NOTES_TESTS + TASKS_TESTS + CHECK_TESTS)


@pytest.mark.docker
def test_a_database_server_named_by_the_environment_is_left_without_tables(
    tmp_path: Path, clean_pg: str
) -> None:
    folder = new_project(tmp_path / "acme")
    result = run(folder, env={
        "FLASKER_TEST_DB": "postgresql", "FLASKER_TEST_DATABASE_URL": clean_pg,
        "EXPECT_DB": "postgresql", "EXPECT_BROKER": "sqla+sqlite://"})
    result.assert_outcomes(passed=NOTES_TESTS + TASKS_TESTS + CHECK_TESTS)
    engine = sa.create_engine(clean_pg)
    try:
        assert sa.inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


def test_the_ini_option_names_the_project(tmp_path: Path) -> None:
    new_project(tmp_path / "acme", "basic", checks=False)
    (tmp_path / "pytest.ini").write_text("[pytest]\nflasker_config = acme/default.cfg\n")
    result = run(tmp_path, "acme/tests")
    result.assert_outcomes(passed=NOTES_TESTS)


# -- errors ------------------------------------------------------------------------------------


def test_a_missing_config_named_by_the_option_stops_the_run(tmp_path: Path) -> None:
    (tmp_path / "test_plain.py").write_text("def test_plain():\n    pass\n")
    result = run(tmp_path, "--flasker-config", "nowhere.cfg")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        f"ERROR: flasker.testing: the project's configuration file"
        f" '{tmp_path / 'nowhere.cfg'}' (the option '--flasker-config') does not exist.*"
    ])


def test_without_a_project_only_the_tests_using_its_fixtures_fail(tmp_path: Path) -> None:
    (tmp_path / "test_two.py").write_text(
        "def test_plain():\n    pass\n\n\ndef test_with_a_client(client):\n    pass\n")
    result = run(tmp_path)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines([
        "*the project's configuration file*default.cfg' (the default, default.cfg in pytest's"
        " rootdir) does not exist. Name the .cfg with '--flasker-config PATH'*"
    ])
    result.stdout.no_fnmatch_line("*Traceback*")


def test_a_bad_project_fails_with_the_config_sentence(tmp_path: Path) -> None:
    (tmp_path / "default.cfg").write_text("[PROJECT]\nNAME = Broken\nMODULES = not_there\n")
    (tmp_path / "test_one.py").write_text("def test_one(app):\n    pass\n")
    result = run(tmp_path)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "*flasker.testing: Config 'PROJECT.MODULES' (*default.cfg*) names the module"
        " 'not_there', which cannot be imported*"
    ])


@pytest.mark.parametrize(("variable", "value", "flag"), [
    ("FLASKER_TEST_DB", "mysql", "--flasker-db"),
    ("FLASKER_TEST_BROKER", "rabbitmq", "--flasker-broker"),
])
def test_a_bad_choice_in_the_environment_stops_the_run(
    tmp_path: Path, variable: str, value: str, flag: str
) -> None:
    result = run(tmp_path, env={variable: value})
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        f"ERROR: The environment variable '{variable}' has value '{value}': expected one of"
        f" * (as '{flag}' takes)."
    ])


@pytest.mark.parametrize(("args", "variable"), [
    (("--flasker-db", "postgresql"), "FLASKER_TEST_DATABASE_URL"),
    (("--flasker-broker", "redis"), "FLASKER_TEST_REDIS_URL"),
])
def test_a_container_without_docker_stops_the_run_saying_so(
    tmp_path: Path, args: tuple[str, ...], variable: str
) -> None:
    # Docker's client looks at DOCKER_HOST: a socket that does not exist is no Docker.
    result = run(tmp_path, *args, env={
        "DOCKER_HOST": f"unix://{tmp_path / 'no-docker.sock'}", variable: None})
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        f"ERROR: '{' '.join(args)}' starts a container through Docker (testcontainers), and"
        f" Docker is not available here (*). Start Docker, set '{variable}'*"
    ])


# -- inside flasker's own test run ---------------------------------------------------------------
# tests/conftest.py defines project, app, client and runner: pytest picks those over the
# plugin's (a conftest's fixture wins), and the plugin's 'db' runs on whichever project is.

VIEWS = """
import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from flasker import Model, current_project

app = current_project.app
db = current_project.db


class Entry(Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(sa.String(50))


@app.post("/entries/<text>")
def add(text):
    db.add(Entry(text=text))
    db.commit()
    return "saved"


@app.post("/fail/<text>")
def fail(text):
    db.add(Entry(text=text))
    db.flush()
    raise RuntimeError("the view failed after writing " + text)


@app.cli.command("count-entries")
def count_entries():
    print(db.scalar(sa.select(sa.func.count()).select_from(Entry)), "entries")
"""


@pytest.fixture
def project(make_project: t.Callable[..., Project], db_url: str) -> Project:
    package = unique_package()
    return make_project(
        f"[PROJECT]\nNAME = Entries\nMODULES = {package}.views\nDB_URL = {db_url}\n",
        files={f"{package}/__init__.py": "", f"{package}/views.py": VIEWS})


def _texts(session: t.Any) -> list[str]:
    return sorted(session.scalars(sa.text("SELECT text FROM entries")))


def test_this_suite_s_project_fixture_wins_over_the_plugin_s(project: Project,
                                                              tmp_path: Path) -> None:
    assert project.config.path == tmp_path / "default.cfg"


def test_the_db_fixture_keeps_the_test_in_a_transaction_its_requests_join(
    project: Project, db: t.Any, client: t.Any
) -> None:
    db.execute(sa.text("INSERT INTO entries (text) VALUES ('by the test')"))
    db.commit()
    assert client.post("/entries/by-a-request").status_code == 200
    # A failing request rolls back its own savepoint only.
    with pytest.raises(RuntimeError, match="the view failed after writing lost"):
        client.post("/fail/lost")
    assert _texts(db) == ["by the test", "by-a-request"]
    # Committed for the test's connection, for no other.
    with project.engine.connect() as other:
        assert other.scalar(sa.text("SELECT count(*) FROM entries")) == 0


@pytest.fixture
def session_kept(project: Project) -> t.Iterator[dict[str, t.Any]]:
    """Set up before ``db``, so torn down after it: checks what ``db`` restored."""
    before = dict(project.db.session_factory.kw)
    yield before
    assert project.db.session_factory.kw == before
    assert project.db().get_bind() is project.engine
    project.db.remove()


def test_after_the_test_the_session_is_the_ordinary_one_again(
    session_kept: dict[str, t.Any], project: Project, db: t.Any
) -> None:
    assert session_kept["bind"] is project.engine
    assert db().get_bind() is not project.engine  # the test's own connection
    assert db.session_factory.kw["join_transaction_mode"] == "create_savepoint"


def test_the_runner_runs_commands_on_the_test_s_own_project(project: Project, db: t.Any) -> None:
    runner = ProjectRunner(project)
    db.execute(sa.text("INSERT INTO entries (text) VALUES ('one'), ('two')"))
    db.commit()
    # A command of the project's app, through the session of the test's transaction.
    result = runner.invoke(["count-entries"])
    assert result.exit_code == 0, result.output
    assert result.output == "2 entries\n"
    # flasker's own: loaded afresh, the project would refuse its imported MODULES.
    result = runner.invoke(["routes"])
    assert result.exit_code == 0, result.output
    assert "/entries/<text>" in result.output
    result = runner.invoke(["server", "--debug"])
    assert result.exit_code == 2
    assert "the tests' project is built already: run it in a process of its own" in result.output
