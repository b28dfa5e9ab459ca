"""A backing service that cannot be reached: a 503 with ``Retry-After``, never a 500 or a hang.

The one place that knows which errors mean "the database, the broker, the result backend
or the cache is down" (:func:`find_outage`), and how such a request is answered: the app's
own page (``errors/503.html``, which the app may override; flasker ships a plain default)
for browsers, RFC 9457 problem details for clients that want JSON (the API's own error
handler asks :func:`find_outage` too). One WARNING line names the service, at most once per
:data:`LOG_EVERY` seconds per service and app, with how many more were refused since the
last one: no traceback per request. Tasks ask the same question to decide whether to
retry (``tasks.FlaskTask``).

Celery, kombu and redis are matched by their class names, so that a web process that never
sends a task does not import them.
"""

from __future__ import annotations

import logging
import threading
import time
import typing as t
from dataclasses import dataclass
from pathlib import Path

import jinja2
from flask import Blueprint, Flask, Response, has_request_context, render_template, request
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException

from .config import DEFAULT, PROJECT, Config, ConfigError, Source
from .db import release_session
from .problem import problem_response, wants_problem
from .util.logging import one_line

if t.TYPE_CHECKING:
    from flask.typing import ResponseReturnValue

    from .project import Project

logger = logging.getLogger("flasker.outages")

EXTENSION_KEY = "flasker_outages"
TEMPLATE = "errors/503.html"
TEMPLATES = Path(__file__).with_name("templates")
# The packaged pages alone, for when the app's own cannot be rendered.
_DEFAULT_PAGES = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True)
LOG_EVERY = 10.0

DATABASE = "database"
BROKER = "broker"
RESULT_BACKEND = "result backend"
CACHE = "cache"
REDIS = "Redis"

#: How a user is told which part is missing.
_WHAT = {
    DATABASE: "the database",
    BROKER: "the task queue (the broker)",
    RESULT_BACKEND: "the store of task results",
    CACHE: "the cache",
    REDIS: "Redis",
}

# Errors of the broker's client library, by qualified class name (see the module's docstring).
_BROKER_ERRORS = frozenset({"kombu.exceptions.OperationalError"})
_REDIS_ERRORS = frozenset({"redis.exceptions.ConnectionError", "redis.exceptions.TimeoutError"})
# Modules whose frames tell which part used Redis, first match wins.
_REDIS_USERS = (("celery.backends", RESULT_BACKEND), ("kombu", BROKER),
                ("flasker.util.cache", CACHE), ("flasker.caching", CACHE))
# PostgreSQL's SQLSTATE classes of a lost or refused connection: 08 (connection exception),
# 57P (operator intervention: shutdown, starting up), 53 (insufficient resources).
_OUTAGE_SQLSTATES = ("08", "57P", "53")
# SQLite's primary result codes that mean "not now" rather than "wrong SQL": busy, locked,
# I/O error, disk full, cannot open.
_OUTAGE_SQLITE_CODES = frozenset({5, 6, 10, 13, 14})
_CHAIN_DEPTH = 8


@dataclass(frozen=True)
class Outage:
    """A backing service that cannot be reached: which one, and why (one line)."""

    service: str
    reason: str

    @property
    def what(self) -> str:
        """The service as a user is told it: ``the database``."""
        return _WHAT.get(self.service, self.service)

    @property
    def detail(self) -> str:
        return (f"This request could not be completed because {self.what} cannot be reached"
                " right now. Try again in a few seconds.")


@dataclass(frozen=True)
class OutagePolicy:
    """The ``[PROJECT]`` options of outages: ``Retry-After``, and how tasks retry."""

    retry_after: int
    task_retry_max: int
    task_retry_backoff: float
    task_retry_backoff_max: float


# -- which errors are outages -------------------------------------------------------------------


