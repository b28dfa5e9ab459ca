"""The database engine and the session scoped to the current request or task."""

from __future__ import annotations

import os
import threading
import typing as t
import weakref
from pathlib import Path

import sqlalchemy as sa
from flask.globals import app_ctx
from sqlalchemy.orm import Session, scoped_session, sessionmaker

from .config import ENGINE, PROJECT, Config, ConfigError

if t.TYPE_CHECKING:
    from flask import Flask


def resolve_sqlite_url(url: str, root: Path, key: str = "PROJECT.DB_URL") -> str:
    """Make a relative SQLite path absolute against ``root`` and create its folder.

    :param key: the setting the URL comes from, named when the folder cannot be made.
    """
    parsed = sa.make_url(url)
    if not parsed.drivername.startswith("sqlite") or not parsed.database:
        return url
    if parsed.database == ":memory:" or parsed.database.startswith("file:"):
        return url
    path = Path(parsed.database)
    if not path.is_absolute():
        path = root / path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(
            f"Config '{key}' puts the SQLite file '{path}' in a folder that cannot be created"
            f" ({e.strerror}). Point it at a writable place, or set 'PROJECT.STATE_FOLDER' for"
            " the files of the embedded broker and beat."
        ) from e
    return parsed.set(database=str(path)).render_as_string(hide_password=False)


def database_url(config: Config) -> str:
    """The configured ``DB_URL``, or the embedded default: ``db.sqlite`` beside the ``.cfg``."""
    url = config.get(PROJECT, "DB_URL") or "sqlite:///db.sqlite"
    return resolve_sqlite_url(url, config.root)


def _enable_sqlite_foreign_keys(dbapi_connection: t.Any, _record: t.Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_engine(config: Config) -> sa.Engine:
    """Create the engine from ``DB_URL`` and the ``[ENGINE]`` section.

    SQLite gets foreign keys enforced, as every other database does. The pool is
    reset in a forked child (a Celery or gunicorn worker) so that no connection is
    shared across processes.
    """
    options = {k: v for k, v in config[ENGINE].items() if v is not None}
    engine = sa.create_engine(database_url(config), **options)
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _enable_sqlite_foreign_keys)
    ref = weakref.ref(engine)

    def dispose_in_child() -> None:
        alive = ref()
        if alive is not None:
            alive.dispose(close=False)

    os.register_at_fork(after_in_child=dispose_in_child)
    return engine


def _scope() -> int:
    """One session per application context (request, task, shell), else per thread."""
    try:
        return id(app_ctx._get_current_object())  # type: ignore[attr-defined]
    except RuntimeError:
        return threading.get_ident()


def create_session(engine: sa.Engine) -> scoped_session[Session]:
    factory = sessionmaker(bind=engine)
    return scoped_session(factory, scopefunc=_scope)


def init_app_session(app: Flask, session: scoped_session[Session]) -> None:
    """Roll back on error and remove the session when the app context ends."""

    @app.teardown_appcontext
    def remove_session(exc: BaseException | None) -> None:
        if session.registry.has():
            if exc is not None:
                session.rollback()
            session.remove()
