"""``flasker.ext.api`` described: the OpenAPI document, checked by a validator, by the responses
themselves, and by schemathesis against the app served over real HTTP."""

from __future__ import annotations

# The fixtures imported from test_ext_api_support come back as arguments (F811).
# ruff: noqa: F811
import logging
import threading
import typing as t
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance
from werkzeug.serving import make_server

from flasker import Project

from .conftest import free_port, unique_package, wait_for, write_project
from .test_ext_api_support import (  # noqa: F401 (fixtures are used by name)
    MakeAPI,
    api,
    client,
    make_api,
    models_source,
    seed,
)


def test_the_document_is_valid_openapi(api: Project) -> None:
    document = api.app.test_client().get("/api/openapi.json").get_json()
    validate(document)
    assert document["openapi"] == "3.1.0"
    assert document["servers"] == [{"url": "/api"}]
    assert document == api.app.extensions["flasker_api"].manager.openapi(api.app)


def test_the_document_describes_every_endpoint_parameter_and_schema(client: t.Any) -> None:
    response = client.get("/api/openapi.json")
    document = response.get_json()
    paths = document["paths"]
    assert set(paths) >= {
        "/", "/openapi.json", "/homes/", "/homes/{id}", "/homes/{id}/pets/",
        "/homes/{id}/pets/{position}", "/pets/{name}/home", "/parts/{maker}/{number}",
        "/parts/{maker}/{number}/screws/", "/nodes/{id}/children/", "/nodes/{id}/parent",
    }
    assert set(paths["/homes/"]) == {"get", "post"}  # no PUT: allow_put_many is off
    assert set(paths["/homes/{id}"]) == {"parameters", "get", "put", "patch", "delete"}
    listed = {p.get("name") or p["$ref"].rsplit("/", 1)[1]
              for p in paths["/homes/"]["get"]["parameters"]}
    assert listed == {"depth", "fields", "filter", "sort", "limit", "offset", "cursor", "total"}
    sort = next(p for p in paths["/homes/"]["get"]["parameters"] if p.get("name") == "sort")
    assert sort["schema"]["pattern"] == "^-?(id|address|rooms)(,-?(id|address|rooms))*$"
    assert [p["name"] for p in paths["/parts/{maker}/{number}"]["parameters"]] == [
        "maker", "number"]
    schemas = document["components"]["schemas"]
    assert schemas["Home.create"]["properties"]["address"] == {
        "anyOf": [{"type": "string", "maxLength": 128}, {"type": "null"}]}
    assert schemas["Toy.create"]["required"] == ["kind"]
    assert schemas["Reading"]["properties"]["taken_at"] == {"type": "string",
                                                           "format": "date-time"}
    assert schemas["Reading"]["properties"]["color"] == {
        "anyOf": [{"enum": ["red", "blue"]}, {"type": "null"}]}
    assert schemas["Part.key"]["required"] == ["maker", "number"]
    assert schemas["Node"]["properties"]["rank"]["readOnly"] is True
    problem = paths["/homes/"]["post"]["responses"]["422"]["content"]
    assert problem == {"application/problem+json": {"schema": {
        "$ref": "#/components/schemas/Problem"}}}
    assert client.get("/api/openapi.json",
                      headers={"If-None-Match": response.headers["ETag"]}).status_code == 304


@pytest.mark.parametrize("url", [
    "/api/homes/", "/api/homes/?depth=1", "/api/homes/?depth=2", "/api/homes/1?depth=2",
    "/api/pets/?fields=home&depth=1", "/api/pets/Tom/toys/?depth=2", "/api/pets/Tom/home",
    "/api/homes/1/pets/1", "/api/toys/?cursor=&limit=1", "/api/nodes/?depth=2",
    "/api/parts/?depth=1", "/api/readings/",
])
def test_responses_match_their_schema(client: t.Any, url: str) -> None:
    seed(client)
    client.post("/api/nodes/", json={"title": "root"})
    client.post("/api/nodes/", json={"title": "leaf", "parent": 1})
    client.post("/api/parts/", json={"maker": "acme", "number": 1, "screws": []})
    client.post("/api/screws/", json={"part": {"maker": "acme", "number": 1}})
    client.post("/api/readings/", json={"taken_at": "2024-01-01T00:00:00Z", "value": "1.5",
                                        "local_at": "2024-01-01T10:00:00", "day": "2024-01-01",
                                        "blob": "AAE=", "data": [1], "color": "red"})
    document = client.get("/api/openapi.json").get_json()
    path = url.split("?")[0][len("/api"):]
    template = _template(document, path)
    operation = document["paths"][template]["get"]
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    response = client.get(url)
    assert response.status_code == 200, response.get_data(as_text=True)
    validator = OAS31Validator({**schema, "components": document["components"]})
    validator.validate(response.get_json())


