"""The project object: its parts, the current_project proxy, managers and start-up."""

from __future__ import annotations

import os
import typing as t
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask

from flasker import ConfigError, Project, current_project, has_project

from .conftest import prepend_path, unique_package, write_project

VIEWS = """
from flasker import current_project

app = current_project.app
celery = current_project.celery
db = current_project.db


@app.route("/")
def index():
    return {"project": current_project.name, "rows": db.execute(db_text("SELECT 1")).scalar()}


@celery.task
def task():
    return current_project.name


from sqlalchemy import text as db_text
"""


def json_of(response: t.Any) -> dict[str, t.Any]:
    body = response.get_json()
    assert isinstance(body, dict)
    return body


@pytest.fixture
def make(make_project: t.Callable[..., Project], tmp_path: Path) -> t.Callable[..., Project]:
    """A started project whose module serves 'VIEWS', in a folder and package of its own."""

    def make(name: str = "Alpha") -> Project:
        package = unique_package()
        return make_project(
            f"[PROJECT]\nNAME = {name}\nMODULES = {package}.views\n",
            {f"{package}/__init__.py": "", f"{package}/views.py": VIEWS},
            folder=tmp_path / package,
        )

    return make


def test_the_documented_pattern_works_inside_modules(make: t.Callable[..., Project]) -> None:
    project = make()
    response = project.app.test_client().get("/")
    assert response.status_code == 200
    assert response.get_json() == {"project": "Alpha", "rows": 1}
    assert any(name.endswith(".views.task") for name in project.celery.tasks)


def test_parts_are_the_raw_objects(make: t.Callable[..., Project]) -> None:
    project = make()
    assert isinstance(project.app, Flask)
    assert isinstance(project.engine, sa.Engine)
    assert project.app.extensions["flasker"] is project
    assert project.app.extensions["celery"] is project.celery
    assert project.db().get_bind() is project.engine
    assert project.metadata is project.registry.metadata


def test_several_projects_live_side_by_side(make: t.Callable[..., Project]) -> None:
    first = make(name="First")
    second = make(name="Second")
    assert first.app.test_client().get("/").get_json()["project"] == "First"
    assert second.app.test_client().get("/").get_json()["project"] == "Second"
    assert first.engine.url != second.engine.url


HOUSE = """
    from sqlalchemy.orm import Mapped, mapped_column
    from flasker import Model, current_project

    class House(Model):
        id: Mapped[int] = mapped_column(primary_key=True)
        {column}: Mapped[str]

    @current_project.app.post("/houses")
    def add_house():
        current_project.db.add(House({column}="x"))
        current_project.db.commit()
        return {{"count": current_project.db.query(House).count()}}
"""


def test_two_projects_each_have_their_own_house(
        make_project: t.Callable[..., Project], tmp_path: Path) -> None:
    """Each project maps its models in its own registry: the same table name, other columns."""
    projects = []
    for column in ("address", "colour"):
        package = unique_package()
        project = make_project(
            f"[PROJECT]\nNAME = {column}\nMODULES = {package}.models\n",
            {f"{package}/__init__.py": "", f"{package}/models.py": HOUSE.format(column=column)},
            folder=tmp_path / column,
        )
        project.metadata.create_all(project.engine)
        projects.append(project)
    first, second = projects
    assert first.models()["House"] is not second.models()["House"]
    assert list(first.metadata.tables["houses"].c.keys()) == ["id", "address"]
    assert list(second.metadata.tables["houses"].c.keys()) == ["id", "colour"]
    for project in (first, second, first):
        assert project.app.test_client().post("/houses").status_code == 200
    assert first.app.test_client().post("/houses").get_json() == {"count": 3}
    assert second.app.test_client().post("/houses").get_json() == {"count": 2}


def test_a_model_outside_a_project_says_where_to_declare_it() -> None:
    from sqlalchemy.orm import Mapped, mapped_column

    from flasker import Model

    with pytest.raises(RuntimeError, match=r"'Stray' is declared outside a flasker project"):
        class Stray(Model):
            id: Mapped[int] = mapped_column(primary_key=True)


