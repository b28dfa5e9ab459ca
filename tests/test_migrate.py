"""``flasker.migrate``: tables from the models, and Alembic revisions in the project's folder."""

from __future__ import annotations

import os
import re
import subprocess
import typing as t
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from sqlalchemy import Column, ForeignKey, Integer, Unicode

from flasker import Model, Project, migrate

from .conftest import FLASKER, SECRET, unique_package

MODELS = """
from sqlalchemy import Column, Integer, Unicode

from flasker import Model


class House(Model):
    id = Column(Integer, primary_key=True)
    address = Column(Unicode(128), nullable=False)
"""


@pytest.fixture
def houses(make_project: t.Callable[..., Project], db_url: str, tmp_path: Path) -> Project:
    """A project on ``db_url`` whose module declares ``House``; no table, no migration yet.

    Every setting is in its ``.cfg``, so that ``flasker`` run on it finds the same project.
    """
    package = unique_package()
    return make_project(
        f"""
        [PROJECT]
        NAME = Houses
        MODULES = {package}.models
        DB_URL = {db_url}
        [APP]
        SECRET_KEY = {SECRET}
        """,
        {f"{package}/__init__.py": "", f"{package}/models.py": MODELS},
        folder=tmp_path / package,
    )


def add_cats(project: Project) -> type[t.Any]:
    """Declare a second model in ``project``, as a later version of its code would."""
    with project.app.app_context():

        class Cat(Model):
            name = Column(Unicode(64), primary_key=True)
            house_id = Column(Integer, ForeignKey("houses.id"))

    return Cat


def tables(project: Project) -> set[str]:
    return set(sa.inspect(project.engine).get_table_names())


def version(project: Project) -> str | None:
    with project.engine.connect() as connection:
        return connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def head(project: Project) -> str | None:
    return ScriptDirectory.from_config(migrate.alembic_config(project)).get_current_head()


def flasker_db(project: Project, *args: str) -> str:
    """Run ``flasker db ARGS`` on the project in a process of its own; its standard output."""
    result = subprocess.run(
        [FLASKER, "-c", str(project.config.path), "db", *args],
        capture_output=True, text=True, timeout=120, cwd=project.root,
        env={k: v for k, v in os.environ.items() if not k.startswith("FLASKER")},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


# -- create and drop -----------------------------------------------------------------------------


def test_create_all_and_drop_all(houses: Project) -> None:
    add_cats(houses)
    migrate.create_all(houses)
    assert tables(houses) == {"houses", "cats"}  # no migrations: nothing to stamp
    with houses.engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO houses (id, address) VALUES (1, '1 Road')"))
    migrate.create_all(houses)  # again: the tables and their rows are kept
    with houses.engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM houses")).scalar() == 1
    migrate.drop_all(houses)
    assert tables(houses) == set()


def test_create_all_stamps_the_head_when_migrations_exist(houses: Project) -> None:
    migrate.revision(houses, "houses")
    migrate.create_all(houses)
    assert tables(houses) == {"houses", "alembic_version"}
    assert version(houses) == head(houses)
    migrate.upgrade(houses)  # already at the head: nothing to do
    migrate.drop_all(houses)
    assert tables(houses) == set()  # Alembic's table too, so that 'create' starts afresh


# -- the migrations folder ------------------------------------------------------------------------


def test_the_migrations_folder_is_written_when_first_needed(houses: Project) -> None:
    folder = houses.root / "migrations"
    assert migrate.migrations_folder(houses) == folder
    assert not migrate.has_revisions(houses)
    assert not folder.exists()
    assert migrate.ensure_migrations(houses) == folder
    assert sorted(p.name for p in folder.iterdir()) == ["env.py", "script.py.mako", "versions"]
    assert not migrate.has_revisions(houses)  # an empty 'versions' holds none
    (folder / "env.py").write_text("# edited by the user\n")
    migrate.ensure_migrations(houses)
    assert (folder / "env.py").read_text() == "# edited by the user\n"  # never overwritten


def test_an_absolute_migrations_folder_is_used_as_given(make_project: t.Callable[..., Project],
                                                       tmp_path: Path) -> None:
    elsewhere = tmp_path / "shared" / "migrations"
    project = make_project(f"[PROJECT]\nNAME = abs\nMIGRATIONS_FOLDER = {elsewhere}\n",
                           folder=tmp_path / "project")
    migrate.revision(project, "empty", autogenerate=False)
    assert migrate.has_revisions(project)
    assert len(list((elsewhere / "versions").glob("*.py"))) == 1
    assert not (tmp_path / "project" / "migrations").exists()


def test_a_percent_in_the_password_reaches_alembic_unchanged(
    make_project: t.Callable[..., Project]
) -> None:
    """'%' is Alembic's interpolation character; the URL must survive it."""
    project = make_project(
        "[PROJECT]\nNAME = pct\nDB_URL = postgresql+psycopg://app:50%25off@db.example/app\n"
    )
    url = migrate.alembic_config(project).get_main_option("sqlalchemy.url")
    assert url == "postgresql+psycopg://app:50%25off@db.example/app"
    assert sa.make_url(url or "").password == "50%off"


# -- revisions, upgrade and downgrade -------------------------------------------------------------


def test_revision_upgrade_downgrade_and_history(houses: Project) -> None:
    [first] = migrate.revision(houses, "houses")
    assert Path(first).parent == houses.root / "migrations" / "versions"
    assert migrate.has_revisions(houses)
    assert re.search(r"create_table\(\s*['\"]houses['\"]", Path(first).read_text())
    assert tables(houses) == {"alembic_version"}  # writing a revision changes no table
    migrate.upgrade(houses)
    assert tables(houses) == {"alembic_version", "houses"}
    houses_rev = version(houses)
    assert houses_rev == head(houses)

    add_cats(houses)
    [second] = migrate.revision(houses, "cats")
    text = Path(second).read_text()
    assert re.search(r"create_table\(\s*['\"]cats['\"]", text)
    assert not re.search(r"create_table\(\s*['\"]houses['\"]", text)  # only what changed
    migrate.upgrade(houses)
    assert tables(houses) == {"alembic_version", "houses", "cats"}
    cats_rev = version(houses)
    assert cats_rev == head(houses) != houses_rev

    history = flasker_db(houses, "history")
    assert f"{houses_rev} -> {cats_rev} (head), cats" in history
    assert f"<base> -> {houses_rev}, houses" in history
    assert flasker_db(houses, "current").strip() == f"{cats_rev} (head)"

    migrate.downgrade(houses)  # one step back
    assert tables(houses) == {"alembic_version", "houses"}
    assert version(houses) == houses_rev
    migrate.downgrade(houses, "base")
    assert tables(houses) == {"alembic_version"}
    assert version(houses) is None


def test_upgrade_as_sql_prints_the_statements_and_changes_nothing(
    houses: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    migrate.revision(houses, "houses")
    capsys.readouterr()
    migrate.upgrade(houses, sql=True)
    out = capsys.readouterr().out
    assert re.search(r"CREATE TABLE houses \(", out), out
    assert "alembic_version" in out
    assert tables(houses) <= {"alembic_version"}


def test_an_empty_revision_upgrades_and_downgrades(houses: Project) -> None:
    [path] = migrate.revision(houses, "by hand", autogenerate=False)
    text = Path(path).read_text()
    assert "create_table" not in text
    migrate.upgrade(houses)
    assert tables(houses) == {"alembic_version"}  # the model's table waits for a real revision
    assert version(houses) == head(houses)
    migrate.downgrade(houses)
    assert version(houses) is None
