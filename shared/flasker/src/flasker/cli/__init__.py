"""The ``flasker`` command line. Subcommands are imported only when they run."""

from __future__ import annotations

import difflib
import importlib
import typing as t

import click

from ..config import ConfigError
from .context import ProjectInfo


class Entry(t.NamedTuple):
    """One command of the list: where it lives (``module:attribute``) and its short help."""

    target: str
    help: str


#: Every built-in command, by name. The help is repeated here so that ``flasker -h``
#: lists the commands without importing their modules.
COMMANDS: dict[str, Entry] = {
    "beat": Entry("flasker.cli.celery:beat", "Run Celery beat, the periodic task scheduler."),
    "config": Entry("flasker.cli.info:config",
                    "Print the effective configuration and where each value comes from."),
    "db": Entry("flasker.cli.db:db", "Create, drop and migrate the database (Alembic)."),
    "flower": Entry("flasker.cli.celery:flower", "Run Flower, Celery's monitoring web UI."),
    "load": Entry("flasker.cli.load:load", "Load the rows of a CSV file into a model's table."),
    "new": Entry("flasker.cli.new:new",
                 "Create a new project: basic (Flask + SQLAlchemy) or celery."),
    "ping": Entry("flasker.cli.health:ping",
                  "Health checks for containers: a URL, this host's worker, beat's heartbeat."),
    "routes": Entry("flasker.cli.info:routes", "List the URL rules of the Flask app."),
    "server": Entry("flasker.cli.serve:server", "Run the development server."),
    "shell": Entry("flasker.cli.shell:shell",
                   "Open a shell with the project loaded, or run a script from stdin."),
    "web": Entry("flasker.cli.serve:web", "Serve the app in production with gunicorn."),
    "worker": Entry("flasker.cli.celery:worker", "Run a Celery worker."),
}


class LazyGroup(click.Group):
    """A group whose commands are imported when called, and extended by the project's app."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *super().list_commands(ctx)})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is not None:
            module, _, attr = entry.target.partition(":")
            return t.cast(click.Command, getattr(importlib.import_module(module), attr))
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        return self._app_command(ctx, cmd_name)

    def resolve_command(self, ctx: click.Context, args: list[str]
                        ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as e:
            # click suggests among the commands it holds; these are imported when called.
            name = args[0] if args else ""
            close = difflib.get_close_matches(name, self.list_commands(ctx), n=1, cutoff=0.6)
            if close and "Did you mean" not in e.message:
                raise click.UsageError(f"{e.message} Did you mean '{close[0]}'?", e.ctx) from None
            raise

    def invoke(self, ctx: click.Context) -> t.Any:
        try:
            return super().invoke(ctx)
        except ConfigError as e:  # however deep it was found: a sentence, not a traceback
            raise click.ClickException(str(e)) from e

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Short help without importing every command module.
        rows = [(name, self._short_help(ctx, name)) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)
        project_rows, problem = self._app_commands(ctx)
        if project_rows:
            with formatter.section("Commands of the project (its app and extensions)"):
                formatter.write_dl(project_rows)
        elif problem:
            formatter.write_paragraph()
            formatter.write_text(f"The project's own commands cannot be listed: {problem}")

    def _short_help(self, ctx: click.Context, name: str) -> str:
        entry = COMMANDS.get(name)
        if entry is not None:
            return entry.help
        command = super().get_command(ctx, name)  # one added with 'cli.add_command'
        return command.get_short_help_str(limit=70) if command is not None else ""

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
            # The project has imported Flask by now; imported here keeps 'flasker --help' fast.
            from flask.cli import ScriptInfo  # noqa: PLC0415 (start-up cost)

            # Flask's commands ('with_appcontext') load the app through the ScriptInfo they
            # find in the context: hand it the project's app.
            ctx.obj = ScriptInfo(create_app=lambda: project.app, set_debug_flag=False,
                                 load_dotenv_defaults=False)
        return command


# Subcommands inherit the help options and the width from this context (click passes
# them down to every child context).
@click.group("flasker", cls=LazyGroup,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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
