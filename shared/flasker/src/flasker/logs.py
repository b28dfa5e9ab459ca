"""One logging configuration for web and worker: readable text, or JSON lines."""

from __future__ import annotations

import logging
import sys
import typing as t

import orjson

from .config import PROJECT, Config, ConfigError

HANDLER_NAME = "flasker"
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s%(context)s: %(message)s"


def _context_ids() -> dict[str, str]:
    """The id of the current request (``X-Request-ID``) or Celery task, where there is one."""
    ids: dict[str, str] = {}
    if "flask" in sys.modules:
        from flask import has_request_context, request  # noqa: PLC0415

        if has_request_context():
            ids["request_id"] = request.headers.get("X-Request-ID") or hex(id(request))
    if "celery" in sys.modules:
        from celery import current_task  # noqa: PLC0415

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


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, ids, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, t.Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "ids", {}),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(config: Config) -> None:
    """Install flasker's handler on the root logger (once; a later call replaces it)."""
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
            f" ({config.source_of(PROJECT, 'LOG_LEVEL')}). Expected DEBUG, INFO, WARNING or ERROR."
        )
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == HANDLER_NAME:
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(HANDLER_NAME)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JSONFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(level)
