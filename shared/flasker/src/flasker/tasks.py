"""The project's Celery app, following Flask's ``celery_init_app`` pattern."""

from __future__ import annotations

import difflib
import random
import typing as t
from pathlib import Path

from celery import Celery, Task
from celery.app.backends import BACKEND_ALIASES
from celery.exceptions import Ignore, Reject, Retry
from celery.schedules import crontab
from flask import current_app, has_app_context
from kombu.transport import TRANSPORT_ALIASES

from .beat import SLOT_HEADER, SlotRuns
from .config import CELERY, DEFAULT, PROJECT, Config, ConfigError, mask, slug, state_folder
from .db import release_session, resolve_sqlite_url
from .lease import (
    REDIS_TRANSPORT_OPTIONS,
    SQL_SCHEMES,
    SQL_TRANSPORT_OPTIONS,
    LeaseStep,
    sql_visibility_timeout,
)
from .outages import Outage, OutagePolicy, find_outage, log_outage, policy_of

if t.TYPE_CHECKING:
    from .project import Project

# SQS redelivers a message unacknowledged this long; nothing renews it (unlike Redis's lease).
SQS_VISIBILITY_TIMEOUT = 3600
REDIS_SCHEMES = ("redis://", "rediss://", "sentinel://")

# Redis down or restarting must cost a request that sends a task a second, not minutes:
# Celery's defaults have no socket timeouts for the broker, 120 s for the result backend,
# and retry the result backend's connection 20 times a second apart (a task sent from a
# request subscribes to its result first). A request's worst chain (two connection attempts
# and a pause) stays under 2 s. Each is a default that [CELERY] overrides.
REDIS_SOCKET_TIMEOUTS: dict[str, t.Any] = {"socket_connect_timeout": 0.5, "socket_timeout": 2.0}
REDIS_RESULT_TIMEOUTS: dict[str, t.Any] = {"redis_socket_connect_timeout": 0.5,
                                           "redis_socket_timeout": 2.0}
RESULT_RETRY_POLICY: dict[str, t.Any] = {"max_retries": 1, "interval_start": 0,
                                         "interval_step": 0.2, "interval_max": 0.2}
PUBLISH_RETRY_POLICY: dict[str, t.Any] = {"max_retries": 1, "interval_start": 0,
                                          "interval_step": 0.2, "interval_max": 0.2}


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
        # A task sent while the broker is down fails within a second (the request answers
        # 503, see outages.py) instead of retrying for longer than anyone waits.
        "task_publish_retry_policy": dict(PUBLISH_RETRY_POLICY),
        # Lost the broker mid-task: cancel the task, whose message the broker redelivers
        # anyway (its lease lapses), rather than let it run twice.
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "beat_schedule_filename": str(state / "celerybeat-schedule"),
        # Beat wakes at least this often, so its heartbeat file stays fresh.
        "beat_max_loop_interval": 30,
    }
    settings.update(config[CELERY])
    for key in ("broker_url", "result_backend"):
        settings[key] = _local_url(settings.get(key), config.root, key)
        _check_scheme(config, key, settings[key])
    broker = str(settings["broker_url"])
    if broker.startswith(REDIS_SCHEMES):
        # A short visibility timeout: a vanished worker's tasks run again within seconds,
        # while a live worker keeps renewing the lease of its own (lease.py).
        settings["broker_transport_options"] = _transport_options(
            config, settings, {**REDIS_TRANSPORT_OPTIONS, **REDIS_SOCKET_TIMEOUTS})
    elif broker.startswith(SQL_SCHEMES):
        # The embedded broker: a lease too, kept by flasker's SQL transport (lease.py).
        settings["broker_transport_options"] = _transport_options(
            config, settings, dict(SQL_TRANSPORT_OPTIONS))
        sql_visibility_timeout(settings["broker_transport_options"])  # a bad one fails here
    elif broker.startswith("sqs://"):
        settings["broker_transport_options"] = _transport_options(
            config, settings, {"visibility_timeout": SQS_VISIBILITY_TIMEOUT})
    if str(settings["result_backend"]).startswith(REDIS_SCHEMES):
        for key, value in REDIS_RESULT_TIMEOUTS.items():
            settings.setdefault(key, value)
        own = settings.get("result_backend_transport_options") or {}
        if isinstance(own, dict):  # else Celery says what is wrong with it
            settings["result_backend_transport_options"] = {
                "retry_policy": dict(RESULT_RETRY_POLICY), **own}
    if "beat_schedule" in settings:
        source = config.source_of(CELERY, "beat_schedule")
        where = f" ({source})" if source else ""
        settings["beat_schedule"] = _schedule(settings["beat_schedule"], where)
    return settings


