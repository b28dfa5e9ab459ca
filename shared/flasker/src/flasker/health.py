"""``/healthz`` (the process is alive) and ``/readyz`` (database and broker reachable).

``/readyz`` answers within 2 s whatever is down: both checks run side by side, each
given :data:`CHECK_TIMEOUT` seconds, and the answer names each service that failed and why.
"""

from __future__ import annotations

import threading
import time
import typing as t

import sqlalchemy as sa
from flask import Flask, jsonify

from .config import PROJECT

if t.TYPE_CHECKING:
    from flask.typing import ResponseReturnValue

    from .project import Project

#: Seconds each check may take; the checks run at the same time.
CHECK_TIMEOUT = 1.5

Check = t.Callable[["Project"], "str | None"]


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
            # One attempt: a retry would sleep past the check's time.
            connection.ensure_connection(max_retries=0, timeout=CHECK_TIMEOUT)
    except Exception as e:  # kombu raises many kinds; all mean "not ready"
        return f"broker unreachable: {type(e).__name__}: {e}".splitlines()[0]
    return None


def run_checks(project: Project, checks: t.Mapping[str, Check],
               timeout: float = CHECK_TIMEOUT) -> dict[str, str | None]:
    """Run ``checks`` side by side: each one's reason, or a timeout after ``timeout`` s.

    A check still running then is left to finish on its own (its driver's timeouts end
    it); a daemon thread never keeps the process alive.
    """
    results: dict[str, str | None] = {}

    def run(name: str, check: Check) -> None:
        results[name] = check(project)

    threads = [threading.Thread(target=run, args=(name, check), daemon=True,
                                name=f"flasker-readyz-{name}")
               for name, check in checks.items()]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 0))
    late = f"did not answer within {timeout:g} s"
    return {name: results[name] if name in results else f"{name} {late}" for name in checks}


def init_health(app: Flask, project: Project) -> None:
    def healthz() -> ResponseReturnValue:
        return jsonify(status="ok")

    def readyz() -> ResponseReturnValue:
        found = run_checks(project, {"database": check_database, "broker": check_broker})
        problems = {name: reason for name, reason in found.items() if reason is not None}
        if problems:
            response = jsonify(status="unavailable", checks=problems)
            response.status_code = 503
            response.headers["Retry-After"] = str(project.config.get(PROJECT, "RETRY_AFTER"))
            response.headers["Cache-Control"] = "no-store"
            return response
        return jsonify(status="ok", checks={"database": "ok", "broker": "ok"})

    app.add_url_rule("/healthz", "flasker_healthz", healthz)
    app.add_url_rule("/readyz", "flasker_readyz", readyz)
    # Marked public for extensions that protect every view (see ext.auth).
    healthz.flasker_public = True  # type: ignore[attr-defined]
    readyz.flasker_public = True  # type: ignore[attr-defined]
