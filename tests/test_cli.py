"""The ``flasker`` command line through click's runner."""

from __future__ import annotations

import typing as t
from pathlib import Path

import pytest

from .conftest import SECRET, unique_package, write_project

COMMANDS = ["beat", "config", "db", "flower", "new", "routes", "server", "shell", "web", "worker"]


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> t.Iterator[Path]:
    """A project folder with one model, and the working directory set to it."""
    package = unique_package()
    write_project(
        tmp_path,
        f"""
        [PROJECT]
        NAME = Cli Test
        MODULES = {package}.models, {package}.views
        [APP]
        SECRET_KEY = {SECRET}
        DB_PASSWORD = hunter2
        [CELERY]
        broker_url = redis://:hunter2@localhost:6379/0
        """,
        {
            f"{package}/__init__.py": "",
            f"{package}/models.py": """
                from sqlalchemy import Column, Integer, Unicode
                from flasker.util import Model

                class Gadget(Model):
                    id = Column(Integer, primary_key=True)
                    name = Column(Unicode(32))
            """,
            f"{package}/views.py": """
                from flasker import current_project

                app = current_project.app

                @app.route("/gadgets")
                def gadgets():
                    return "gadgets"

                @app.cli.command("hello")
                def hello():
                    print("hello from app.cli")
            """,
        },
    )
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    from flasker.project import _forget_modules

    _forget_modules([package])


def test_help_lists_every_command(runner: t.Any) -> None:
    for flag in ("-h", "--help"):
        result = runner.invoke([flag])
        assert result.exit_code == 0
        for command in COMMANDS:
            assert f"  {command} " in result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_explains_itself(runner: t.Any, command: str) -> None:
    result = runner.invoke([command, "-h"])
    assert result.exit_code == 0, result.output
    assert f"Usage: flasker {command}" in result.output


def test_a_wrong_command_or_option_is_a_usage_error(runner: t.Any) -> None:
    result = runner.invoke(["serve"], catch_exceptions=False)
    assert result.exit_code == 2
    assert "No such command 'serve'" in result.output
    result = runner.invoke(["new", "django"])
    assert result.exit_code == 2
    assert "'django' is not one of 'basic', 'celery'" in result.output
    result = runner.invoke(["server", "--prot", "1"])
    assert result.exit_code == 2
    assert "No such option '--prot'" in result.output
    assert "Traceback" not in result.output


def test_version(runner: t.Any) -> None:
    assert runner.invoke(["--version"]).output.strip() == "flasker 0.1.0"


def test_config_shows_values_sources_and_masks_secrets(runner: t.Any, folder: Path) -> None:
    result = runner.invoke(["config"], env={"FLASKER__APP__GREETING": "hi"})
    assert result.exit_code == 0, result.output
    out = result.output
    assert "NAME" in out and "Cli Test" in out and f"{folder / 'default.cfg'}:3" in out
    assert "GREETING" in out and "environment variable 'FLASKER__APP__GREETING'" in out
    assert "pool_pre_ping       = true  # built-in default" not in out  # aligned per section
    assert "pool_pre_ping   = true  # built-in default" in out
    assert SECRET not in out and "hunter2" not in out
    assert "redis://:********@localhost:6379/0" in out


