"""``flasker.db``: the database URL, the engine built from ``[ENGINE]``, and the scoped session."""

from __future__ import annotations

import os
import threading
import typing as t
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError, OperationalError, StatementError

from flasker import ConfigError, Project
from flasker.config import load_config
from flasker.db import database_url, resolve_sqlite_url

from .conftest import unique_package, wait_for, write_project

MODELS = """
from sqlalchemy import Column, ForeignKey, Integer, Unicode

from flasker import Model


class Owner(Model):
    id = Column(Integer, primary_key=True)
    name = Column(Unicode(64))


class Pet(Model):
    id = Column(Integer, primary_key=True)
    owner_id = Column(Integer, ForeignKey("owners.id"), nullable=False)
"""


@pytest.fixture
def pets(make_project: t.Callable[..., Project], db_url: str, tmp_path: Path) -> Project:
    """A project on ``db_url`` whose module declares ``Owner`` and ``Pet``, tables created."""
    package = unique_package()
    project = make_project(
        f"[PROJECT]\nNAME = Pets\nMODULES = {package}.models\nDB_URL = {db_url}\n",
        {f"{package}/__init__.py": "", f"{package}/models.py": MODELS},
        folder=tmp_path / package,
    )
    project.metadata.create_all(project.engine)
    return project


# -- the URL -----------------------------------------------------------------------------------


def test_a_relative_sqlite_path_is_taken_from_the_root_and_its_folder_made(tmp_path: Path
                                                                           ) -> None:
    url = resolve_sqlite_url("sqlite:///data/nested/app.sqlite?timeout=10", tmp_path)
    assert url == f"sqlite:///{tmp_path}/data/nested/app.sqlite?timeout=10"
    assert (tmp_path / "data" / "nested").is_dir()


