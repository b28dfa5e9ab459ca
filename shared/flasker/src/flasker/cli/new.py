"""``flasker new``: write a project that runs at once."""

from __future__ import annotations

from pathlib import Path

import click

from ..scaffold import new_project


@click.command()
@click.argument("kind", type=click.Choice(["basic", "celery"]))
@click.argument("directory", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option("-n", "--name", help="The project's name (default: the directory's name).")
@click.option("--no-app", is_flag=True,
              help="No 'app' package, tests nor migrations (the stack's image copies the"
                   " app/ and migrations/ you write).")
@click.option("--no-stack", is_flag=True,
              help="No container stack (Dockerfile, compose.yaml, Makefile, services/, vendor/).")
def new(kind: str, directory: Path, name: str | None, no_app: bool, no_stack: bool) -> None:
    """Create a project of KIND in DIRECTORY (default: here); never overwrites a file.

    'basic' is Flask with SQLAlchemy; 'celery' adds broker settings, a default
    queue, a sample task and a beat schedule. Either comes with its container stack
    ('make up': web, worker, beat and flower on PostgreSQL and Redis), whose image
    installs this very flasker from the wheel written into vendor/.
    """
    target = directory.resolve()
    project_name = name or target.name.replace("-", " ").replace("_", " ").title()
    try:
        written = new_project(kind, target, project_name, with_app=not no_app,
                              with_stack=not no_stack)
    except OSError as e:
        where = f" ('{e.filename}')" if e.filename and str(e.filename) != str(target) else ""
        raise click.ClickException(f"Cannot write the project into '{target}': {e.strerror}"
                                   f"{where}. Choose a folder you can write to.") from None
    except RuntimeError as e:  # the running flasker cannot be packed into vendor/
        raise click.ClickException(str(e)) from None
    for path in written.created:
        click.echo(f"  created  {path.relative_to(target)}")
    for path in written.skipped:
        click.echo(f"  exists   {path.relative_to(target)} (left alone)")
    where = "" if directory == Path(".") else f"cd {directory} && "
    # The first migration comes with the app; without it, the tables come from the models.
    local = f"{where}flasker db {'create' if no_app else 'upgrade'} && flasker server"
    click.echo(f"\nProject {project_name!r} is ready.")
    if no_stack:
        click.echo(f"Next: {local}")
    else:
        click.echo(f"Run its stack (Docker): {where}make up  (then 'make test', 'make help')")
        click.echo(f"Or on this machine: {local}")
    if kind == "celery":
        click.echo("Then, in other terminals: flasker worker, flasker beat")
