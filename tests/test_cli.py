"""The ``flasker`` command line through click's runner."""

from __future__ import annotations

import hashlib
import importlib.metadata
import subprocess
import sys
import typing as t
import zipfile
from pathlib import Path

import pytest
import sqlalchemy as sa

from .conftest import SECRET, prepend_path, unique_package, write_project

COMMANDS = ["beat", "config", "db", "flower", "load", "new", "ping", "routes", "server", "shell",
            "web", "worker"]


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
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
                from flasker import Model

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
    prepend_path(monkeypatch, tmp_path)  # 'flasker' puts the folder there: undo it after
    return tmp_path


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


@pytest.mark.parametrize("args", [["db", "create"], ["db", "upgrade"], ["ping", "url"],
                                  ["ping", "beat"]])
def test_subcommands_take_the_short_help_option_too(runner: t.Any, args: list[str]) -> None:
    # Declared once, on the 'flasker' group: click hands it down to every level.
    result = runner.invoke([*args, "-h"])
    assert result.exit_code == 0, result.output
    assert f"Usage: flasker {' '.join(args)}" in result.output


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
    explained = runner.invoke(["hello", "-h"])
    assert explained.exit_code == 0, explained.output
    assert "Usage: flasker hello" in explained.output


def test_config_option_selects_the_file(runner: t.Any, folder: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir("/")
    result = runner.invoke(["-c", str(folder / "default.cfg"), "config", "-s", "project"])
    assert result.exit_code == 0, result.output
    assert "[PROJECT]" in result.output and "[APP]" not in result.output


def test_db_create_and_drop(runner: t.Any, folder: Path) -> None:
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
    result = runner.invoke(["new", "celery", str(tmp_path / "x"), "--name", "Queue Me", "--no-app",
                            "--no-stack"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == [".gitignore", "default.cfg"]
    cfg = (tmp_path / "x" / "default.cfg").read_text()
    assert "TASK_DEFAULT_QUEUE = queue-me" in cfg
    assert "BEAT_SCHEDULE" in cfg and "BROKER_URL" in cfg


STACK_FILES = [".dockerignore", ".env.example", "Dockerfile", "Makefile", "compose.yaml",
               "services/flower/flowerconfig.py", "services/web/gunicorn.conf.py",
               "services/worker/beat.env", "services/worker/worker.env", "vendor/flasker.txt"]


def _wheel(folder: Path) -> Path:
    wheels = sorted((folder / "vendor").glob("flasker-*-py3-none-any.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_new_writes_the_stack_with_the_running_flasker(runner: t.Any, tmp_path: Path) -> None:
    target = tmp_path / "acme-shop"
    result = runner.invoke(["new", "celery", str(target)])
    assert result.exit_code == 0, result.output
    for name in STACK_FILES:
        assert (target / name).is_file(), name
        assert f"created  {name}" in result.output
    assert "make up" in result.output
    # The secrets 'make up' writes into .env never reach git.
    assert ".env\n" in (target / ".gitignore").read_text()
    # Named after the project: its own compose project, image and volumes.
    compose = (target / "compose.yaml").read_text()
    assert "\nname: acme-shop\n" in compose
    assert "image: ${FLASKER_IMAGE:-acme-shop}:${FLASKER_TAG:-dev}" in compose
    assert "FLASKER_IMAGE=acme-shop\n" in (target / ".env.example").read_text()
    # The image serves this project's app and installs the very wheel written beside it,
    # pinned by its hash: never a package index's 'flasker'.
    wheel = _wheel(target)
    assert wheel.name == f"flasker-{importlib.metadata.version('flasker')}-py3-none-any.whl"
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    pin = (target / "vendor" / "flasker.txt").read_text()
    assert f"./vendor/{wheel.name} --hash=sha256:{digest}\n" in pin
    dockerfile = (target / "Dockerfile").read_text()
    assert "--require-hashes --requirement vendor/flasker.txt" in dockerfile
    assert "FLASKER_CONFIG=/app/default.cfg" in dockerfile
    assert "reference" not in dockerfile and "shared/flasker" not in dockerfile
    ignored = (target / ".dockerignore").read_text().splitlines()
    assert {"!vendor/", "!app/", "!default.cfg", "!migrations/"} <= set(ignored)
    # The first migration comes with the app, so that 'migrate' creates the tables.
    assert sorted(p.name for p in (target / "migrations" / "versions").glob("*.py")) == [
        "3f1c2a9b7d10_notes.py"]
    assert not [line for path in STACK_FILES for line in (target / path).read_text().splitlines()
                if "{=" in line or line.lstrip().startswith("#%")]


def test_new_never_overwrites_the_stack(runner: t.Any, tmp_path: Path) -> None:
    target = tmp_path / "acme"
    (target / "vendor").mkdir(parents=True)
    (target / "Makefile").write_text("# mine\n")
    assert runner.invoke(["new", "basic", str(target)]).exit_code == 0
    wheel = _wheel(target).read_bytes()
    (target / "compose.yaml").write_text("# mine too\n")
    again = runner.invoke(["new", "celery", str(target)])
    assert again.exit_code == 0, again.output
    assert (target / "Makefile").read_text() == "# mine\n"
    assert (target / "compose.yaml").read_text() == "# mine too\n"
    assert "exists   compose.yaml (left alone)" in again.output
    assert f"exists   vendor/{_wheel(target).name} (left alone)" in again.output
    assert _wheel(target).read_bytes() == wheel


def test_new_with_no_stack_writes_the_app_only(runner: t.Any, tmp_path: Path) -> None:
    result = runner.invoke(["new", "celery", str(tmp_path / "x"), "--no-stack"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == [
        ".gitignore", "app", "default.cfg", "migrations", "tests"]
    assert "make up" not in result.output
    assert "flasker db upgrade && flasker server" in result.output


def test_the_vendored_wheel_is_reproducible_and_installs_by_its_hash(
        runner: t.Any, tmp_path: Path) -> None:
    for name in ("a", "b"):
        assert runner.invoke(["new", "basic", str(tmp_path / name), "--no-app"]).exit_code == 0
    wheel = _wheel(tmp_path / "a")
    assert wheel.read_bytes() == _wheel(tmp_path / "b").read_bytes()
    with zipfile.ZipFile(wheel) as archive:
        assert archive.testzip() is None
        names = archive.namelist()
    assert "flasker/scaffold/stack/Dockerfile" in names
    assert "flasker/scaffold/stack/env.example" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    # pip itself checks the pin's hash and the wheel's RECORD.
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--require-hashes",
         "--target", str(site), "--requirement", "vendor/flasker.txt"],
        cwd=tmp_path / "a", capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert (site / "flasker" / "scaffold" / "stack" / "compose.yaml").is_file()
    # A wheel changed after 'flasker new' no longer matches its pin.
    wheel.write_bytes(wheel.read_bytes() + b"\0")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--require-hashes",
         "--target", str(tmp_path / "site2"), "--requirement", "vendor/flasker.txt"],
        cwd=tmp_path / "a", capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "do not match the hashes" in result.stderr.lower() or "hash" in result.stderr.lower()


def test_the_first_migration_matches_the_scaffold_models(runner: t.Any, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "m"
    assert runner.invoke(["new", "celery", str(target), "--no-stack"]).exit_code == 0
    monkeypatch.chdir(target)
    prepend_path(monkeypatch, target)
    monkeypatch.setenv("FLASKER__PROJECT__DB_URL", f"sqlite:///{tmp_path / 'm.sqlite'}")
    result = runner.invoke(["db", "upgrade"])
    assert result.exit_code == 0, result.output
    # Autogenerate finds nothing left to do: the revision creates exactly the models' tables.
    result = runner.invoke(["db", "revision", "-m", "nothing"])
    assert result.exit_code == 0, result.output
    (written,) = (p for p in (target / "migrations" / "versions").glob("*nothing.py"))
    upgrade = written.read_text().split("def upgrade() -> None:")[1].split("def downgrade")[0]
    code = [line.strip() for line in upgrade.splitlines()
            if line.strip() and not line.strip().startswith("#")]
    assert code == ["pass"], upgrade


def test_generated_secret_keys_differ(runner: t.Any, tmp_path: Path) -> None:
    runner.invoke(["new", "basic", str(tmp_path / "a"), "--no-app"])
    runner.invoke(["new", "basic", str(tmp_path / "b"), "--no-app"])
    a = (tmp_path / "a" / "default.cfg").read_text()
    b = (tmp_path / "b" / "default.cfg").read_text()
    assert a != b


def test_flower_without_flower_installed_is_a_clear_error(runner: t.Any, folder: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
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