def _transport_options(config: Config, settings: dict[str, t.Any],
                       defaults: dict[str, t.Any]) -> dict[str, t.Any]:
    """flasker's transport options for this broker, under the user's own (a merge)."""
    own = settings.get("broker_transport_options") or {}
    if not isinstance(own, dict):
        source = config.source_of(CELERY, "broker_transport_options")
        where = f" ({source})" if source else ""
        raise ConfigError(
            f"Config 'CELERY.broker_transport_options'{where} has value {own!r}: expected a"
            ' JSON object, such as {"visibility_timeout": 60}.'
        )
    return {**defaults, **own}


def _local_url(url: t.Any, root: Path, key: str) -> t.Any:
    """Make the SQLite path of ``sqla+sqlite://`` or ``db+sqlite://`` absolute against ``root``."""
    if not isinstance(url, str):
        return url
    for scheme in ("sqla+", "db+"):
        if url.startswith(scheme + "sqlite:///"):
            return scheme + resolve_sqlite_url(url[len(scheme):], root, f"CELERY.{key}")
    return url


def _check_scheme(config: Config, key: str, url: t.Any) -> None:
    """Refuse a broker or result backend URL whose scheme Celery does not know (a typo)."""
    if not isinstance(url, str) or "://" not in url:
        return
    # 'sqla+sqlite://' names the transport before the '+'; 'a;b' lists failover brokers.
    scheme = url.split(";")[0].partition("://")[0].partition("+")[0]
    known = TRANSPORT_ALIASES if key == "broker_url" else BACKEND_ALIASES
    if scheme in known or "." in scheme or ":" in scheme:  # an alias, or a class's path
        return
    close = difflib.get_close_matches(scheme, list(known), n=1)
    hint = f" Did you mean '{close[0]}://'?" if close else ""
    raise ConfigError(
        f"Config 'CELERY.{key}' has value {mask(key, url)!r}"
        f" ({config.source_of(CELERY, key) or DEFAULT}). '{scheme}://' is not a"
        f" {'broker' if key == 'broker_url' else 'result backend'} Celery knows.{hint}"
        f" Known: {', '.join(sorted(known))}."
    )


def _schedule(entries: t.Any, where: str = "") -> dict[str, t.Any]:
    """Beat entries from JSON: ``schedule`` is seconds, or a crontab string ``'*/5 * * * *'``.

    :param where: where the setting came from, for error messages (`` (file:line)``).
    """
    if not isinstance(entries, dict):
        raise ConfigError(
            f"Config 'CELERY.beat_schedule'{where} must be a JSON object of entries, such as"
            ' {"tick": {"task": "app.tasks.tick", "schedule": 60}}.'
        )
    schedule: dict[str, t.Any] = {}
    for name, entry in entries.items():
        task = entry.get("task") if isinstance(entry, dict) else None
        when = entry.get("schedule") if isinstance(entry, dict) else None
        if not isinstance(task, str) or when is None or isinstance(when, bool | list | dict):
            raise ConfigError(
                f"Config 'CELERY.beat_schedule'{where} has the entry '{name}': {entry!r}."
                ' Expected an object with a task name and a schedule, such as {"task":'
                ' "app.tasks.tick", "schedule": 60} (seconds, or a crontab such as'
                ' "*/5 * * * *").'
            )
        entry = dict(entry)
        if isinstance(when, str):
            fields = when.split()
            try:
                if len(fields) != 5:
                    raise ValueError("not five fields")
                entry["schedule"] = crontab(*fields)
            except ValueError as e:
                raise ConfigError(
                    f"Config 'CELERY.beat_schedule'{where} entry '{name}' has schedule {when!r}"
                    f" ({str(e).rstrip('.')}): expected seconds or a crontab of five fields"
                    " such as '*/5 * * * *'."
                ) from None
        if "args" in entry:
            if not isinstance(entry["args"], list | tuple):
                raise ConfigError(
                    f"Config 'CELERY.beat_schedule'{where} entry '{name}' has args"
                    f" {entry['args']!r}: expected a JSON array, such as [1, \"a\"]."
                )
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