def find_outage(error: BaseException) -> Outage | None:
    """The outage ``error`` stands for, or ``None`` when it is something else (a bug, bad input).

    The error and the ones it was raised from (``__cause__``, ``__context__``) are looked at,
    so that Celery's ``RuntimeError`` raised from a lost Redis connection counts too.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    for _ in range(_CHAIN_DEPTH):
        if current is None or id(current) in seen:
            return None
        seen.add(id(current))
        outage = _classify(current)
        if outage is not None:
            return outage
        current = current.__cause__ or current.__context__
    return None


def _classify(error: BaseException) -> Outage | None:
    if isinstance(error, sa_exc.SQLAlchemyError):
        return Outage(DATABASE, one_line(error)) if _database_outage(error) else None
    names = {f"{c.__module__}.{c.__qualname__}" for c in type(error).__mro__}
    if names & _BROKER_ERRORS:
        return Outage(BROKER, one_line(error))
    if names & _REDIS_ERRORS:
        return Outage(_redis_user(error), one_line(error))
    return None


def _database_outage(error: sa_exc.SQLAlchemyError) -> bool:
    if isinstance(error, sa_exc.DisconnectionError | sa_exc.TimeoutError):
        return True  # a connection refused by the pool, or none free within pool_timeout
    if not isinstance(error, sa_exc.DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    if not isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError):
        return False
    original = error.orig
    code = getattr(original, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in _OUTAGE_SQLITE_CODES
    state = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
    # No SQLSTATE: the driver failed before the server answered (refused, timed out, closed).
    return state is None or str(state).startswith(_OUTAGE_SQLSTATES)


def _redis_user(error: BaseException) -> str:
    """Which part was talking to Redis, read off the traceback's modules."""
    modules = []
    tb = error.__traceback__
    while tb is not None:
        modules.append(str(tb.tb_frame.f_globals.get("__name__", "")))
        tb = tb.tb_next
    for prefix, service in _REDIS_USERS:
        if any(m.startswith(prefix) for m in modules):
            return service
    return REDIS


# -- the policy ---------------------------------------------------------------------------------


def outage_policy(config: Config) -> OutagePolicy:
    """Read and check the ``[PROJECT]`` options of outages; a bad one is a ``ConfigError``."""
    policy = OutagePolicy(
        retry_after=config.get(PROJECT, "RETRY_AFTER"),
        task_retry_max=config.get(PROJECT, "TASK_RETRY_MAX"),
        task_retry_backoff=float(config.get(PROJECT, "TASK_RETRY_BACKOFF")),
        task_retry_backoff_max=float(config.get(PROJECT, "TASK_RETRY_BACKOFF_MAX")),
    )

    def source(key: str) -> Source:
        return config.source_of(PROJECT, key) or DEFAULT

    for key, value, minimum in (("RETRY_AFTER", policy.retry_after, 1),
                                ("TASK_RETRY_MAX", policy.task_retry_max, 0),
                                ("TASK_RETRY_BACKOFF", policy.task_retry_backoff, 0),
                                ("TASK_RETRY_BACKOFF_MAX", policy.task_retry_backoff_max, 0)):
        if value < minimum:
            raise ConfigError(
                f"Config 'PROJECT.{key}' has value {value!r} ({source(key)})."
                f" It must be at least {minimum}."
            )
    if policy.task_retry_backoff_max < policy.task_retry_backoff:
        # Either may be the one set wrong: each is named with where it comes from.
        raise ConfigError(
            f"Config 'PROJECT.TASK_RETRY_BACKOFF_MAX' ({policy.task_retry_backoff_max:g},"
            f" {source('TASK_RETRY_BACKOFF_MAX')}) is less than 'PROJECT.TASK_RETRY_BACKOFF'"
            f" ({policy.task_retry_backoff:g}, {source('TASK_RETRY_BACKOFF')}): the longest"
            " wait between two tries cannot be shorter than the first one; raise it."
        )
    return policy


# -- logging ------------------------------------------------------------------------------------


