"""Schema changes through Alembic, with migrations kept in the project's folder."""

from __future__ import annotations

import logging
import shutil
import sys
import typing as t
from pathlib import Path

import sqlalchemy as sa

from .config import PROJECT
from .globals import project_context
from .project import Project

if t.TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

TEMPLATE = Path(__file__).parent / "scaffold" / "migrations"


def migrations_folder(project: Project) -> Path:
    folder = Path(project.config.get(PROJECT, "MIGRATIONS_FOLDER"))
    return folder if folder.is_absolute() else project.root / folder


def ensure_migrations(project: Project) -> Path:
    """Write ``env.py`` and the revision template the first time they are needed."""
    folder = migrations_folder(project)
    (folder / "versions").mkdir(parents=True, exist_ok=True)
    for name in ("env.py", "script.py.mako"):
        if not (folder / name).exists():
            shutil.copyfile(TEMPLATE / name, folder / name)
    return folder


def alembic_config(project: Project) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig  # noqa: PLC0415 (Alembic: db commands only)

    # Alembic announces each of its plugins at INFO on every command: keep the output to
    # what the command does.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)

    # Today's stdout, not the one Alembic saw when first imported (a test runner swaps it).
    config = AlembicConfig(stdout=sys.stdout)
    config.set_main_option("script_location", str(ensure_migrations(project)))
    # '%' is Alembic's interpolation character: escape it in the URL.
    url = project.engine.url.render_as_string(hide_password=False).replace("%", "%%")
    config.set_main_option("sqlalchemy.url", url)
    return config


def has_revisions(project: Project) -> bool:
    versions = migrations_folder(project) / "versions"
    return versions.is_dir() and any(versions.glob("*.py"))


def revision(project: Project, message: str, autogenerate: bool = True) -> list[str]:
    """Write a revision; with ``autogenerate`` it holds the difference models → database."""
    from alembic import command  # noqa: PLC0415 (Alembic: db commands only)

    with project_context(project):
        result = command.revision(alembic_config(project), message=message,
                                  autogenerate=autogenerate)
    scripts = result if isinstance(result, list) else [result]
    return [s.path for s in scripts if s is not None]


def upgrade(project: Project, target: str = "head", sql: bool = False) -> None:
    from alembic import command  # noqa: PLC0415 (Alembic: db commands only)

    with project_context(project):
        command.upgrade(alembic_config(project), target, sql=sql)


def downgrade(project: Project, target: str = "-1", sql: bool = False) -> None:
    from alembic import command  # noqa: PLC0415 (Alembic: db commands only)

    with project_context(project):
        command.downgrade(alembic_config(project), target, sql=sql)


def stamp(project: Project, target: str = "head") -> None:
    from alembic import command  # noqa: PLC0415 (Alembic: db commands only)

    with project_context(project):
        command.stamp(alembic_config(project), target)


def current(project: Project) -> None:
    from alembic import command  # noqa: PLC0415 (Alembic: db commands only)

    with project_context(project):
        command.current(alembic_config(project), verbose=False)


def history(project: Project) -> None:
    from alembic import command  # noqa: PLC0415 (Alembic: db commands only)

    with project_context(project):
        command.history(alembic_config(project))


def create_all(project: Project) -> None:
    """Create every table of the models; stamp the head revision when migrations exist."""
    project.metadata.create_all(project.engine)
    if has_revisions(project):
        stamp(project, "head")


def drop_all(project: Project) -> None:
    project.metadata.drop_all(project.engine)
    # Alembic's version table is not a model; drop it so 'create' starts afresh.
    with project.engine.begin() as connection:
        connection.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))
