"""``flasker.testing``: pytest fixtures for the tests of a flasker project.

Installed with flasker as a pytest plugin (the ``pytest11`` entry point), it gives a
project's tests ``project``, ``app``, ``client``, ``runner``, ``db`` and ``celery_worker``.
The project is the ``.cfg`` named by ``--flasker-config`` (or the ``flasker_config`` ini
option, or ``$FLASKER_CONFIG``), else ``default.cfg`` in pytest's rootdir, with its
database and broker replaced by the tests' own:

* ``--flasker-db sqlite`` (the default; ``$FLASKER_TEST_DB``): a temporary SQLite file;
  ``postgresql``: ``$FLASKER_TEST_DATABASE_URL``, else a PostgreSQL container
  (testcontainers, ``$POSTGRES_IMAGE``) for the session.
* ``--flasker-broker embedded`` (the default; ``$FLASKER_TEST_BROKER``): flasker's embedded
  SQLite broker and result backend in temporary files; ``redis``:
  ``$FLASKER_TEST_REDIS_URL``, else a Redis container (``$REDIS_IMAGE``).

Tables are made once per session: by the project's migrations (``alembic upgrade head``)
when it has revisions, so that the tests run on the schema production gets, else by
``create_all`` from the models; they are dropped at the end.

pytest loads this module in every run where flasker is installed: loading it costs what
importing ``flasker`` costs (Flask, SQLAlchemy), and nothing happens unless a test asks for
a fixture; Celery, Alembic and testcontainers are imported by the fixture that needs them.
A ``conftest.py`` fixture of the same name wins over the plugin's, as pytest's own rule
goes (flasker's own tests keep their ``project``, ``app``, ``client`` and ``runner``).
"""

from __future__ import annotations

import contextlib
import os
import typing as t
import weakref
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from . import migrate
from .cli import COMMANDS, cli
from .cli.context import ProjectInfo
from .config import Config, ConfigError
from .project import Project, prepare_import

if t.TYPE_CHECKING:
    from collections.abc import Iterator

    from click.testing import Result
    from flask import Flask
    from flask.testing import FlaskClient
    from sqlalchemy.orm import Session, scoped_session

DB_CHOICES = ("sqlite", "postgresql")
BROKER_CHOICES = ("embedded", "redis")
DEFAULT_CONFIG = "default.cfg"
#: Seconds a worker may take to finish its task when the test ends.
WORKER_SHUTDOWN_TIMEOUT = 30.0


@dataclass(frozen=True)
class Settings:
    """What the command line, the ini file and the environment chose for this run."""

    config_path: Path
    #: Where the path came from, for the message when the file is missing.
    config_origin: str
    db: str
    broker: str