def test_an_absolute_sqlite_path_is_kept_and_its_folder_made(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "app.sqlite"
    assert resolve_sqlite_url(f"sqlite:///{target}", tmp_path / "root") == f"sqlite:///{target}"
    assert target.parent.is_dir()
    assert not (tmp_path / "root").exists()


@pytest.mark.parametrize("url", [
    "sqlite://",
    "sqlite:///:memory:",
    "sqlite:///file:shared?mode=memory&cache=shared&uri=true",
    "postgresql+psycopg://user:p%40ss@db.example:5432/app",
])
def test_other_urls_are_left_alone(url: str, tmp_path: Path) -> None:
    assert resolve_sqlite_url(url, tmp_path) == url
    assert list(tmp_path.iterdir()) == []


def test_a_folder_that_cannot_be_made_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    # Nobody, root included, can make a folder under /proc.
    with pytest.raises(ConfigError) as info:
        resolve_sqlite_url("sqlite:////proc/self/nowhere/db.sqlite", tmp_path,
                           key="CELERY.result_backend")
    message = str(info.value)
    assert "Config 'CELERY.result_backend'" in message
    assert "'/proc/self/nowhere/db.sqlite'" in message
    assert "Point it at a writable place" in message


def test_a_project_whose_database_folder_cannot_be_made_does_not_start(tmp_path: Path) -> None:
    path = write_project(tmp_path, """
        [PROJECT]
        NAME = nowhere
        DB_URL = sqlite:////proc/self/nowhere/db.sqlite
    """)
    with pytest.raises(ConfigError, match=r"^Config 'PROJECT\.DB_URL' puts the SQLite file"):
        Project(path, overrides={"APP": {"TESTING": True}})


def test_the_default_database_is_db_sqlite_beside_the_cfg(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "project"
    path = write_project(folder, "[PROJECT]\nNAME = default\n")
    monkeypatch.chdir(tmp_path)  # not the project's folder
    assert database_url(load_config(path)) == f"sqlite:///{folder / 'db.sqlite'}"


def test_a_relative_db_url_is_taken_from_the_cfg_folder_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "project"
    path = write_project(folder, "[PROJECT]\nNAME = relative\nDB_URL = sqlite:///var/app.sqlite\n")
    monkeypatch.chdir(tmp_path)
    project = Project(path, overrides={"APP": {"TESTING": True}})
    try:
        assert project.engine.url.database == str(folder / "var" / "app.sqlite")
        with project.engine.begin() as connection:
            connection.execute(sa.text("CREATE TABLE t (x INTEGER)"))
        assert (folder / "var" / "app.sqlite").is_file()
        assert not (tmp_path / "var").exists()
    finally:
        project.close()


def test_a_database_url_from_the_environment_is_resolved_the_same_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_project(tmp_path / "project", "[PROJECT]\nNAME = env\n")
    monkeypatch.setenv("FLASKER__PROJECT__DB_URL", "sqlite:///state/env.sqlite")
    assert database_url(load_config(path)) == (
        f"sqlite:///{tmp_path / 'project' / 'state' / 'env.sqlite'}"
    )


# -- the engine ----------------------------------------------------------------------------------


def test_foreign_keys_are_enforced(pets: Project) -> None:
    models = pets.models()
    with pets.app.app_context():
        pets.db.add(models["Pet"](id=1, owner_id=99))
        with pytest.raises(IntegrityError):
            pets.db.flush()
        pets.db.rollback()
        pets.db.add(models["Owner"](id=1, name="Ann"))
        pets.db.add(models["Pet"](id=1, owner_id=1))
        pets.db.commit()
    with pets.engine.connect() as connection:
        with pytest.raises(IntegrityError):
            connection.execute(sa.text("DELETE FROM owners WHERE id = 1"))


def test_every_sqlite_connection_has_foreign_keys_on(tmp_path: Path) -> None:
    path = write_project(tmp_path, "[PROJECT]\nNAME = fk\n")
    project = Project(path, overrides={"APP": {"TESTING": True}})
    try:
        with project.engine.connect() as one, project.engine.connect() as two:
            assert one.execute(sa.text("PRAGMA foreign_keys")).scalar() == 1
            assert two.execute(sa.text("PRAGMA foreign_keys")).scalar() == 1
    finally:
        project.close()


def _isolation_level(dialect: str) -> str:
    """A level other than the dialect's default, so that the setting is seen to apply."""
    return "READ UNCOMMITTED" if dialect == "sqlite" else "REPEATABLE READ"


def test_engine_options_reach_the_engine(make_project: t.Callable[..., Project], db_url: str,
                                         caplog: pytest.LogCaptureFixture) -> None:
    level = _isolation_level(sa.make_url(db_url).get_backend_name())
    project = make_project(f"""
        [PROJECT]
        NAME = engine
        DB_URL = {db_url}
        [ENGINE]
        echo = true
        hide_parameters = true
        isolation_level = {level}
        execution_options = {{"logging_token": "flasker-test"}}
    """)
    assert project.engine.echo is True
    with caplog.at_level("INFO", logger="sqlalchemy.engine.Engine"), \
            project.engine.connect() as connection:
        assert connection.get_isolation_level() == level
        connection.execute(sa.text("SELECT 42"))
        with pytest.raises(StatementError) as info:
            connection.execute(sa.text("SELECT no_such_column + :secret"), {"secret": "hunter2"})
    statements = [r.getMessage() for r in caplog.records if r.name == "sqlalchemy.engine.Engine"]
    assert any("[flasker-test] SELECT 42" in s for s in statements), statements
    assert "[SQL parameters hidden due to hide_parameters=True]" in str(info.value)
    assert "hunter2" not in str(info.value)


def test_connect_args_reach_the_driver(make_project: t.Callable[..., Project], pg_url: str
                                       ) -> None:
    project = make_project(f"""
        [PROJECT]
        NAME = connect args
        DB_URL = {pg_url}
        [ENGINE]
        connect_args = {{"application_name": "flasker-tests"}}
        pool_size = 2
    """)
    with project.engine.connect() as connection:
        assert connection.execute(sa.text("SHOW application_name")).scalar() == "flasker-tests"
    assert isinstance(project.engine.pool, sa.QueuePool)
    assert project.engine.pool.size() == 2


def _backend_pid(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())


@pytest.mark.parametrize(("setting", "survives"), [("", True), ("pool_pre_ping = false", False)])
def test_pool_pre_ping_replaces_a_connection_the_server_closed(
    make_project: t.Callable[..., Project], pg_url: str, setting: str, survives: bool
) -> None:
    """On by default: a pooled connection that PostgreSQL dropped is replaced, not used."""
    project = make_project(f"[PROJECT]\nNAME = ping\nDB_URL = {pg_url}\n[ENGINE]\n{setting}\n")
    pid = _backend_pid(project.engine)  # the connection now waits in the pool
    # Autocommit: PostgreSQL shows the same pg_stat_activity for a whole transaction.
    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})

            def gone() -> bool:
                query = sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid")
                return connection.execute(query, {"pid": pid}).scalar() == 0

            wait_for(gone, timeout=10, what=f"backend {pid} to end")
    finally:
        admin.dispose()
    if survives:
        assert _backend_pid(project.engine) != pid
    else:
        with pytest.raises(OperationalError):
            _backend_pid(project.engine)


