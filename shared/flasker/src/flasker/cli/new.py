"""``flasker new``: write a project that runs at once."""

from __future__ import annotations

from pathlib import Path

import click


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("kind", type=click.Choice(["basic", "celery"]))
@click.argument("directory", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option("-n", "--name", help="The project's name (default: the directory's name).")
@click.option("--no-app", is_flag=True, help="Write only default.cfg, no 'app' package.")
def new(kind: str, directory: Path, name: str | None, no_app: bool) -> None:
    """Create a project of KIND in DIRECTORY (default: here); never overwrites a file.

    'basic' is Flask with SQLAlchemy; 'celery' adds broker settings, a default
    queue, a sample task and a beat schedule.
    """
    from ..scaffold import new_project  # noqa: PLC0415

    target = directory.resolve()
    project_name = name or target.name.replace("-", " ").replace("_", " ").title()
    written = new_project(kind, target, project_name, with_app=not no_app)
    for path in written.created:
        click.echo(f"  created  {path.relative_to(target)}")
    for path in written.skipped:
        click.echo(f"  exists   {path.relative_to(target)} (left alone)")
    where = "" if directory == Path(".") else f"cd {directory} && "
    click.echo(f"\nProject {project_name!r} is ready."
               f" Next: {where}flasker db create && flasker server")
    if kind == "celery":
        click.echo("Then, in other terminals: flasker worker, flasker beat")
