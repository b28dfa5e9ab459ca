"""The project's Celery app, following Flask's ``celery_init_app`` pattern."""

from __future__ import annotations

import re
import typing as t
from pathlib import Path

from celery import Celery, Task
from celery.schedules import crontab
from flask import current_app, has_app_context

from .config import CELERY, PROJECT, Config, ConfigError
from .db import resolve_sqlite_url

if t.TYPE_CHECKING:
    from .project import Project

DEFAULT_VISIBILITY_TIMEOUT = 3600
VISIBILITY_SCHEMES = ("redis://", "rediss://", "sentinel://", "sqs://")


def slug(name: str) -> str:
    """A name fit for queues, node names and files: ``My Project`` → ``my-project``."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "flasker"


def state_folder(config: Config) -> Path:
    folder = Path(config.get(PROJECT, "STATE_FOLDER"))
    if not folder.is_absolute():
        folder = config.root / folder
    return folder


def celery_settings(config: Config) -> dict[str, t.Any]:
    """Celery's settings: flasker's reliable defaults, then the ``[CELERY]`` section."""
    name = slug(config.get(PROJECT, "NAME"))
    state = state_folder(config)
    settings: dict[str, t.Any] = {
        # The embedded default: a broker and result backend in local SQLite files.
        "broker_url": f"sqla+sqlite:///{state / 'broker.sqlite'}",
        "result_backend": f"db+sqlite:///{state / 'results.sqlite'}",
        "task_default_queue": name,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_hijack_root_logger": False,
        "broker_connection_retry_on_startup": True,
        "beat_schedule_filename": str(state / "celerybeat-schedule"),
        # Beat wakes at least this often, so its heartbeat file stays fresh.
        "beat_max_loop_interval": 30,
    }
    settings.update(config[CELERY])
    for key in ("broker_url", "result_backend"):
        settings[key] = _local_url(settings.get(key), config.root, key)
    if str(settings["broker_url"]).startswith(VISIBILITY_SCHEMES):
        # A task unacknowledged this long is given to another worker: it must outlast the
        # longest task (acks_late), and the stack's grace periods are chosen below it.
        options = settings.setdefault("broker_transport_options", {})
        options.setdefault("visibility_timeout", DEFAULT_VISIBILITY_TIMEOUT)
    if "beat_schedule" in settings:
        settings["beat_schedule"] = _schedule(settings["beat_schedule"])
    return settings


def _local_url(url: t.Any, root: Path, key: str) -> t.Any:
    """Make the SQLite path of ``sqla+sqlite://`` or ``db+sqlite://`` absolute against ``root``."""
    if not isinstance(url, str):
        return url
    for scheme in ("sqla+", "db+"):
        if url.startswith(scheme + "sqlite:///"):
            return scheme + resolve_sqlite_url(url[len(scheme):], root, f"CELERY.{key}")
    return url


def _schedule(entries: t.Any) -> dict[str, t.Any]:
    """Beat entries from JSON: ``schedule`` is seconds, or a crontab string ``'*/5 * * * *'``."""
    if not isinstance(entries, dict):
        raise ConfigError(
            "Config 'CELERY.beat_schedule' must be a JSON object of entries, such as"
            ' {"tick": {"task": "app.tasks.tick", "schedule": 60}}.'
        )
    schedule: dict[str, t.Any] = {}
    for name, entry in entries.items():
        entry = dict(entry)
        when = entry.get("schedule")
        if isinstance(when, str):
            fields = when.split()
            if len(fields) != 5:
                raise ConfigError(
                    f"Config 'CELERY.beat_schedule' entry '{name}' has schedule {when!r}:"
                    " expected seconds or a crontab of five fields such as '*/5 * * * *'."
                )
            entry["schedule"] = crontab(*fields)
        if "args" in entry:
            entry["args"] = tuple(entry["args"])
        schedule[name] = entry
    return schedule


class ProjectCelery(Celery):  # type: ignore[misc]
    """Celery whose ``@celery.task`` belongs to this app alone.

    Celery shares a task with every app by default; two projects in one process
    (or in one test run) would then send each other's tasks.
    """

    def task(self, *args: t.Any, **opts: t.Any) -> t.Any:
        opts.setdefault("shared", False)
        return super().task(*args, **opts)


def create_celery(project: Project) -> Celery:
    """A Celery app whose tasks run in the Flask app context with their own session."""
    app = project.app
    db = project.db

    class FlaskTask(Task):  # type: ignore[misc]
        def __call__(self, *args: t.Any, **kwargs: t.Any) -> t.Any:
            if has_app_context() and current_app._get_current_object() is app:  # type: ignore[attr-defined]
                # Called directly inside a request or another task: share its session.
                return self.run(*args, **kwargs)
            with app.app_context():
                try:
                    result = self.run(*args, **kwargs)
                except BaseException:
                    if db.registry.has():
                        db.rollback()
                    raise
                if db.registry.has():
                    db.commit()
                return result

    celery = ProjectCelery(app.name, task_cls=FlaskTask, set_as_current=False)
    celery.config_from_object(celery_settings(project.config))
    app.extensions["celery"] = celery
    return celery
