"""The ``flasker`` command line. Subcommands are imported only when they run."""

from __future__ import annotations

import importlib
import typing as t

import click

from .context import ProjectInfo

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

COMMANDS = {
    "beat": "flasker.cli.celery:beat",
    "config": "flasker.cli.info:config",
    "db": "flasker.cli.db:db",
    "flower": "flasker.cli.celery:flower",
    "load": "flasker.cli.load:load",
    "new": "flasker.cli.new:new",
    "ping": "flasker.cli.health:ping",
    "routes": "flasker.cli.info:routes",
    "server": "flasker.cli.serve:server",
    "shell": "flasker.cli.shell:shell",
    "web": "flasker.cli.serve:web",
    "worker": "flasker.cli.celery:worker",
}

HELP = {
    "beat": "Run Celery beat, the periodic task scheduler.",
    "config": "Print the effective configuration and where each value comes from.",
    "db": "Create, drop and migrate the database (Alembic).",
    "flower": "Run Flower, Celery's monitoring web UI.",
    "load": "Load the rows of a CSV file into a model's table.",
    "new": "Create a new project: basic (Flask + SQLAlchemy) or celery.",
    "ping": "Health checks for containers: a URL, this host's worker, beat's heartbeat.",
    "routes": "List the URL rules of the Flask app.",
    "server": "Run the development server.",
    "shell": "Open a shell with the project loaded, or run a script from stdin.",
    "web": "Serve the app in production with gunicorn.",
    "worker": "Run a Celery worker.",
}


class LazyGroup(click.Group):
    """A group whose commands are imported when called, and extended by the project's app."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *super().list_commands(ctx)})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is not None:
            module, _, attr = target.partition(":")
            return t.cast(click.Command, getattr(importlib.import_module(module), attr))
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        return self._app_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> t.Any:
        from ..config import ConfigError  # noqa: PLC0415

        try:
            return super().invoke(ctx)
        except ConfigError as e:  # however deep it was found: a sentence, not a traceback
            raise click.ClickException(str(e)) from e

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Short help without importing every command module.
        rows = [(name, HELP.get(name, "")) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)
        project_rows, problem = self._app_commands(ctx)
        if project_rows:
            with formatter.section("Commands of the project (its app and extensions)"):
                formatter.write_dl(project_rows)
        elif problem:
            formatter.write_paragraph()
            formatter.write_text(f"The project's own commands cannot be listed: {problem}")

    @staticmethod
    def _app_commands(ctx: click.Context) -> tuple[list[tuple[str, str]], str | None]:
        """The project's ``app.cli`` commands, when a configuration file is found here.

        As ``flask --help`` does, this loads the project; a project that fails to load
        still gets its help, with the reason.
        """
        info = ProjectInfo(ctx.params.get("config_path"))
        if not info.findable():
            return [], None
        try:
            app = info.load().app
        except (click.ClickException, ImportError) as e:
            message = e.format_message() if isinstance(e, click.ClickException) else str(e)
            return [], message
        rows = []
        for name in sorted(app.cli.list_commands(ctx)):
            command = app.cli.get_command(ctx, name)
            if command is not None and name not in COMMANDS:
                rows.append((name, command.get_short_help_str(limit=70)))
        return rows, None

    @staticmethod
    def _app_command(ctx: click.Context, cmd_name: str) -> click.Command | None:
        """A command of the project's Flask app (``app.cli``), such as an extension's."""
        # Commands are resolved before the group's callback runs: read '-c' from the params.
        info = ProjectInfo(ctx.params.get("config_path"))
        if not info.findable():
            return None
        project = info.load()
        command = project.app.cli.get_command(ctx, cmd_name)
        if command is not None:
            from flask.cli import ScriptInfo  # noqa: PLC0415

            # Flask's commands ('with_appcontext') look for a ScriptInfo in the context.
            script_info = ScriptInfo(create_app=lambda: project.app, set_debug_flag=False,
                                     load_dotenv_defaults=False)
            script_info._loaded_app = project.app
            ctx.obj = script_info
        return command


@click.group("flasker", cls=LazyGroup, context_settings=CONTEXT_SETTINGS)
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False),
              help="The project's .cfg file (default: $FLASKER_CONFIG, else the only *.cfg"
                   " in the current folder).")
@click.version_option(package_name="flasker", message="flasker %(version)s")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """flasker: Flask, SQLAlchemy and Celery behind one configuration file."""
    if ctx.obj is None:  # an app.cli command has put Flask's ScriptInfo there already
        ctx.obj = ProjectInfo(config_path)


def main() -> None:
    cli(prog_name="flasker")