def _template(document: dict[str, t.Any], path: str) -> str:
    parts = path.split("/")
    templates: list[str] = list(document["paths"])
    for template in templates:
        candidate = template.split("/")
        if len(candidate) == len(parts) and all(
                c == p or c.startswith("{") for c, p in zip(candidate, parts, strict=True)):
            return template
    raise AssertionError(f"no path of the document matches {path}")


# -- schemathesis, over real HTTP -------------------------------------------------------------


def serve(app: t.Any) -> t.Iterator[str]:
    """Serve ``app`` on 127.0.0.1 with Werkzeug's threaded server; yield its base URL."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()


@pytest.fixture
def served(api: Project) -> t.Iterator[str]:
    seed(api.app.test_client())
    yield from serve(api.app)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_schemathesis_finds_no_server_error_nor_schema_violation(
        served: str, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(f"{served}/api/openapi.json")
    operations = [t.cast(t.Any, result).ok() for result in schema.get_all_operations()]
    assert len(operations) > 30
    impossible = []
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case: t.Any) -> None:
            # A schema cannot say which filter expressions name real columns: a valid-looking
            # request may be refused (400), so "positive data accepted" does not apply.
            case.call_and_validate(excluded_checks=[positive_data_acceptance])

        try:
            check()
        except Unsatisfiable:  # nothing to make invalid: no parameter, no body
            impossible.append(operation.label)
    assert set(impossible) <= {"GET /", "GET /openapi.json"}


# Examples per operation and mode: enough to reach every branch of the parsers, small enough
# to keep the run under a minute per database.
EXAMPLES = 25


# -- the issue's example, served by 'flasker server' ------------------------------------------

EXAMPLE = '''
from flasker import current_project
from flasker.ext.api import APIManager
from flasker.util import Model
from sqlalchemy import Column, ForeignKey, Integer, Unicode
from sqlalchemy.orm import relationship

api_manager = APIManager(add_all_models=True)
current_project.register_manager(api_manager)          # or config_section='API'

class House(Model):
    id = Column(Integer, primary_key=True)
    address = Column(Unicode(128))

class Cat(Model):
    name = Column(Unicode(64), primary_key=True)
    house_id = Column(ForeignKey('houses.id'))
    house = relationship('House', backref='cats')
'''


def test_the_example_of_the_issue_over_http(tmp_path: Path, spawn: t.Any, db_url: str) -> None:
    package = unique_package()
    folder = tmp_path / "example"
    write_project(folder, f"""
        [PROJECT]
        NAME = Example
        MODULES = {package}.models
        DB_URL = {db_url}
        [APP]
        DEBUG = True
    """, {f"{package}/__init__.py": "", f"{package}/models.py": EXAMPLE})
    assert spawn(["db", "create"], cwd=folder).popen.wait(60) == 0
    port = free_port()
    server = spawn(["server", "--port", str(port)], cwd=folder)
    base = f"http://127.0.0.1:{port}/api"
    wait_for(lambda: requests.get(f"{base}/", timeout=2).ok, what=f"flasker server\n{server}")
    session = requests.Session()
    assert session.post(f"{base}/houses/", json={"address": "1 Road"}).status_code == 201
    for name in ("Tom", "Kitty"):
        assert session.post(f"{base}/cats/", json={"name": name, "house": 1}).status_code == 201
    assert session.get(f"{base}/houses/").json()["items"] == [
        {"id": 1, "address": "1 Road", "cats": ["Kitty", "Tom"]}]
    assert session.get(f"{base}/houses/1?depth=1").json()["cats"][1] == {
        "name": "Tom", "house_id": 1, "house": 1}
    assert session.get(f"{base}/houses/1/cats/").json()["total"] == 2
    assert session.get(f"{base}/houses/1/cats/1").json()["name"] == "Kitty"
    assert session.get(f"{base}/cats/Tom").json()["house"] == 1
    assert session.put(f"{base}/houses/1", json={"address": "2 Road"}).json()["address"] == (
        "2 Road")
    assert session.patch(f"{base}/cats/Tom", json={"house": None}).json()["house_id"] is None
    assert session.put(f"{base}/houses/1/cats/", json=["Tom"]).status_code == 204
    assert session.delete(f"{base}/cats/Kitty").status_code == 204
    missing = session.get(f"{base}/cats/Kitty")
    assert missing.status_code == 404
    assert missing.headers["Content-Type"] == "application/problem+json"
    index = session.get(f"{base}/").json()
    assert {e["collection"] for e in index["endpoints"]} == {"houses", "cats"}
    validate(session.get(f"{base}/openapi.json").json())
