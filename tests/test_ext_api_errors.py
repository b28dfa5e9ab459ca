"""``flasker.ext.api`` errors: the catalogue, one case each, always problem+json, nothing lost."""

from __future__ import annotations

import typing as t
from pathlib import Path

import pytest
import sqlalchemy as sa

from flasker import Project

from .conftest import free_port, unique_package
from .conftest_api import MakeAPI, fields, models_source, problem, seed

TYPE = "tag:flasker,2024:api/"


def test_400_malformed_json(api_client: t.Any) -> None:
    body = problem(api_client.post("/api/homes/", data='{"address": ',
                                   content_type="application/json"), 400)
    assert body["type"] == TYPE + "malformed-json"
    assert body["title"] == "Malformed JSON"
    assert body["detail"].startswith("The body is not valid JSON")
    problem(api_client.post("/api/homes/", data="", content_type="application/json"), 400)


def test_400_invalid_parameter(api_client: t.Any) -> None:
    body = problem(api_client.get("/api/homes/?colour=red"), 400)
    assert body["type"] == TYPE + "invalid-parameter"
    assert fields(body) == {"colour": "is not known here"}
    problem(api_client.get("/api/homes/1?limit=2"), 400)  # no paging on one object
    problem(api_client.post("/api/homes/?depth=1", json={}), 400)


def test_400_page_too_large(api_client: t.Any) -> None:
    body = problem(api_client.get("/api/homes/?limit=1000"), 400)
    assert body["type"] == TYPE + "page-too-large"
    assert fields(body) == {"limit": "is more than 100"}


def test_403_forbidden(make_api: MakeAPI) -> None:
    project = make_api(models=models_source(extra="""
        @api_manager.authorize(Home, ["DELETE"])
        def never(method, key):
            return False
    """))
    client = project.app.test_client()
    client.post("/api/homes/", json={"address": "x"})
    body = problem(client.delete("/api/homes/1"), 403)
    assert body["type"] == TYPE + "forbidden"
    assert body["detail"] == "You may not DELETE homes '1'."
    assert client.get("/api/homes/1").status_code == 200


@pytest.mark.parametrize("url", ["/api/nothing/", "/api/homes/1", "/api/homes/x",
                                 "/api/homes/1//", "/api/homes/1/pets/1/x"])
def test_404_not_found(api_client: t.Any, url: str) -> None:
    body = problem(api_client.get(url), 404)
    assert body["type"] == TYPE + "not-found"


def test_405_method_not_allowed(api_client: t.Any) -> None:
    body = problem(api_client.delete("/api/homes/"), 405)
    assert body["type"] == TYPE + "method-not-allowed"
    response = api_client.delete("/api/homes/")
    assert response.headers["Allow"] == "GET, POST, HEAD, OPTIONS"
    response = api_client.post("/api/")  # refused by the URL map, before any view
    problem(response, 405)
    assert "GET" in response.headers["Allow"]


def test_409_conflict_changes_nothing(api_client: t.Any) -> None:
    seed(api_client)
    body = problem(api_client.post("/api/homes/", json={"address": "1 Road"}), 409)
    assert body["type"] == TYPE + "conflict"
    assert body["errors"][0]["field"] in ("address", "uq_homes_address")
    assert "Nothing was changed" in body["detail"]
    # A write of several rows that fails on the last leaves every row as it was.
    body = problem(api_client.patch("/api/homes/2", json={"address": "1 Road", "pets": ["Tom"]}),
                   409)
    assert api_client.get("/api/homes/2").get_json()["pets"] == ["Rex"]
    assert api_client.get("/api/homes/1").get_json()["pets"] == ["Kitty", "Tom"]
    # The session is usable at once.
    assert api_client.post("/api/homes/", json={"address": "3 Way"}).status_code == 201
    problem(api_client.post("/api/pets/", json={"name": "Tom"}), 409)


def test_413_payload_too_large(make_api: MakeAPI) -> None:
    client = make_api(app="MAX_CONTENT_LENGTH = 64").app.test_client()
    body = problem(client.post("/api/homes/", json={"address": "x" * 100}), 413)
    assert body["type"] == TYPE + "payload-too-large"


def test_415_unsupported_media_type(api_client: t.Any) -> None:
    body = problem(api_client.post("/api/homes/", data={"address": "x"}), 415)
    assert body["type"] == TYPE + "unsupported-media-type"
    assert "Content-Type: application/json" in body["detail"]
    assert api_client.post("/api/homes/", data='{"address": "y"}',
                           content_type="application/merge-patch+json").status_code == 201


