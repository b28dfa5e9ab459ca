"""How a command finds its project: the ``-c`` option, ``FLASKER_CONFIG`` or the cwd."""

from __future__ import annotations

import functools
import os
import typing as t

import click

from ..config import Config, ConfigError, find_config_file, load_config

if t.TYPE_CHECKING:
    from ..project import Project

F = t.TypeVar("F", bound=t.Callable[..., t.Any])


class ProjectInfo:
    """Loads the project once per command line, turning config errors into click errors."""

    def __init__(self, config_path: str | None = None) -> None:
        self.config_path = config_path
        self._project: Project | None = None

    def findable(self) -> bool:
        try:
            find_config_file(self.config_path)
        except ConfigError:
            return False
        return True

    def load_config(self) -> Config:
        try:
            return load_config(self.config_path)
        except ConfigError as e:
            raise click.ClickException(str(e)) from e

    def load(self, overrides: t.Mapping[str, t.Mapping[str, t.Any]] | None = None) -> Project:
        if self._project is None:
            # The project machinery (SQLAlchemy's ORM, Celery...) is imported once a project
            # is found: imported here keeps 'flasker --help' fast in a folder without one.
            from ..logs import configure_logging  # noqa: PLC0415 (imports Flask)
            from ..project import Project, prepare_import  # noqa: PLC0415 (start-up cost)

            try:
                path = find_config_file(self.config_path)
                # Child processes (the reloader, gunicorn) find the same file.
                os.environ["FLASKER_CONFIG"] = str(path)
                prepare_import(path.parent)
                project = Project(path, overrides=overrides, load_modules=False)
                # The command's process logs as the project says, from its first module on.
                configure_logging(project.config)
                project.start()
                self._project = project
            except ConfigError as e:
                raise click.ClickException(str(e)) from e
        return self._project


def pass_project(f: F) -> F:
    """Give the command the loaded project as its first argument."""

    @functools.wraps(f)
    def wrapper(*args: t.Any, **kwargs: t.Any) -> t.Any:
        info = click.get_current_context().ensure_object(ProjectInfo)
        return f(info.load(), *args, **kwargs)

    return t.cast(F, wrapper)
