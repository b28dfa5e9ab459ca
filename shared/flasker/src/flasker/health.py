"""``/healthz`` (the process is alive) and ``/readyz`` (database and broker reachable)."""

from __future__ import annotations

import typing as t

import sqlalchemy as sa
from flask import Flask, jsonify

if t.TYPE_CHECKING:
    from flask.typing import ResponseReturnValue

    from .project import Project

BROKER_TIMEOUT = 2.0


def check_database(project: Project) -> str | None:
    """``None`` when the database answers, else the reason it does not."""
    try:
        with project.engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except Exception as e:  # any driver error means "not ready"
        return f"database unreachable: {type(e).__name__}: {e}".splitlines()[0]
    return None


def check_broker(project: Project) -> str | None:
    """``None`` when the Celery broker accepts a connection, else the reason it does not."""
    try:
        with project.celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT)
    except Exception as e:  # kombu raises many kinds; all mean "not ready"
        return f"broker unreachable: {type(e).__name__}: {e}".splitlines()[0]
    return None


def init_health(app: Flask, project: Project) -> None:
    def healthz() -> ResponseReturnValue:
        return jsonify(status="ok")

    def readyz() -> ResponseReturnValue:
        problems = {
            name: reason
            for name, reason in (("database", check_database(project)),
                                 ("broker", check_broker(project)))
            if reason is not None
        }
        if problems:
            return jsonify(status="unavailable", checks=problems), 503
        return jsonify(status="ok", checks={"database": "ok", "broker": "ok"})

    app.add_url_rule("/healthz", "flasker_healthz", healthz)
    app.add_url_rule("/readyz", "flasker_readyz", readyz)
    # Marked public for extensions that protect every view (see ext.auth).
    healthz.flasker_public = True  # type: ignore[attr-defined]
    readyz.flasker_public = True  # type: ignore[attr-defined]
