"""``flasker worker``, ``flasker beat`` and ``flasker flower``: Celery for this project."""

from __future__ import annotations

import os
import typing as t
from pathlib import Path

import click

from ..config import slug, state_folder
from .context import ProjectInfo

# Options these commands do not know are Celery's (or Flower's), passed on unchanged.
PASS_THROUGH = {"ignore_unknown_options": True}


def node_name(project_name: str) -> str:
    """The worker's node name: unique per project and host (``%h`` is Celery's hostname)."""
    return f"{slug(project_name)}@%h"


def _has(args: t.Sequence[str], *flags: str) -> bool:
    return any(a == f or a.startswith(f + "=") for a in args for f in flags)


@click.command(context_settings=PASS_THROUGH)
@click.option("--concurrency", type=int, help="Child processes (default: one per core).")
@click.option("-Q", "--queues", help="Comma list of queues (default: the project's queue).")
@click.option("-l", "--loglevel", help="Log level (default: [PROJECT] LOG_LEVEL).")
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def worker(info: ProjectInfo, concurrency: int | None, queues: str | None, loglevel: str | None,
           celery_args: tuple[str, ...]) -> None:
    """Run a Celery worker; arguments after '--' go to 'celery worker' unchanged.

    The node is named after the project and the host, and starts without the
    blocking mingle broadcast.
    """
    project = info.load()
    celery = project.celery
    level = loglevel or project.config.get("PROJECT", "LOG_LEVEL")
    argv = ["worker", "--loglevel", level, "--without-mingle", "--without-gossip"]
    if not _has(celery_args, "-n", "--hostname"):
        argv += ["--hostname", node_name(project.name)]
    if concurrency:
        argv += ["--concurrency", str(concurrency)]
    if queues:
        argv += ["--queues", queues]
    celery.set_default()
    celery.worker_main([*argv, *celery_args])


@click.command(context_settings=PASS_THROUGH)
@click.option("-l", "--loglevel", help="Log level (default: [PROJECT] LOG_LEVEL).")
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def beat(info: ProjectInfo, loglevel: str | None, celery_args: tuple[str, ...]) -> None:
    """Run Celery beat with its schedule, pid and heartbeat files in the state folder.

    Arguments after '--' go to 'celery beat' unchanged. Only one beat may run per
    project: with a Redis broker a second one finds the lock in Redis and stops, with
    the embedded broker it finds the pid file. Each slot of a periodic task is recorded
    before its task is sent: a beat killed in the middle of a send sends that slot again
    once restarted, and the worker runs only one of the two (flasker.beat).
    """
    from celery.signals import beat_init  # noqa: PLC0415 (Celery is slow to import)

    from ..beat import (  # noqa: PLC0415 (it imports Celery)
        BeatLocked,
        BrokerUnreachable,
        check_lock,
        stop_on_signals,
    )

    project = info.load()
    celery = project.celery
    try:
        check_lock(celery)
    except (BeatLocked, BrokerUnreachable) as e:
        raise click.ClickException(str(e)) from None
    state = state_folder(project.config)
    state.mkdir(parents=True, exist_ok=True)
    pidfile = state / "celerybeat.pid"
    _remove_own_pidfile(pidfile)
    level = loglevel or project.config.get("PROJECT", "LOG_LEVEL")
    argv = ["beat", "--loglevel", level, "--pidfile", str(pidfile),
            "--scheduler", "flasker.beat:HeartbeatScheduler"]
    if not _has(celery_args, "-s", "--schedule"):
        argv += ["--schedule", celery.conf.beat_schedule_filename]
    beat_init.connect(stop_on_signals, weak=False)
    celery.set_default()
    raise SystemExit(celery.start([*argv, *celery_args]))


def _remove_own_pidfile(pidfile: Path) -> None:
    """A container restarted with the same pid would take its old pid file for a live beat."""
    try:
        if int(pidfile.read_text().strip()) == os.getpid():
            pidfile.unlink()
    except (OSError, ValueError):
        pass


@click.command(context_settings=PASS_THROUGH)
@click.option("-p", "--port", default=5555, show_default=True, type=int)
@click.option("--address", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.argument("flower_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def flower(info: ProjectInfo, port: int, address: str, flower_args: tuple[str, ...]) -> None:
    """Run Flower for this project; arguments after '--' go to Flower unchanged."""
    try:
        import flower as _  # noqa: F401, PLC0415 (an optional extra, checked when asked for)
    except ImportError:
        raise click.ClickException(
            "Flower is not installed. Install it with: pip install 'flasker[flower]'"
        ) from None
    project = info.load()
    celery = project.celery
    celery.set_default()
    argv = ["flower", f"--port={port}", f"--address={address}", *flower_args]
    raise SystemExit(celery.start(argv))
