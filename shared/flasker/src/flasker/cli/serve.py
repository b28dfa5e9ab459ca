"""``flasker server`` (development) and ``flasker web`` (gunicorn)."""

from __future__ import annotations

import os
import sys

import click

from ..security import plain_http_cookies
from .context import ProjectInfo


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("-p", "--port", default=5000, show_default=True, type=int, help="Port to bind.")
@click.option("-d", "--debug", is_flag=True, help="Debug mode: reloader and interactive debugger.")
@click.pass_obj
def server(info: ProjectInfo, host: str, port: int, debug: bool) -> None:
    """Run Flask's development server (never in production: use 'flasker web')."""
    overrides = {"APP": {"DEBUG": True}} if debug else None
    project = info.load(overrides)
    plain_http_cookies(project.app, project.config)
    project.app.run(host=host, port=port, debug=debug, use_reloader=debug)


@click.command(context_settings={"ignore_unknown_options": True})  # gunicorn's options
@click.option("-b", "--bind", help="Address to bind, such as 0.0.0.0:8000 (gunicorn's -b).")
@click.option("-w", "--workers", type=int,
              help="Worker processes (default: $WEB_CONCURRENCY or 1).")
@click.option("--gunicorn-config", type=click.Path(exists=True, dir_okay=False),
              envvar="FLASKER_GUNICORN_CONFIG", show_envvar=True,
              help="A gunicorn settings file (services/web/gunicorn.conf.py in the image).")
@click.argument("gunicorn_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def web(info: ProjectInfo, bind: str | None, workers: int | None, gunicorn_config: str | None,
        gunicorn_args: tuple[str, ...]) -> None:
    """Serve the app with gunicorn; arguments after '--' go to gunicorn unchanged.

    gunicorn also reads $GUNICORN_CMD_ARGS and $WEB_CONCURRENCY. The process is
    replaced by gunicorn, so signals reach it directly.
    """
    info.load()  # fail here, with a clear message, rather than in every gunicorn worker
    concurrency = os.environ.get("WEB_CONCURRENCY")
    if concurrency is not None and not concurrency.strip().isdigit():
        # gunicorn reads it while importing its settings, and would only show a traceback.
        raise click.UsageError(f"The environment variable 'WEB_CONCURRENCY' has value"
                               f" {concurrency!r}: expected a whole number, such as 2.")
    # Master and workers log through flasker's handler (text or JSON lines, as configured).
    argv = [sys.executable, "-m", "gunicorn", "--logger-class", "flasker.logs.GunicornLogger"]
    if gunicorn_config:
        argv += ["--config", gunicorn_config]
    if bind:
        argv += ["--bind", bind]
    if workers:
        argv += ["--workers", str(workers)]
    argv += [*gunicorn_args, "flasker.wsgi:app"]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)