def test_config_error_is_a_message_not_a_traceback(runner: t.Any, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    write_project(tmp_path, "[PROJECT]\nNAME = x\nMODULS = a\n")
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(["routes"])
    assert result.exit_code == 1
    assert "Error: Unknown key 'MODULS' in section [PROJECT]" in result.output
    assert "Did you mean 'MODULES'?" in result.output
    assert "Traceback" not in result.output


def test_no_config_file_is_a_message(runner: t.Any, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(["routes"])
    assert result.exit_code == 1
    assert "No configuration file found" in result.output


def test_routes(runner: t.Any, folder: Path) -> None:
    result = runner.invoke(["routes"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["Endpoint", "Methods", "Rule"]
    assert any(line.split() == ["gadgets", "GET", "/gadgets"] for line in lines)
    assert any(line.split() == ["flasker_readyz", "GET", "/readyz"] for line in lines)


def test_app_cli_commands_are_found(runner: t.Any, folder: Path) -> None:
    result = runner.invoke(["hello"])
    assert result.exit_code == 0, result.output
    assert "hello from app.cli" in result.output


def test_config_option_selects_the_file(runner: t.Any, folder: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir("/")
    result = runner.invoke(["-c", str(folder / "default.cfg"), "config", "-s", "project"])
    assert result.exit_code == 0, result.output
    assert "[PROJECT]" in result.output and "[APP]" not in result.output


def test_db_create_and_drop(runner: t.Any, folder: Path) -> None:
    import sqlalchemy as sa

    result = runner.invoke(["db", "create"])
    assert result.exit_code == 0, result.output
    engine = sa.create_engine(f"sqlite:///{folder / 'db.sqlite'}")
    assert "gadgets" in sa.inspect(engine).get_table_names()
    assert runner.invoke(["db", "drop"], input="n\n").exit_code == 1  # declined: nothing dropped
    assert "gadgets" in sa.inspect(engine).get_table_names()
    result = runner.invoke(["db", "drop", "--yes"])
    assert result.exit_code == 0, result.output
    assert "gadgets" not in sa.inspect(engine).get_table_names()
    engine.dispose()


def test_migrations_revision_upgrade_downgrade(runner: t.Any, folder: Path) -> None:
    import sqlalchemy as sa

    result = runner.invoke(["db", "revision", "-m", "add gadgets"])
    assert result.exit_code == 0, result.output
    versions = list((folder / "migrations" / "versions").glob("*.py"))
    assert len(versions) == 1
    assert "op.create_table('gadgets'" in versions[0].read_text()
    assert (folder / "migrations" / "env.py").is_file()

    assert runner.invoke(["db", "upgrade"]).exit_code == 0
    engine = sa.create_engine(f"sqlite:///{folder / 'db.sqlite'}")
    assert {"gadgets", "alembic_version"} <= set(sa.inspect(engine).get_table_names())

    result = runner.invoke(["db", "downgrade"])
    assert result.exit_code == 0, result.output
    assert "gadgets" not in sa.inspect(engine).get_table_names()
    engine.dispose()

    sql = runner.invoke(["db", "upgrade", "--sql"])
    assert sql.exit_code == 0
    assert "CREATE TABLE gadgets" in sql.output


def test_db_create_stamps_head_when_migrations_exist(runner: t.Any, folder: Path) -> None:
    import sqlalchemy as sa

    assert runner.invoke(["db", "revision", "-m", "first"]).exit_code == 0
    assert runner.invoke(["db", "create"]).exit_code == 0
    engine = sa.create_engine(f"sqlite:///{folder / 'db.sqlite'}")
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    engine.dispose()
    # An upgrade afterwards has nothing left to do, rather than failing on existing tables.
    assert runner.invoke(["db", "upgrade"]).exit_code == 0


def test_shell_runs_a_script_from_stdin(runner: t.Any, folder: Path) -> None:
    assert runner.invoke(["db", "create"]).exit_code == 0
    script = (
        "db.add(Gadget(name='spanner')); db.commit()\n"
        "print('count', db.query(Gadget).count(), app.name, project.name)\n"
    )
    result = runner.invoke(["shell"], input=script)
    assert result.exit_code == 0, result.output
    assert "count 1 cli_test Cli Test" in result.output


def test_shell_exits_non_zero_when_the_script_raises(runner: t.Any, folder: Path) -> None:
    result = runner.invoke(["shell"], input="raise LookupError('no such gadget')\n")
    assert result.exit_code == 1
    assert "LookupError: no such gadget" in result.output


def test_new_writes_a_project_and_never_overwrites(runner: t.Any, tmp_path: Path) -> None:
    target = tmp_path / "my-shop"
    result = runner.invoke(["new", "basic", str(target)])
    assert result.exit_code == 0, result.output
    cfg = (target / "default.cfg").read_text()
    assert "NAME = My Shop" in cfg
    assert "__SECRET_KEY__" not in cfg
    assert (target / "app" / "views.py").is_file()
    assert (target / "app" / "static" / "bootstrap.min.css").is_file()
    assert not (target / "app" / "tasks.py").exists()

    (target / "app" / "views.py").write_text("# mine\n")
    again = runner.invoke(["new", "celery", str(target), "--name", "Other"])
    assert again.exit_code == 0
    assert "exists   app/views.py (left alone)" in again.output
    assert (target / "app" / "views.py").read_text() == "# mine\n"
    assert (target / "default.cfg").read_text() == cfg
    assert (target / "app" / "tasks.py").is_file()  # new files are still added


def test_new_celery_with_no_app(runner: t.Any, tmp_path: Path) -> None:
    result = runner.invoke(["new", "celery", str(tmp_path / "x"), "--name", "Queue Me", "--no-app"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["default.cfg"]
    cfg = (tmp_path / "x" / "default.cfg").read_text()
    assert "TASK_DEFAULT_QUEUE = queue-me" in cfg
    assert "BEAT_SCHEDULE" in cfg and "BROKER_URL" in cfg


def test_generated_secret_keys_differ(runner: t.Any, tmp_path: Path) -> None:
    runner.invoke(["new", "basic", str(tmp_path / "a"), "--no-app"])
    runner.invoke(["new", "basic", str(tmp_path / "b"), "--no-app"])
    a = (tmp_path / "a" / "default.cfg").read_text()
    b = (tmp_path / "b" / "default.cfg").read_text()
    assert a != b


def test_flower_without_flower_installed_is_a_clear_error(runner: t.Any, folder: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "flower", None)  # as if 'flasker[flower]' were missing
    result = runner.invoke(["flower"])
    assert result.exit_code == 1
    assert "pip install 'flasker[flower]'" in result.output


def test_help_lists_the_projects_own_commands(runner: t.Any, folder: Path) -> None:
    result = runner.invoke(["-h"])
    assert result.exit_code == 0, result.output
    assert "Commands of the project (its app and extensions):" in result.output
    assert "  hello" in result.output


def test_help_works_when_the_project_does_not_load(runner: t.Any, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    write_project(tmp_path, "[PROJECT]\nNAME = x\nMODULS = a\n")
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(["-h"])
    assert result.exit_code == 0
    assert "  worker " in result.output
    assert "The project's own commands cannot be listed: Unknown key 'MODULS'" in result.output