_settings_key = pytest.StashKey[Settings]()
#: The projects whose database this run has prepared (tables made, SQLite savepoints on).
_prepared_key = pytest.StashKey[weakref.WeakSet[Project]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("flasker", "flasker.testing (the project under test)")
    group.addoption(
        "--flasker-config", dest="flasker_config", metavar="PATH",
        help="The project's .cfg file (default: the 'flasker_config' ini option, else"
             " $FLASKER_CONFIG, else default.cfg in the rootdir).")
    group.addoption(
        "--flasker-db", dest="flasker_db", choices=DB_CHOICES,
        help="The tests' database: a temporary SQLite file, or PostgreSQL"
             " ($FLASKER_TEST_DATABASE_URL, else a container). Default: $FLASKER_TEST_DB,"
             " else sqlite.")
    group.addoption(
        "--flasker-broker", dest="flasker_broker", choices=BROKER_CHOICES,
        help="The broker of 'celery_worker': flasker's embedded SQLite broker, or Redis"
             " ($FLASKER_TEST_REDIS_URL, else a container). Default: $FLASKER_TEST_BROKER,"
             " else embedded.")
    parser.addini("flasker_config", "The project's .cfg file, relative to the ini file.")


def pytest_configure(config: pytest.Config) -> None:
    """Read the choices once, and refuse the bad ones before any test runs."""
    config.stash[_settings_key] = _read_settings(config)
    config.stash[_prepared_key] = weakref.WeakSet()
    settings = config.stash[_settings_key]
    if settings.db == "postgresql" and not os.environ.get("FLASKER_TEST_DATABASE_URL"):
        _require_docker("--flasker-db postgresql", "FLASKER_TEST_DATABASE_URL",
                        "or use '--flasker-db sqlite'")
    if settings.broker == "redis" and not os.environ.get("FLASKER_TEST_REDIS_URL"):
        _require_docker("--flasker-broker redis", "FLASKER_TEST_REDIS_URL",
                        "or use '--flasker-broker embedded'")


def pytest_report_header(config: pytest.Config) -> str | None:
    settings = config.stash.get(_settings_key, None)
    if settings is None or not settings.config_path.is_file():
        return None
    return (f"flasker: {settings.config_path} on {settings.db},"
            f" {settings.broker} broker")


def _choice(config: pytest.Config, option: str, variable: str, choices: t.Sequence[str],
            flag: str) -> str:
    value = config.getoption(option) or os.environ.get(variable) or choices[0]
    if value not in choices:
        raise pytest.UsageError(
            f"The environment variable '{variable}' has value {value!r}: expected one of"
            f" {', '.join(repr(c) for c in choices)} (as '{flag}' takes).")
    return str(value)


def _read_settings(config: pytest.Config) -> Settings:
    db = _choice(config, "flasker_db", "FLASKER_TEST_DB", DB_CHOICES, "--flasker-db")
    broker = _choice(config, "flasker_broker", "FLASKER_TEST_BROKER", BROKER_CHOICES,
                     "--flasker-broker")
    option = config.getoption("flasker_config")
    ini = config.getini("flasker_config")
    if option:
        path = config.invocation_params.dir / option
        origin = "the option '--flasker-config'"
    elif ini:
        base = config.inipath.parent if config.inipath else config.rootpath
        path = base / str(ini)
        origin = f"the ini option 'flasker_config' ({config.inipath})"
    elif os.environ.get("FLASKER_CONFIG"):
        path = config.invocation_params.dir / os.environ["FLASKER_CONFIG"]
        origin = "the environment variable 'FLASKER_CONFIG'"
    else:
        path = config.rootpath / DEFAULT_CONFIG
        origin = "the default, default.cfg in pytest's rootdir"
    if (option or ini) and not path.is_file():
        # Asked for by name: a typo fails the run at once. The default fails only in a
        # test that uses a fixture (flasker's own tests, say, have no default.cfg).
        raise pytest.UsageError(_missing_config(path, origin))
    return Settings(path.resolve(), origin, db, broker)


def _missing_config(path: Path, origin: str) -> str:
    return (f"flasker.testing: the project's configuration file '{path}' ({origin}) does"
            " not exist. Name the .cfg with '--flasker-config PATH', the ini option"
            " 'flasker_config' or 'FLASKER_CONFIG', or run pytest in the project's folder.")


def _require_docker(choice: str, variable: str, other: str) -> None:
    """Fail the run now if the container ``choice`` needs cannot be started."""
    try:
        # testcontainers' client: it reads DOCKER_HOST and testcontainers' own settings.
        from testcontainers.core.docker_client import DockerClient  # noqa: PLC0415
    except ImportError:
        raise pytest.UsageError(
            f"'{choice}' starts a container with testcontainers, which is not installed:"
            f" install it (pip install 'flasker[testing]'), set '{variable}' to a server the"
            f" tests may use, {other}.") from None
    try:
        DockerClient().client.ping()
    except Exception as e:  # no socket, no daemon, no permission: all the same here
        raise pytest.UsageError(
            f"'{choice}' starts a container through Docker (testcontainers), and Docker is"
            f" not available here ({type(e).__name__}: {e}). Start Docker, set '{variable}'"
            f" to a server the tests may use, {other}.") from None


# -- the test servers ------------------------------------------------------------------------


@contextlib.contextmanager
def postgresql_url() -> Iterator[str]:
    """A PostgreSQL URL: ``$FLASKER_TEST_DATABASE_URL``, else a container of ``$POSTGRES_IMAGE``.

    The container (testcontainers, so Docker) lives as long as the ``with`` block.
    """
    if url := os.environ.get("FLASKER_TEST_DATABASE_URL"):
        yield url
        return
    from testcontainers.community.postgres import PostgresContainer  # noqa: PLC0415 (Docker only)

    with PostgresContainer(os.environ.get("POSTGRES_IMAGE", "postgres:17"),
                           driver="psycopg") as container:
        yield container.get_connection_url()


@contextlib.contextmanager
def redis_url() -> Iterator[str]:
    """A Redis URL: ``$FLASKER_TEST_REDIS_URL``, else a container of ``$REDIS_IMAGE``."""
    if url := os.environ.get("FLASKER_TEST_REDIS_URL"):
        yield url
        return
    from testcontainers.community.redis import RedisContainer  # noqa: PLC0415 (Docker only)

    with RedisContainer(os.environ.get("REDIS_IMAGE", "redis:7")) as container:
        host, port = container.get_container_host_ip(), container.get_exposed_port(6379)
        yield f"redis://{host}:{port}/0"


@pytest.fixture(scope="session")
def flasker_database_url(pytestconfig: pytest.Config,
                         tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of the tests' database (see ``--flasker-db``)."""
    if pytestconfig.stash[_settings_key].db == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('flasker-db') / 'test.sqlite'}"
        return
    with postgresql_url() as url:
        yield url


@pytest.fixture(scope="session")
def flasker_broker_urls(pytestconfig: pytest.Config,
                        tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """``broker_url`` and ``result_backend`` of the tests (see ``--flasker-broker``)."""
    if pytestconfig.stash[_settings_key].broker == "embedded":
        folder = tmp_path_factory.mktemp("flasker-broker")
        yield {"broker_url": f"sqla+sqlite:///{folder / 'broker.sqlite'}",
               "result_backend": f"db+sqlite:///{folder / 'results.sqlite'}"}
        return
    with redis_url() as url:  # Celery's broker and results keep apart in one database
        yield {"broker_url": url, "result_backend": url}


# -- the project -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def project(request: pytest.FixtureRequest, pytestconfig: pytest.Config,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """The project under test, started once per session on the tests' database and broker.

    It imports its MODULES when this fixture first runs: a test module imports the
    project's own modules (``from app.models import Note``) inside its tests, not at its top.
    """
    settings = pytestconfig.stash[_settings_key]
    if not settings.config_path.is_file():
        pytest.fail(_missing_config(settings.config_path, settings.config_origin),
                    pytrace=False)
    # The servers only once the file is known to be there (a container takes seconds).
    database_url: str = request.getfixturevalue("flasker_database_url")
    broker_urls: dict[str, str] = request.getfixturevalue("flasker_broker_urls")
    prepare_import(settings.config_path.parent)
    state = tmp_path_factory.mktemp("flasker-state")
    try:
        project = Project(settings.config_path, overrides={
            "PROJECT": {"DB_URL": database_url, "STATE_FOLDER": str(state)},
            "APP": {"TESTING": True},
            "CELERY": dict(broker_urls),
        })
    except ConfigError as e:  # the sentence says it all: no traceback into flasker
        pytest.fail(f"flasker.testing: {e}", pytrace=False)
    try:
        _prepare(pytestconfig, project)
        yield project
    finally:
        migrate.drop_all(project)
        project.close()


@pytest.fixture(scope="session")
def app(project: Project) -> Flask:
    """The project's Flask app (``TESTING`` on)."""
    return project.app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """Flask's test client: a fresh one, with no cookies, for each test."""
    return app.test_client()


@pytest.fixture
def runner(project: Project) -> ProjectRunner:
    """``runner.invoke(["db", "create"])`` runs a ``flasker`` command on the test's project."""
    return ProjectRunner(project)


class ProjectRunner:
    """Click's ``CliRunner`` for the ``flasker`` command, bound to one project.

    flasker's commands get the project the tests run on (its database, its broker),
    not one loaded afresh from the file; a command of the project's app (``app.cli``)
    runs through Flask's test runner for that app.
    """

    def __init__(self, project: Project) -> None:
        self.project = project
        self.cli_runner: CliRunner = CliRunner()

    def invoke(self, args: t.Sequence[str] = (), **kwargs: t.Any) -> Result:
        """Run ``flasker ARGS``; ``kwargs`` go to :meth:`click.testing.CliRunner.invoke`."""
        args = list(args)
        name = next((a for a in args if not a.startswith("-")), None)
        if name is not None and name not in COMMANDS and name in self.project.app.cli.commands:
            return self.project.app.test_cli_runner().invoke(args=args, **kwargs)
        return self.cli_runner.invoke(cli, args, obj=BoundInfo(self.project), **kwargs)


class BoundInfo(ProjectInfo):
    """The commands' context object, whose project is the tests' one, never loaded afresh."""

    def __init__(self, project: Project) -> None:
        super().__init__(str(project.config.path))
        self.project = project

    def findable(self) -> bool:
        return True

    def load_config(self) -> Config:
        return self.project.config

    def load(self, overrides: t.Mapping[str, t.Mapping[str, t.Any]] | None = None) -> Project:
        if overrides:
            raise click.UsageError(
                f"This command changes the configuration ({dict(overrides)!r}), and the"
                " tests' project is built already: run it in a process of its own.")
        return self.project


# -- the database ----------------------------------------------------------------------------


def _prepare(pytestconfig: pytest.Config, project: Project) -> None:
    """Once per project: SQLite savepoints that work, and the tables."""
    prepared = pytestconfig.stash[_prepared_key]
    if project in prepared:
        return
    if project.engine.dialect.name == "sqlite":
        _sqlite_transactions(project.engine)
    if migrate.has_revisions(project):
        migrate.upgrade(project)
    else:
        project.metadata.create_all(project.engine)
    prepared.add(project)


def _sqlite_transactions(engine: sa.Engine) -> None:
    """Let SQLAlchemy, not pysqlite, begin transactions, so that SAVEPOINT works.

    pysqlite (before Python 3.12's ``autocommit``) begins a transaction only before
    the first write and commits on its own before some statements, which breaks the
    savepoint each test runs in; this is SQLAlchemy's documented recipe for it.
    """

    def no_driver_transactions(dbapi_connection: t.Any, _record: t.Any) -> None:
        dbapi_connection.isolation_level = None

    def begin(connection: sa.Connection) -> None:
        connection.exec_driver_sql("BEGIN")

    sa.event.listen(engine, "connect", no_driver_transactions)
    sa.event.listen(engine, "begin", begin)
    engine.dispose()  # a connection made before has the driver's behaviour


def _empty_tables(project: Project) -> None:
    """Delete every row of the models' tables (children first)."""
    with project.engine.begin() as connection:
        for table in reversed(project.metadata.sorted_tables):
            connection.execute(table.delete())


@pytest.fixture
def db(request: pytest.FixtureRequest, project: Project) -> Iterator[scoped_session[Session]]:
    """The project's session, inside a transaction rolled back at the end of the test.

    The session's factory is bound, for the test, to one connection in an open
    transaction, and each session (the test's, a request's) runs in a savepoint of it
    (``join_transaction_mode="create_savepoint"``): ``db.commit()`` and a view's commit
    release their savepoint, so requests through ``client`` see the test's rows, and
    the final rollback leaves the database as it was.

    With ``celery_worker``, the session is the ordinary one: a worker's thread has
    connections of its own and sees committed rows only, so such a test commits for real
    and ``celery_worker`` empties the tables when it ends.
    """
    _prepare(request.config, project)
    session = project.db
    session.remove()
    if "celery_worker" in request.fixturenames:
        yield session
        session.remove()
        return
    factory = session.session_factory
    kept = dict(factory.kw)
    connection = project.engine.connect()
    transaction = connection.begin()
    factory.configure(bind=connection, join_transaction_mode="create_savepoint")
    try:
        yield session
    finally:
        session.remove()
        factory.kw.clear()  # as it was: 'configure' can add keys, not remove them
        factory.kw.update(kept)
        transaction.rollback()
        connection.close()


# -- Celery ----------------------------------------------------------------------------------


@pytest.fixture
def celery_worker(request: pytest.FixtureRequest, project: Project) -> Iterator[t.Any]:
    """A real Celery worker, in a thread of this process, on the project's broker.

    Tasks go through the broker (never ``task_always_eager``) and run as in ``flasker
    worker``: in the app context, with their own session, committed when they succeed.
    They see committed rows only, so a test using the worker commits (``db.commit()``,
    or a request that does); every table is emptied when the test ends. Tasks left in
    the queue by earlier tests are purged first.
    """
    from celery.contrib.testing.worker import start_worker  # noqa: PLC0415 (Celery is heavy)

    _prepare(request.config, project)
    celery = project.celery
    celery.control.purge()
    try:
        with start_worker(celery, pool="solo", perform_ping_check=False,
                          shutdown_timeout=WORKER_SHUTDOWN_TIMEOUT) as worker:
            yield worker
    finally:
        project.db.remove()
        _empty_tables(project)
