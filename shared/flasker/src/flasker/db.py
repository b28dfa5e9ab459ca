"""The database engine and the session scoped to the current request or task."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import typing as t
import weakref
from pathlib import Path

import sqlalchemy as sa
from flask.globals import app_ctx
from sqlalchemy.orm import Session, scoped_session, sessionmaker

from .config import DEFAULT, ENGINE, PROJECT, Config, ConfigError
from .util.logging import one_line

if t.TYPE_CHECKING:
    from flask import Flask

logger = logging.getLogger("flasker.db")

#: Arguments of the driver's ``connect()`` that bound the wait for a database server that is
#: down or restarting, each unless ``connect_args`` sets it. libpq (psycopg): 2 s to connect
#: in all (its smallest), and 1 s without an answer to a packet sent (the connection
#: request to a server whose address vanished, the ping of a connection it dropped): a
#: failed ping and the new connection that follows it fit in a request's 2 s.
CONNECT_ARGS: dict[str, dict[str, t.Any]] = {
    "psycopg": {"connect_timeout": 2, "tcp_user_timeout": 1000},
    "psycopg2": {"connect_timeout": 2, "tcp_user_timeout": 1000},
    "pymysql": {"connect_timeout": 2},
    "mysqldb": {"connect_timeout": 2},
}
#: Seconds a request waits for a connection of a full pool, unless ``pool_timeout`` is set.
POOL_TIMEOUT = 2.0


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


def engine_options(config: Config, url: str) -> dict[str, t.Any]:
    """The ``[ENGINE]`` section, over flasker's defaults for a database server.

    A server that is down or restarting must cost a request seconds, not minutes: the
    connection attempt gives up within 2 s (:data:`CONNECT_ARGS`, in ``connect_args``) and
    a request waits at most ``pool_timeout`` for a free connection, so that the request is
    answered with a 503 (see ``outages``); ``pool_pre_ping`` (on by default) replaces
    the connections the restart closed, so the first request after it succeeds.
    """
    options = {k: v for k, v in config[ENGINE].items() if v is not None}
    try:
        parsed = sa.make_url(url)
        backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError):
        return options  # create_engine says what is wrong with the URL
    if driver in CONNECT_ARGS and isinstance(options.get("connect_args") or {}, dict):
        options["connect_args"] = {**CONNECT_ARGS[driver], **(options.get("connect_args") or {})}
    if backend != "sqlite":  # SQLite's in-memory pool has no timeout to set
        options.setdefault("pool_timeout", POOL_TIMEOUT)
    return options


def create_engine(config: Config) -> sa.Engine:
    """Create the engine from ``DB_URL`` and the ``[ENGINE]`` section.

    SQLite gets foreign keys enforced, as every other database does. The pool is
    reset in a forked child (a Celery or gunicorn worker) so that no connection is
    shared across processes. A database server gets short timeouts (:func:`engine_options`).
    """
    url = database_url(config)
    options = engine_options(config, url)
    try:
        engine = sa.create_engine(url, **options)
    except ImportError as e:  # the URL's driver is not installed
        raise ConfigError(
            f"Config 'PROJECT.DB_URL' ({config.source_of(PROJECT, 'DB_URL') or DEFAULT}) needs the"
            f" database driver '{e.name or e}', which is not installed: install it, or name"
            " an installed driver in the URL ('postgresql+psycopg://...')."
        ) from e
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


def release_session(session: scoped_session[Session], rollback: bool) -> BaseException | None:
    """End this scope's session: rolled back if ``rollback``, then closed and removed.

    A database that went away meanwhile (stopped, restarted, its connection dropped) makes
    the rollback or the close fail: the session is then invalidated (its connections are
    discarded, and the server rolls back what they had not committed) and removed all the
    same, and the error is returned rather than raised. A request whose answer is made, or
    a task that has ended, must not fail in its clean-up.
    """
    if not session.registry.has():
        return None
    try:
        if rollback:
            session.rollback()
        session.close()
    except sa.exc.SQLAlchemyError as e:
        with contextlib.suppress(sa.exc.SQLAlchemyError):
            session.registry().invalidate()
        session.registry.clear()
        return e
    session.registry.clear()
    return None


def init_app_session(app: Flask, session: scoped_session[Session]) -> None:
    """Roll back on error and remove the session when the app context ends."""

    @app.teardown_appcontext
    def remove_session(exc: BaseException | None) -> None:
        lost = release_session(session, rollback=exc is not None)
        if lost is not None:
            logger.warning("The database connection was lost while the session was closed"
                           " (%s); it was discarded.", one_line(lost))