def retry_backoff(policy: OutagePolicy, retries: int) -> float:
    """Seconds before retry ``retries + 1``: doubling from TASK_RETRY_BACKOFF up to its max,
    with "equal jitter" (between half and all of it), so that tasks that failed together
    do not all come back at once, and the waits still add up to half the doubling's sum.
    """
    ceiling = min(policy.task_retry_backoff_max, policy.task_retry_backoff * 2 ** retries)
    return random.uniform(ceiling / 2, ceiling)


def create_celery(project: Project) -> Celery:
    """A Celery app whose tasks run in the Flask app context with their own session."""
    app = project.app
    db = project.db

    policy = policy_of(app)
    # Which task ran each slot of a periodic task (Redis brokers): beat may send a slot
    # twice when it was killed in the middle of a send, and only one of them runs.
    slot_runs = SlotRuns()

    class FlaskTask(Task):  # type: ignore[misc]
        #: Retry when the database, the broker or the result backend cannot be reached,
        #: with exponential backoff and jitter ([PROJECT] TASK_RETRY_*); a task opts out
        #: with ``@celery.task(retry_on_outage=False)``.
        retry_on_outage = True

        def __call__(self, *args: t.Any, **kwargs: t.Any) -> t.Any:
            if has_app_context() and current_app._get_current_object() is app:  # type: ignore[attr-defined]
                # Called directly inside a request or another task: share its session.
                return self.run(*args, **kwargs)
            try:
                if self.request.get(SLOT_HEADER) is not None:  # sent by beat
                    slot_runs.run_once(self)  # raises Ignore when another task ran the slot
                return self._run_in_app_context(args, kwargs)
            except (Retry, Ignore, Reject):
                raise  # Celery's own signals, raised from a connection error by autoretry_for
            except Exception as e:
                outage = find_outage(e) if self.retry_on_outage else None
                if outage is not None and not self.request.called_directly:
                    self._retry_outage(outage, e)  # raises Retry while retries remain
                raise

        def _run_in_app_context(self, args: tuple[t.Any, ...],
                                kwargs: dict[str, t.Any]) -> t.Any:
            with app.app_context():
                try:
                    result = self.run(*args, **kwargs)
                except BaseException:
                    release_session(db, rollback=True)  # quietly: the database may be gone
                    raise
                if db.registry.has():
                    db.commit()
                return result

        def _retry_outage(self, outage: Outage, error: Exception) -> None:
            """Send the task again after a backoff (raises ``Retry``), unless retries ran out."""
            retries = self.request.retries
            name = f"task {self.name}[{self.request.id}]"
            if retries >= policy.task_retry_max:
                log_outage(app, outage, f"{name} failed after {retries} retries")
                return
            countdown = retry_backoff(policy, retries)
            log_outage(app, outage, f"{name} retries in {countdown:.1f} s"
                                    f" ({retries + 1}/{policy.task_retry_max})")
            try:
                raise self.retry(exc=error, countdown=countdown,
                                 max_retries=policy.task_retry_max)
            except Reject as unsent:
                # The retry could not be sent (the broker is what is gone), and Celery would
                # drop the message (requeue=False): hand it back to the broker instead, or
                # leave it there unacknowledged until its lease lapses if that fails too.
                raise Reject(unsent.reason, requeue=True) from error

    # amqp: kombu's SQL transport is swapped for flasker's, which leases what it takes.
    celery = ProjectCelery(app.name, task_cls=FlaskTask, set_as_current=False,
                           amqp="flasker.lease:LeasedAMQP")
    celery.config_from_object(celery_settings(project.config))
    # A worker renews the lease of the task messages it holds (Redis brokers only).
    celery.steps["consumer"].add(LeaseStep)
    app.extensions["celery"] = celery
    return celery