def test_the_same_modules_cannot_serve_a_second_project(
        make_project: t.Callable[..., Project], tmp_path: Path) -> None:
    """A module runs once per process: a second project on it is refused, not left empty."""
    package = unique_package()
    files = {f"{package}/__init__.py": "", f"{package}/models.py": HOUSE.format(column="a")}
    cfg = f"[PROJECT]\nNAME = T\nMODULES = {package}.models\n"
    first = make_project(cfg, files)
    assert "House" in first.models()
    with pytest.raises(ConfigError, match=rf"'{package}.models', which this process has imported"):
        make_project(cfg, files)


def test_importing_flasker_has_no_side_effects() -> None:
    import subprocess
    import sys

    code = (
        "import logging, sys; path = list(sys.path); import flasker; "
        "assert 'celery' not in sys.modules, 'Celery is imported on first use only'; "
        "assert sys.path == path and not logging.getLogger().handlers; "
        "print(flasker.__version__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0.1.0"


def test_creating_a_project_does_not_import_celery(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = write_project(tmp_path, "[PROJECT]\nNAME = light\n")
    code = (
        "import sys; from flasker import Project; "
        f"project = Project({str(path)!r}, overrides={{'APP': {{'TESTING': True}}}}); "
        "assert 'celery' not in sys.modules, 'creating a project imported Celery'; "
        "project.celery; assert 'celery' in sys.modules; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_current_project_outside_a_project_says_what_to_do() -> None:
    assert not has_project()
    with pytest.raises(RuntimeError, match="app_context"):
        current_project.name  # noqa: B018 (the access itself raises)


def test_current_project_inside_the_app_context(make: t.Callable[..., Project]) -> None:
    project = make()
    with project.app.app_context():
        assert has_project()
        assert current_project.name == "Alpha"


def test_missing_module_is_a_config_error(tmp_path: Path) -> None:
    path = write_project(tmp_path, "[PROJECT]\nNAME = x\nMODULES = no_such_module_here\n")
    with pytest.raises(ConfigError, match=r"'PROJECT.MODULES'.*'no_such_module_here'"):
        Project(path, overrides={"APP": {"TESTING": True}})


def test_an_error_inside_a_module_is_not_hidden(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    prepend_path(monkeypatch, str(tmp_path))
    package = unique_package()
    path = write_project(
        tmp_path, f"[PROJECT]\nNAME = x\nMODULES = {package}.broken\n",
        {f"{package}/__init__.py": "", f"{package}/broken.py": "import no_such_dependency\n"},
    )
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency"):
        Project(path, overrides={"APP": {"TESTING": True}})


@pytest.mark.parametrize("secret", [None, "change-me", "short"])
def test_production_refuses_a_missing_or_placeholder_secret_key(
    tmp_path: Path, secret: str | None
) -> None:
    path = write_project(tmp_path, "[PROJECT]\nNAME = x\n")
    overrides = {"APP": {"SECRET_KEY": secret}} if secret else None
    with pytest.raises(ConfigError) as info:
        Project(path, overrides=overrides)
    assert "'APP.SECRET_KEY'" in str(info.value)
    assert "secrets.token_hex()" in str(info.value)


def test_debug_and_testing_accept_a_missing_secret_key(tmp_path: Path) -> None:
    path = write_project(tmp_path, "[PROJECT]\nNAME = x\n")
    assert Project(path, overrides={"APP": {"DEBUG": True}}).app.debug
    assert Project(path, overrides={"APP": {"TESTING": True}}).app.testing


def test_app_config_comes_from_the_app_section(tmp_path: Path) -> None:
    path = write_project(tmp_path, "[PROJECT]\nNAME = x\n[APP]\nTESTING = true\nPAGE_SIZE = 25\n")
    project = Project(path, environ={"FLASKER__APP__GREETING": "hi"})
    assert project.app.config["PAGE_SIZE"] == 25
    assert project.app.config["GREETING"] == "hi"
    assert project.app.testing is True


def test_folders_come_from_the_project_section(tmp_path: Path) -> None:
    path = write_project(tmp_path, """
        [PROJECT]
        NAME = x
        APP_FOLDER = web
        APP_STATIC_FOLDER = assets
        STATIC_URL = /s
    """, {"web/assets/hello.txt": "hello\n"})
    project = Project(path, overrides={"APP": {"TESTING": True}})
    response = project.app.test_client().get("/s/hello.txt")
    assert response.status_code == 200
    assert response.data == b"hello\n"
    response.close()


def test_default_database_is_sqlite_beside_the_cfg(tmp_path: Path) -> None:
    path = write_project(tmp_path, "[PROJECT]\nNAME = x\n")
    project = Project(path, overrides={"APP": {"TESTING": True}})
    assert project.engine.url.database == str(tmp_path / "db.sqlite")


def test_relative_sqlite_url_is_relative_to_the_cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                    ) -> None:
    monkeypatch.chdir(os.path.expanduser("~"))
    path = write_project(tmp_path, "[PROJECT]\nNAME = x\nDB_URL = sqlite:///db/db.sqlite\n")
    project = Project(path, overrides={"APP": {"TESTING": True}})
    assert project.engine.url.database == str(tmp_path / "db" / "db.sqlite")
    assert (tmp_path / "db").is_dir()


def test_engine_options_reach_create_engine(tmp_path: Path) -> None:
    path = write_project(tmp_path, "[PROJECT]\nNAME = x\n[ENGINE]\necho = true\n")
    project = Project(path, overrides={"APP": {"TESTING": True}})
    assert project.engine.echo is True
    assert project.engine.pool._pre_ping is True


class Recorder:
    """A minimal manager following Flask's init_app pattern."""

    def __init__(self, greeting: str = "constructor") -> None:
        self.greeting = greeting
        self.calls: list[str] = []

    def init_app(self, app: Flask, *, config_section: str | None = None) -> None:
        if "recorder" in app.extensions:
            raise RuntimeError("Recorder is already registered on this app.")
        project = app.extensions["flasker"]
        section = project.config[config_section] if config_section else {}
        app.extensions["recorder"] = {"greeting": section.get("GREETING", self.greeting)}
        self.calls.append("init_app")

    def before_startup(self, project: Project) -> None:
        self.calls.append(f"before_startup:{project.started}")

    def after_startup(self, project: Project) -> None:
        self.calls.append(f"after_startup:{project.started}")


def test_register_manager_gives_its_section_precedence(tmp_path: Path) -> None:
    path = write_project(tmp_path, "[PROJECT]\nNAME = x\n[RECORDER]\nGREETING = section\n")
    project = Project(path, overrides={"APP": {"TESTING": True}})
    manager = Recorder()
    project.register_manager(manager, config_section="recorder")
    assert project.app.extensions["recorder"] == {"greeting": "section"}
    assert manager.calls == ["init_app", "after_startup:True"]  # started: before has passed


def test_a_manager_registered_before_start_up_gets_both_hooks(tmp_path: Path) -> None:
    path = write_project(tmp_path, "[PROJECT]\nNAME = x\n")
    project = Project(path, overrides={"APP": {"TESTING": True}}, load_modules=False)
    manager = project.register_manager(Recorder())
    project.start()
    assert manager.calls == ["init_app", "before_startup:False", "after_startup:True"]


def test_hooks_run_before_and_after_start_up(tmp_path: Path) -> None:
    path = write_project(tmp_path, "[PROJECT]\nNAME = x\n")
    project = Project(path, overrides={"APP": {"TESTING": True}}, load_modules=False)
    seen: list[str] = []
    project.before_startup(lambda p: seen.append(f"before:{p.started}"))
    project.after_startup(lambda p: seen.append(f"after:{p.started}"))
    project.start()
    assert seen == ["before:False", "after:True"]


def test_session_is_removed_at_teardown_and_rolled_back_on_error(tmp_path: Path) -> None:
    path = write_project(tmp_path, "[PROJECT]\nNAME = x\n")
    project = Project(path, overrides={"APP": {"TESTING": True, "PROPAGATE_EXCEPTIONS": False}})
    app, db = project.app, project.db
    with project.engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE t (x INTEGER)"))
    sessions: list[t.Any] = []

    @app.route("/write/<int:fail>")
    def write(fail: int) -> str:
        sessions.append(db())
        db.execute(sa.text("INSERT INTO t VALUES (1)"))
        if fail:
            raise ValueError("boom")
        db.commit()
        return "ok"

    client = app.test_client()
    assert client.get("/write/0").status_code == 200
    assert client.get("/write/1").status_code == 500
    with project.engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM t")).scalar() == 1
    assert sessions[0] is not sessions[1]
    assert not db.registry.has()


def test_health_endpoints(tmp_path: Path) -> None:
    path = write_project(tmp_path, "[PROJECT]\nNAME = x\n")
    project = Project(path, overrides={"APP": {"TESTING": True}})
    client = project.app.test_client()
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert json_of(ready)["checks"] == {"database": "ok", "broker": "ok"}


def test_readyz_is_503_with_a_reason_when_the_broker_is_down(tmp_path: Path) -> None:
    from .conftest import free_port

    path = write_project(tmp_path, "[PROJECT]\nNAME = x\n")
    broker = f"redis://127.0.0.1:{free_port()}/0"
    project = Project(path, overrides={"APP": {"TESTING": True}, "CELERY": {"broker_url": broker}})
    response = project.app.test_client().get("/readyz")
    assert response.status_code == 503
    assert json_of(response)["status"] == "unavailable"
    assert "broker unreachable" in json_of(response)["checks"]["broker"]
    assert "database" not in json_of(response)["checks"]


def test_an_unwritable_state_folder_is_a_config_error(tmp_path: Path) -> None:
    # Nobody, root included, can make a folder under /proc.
    path = write_project(tmp_path, "[PROJECT]\nNAME = x\nSTATE_FOLDER = /proc/self/state\n")
    project = Project(path, overrides={"APP": {"TESTING": True}})
    with pytest.raises(ConfigError) as info:
        project.celery  # noqa: B018 (the embedded broker's file goes in the state folder)
    message = str(info.value)
    assert "'CELERY.broker_url' puts the SQLite file '/proc/self/state/broker.sqlite'" in message
    assert "STATE_FOLDER" in message


def test_creating_a_project_configures_no_logging_and_no_import_path(tmp_path: Path) -> None:
    import logging
    import sys

    path = write_project(tmp_path, "[PROJECT]\nNAME = quiet\nLOG_FORMAT = json\n")
    handlers, sys_path = list(logging.getLogger().handlers), list(sys.path)
    Project(path, overrides={"APP": {"TESTING": True}})
    assert logging.getLogger().handlers == handlers
    assert sys.path == sys_path


def test_a_project_that_fails_to_start_releases_its_models(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = unique_package()
    model = """
        from sqlalchemy import Column, Integer
        from flasker import Model, current_project

        class Hooked(Model):
            id = Column(Integer, primary_key=True)

        def refuse(project):
            raise RuntimeError("the extension refused the models")

        current_project.after_startup(refuse)
    """
    path = write_project(tmp_path, f"[PROJECT]\nNAME = h\nMODULES = {package}.models\n",
                         {f"{package}/__init__.py": "", f"{package}/models.py": model})
    prepend_path(monkeypatch, str(tmp_path))
    project = Project(path, overrides={"APP": {"TESTING": True}}, load_modules=False)
    with pytest.raises(RuntimeError, match="the extension refused the models"):
        project.start()
    assert project.models() == {}
    assert not project.started
