"""``flasker.health``: ``/healthz`` says the process is alive, ``/readyz`` that its parts answer."""

from __future__ import annotations

import time
import typing as t
from pathlib import Path

import pytest

from flasker import Project

from .conftest import free_port

PASSWORD = "s3cret-pw"


def closed_database(kind: str, tmp_path: Path) -> str:
    """A database URL that cannot be opened: a closed port, or an SQLite path that is a folder."""
    if kind == "postgresql":
        return f"postgresql+psycopg://flasker:{PASSWORD}@127.0.0.1:{free_port()}/app"
    folder = tmp_path / "a-folder.sqlite"
    folder.mkdir()
    return f"sqlite:///{folder}"


def body_of(response: t.Any) -> dict[str, t.Any]:
    assert response.is_json, response.get_data(as_text=True)
    body = response.get_json()
    assert isinstance(body, dict)
    return body


def test_healthz_answers_while_the_database_and_the_broker_are_down(
    make_project: t.Callable[..., Project], tmp_path: Path
) -> None:
    project = make_project(
        f"[PROJECT]\nNAME = down\nDB_URL = {closed_database('postgresql', tmp_path)}\n"
        f"[CELERY]\nbroker_url = redis://127.0.0.1:{free_port()}/0\n"
    )
    client = project.app.test_client()
    healthz = client.get("/healthz")
    assert healthz.status_code == 200
    assert body_of(healthz) == {"status": "ok"}
    readyz = client.get("/readyz")
    assert readyz.status_code == 503
    assert set(body_of(readyz)["checks"]) == {"database", "broker"}


def test_readyz_is_200_with_a_reachable_database(make_project: t.Callable[..., Project],
                                                db_url: str) -> None:
    project = make_project(f"[PROJECT]\nNAME = ready\nDB_URL = {db_url}\n")
    client = project.app.test_client()
    # The first probe creates the embedded broker's SQLite file and tables; on a machine
    # busy writing to disk that can outlast a check's 1.5 s, and a probe is repeated.
    for _probe in range(3):
        response = client.get("/readyz")
        if response.status_code == 200:
            break
        time.sleep(1)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert body_of(response) == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}


def test_readyz_is_200_on_postgresql_and_redis(make_project: t.Callable[..., Project],
                                              pg_url: str, redis_url: str) -> None:
    """The stack's own parts: PostgreSQL, and Redis as the broker."""
    project = make_project(
        f"[PROJECT]\nNAME = stack\nDB_URL = {pg_url}\n[CELERY]\nbroker_url = {redis_url}\n"
    )
    response = project.app.test_client().get("/readyz")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert body_of(response)["checks"] == {"database": "ok", "broker": "ok"}


@pytest.mark.parametrize(("kind", "reason"), [
    ("sqlite", "unable to open database file"),
    ("postgresql", "Connection refused"),
])
def test_readyz_is_503_with_the_reason_when_the_database_is_unreachable(
    make_project: t.Callable[..., Project], tmp_path: Path, kind: str, reason: str
) -> None:
    url = closed_database(kind, tmp_path)
    project = make_project(f"[PROJECT]\nNAME = no database\nDB_URL = {url}\n")
    response = project.app.test_client().get("/readyz")
    assert response.status_code == 503
    body = body_of(response)
    assert body["status"] == "unavailable"
    assert list(body["checks"]) == ["database"]  # the embedded broker answers
    found = body["checks"]["database"]
    assert found.startswith("database unreachable: OperationalError: "), found
    assert reason in found and "\n" not in found
    if kind == "postgresql":
        assert str(project.engine.url.port) in found
    assert PASSWORD not in response.get_data(as_text=True)


def test_readyz_asks_again_on_every_request(make_project: t.Callable[..., Project],
                                            tmp_path: Path) -> None:
    url = closed_database("sqlite", tmp_path)
    project = make_project(f"[PROJECT]\nNAME = recovers\nDB_URL = {url}\n")
    client = project.app.test_client()
    assert client.get("/readyz").status_code == 503
    Path(project.engine.url.database or "").rmdir()  # the database can be opened now
    assert client.get("/readyz").status_code == 200