class _OutageLog:
    """One WARNING line per service at most every ``LOG_EVERY`` seconds, with a count."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._quiet: dict[str, int] = {}

    def warn(self, outage: Outage, what: str) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(outage.service)
            if last is not None and now - last < LOG_EVERY:
                self._quiet[outage.service] = self._quiet.get(outage.service, 0) + 1
                return
            quiet = self._quiet.pop(outage.service, 0)
            self._last[outage.service] = now
        since = f"; {quiet} more since the last line" if quiet else ""
        logger.warning("%s unavailable (%s): %s%s", outage.service, outage.reason, what, since,
                       extra={"outage_service": outage.service})


class _QuietInRequests(logging.Filter):
    """Drop Celery's lines about a lost result backend while a request is answered.

    A task sent from a request subscribes to its result first; with Redis down Celery logs
    an ERROR and a CRITICAL "must be restarted" (it need not be: the next send reconnects)
    for every such request. The request's own 503 line says it once.
    """

    MESSAGES = ("Connection to Redis lost", "Retry limit exceeded")

    def filter(self, record: logging.LogRecord) -> bool:
        if not has_request_context():
            return True
        return not str(record.msg).lstrip().startswith(self.MESSAGES)


_CELERY_RECONNECT_LOGGERS = ("celery.backends.redis", "celery.backends.asynchronous")


def _quiet_celery_in_requests() -> None:
    for name in _CELERY_RECONNECT_LOGGERS:
        celery_logger = logging.getLogger(name)
        if not any(isinstance(f, _QuietInRequests) for f in celery_logger.filters):
            celery_logger.addFilter(_QuietInRequests())


class _State:
    """What ``init_outages`` keeps on an app: the policy, and the log's memory."""

    def __init__(self, policy: OutagePolicy) -> None:
        self.policy = policy
        self.log = _OutageLog()


def policy_of(app: Flask) -> OutagePolicy:
    """The outage options of ``app``'s project (set by :func:`init_outages`)."""
    return t.cast(_State, app.extensions[EXTENSION_KEY]).policy


def retry_after_headers(app: Flask) -> dict[str, str]:
    """The ``Retry-After`` header of a 503 answered by ``app``."""
    return {"Retry-After": str(policy_of(app).retry_after)}


def log_outage(app: Flask, outage: Outage, what: str) -> None:
    """Log the outage on ``app``: one line naming the service, never a traceback."""
    t.cast(_State, app.extensions[EXTENSION_KEY]).log.warn(outage, what)


# -- answering a request ------------------------------------------------------------------------


def outage_response(outage: Outage, app: Flask) -> Response:
    """503 with ``Retry-After``: problem details for JSON clients, else the app's page."""
    headers = retry_after_headers(app)
    if wants_problem():
        return problem_response(503, "Service Unavailable", outage.detail, headers=headers,
                                service=outage.service)
    context = {"outage": outage, "title": "Temporarily unavailable", "message": outage.detail}
    try:
        page = render_template(TEMPLATE, **context)
    except Exception as e:  # the page must not turn a 503 into a 500
        # The app's page may need what is missing (its base template loads the signed-in
        # user, say): the packaged page needs nothing.
        logger.warning("the page '%s' could not be rendered (%s): flasker's own is used",
                       TEMPLATE, one_line(e))
        page = _DEFAULT_PAGES.get_template(TEMPLATE).render(config=app.config, **context)
    response = Response(page, status=503, mimetype="text/html")
    response.headers.update(headers)
    response.headers["Cache-Control"] = "no-store"
    return response


def init_outages(app: Flask, project: Project) -> None:
    """Answer every outage of ``app`` with a 503, and serve the default ``errors/503.html``."""
    app.extensions[EXTENSION_KEY] = _State(outage_policy(project.config))
    _quiet_celery_in_requests()
    # The default page, found after the app's own templates (which may override it).
    app.register_blueprint(Blueprint(EXTENSION_KEY, __name__, template_folder=TEMPLATES))

    def handle(error: Exception) -> ResponseReturnValue:
        outage = find_outage(error)
        if outage is None:
            if isinstance(error, HTTPException):
                return error  # Flask's own answer: 404, 405...
            raise error  # a bug: Flask logs it and answers 500, as without this handler
        release_session(project.db, rollback=True)  # quietly: the database may be gone
        log_outage(app, outage, f"answered 503 to {request.method} {request.path}")
        return outage_response(outage, app)

    # Any exception, because kombu's and redis's classes are not imported here; what is not
    # an outage goes on as if this handler did not exist.
    app.register_error_handler(Exception, handle)
