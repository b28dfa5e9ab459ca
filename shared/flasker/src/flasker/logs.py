"""One logging configuration for web and worker: readable text, or JSON lines.

:func:`configure_logging` puts one handler on the root logger, writing to stderr
as ``[PROJECT] LOG_FORMAT`` says (``text`` or ``json``) with the id of the current
request or Celery task on every line. Celery keeps it: flasker turns
``worker_hijack_root_logger`` off, and the loggers Celery would give handlers of
its own (task loggers, billiard's) get this one first. gunicorn's loggers join
through :class:`GunicornLogger`.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import re
import sys
import typing as t
import uuid

import orjson
from flask import has_request_context, request

from .config import PROJECT, Config, ConfigError, load_config
from .util.json import default

HANDLER_NAME = "flasker"
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s%(context)s: %(message)s"
REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_KEY = "flasker.request_id"
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")

# Loggers that stop propagating to the root: Celery gives its task logger and
# billiard's logger handlers of their own unless they already have one.
OWN_HANDLER_LOGGERS = ("celery.task", "multiprocessing")

# Attributes every LogRecord has: anything else came from 'extra=' and is written out.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {
    "message", "asctime", "ids", "context", "taskName",
}


def request_id() -> str | None:
    """The id of the current request: its ``X-Request-ID`` header when sane, else a new one."""
    if not has_request_context():
        return None
    environ = request.environ
    found = environ.get(REQUEST_ID_KEY)
    if found is None:
        header = request.headers.get(REQUEST_ID_HEADER, "")
        # A client-chosen id is kept only when it cannot forge or break a log line.
        found = header if _VALID_REQUEST_ID.fullmatch(header) else uuid.uuid4().hex
        environ[REQUEST_ID_KEY] = found
    return t.cast(str, found)


def _context_ids() -> dict[str, str]:
    """The id of the current request or Celery task, where there is one."""
    ids: dict[str, str] = {}
    rid = request_id()
    if rid is not None:
        ids["request_id"] = rid
    if "celery" in sys.modules:  # a process that has not imported Celery runs no task
        from celery import current_task  # noqa: PLC0415 (loaded already: see above)

        task = current_task
        if task is not None and getattr(task, "request", None) is not None and task.request.id:
            ids["task_id"] = task.request.id
            ids["task_name"] = task.name
    return ids


class ContextFilter(logging.Filter):
    """Add ``context`` (text) and the ids themselves to each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        ids = _context_ids()
        record.ids = ids
        record.context = "".join(f" [{v}]" for k, v in ids.items() if k != "task_name")
        return True


def _log_default(value: t.Any) -> t.Any:
    """flasker's serializer for what orjson does not know; a log line never fails on a type."""
    try:
        return default(value)
    except TypeError:
        return repr(value)


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message, ids, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        created = dt.datetime.fromtimestamp(record.created, tz=dt.UTC)
        entry: dict[str, t.Any] = {
            "time": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "ids", {}),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(entry, default=_log_default, option=orjson.OPT_NON_STR_KEYS).decode()


def log_settings(config: Config) -> tuple[str, str]:
    """``(format, level)`` from ``[PROJECT]``; a ``ConfigError`` names a bad value."""
    fmt = str(config.get(PROJECT, "LOG_FORMAT")).lower()
    if fmt not in ("text", "json"):
        raise ConfigError(
            f"Config 'PROJECT.LOG_FORMAT' has value {fmt!r}"
            f" ({config.source_of(PROJECT, 'LOG_FORMAT')}). Expected 'text' or 'json'."
        )
    level = str(config.get(PROJECT, "LOG_LEVEL")).upper()
    if level not in logging.getLevelNamesMapping():
        raise ConfigError(
            f"Config 'PROJECT.LOG_LEVEL' has value {level!r}"
            f" ({config.source_of(PROJECT, 'LOG_LEVEL')})."
            " Expected DEBUG, INFO, WARNING, ERROR or CRITICAL."
        )
    return fmt, level


def make_handler(fmt: str) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(HANDLER_NAME)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JSONFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    return handler


def configure_logging(config: Config) -> None:
    """Install flasker's handler on the root logger (a later call replaces it)."""
    fmt, level = log_settings(config)
    handler = make_handler(fmt)
    loggers = [logging.getLogger(), *(logging.getLogger(n) for n in OWN_HANDLER_LOGGERS)]
    for logger in loggers:
        for old in list(logger.handlers):
            if old.get_name() == HANDLER_NAME:
                logger.removeHandler(old)
        logger.addHandler(handler)
    for logger in loggers[1:]:
        logger.propagate = False  # they have the handler: no line twice
    logging.getLogger().setLevel(level)


@functools.cache
def _gunicorn_logger() -> type[t.Any]:
    from gunicorn.glogging import Logger  # noqa: PLC0415 (only gunicorn's processes need it)

    class GunicornLogger(Logger):  # type: ignore[misc]
        """gunicorn's logger writing through flasker's handler, in the master and workers."""

        def setup(self, cfg: t.Any) -> None:
            super().setup(cfg)
            configure_logging(load_config())
            for logger in (self.error_log, self.access_log):
                for handler in list(logger.handlers):
                    logger.removeHandler(handler)
                logger.propagate = True

    return GunicornLogger


def __getattr__(name: str) -> t.Any:
    """``GunicornLogger``, built on first use so that only gunicorn's processes import it.

    Use it with ``gunicorn --logger-class flasker.logs.GunicornLogger`` (``FLASKER_CONFIG``
    names the configuration file).
    """
    if name == "GunicornLogger":
        return _gunicorn_logger()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