@pytest.mark.parametrize(("url", "body", "errors"), [
    ("/api/homes/", {"address": 5}, {"address": "expected a string"}),
    ("/api/homes/", {"address": "x", "size": 3}, {"size": "is not a field of Home"}),
    ("/api/homes/", {"address": "x" * 129}, {"address": "is longer than 128 characters"}),
    ("/api/homes/", {"address": "a\x00b"}, {"address": "contains a NUL character"}),
    ("/api/homes/", {"rooms": 2**31}, {"rooms": "must be at most 2147483647"}),
    ("/api/homes/", {"rooms": 1.5}, {"rooms": "expected an integer"}),
    ("/api/homes/", {"rooms": True}, {"rooms": "expected an integer"}),
    ("/api/homes/", "a house", {"": "expected a JSON object"}),  # an array is a bulk create
    ("/api/toys/", {}, {"kind": "is required"}),
    ("/api/toys/", {"kind": None}, {"kind": "may not be null"}),
    ("/api/pets/", {"name": "X", "toys": 1}, {"toys": "expected a list of Toy keys"}),
    ("/api/pets/", {"name": "X", "toys": ["a"]}, {"toys[0]": "expected an integer"}),
    ("/api/readings/", {"taken_at": "yesterday", "value": "1"},
     {"taken_at": "'yesterday' is not an ISO 8601 date and time (YYYY-MM-DDTHH:MM:SS)"}),
    ("/api/readings/", {"taken_at": "2024-01-01T00:00:00Z", "value": "1.0000001"},
     {"value": "has more than 6 decimal places"}),
    ("/api/readings/", {"taken_at": "2024-01-01T00:00:00Z", "value": "123456789"},
     {"value": "has more than 8 digits before the decimal point"}),
    ("/api/readings/", {"taken_at": "2024-01-01T00:00:00Z", "value": 1, "color": "green"},
     {"color": "must be one of 'red', 'blue'"}),
    ("/api/readings/", {"taken_at": "2024-01-01T00:00:00Z", "value": 1, "ok": "yes"},
     {"ok": "expected a boolean (true or false)"}),
    ("/api/readings/", {"taken_at": "2024-01-01T00:00:00Z", "value": 1, "blob": "!!"},
     {"blob": "is not valid base64"}),
    ("/api/readings/", {"taken_at": "2024-01-01T00:00:00Z", "value": 1, "token": "x"},
     {"token": "'x' is not a UUID"}),
    ("/api/nodes/", {"rank": 3}, {"rank": "is read-only"}),
    ("/api/parts/", {"maker": "a"}, {"number": "is required"}),
    ("/api/screws/", {"part": 3}, {"part": "expected an object with the key fields 'maker',"
                                           " 'number' of Part"}),
])
def test_422_invalid_input(api_client: t.Any, url: str, body: t.Any,
                           errors: dict[str, str]) -> None:
    before = api_client.get(url).get_json()["total"]
    answer = problem(api_client.post(url, json=body), 422)
    assert answer["type"] == TYPE + "invalid-input"
    assert fields(answer) == errors
    assert api_client.get(url).get_json()["total"] == before


def test_422_lists_every_fault_at_once(api_client: t.Any) -> None:
    body = problem(api_client.post("/api/toys/", data='{"kind": 1, "colour": "red"}',
                                   content_type="application/json"), 422)
    assert fields(body) == {"kind": "expected a string", "colour": "is not a field of Toy"}
    assert body["detail"] == ("The input was refused: 'kind' expected a string, 'colour' is not"
                              " a field of Toy.")


def test_other_http_errors_keep_their_status_and_headers(make_api: MakeAPI) -> None:
    project = make_api(models=models_source(setup="""
        from flask import request
        from werkzeug.datastructures import WWWAuthenticate
        from werkzeug.exceptions import Unauthorized

        @current_project.app.before_request
        def guard():
            if request.headers.get("X-Deny"):
                raise Unauthorized(www_authenticate=WWWAuthenticate("bearer"))
    """))
    client = project.app.test_client()
    response = client.get("/api/homes/", headers={"X-Deny": "1"})
    body = problem(response, 401)
    assert body["type"] == "about:blank"
    assert body["title"] == "Unauthorized"
    assert response.headers["WWW-Authenticate"].lower() == "bearer"


def test_500_is_problem_details_too(make_api: MakeAPI) -> None:
    project = make_api(models=models_source(setup="", extra="""
        Home.broken = property(lambda self: 1 / 0)
        api_manager.add_model(Home, properties=["broken"])
    """))
    client = project.app.test_client()
    with project.engine.begin() as connection:
        connection.execute(sa.text("INSERT INTO homes (id, address) VALUES (1, 'x')"))
    assert client.get("/api/homes/1?fields=address").status_code == 200
    body = problem(client.get("/api/homes/1"), 500)
    assert body["type"] == TYPE + "internal-error"
    assert "Traceback" not in body["detail"]


def test_503_when_the_database_is_unreachable(make_project: t.Callable[..., Project],
                                              tmp_path: Path) -> None:
    package = unique_package()
    url = f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none"
    project = make_project(
        f"[PROJECT]\nNAME = down\nMODULES = {package}.models\nDB_URL = {url}\n",
        files={f"{package}/__init__.py": "", f"{package}/models.py": models_source()},
        folder=tmp_path / package, overrides={"ENGINE": {"connect_args": {"connect_timeout": 2}}})
    body = problem(project.app.test_client().get("/api/homes/"), 503)
    assert body["type"] == TYPE + "database-unavailable"
    assert "nobody" not in body["detail"]