def test_the_pool_is_replaced_in_a_forked_child(db_url: str, tmp_path: Path) -> None:
    """A child (a Celery or gunicorn worker) opens its own connections; the parent's live on."""
    path = write_project(tmp_path / "fork", f"[PROJECT]\nNAME = fork\nDB_URL = {db_url}\n")
    project = Project(path, overrides={"APP": {"TESTING": True}})
    postgres = project.engine.dialect.name == "postgresql"
    query = sa.text("SELECT pg_backend_pid()" if postgres else "SELECT 1")
    try:
        with project.engine.connect() as connection:
            parent_answer = connection.execute(query).scalar()
        assert project.engine.pool.checkedin() == 1  # type: ignore[attr-defined]
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child reports what it found, then leaves at once
            try:
                idle = project.engine.pool.checkedin()  # type: ignore[attr-defined]
                with project.engine.connect() as connection:
                    answer = connection.execute(query).scalar()
                os.write(write, f"{idle} {answer}".encode())
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        os.close(write)
        idle, child_answer = os.read(read, 64).decode().split()
        os.close(read)
        assert idle == "0"  # the child's pool starts empty
        if postgres:
            assert int(child_answer) != parent_answer  # a server process of its own
        # The child left without closing the parent's connection.
        with project.engine.connect() as connection:
            assert connection.execute(query).scalar() == parent_answer
    finally:
        project.close()


# -- the session ---------------------------------------------------------------------------------


def test_one_session_per_app_context_removed_at_teardown(pets: Project) -> None:
    db = pets.db
    with pets.app.app_context():
        session = db()
        assert db() is session
        with pets.app.app_context():  # a nested context (a task called from a request)
            assert db() is not session
        assert db() is session
        assert db.registry.has()
    assert not db.registry.has()
    with pets.app.app_context():
        assert db() is not session


def test_one_session_per_request(pets: Project) -> None:
    seen: list[int] = []

    @pets.app.route("/session")
    def view() -> str:
        seen.append(id(pets.db()))
        assert pets.db() is pets.db()
        return "ok"

    client = pets.app.test_client()
    assert client.get("/session").status_code == 200
    assert client.get("/session").status_code == 200
    assert seen[0] != seen[1]
    assert not pets.db.registry.has()


def test_outside_an_app_context_the_session_is_per_thread(pets: Project) -> None:
    found: list[t.Any] = []

    def other() -> None:
        found.append(pets.db())
        pets.db.remove()

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    try:
        assert found[0] is not pets.db()
        assert pets.db() is pets.db()
    finally:
        pets.db.remove()


def test_an_app_context_ending_with_an_error_rolls_back(pets: Project) -> None:
    Owner = pets.models()["Owner"]
    with pytest.raises(RuntimeError, match="the view failed"):
        with pets.app.app_context():
            pets.db.add(Owner(id=7, name="lost"))
            pets.db.flush()
            raise RuntimeError("the view failed")
    assert not pets.db.registry.has()
    with pets.app.app_context():
        assert pets.db.scalar(sa.select(sa.func.count()).select_from(Owner)) == 0
        pets.db.add(Owner(id=7, name="kept"))
        pets.db.commit()
    with pets.engine.connect() as connection:
        assert connection.execute(sa.text("SELECT name FROM owners")).scalars().all() == ["kept"]


def test_a_request_that_fails_in_the_database_leaves_the_next_one_working(pets: Project) -> None:
    Owner, Pet = pets.models()["Owner"], pets.models()["Pet"]
    pets.app.config["PROPAGATE_EXCEPTIONS"] = False

    @pets.app.route("/adopt/<int:owner>")
    def adopt(owner: int) -> str:
        if owner == 1:
            pets.db.add(Owner(id=1, name="Ann"))
        pets.db.add(Pet(owner_id=owner))
        pets.db.commit()
        return "adopted"

    client = pets.app.test_client()
    assert client.get("/adopt/99").status_code == 500  # no such owner
    assert client.get("/adopt/1").status_code == 200
    with pets.engine.connect() as connection:
        assert connection.execute(sa.text("SELECT owner_id FROM pets")).scalars().all() == [1]


def test_a_connection_lost_before_teardown_does_not_turn_the_answer_into_an_error(
    make_project: t.Callable[..., Project], pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The view answered, then PostgreSQL dropped its connection (a stop, a restart).

    The session's clean-up rolls back on a dead connection: the answer stands (it was a
    500 from the server before, raised after the view), the connection is discarded and
    the next request gets a new one.
    """
    project = make_project(f"[PROJECT]\nNAME = teardown\nDB_URL = {pg_url}\n")
    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")

    @project.app.route("/pid")
    def pid() -> str:
        backend = int(project.db.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())
        with admin.connect() as connection:  # the session's transaction is still open
            connection.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
        return str(backend)

    client = project.app.test_client()
    try:
        with caplog.at_level("WARNING", logger="flasker.db"):
            first = client.get("/pid")
            second = client.get("/pid")
    finally:
        admin.dispose()
    assert first.status_code == 200 and second.status_code == 200
    assert first.text != second.text  # a new connection
    assert "connection was lost while the session was closed" in caplog.text
    assert not project.db.registry.has()
