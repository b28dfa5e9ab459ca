"""``flasker db``: create, drop and migrate the database."""

from __future__ import annotations

import typing as t

import click

from .. import migrate
from ..project import Project
from .context import pass_project


class AlembicGroup(click.Group):
    """A group whose commands report Alembic's errors (an unknown revision...) as sentences."""

    def invoke(self, ctx: click.Context) -> t.Any:
        from alembic.util import CommandError  # noqa: PLC0415 (Alembic: db commands only)

        try:
            return super().invoke(ctx)
        except CommandError as e:
            raise click.ClickException(f"Alembic: {str(e).rstrip('.')}.") from None


@click.group(cls=AlembicGroup)
def db() -> None:
    """Create, drop and migrate the database (Alembic, migrations in the project's folder)."""


@db.command()
@pass_project
def create(project: Project) -> None:
    """Create the models' tables (development and tests; use 'upgrade' in production)."""
    migrate.create_all(project)
    click.echo(f"Created the tables of {len(project.models())} models"
               f" in {project.engine.url.render_as_string()}.")


@db.command()
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_project
def drop(project: Project, yes: bool) -> None:
    """Drop the models' tables and every row in them."""
    url = project.engine.url.render_as_string()
    if not yes:
        click.confirm(f"Drop every table of the models in {url}?", abort=True)
    migrate.drop_all(project)
    click.echo(f"Dropped the tables in {url}.")


@db.command()
@click.option("-m", "--message", required=True, help="What the revision changes.")
@click.option("--empty", is_flag=True, help="Write an empty revision (no autogenerate).")
@pass_project
def revision(project: Project, message: str, empty: bool) -> None:
    """Write a new revision comparing the models with the database."""
    for path in migrate.revision(project, message, autogenerate=not empty):
        click.echo(f"Wrote {path}")


@db.command()
@click.argument("target", default="head")
@click.option("--sql", is_flag=True, help="Print the SQL instead of running it.")
@pass_project
def upgrade(project: Project, target: str, sql: bool) -> None:
    """Upgrade the database to TARGET (default: head)."""
    migrate.upgrade(project, target, sql=sql)


@db.command()
@click.argument("target", default="-1")
@click.option("--sql", is_flag=True, help="Print the SQL instead of running it.")
@pass_project
def downgrade(project: Project, target: str, sql: bool) -> None:
    """Downgrade the database to TARGET (default: one revision back)."""
    migrate.downgrade(project, target, sql=sql)


@db.command()
@pass_project
def current(project: Project) -> None:
    """Show the database's current revision."""
    migrate.current(project)


@db.command()
@pass_project
def history(project: Project) -> None:
    """List the revisions."""
    migrate.history(project)
