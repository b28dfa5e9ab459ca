"""``flasker db``: create, drop and migrate the database."""

from __future__ import annotations

import typing as t

import click

from .context import pass_project

if t.TYPE_CHECKING:
    from ..project import Project

SETTINGS = {"help_option_names": ["-h", "--help"]}


@click.group(context_settings=SETTINGS)
def db() -> None:
    """Create, drop and migrate the database (Alembic, migrations in the project's folder)."""


@db.command(context_settings=SETTINGS)
@pass_project
def create(project: Project) -> None:
    """Create the models' tables (development and tests; use 'upgrade' in production)."""
    from .. import migrate  # noqa: PLC0415

    migrate.create_all(project)
    click.echo(f"Created the tables of {len(project.models())} models"
               f" in {project.engine.url.render_as_string()}.")


@db.command(context_settings=SETTINGS)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_project
def drop(project: Project, yes: bool) -> None:
    """Drop the models' tables and every row in them."""
    from .. import migrate  # noqa: PLC0415

    url = project.engine.url.render_as_string()
    if not yes:
        click.confirm(f"Drop every table of the models in {url}?", abort=True)
    migrate.drop_all(project)
    click.echo(f"Dropped the tables in {url}.")


@db.command(context_settings=SETTINGS)
@click.option("-m", "--message", required=True, help="What the revision changes.")
@click.option("--empty", is_flag=True, help="Write an empty revision (no autogenerate).")
@pass_project
def revision(project: Project, message: str, empty: bool) -> None:
    """Write a new revision comparing the models with the database."""
    from .. import migrate  # noqa: PLC0415

    for path in migrate.revision(project, message, autogenerate=not empty):
        click.echo(f"Wrote {path}")


@db.command(context_settings=SETTINGS)
@click.argument("target", default="head")
@click.option("--sql", is_flag=True, help="Print the SQL instead of running it.")
@pass_project
def upgrade(project: Project, target: str, sql: bool) -> None:
    """Upgrade the database to TARGET (default: head)."""
    from .. import migrate  # noqa: PLC0415

    migrate.upgrade(project, target, sql=sql)


@db.command(context_settings=SETTINGS)
@click.argument("target", default="-1")
@click.option("--sql", is_flag=True, help="Print the SQL instead of running it.")
@pass_project
def downgrade(project: Project, target: str, sql: bool) -> None:
    """Downgrade the database to TARGET (default: one revision back)."""
    from .. import migrate  # noqa: PLC0415

    migrate.downgrade(project, target, sql=sql)


@db.command(context_settings=SETTINGS)
@pass_project
def current(project: Project) -> None:
    """Show the database's current revision."""
    from .. import migrate  # noqa: PLC0415

    migrate.current(project)


@db.command(context_settings=SETTINGS)
@pass_project
def history(project: Project) -> None:
    """List the revisions."""
    from .. import migrate  # noqa: PLC0415

    migrate.history(project)
