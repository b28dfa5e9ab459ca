"""``flasker.ext.api``: registration, options, endpoints and hooks (SQLite and PostgreSQL)."""

from __future__ import annotations

import typing as t
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy.orm import Mapped, mapped_column

from flasker import ConfigError, Model, Project
from flasker.ext.api import APIManager, api_prefix

from .conftest_api import MakeAPI, fields, models_source, problem, seed

# -- the endpoints ----------------------------------------------------------------------------


def test_every_model_gets_its_endpoints(api_client: t.Any) -> None:
    seed(api_client)
    assert api_client.get("/api/homes/").get_json()["total"] == 2
    assert api_client.get("/api/homes/1").get_json() == {
        "id": 1, "address": "1 Road", "rooms": None, "pets": ["Kitty", "Tom"]}
    assert api_client.get("/api/pets/Tom").get_json() == {
        "name": "Tom", "home_id": 1, "age": None, "home": 1, "toys": [1, 2]}
    assert [p["name"] for p in api_client.get("/api/homes/1/pets/").get_json()["items"]] == [
        "Kitty", "Tom"]
    assert api_client.get("/api/homes/1/pets/2").get_json()["name"] == "Tom"
    assert api_client.get("/api/pets/Tom/home").get_json()["address"] == "1 Road"
    # Without the trailing slash too.
    assert api_client.get("/api/homes").status_code == 200
    assert api_client.get("/api/homes/1/pets").get_json()["total"] == 2


def test_index_lists_every_endpoint(api_client: t.Any) -> None:
    listing = api_client.get("/api/").get_json()
    by_name = {e["collection"]: e for e in listing["endpoints"]}
    assert set(by_name) == {"homes", "pets", "pet_toys", "toys", "readings", "parts", "screws",
                            "nodes"}
    homes = by_name["homes"]
    assert homes["url"] == "/api/homes/"
    assert homes["item_url"] == "/api/homes/{id}"
    assert homes["methods"] == ["GET", "POST", "PUT", "PATCH", "DELETE"]
    assert homes["columns"]["address"] == {"type": "string", "nullable": True,
                                           "primary_key": False, "writable": True,
                                           "required": False}
    assert homes["relationships"]["pets"]["url"] == "/api/homes/{id}/pets/"
    assert by_name["parts"]["item_url"] == "/api/parts/{maker}/{number}"
    assert by_name["nodes"]["columns"]["rank"]["writable"] is False
    assert listing["openapi"] == "/api/openapi.json"
    assert api_client.get("/api").status_code == 200


def test_post_creates_with_location(api_client: t.Any) -> None:
    response = api_client.post("/api/homes/", json={"address": "9 Hill", "rooms": 3})
    assert response.status_code == 201
    assert response.headers["Location"] == "http://localhost/api/homes/1"
    assert response.get_json() == {"id": 1, "address": "9 Hill", "rooms": 3, "pets": []}
    assert api_client.get(response.headers["Location"]).get_json()["address"] == "9 Hill"
    # A string key is quoted in the Location.
    response = api_client.post("/api/pets/", json={"name": "Mr Bean?2"})
    assert response.headers["Location"] == "http://localhost/api/pets/Mr%20Bean%3F2"


def test_put_replaces_and_patch_updates(api_client: t.Any) -> None:
    seed(api_client)
    response = api_client.patch("/api/pets/Tom", json={"age": 4})
    assert response.status_code == 200
    assert response.get_json()["age"] == 4
    assert response.get_json()["home_id"] == 1  # untouched
    response = api_client.put("/api/pets/Tom", json={"age": 5})
    assert response.status_code == 200
    # PUT replaces: the omitted nullable fields are emptied, the relationships kept.
    assert response.get_json() == {"name": "Tom", "home_id": None, "age": 5, "home": None,
                                   "toys": [1, 2]}
    # The key may be repeated, not changed.
    assert api_client.patch("/api/pets/Tom", json={"name": "Tom", "age": 6}).status_code == 200
    body = problem(api_client.patch("/api/pets/Tom", json={"name": "Jerry"}), 422)
    assert fields(body) == {"name": "is the key and cannot be changed"}


def test_put_requires_the_required_fields(api_client: t.Any) -> None:
    api_client.post("/api/toys/", json={"kind": "ball"})
    body = problem(api_client.put("/api/toys/1", json={}), 422)
    assert fields(body) == {"kind": "is required"}
    assert api_client.get("/api/toys/1").get_json()["kind"] == "ball"


def test_delete_removes(api_client: t.Any) -> None:
    seed(api_client)
    response = api_client.delete("/api/pets/Rex")
    assert response.status_code == 204
    assert response.data == b""
    assert "Content-Type" not in response.headers
    problem(api_client.get("/api/pets/Rex"), 404)
    problem(api_client.delete("/api/pets/Rex"), 404)


def test_composite_keys_take_one_segment_per_column(api_client: t.Any) -> None:
    response = api_client.post("/api/parts/", json={"maker": "acme", "number": 7, "label": "gear"})
    assert response.status_code == 201
    assert response.headers["Location"].endswith("/api/parts/acme/7")
    api_client.post("/api/screws/", json={"part": {"maker": "acme", "number": 7}})
    api_client.post("/api/screws/", json={"maker": "acme", "number": 7})
    part = api_client.get("/api/parts/acme/7").get_json()
    assert part == {"maker": "acme", "number": 7, "label": "gear", "screws": [1, 2]}
    screw = api_client.get("/api/screws/1").get_json()
    assert screw["part"] == {"maker": "acme", "number": 7}
    assert api_client.patch("/api/parts/acme/7", json={"label": "cog"}).get_json()["label"] == "cog"
    assert api_client.get("/api/parts/acme/7/screws/2").get_json()["id"] == 2
    assert api_client.get("/api/screws/?depth=1").get_json()["items"][0]["part"]["label"] == "cog"
    problem(api_client.get("/api/parts/acme/8"), 404)
    problem(api_client.get("/api/parts/acme"), 404)
    problem(api_client.get("/api/parts/acme/notanumber"), 404)
    assert api_client.delete("/api/screws/1").status_code == 204


def test_put_on_a_relationship_replaces_its_members(api_client: t.Any) -> None:
    seed(api_client)
    assert api_client.put("/api/homes/2/pets/", json=["Tom", {"name": "Rex"}]).status_code == 204
    assert api_client.get("/api/homes/2").get_json()["pets"] == ["Rex", "Tom"]
    assert api_client.get("/api/homes/1").get_json()["pets"] == ["Kitty"]
    # Many-to-many.
    assert api_client.put("/api/pets/Kitty/toys/", json=[2]).status_code == 204
    assert api_client.get("/api/pets/Kitty").get_json()["toys"] == [2]
    assert api_client.get("/api/toys/2").get_json()["pets"] == ["Kitty", "Tom"]
    # A missing member: nothing changes.
    body = problem(api_client.put("/api/homes/2/pets/", json=["Kitty", "Nobody"]), 409)
    assert fields(body) == {"pets[1]": "no Pet has the key 'Nobody'"}
    assert api_client.get("/api/homes/2").get_json()["pets"] == ["Rex", "Tom"]
    problem(api_client.put("/api/homes/2/pets/", json={"name": "Tom"}), 422)
    # A to-one relationship is read, not put.
    problem(api_client.put("/api/pets/Tom/home", json=1), 405)


def test_relationship_endpoints_answer_404_for_what_is_not_there(api_client: t.Any) -> None:
    seed(api_client)
    api_client.post("/api/pets/", json={"name": "Stray"})
    body = problem(api_client.get("/api/pets/Stray/home"), 404)
    assert "has no home" in body["detail"]
    problem(api_client.get("/api/homes/1/pets/3"), 404)
    problem(api_client.get("/api/homes/1/pets/0"), 404)
    problem(api_client.get("/api/homes/9/pets/"), 404)
    problem(api_client.get("/api/homes/1/nothing/"), 404)
    problem(api_client.get("/api/pets/Tom/home/1"), 404)
    problem(api_client.get("/api/homes/1/pets/1/more"), 404)


def test_options_and_head(api_client: t.Any) -> None:
    seed(api_client)
    response = api_client.options("/api/homes/")
    assert response.status_code == 204
    assert response.headers["Allow"] == "GET, POST, HEAD, OPTIONS"
    assert api_client.options("/api/homes/1").headers["Allow"] == (
        "GET, PUT, PATCH, DELETE, HEAD, OPTIONS")
    assert api_client.options("/api/homes/1/pets/").headers["Allow"] == "GET, PUT, HEAD, OPTIONS"
    head = api_client.head("/api/homes/1")
    assert head.status_code == 200
    assert head.data == b""
    assert head.headers["ETag"]


# -- writing: relationships in bodies, many at once -------------------------------------------


def test_bodies_set_relationships_by_key(api_client: t.Any) -> None:
    seed(api_client)
    response = api_client.post("/api/homes/", json={"address": "3 Way", "pets": ["Rex"]})
    assert response.get_json()["pets"] == ["Rex"]
    assert api_client.get("/api/homes/2").get_json()["pets"] == []
    assert api_client.patch("/api/pets/Rex", json={"home": None}).get_json()["home_id"] is None
    # The foreign key and the relationship may both be given when they agree.
    response = api_client.patch("/api/pets/Rex", json={"home": 2, "home_id": 2})
    assert response.status_code == 200
    body = problem(api_client.patch("/api/pets/Rex", json={"home": 1, "home_id": 2}), 409)
    assert fields(body) == {"home": "disagrees with 'home_id'"}
    # A valid body naming what is not there is a conflict of the data (409), as PostgREST
    # answers a foreign-key violation; a body also invalid in itself stays a 422.
    body = problem(api_client.post("/api/pets/", json={"name": "Ghost", "home": 99}), 409)
    assert body["type"] == "tag:flasker,2024:api/conflict"
    assert fields(body) == {"home": "no Home has the key '99'"}
    body = problem(api_client.post("/api/pets/", json={"name": "Ghost", "home": 99,
                                                       "age": "old"}), 422)
    assert fields(body) == {"age": "expected an integer"}
    problem(api_client.get("/api/pets/Ghost"), 404)


@pytest.mark.parametrize("allowed", [True, False])
def test_put_many_applies_one_change_to_every_member(make_api: MakeAPI, allowed: bool) -> None:
    project = make_api(models=models_source(
        setup=f"api_manager.add_all_models(allow_put_many={allowed})"))
    client = project.app.test_client()
    seed(client)
    client.post("/api/pets/", json={"name": "Stray"})
    response = client.put("/api/pets/?filter=home.address:eq:1 Road", json={"age": 3})
    if not allowed:
        problem(response, 405)
        return
    assert response.status_code == 200
    assert response.get_json() == {"num_modified": 2}
    ages = {p["name"]: p["age"] for p in client.get("/api/pets/").get_json()["items"]}
    assert ages == {"Kitty": 3, "Tom": 3, "Rex": None, "Stray": None}
    assert client.put("/api/pets/", json={"age": 1}).get_json() == {"num_modified": 4}
    body = problem(client.put("/api/pets/", json={"name": "X"}), 422)
    assert fields(body) == {"name": "is a key and cannot be set on many objects"}
    problem(client.put("/api/pets/", json={"toys": []}), 422)
    problem(client.put("/api/pets/", json={}), 422)
    problem(client.put("/api/pets/?sort=name", json={"age": 1}), 400)
    # One transaction: a change that fails for one member changes none.
    problem(client.put("/api/homes/", json={"address": "Same"}), 409)
    assert [h["address"] for h in client.get("/api/homes/").get_json()["items"]] == [
        "1 Road", "2 Lane"]


# -- options ----------------------------------------------------------------------------------


def test_only_the_added_models_are_served(make_api: MakeAPI) -> None:
    project = make_api(models=models_source(add_all=False, extra="""
        api_manager.add_model(Home)
        api_manager.add_model(Toy, methods=["GET"])
    """))
    client = project.app.test_client()
    assert client.post("/api/homes/", json={"address": "x"}).status_code == 201
    problem(client.get("/api/pets/"), 404)
    # A relationship to a model that is not served is not shown.
    assert client.get("/api/homes/1").get_json() == {"id": 1, "address": "x", "rooms": None}
    problem(client.get("/api/homes/1/pets/"), 404)
    problem(client.post("/api/toys/", json={"kind": "ball"}), 405)
    listing = client.get("/api/").get_json()
    assert [e["collection"] for e in listing["endpoints"]] == ["homes", "toys"]


def test_options_given_again_override_the_earlier_ones(make_api: MakeAPI) -> None:
    project = make_api(models=models_source(add_all=False, extra="""
        api_manager.add_all_models(methods=["GET"], relationships=False)
        api_manager.add_model(Home, methods=["GET", "POST"])
    """))
    client = project.app.test_client()
    assert client.post("/api/homes/", json={"address": "x"}).status_code == 201
    problem(client.post("/api/pets/", json={"name": "Tom"}), 405)
    problem(client.delete("/api/homes/1"), 405)
    # relationships=False still holds for Home: only 'methods' was given again.
    assert "pets" not in client.get("/api/homes/1").get_json()


def test_relationships_exclude_properties_and_collection_name(make_api: MakeAPI) -> None:
    project = make_api(models=models_source(add_all=False, extra="""
        api_manager.add_model(Home, properties=["label"], exclude=["rooms"],
                              collection_name="houses")
        api_manager.add_model(Pet, relationships=["home"])
        api_manager.add_model(Toy)
    """))
    client = project.app.test_client()
    assert client.post("/api/houses/", json={"address": "1 Road"}).status_code == 201
    assert client.post("/api/pets/", json={"name": "Tom", "home": 1}).status_code == 201
    assert client.get("/api/houses/1").get_json() == {
        "id": 1, "address": "1 Road", "pets": ["Tom"], "label": "Home 1 at 1 Road"}
    assert client.get("/api/houses/").get_json()["items"][0]["label"] == "Home 1 at 1 Road"
    assert client.get("/api/pets/Tom").get_json() == {
        "name": "Tom", "home_id": 1, "age": None, "home": 1}
    assert client.get("/api/pets/Tom?depth=1").get_json()["home"]["label"] == "Home 1 at 1 Road"
    assert fields(problem(client.patch("/api/houses/1", json={"rooms": 2}), 422)) == {
        "rooms": "is not a field of Home"}
    assert fields(problem(client.patch("/api/houses/1", json={"label": "x"}), 422)) == {
        "label": "is read-only"}
    problem(client.get("/api/homes/"), 404)
    problem(client.get("/api/pets/Tom/toys/"), 404)


def test_models_may_be_declared_and_added_after_start(make_api: MakeAPI) -> None:
    project = make_api(models=models_source(add_all=False, extra="""
        def declare_late():
            class Late(Model):
                id = Column(Integer, primary_key=True)
                name = Column(String(10))
            api_manager.add_model(Late)
            return Late
    """))
    client = project.app.test_client()
    problem(client.get("/api/lates/"), 404)
    module = __import__(project.config["PROJECT"]["MODULES"][0], fromlist=["declare_late"])
    with project.app.app_context():  # declared in the project's registry
        late = module.declare_late()
    project.metadata.create_all(project.engine, tables=[late.__table__])
    assert client.post("/api/lates/", json={"name": "now"}).status_code == 201
    assert client.get("/api/lates/").get_json()["items"] == [{"id": 1, "name": "now"}]


@pytest.mark.parametrize(("extra", "message"), [
    ("api_manager.add_model(Home, relationships=['nope'])",
     "'relationships' names 'nope', which is not a relationship"),
    ("api_manager.add_model(Home, properties=['nope'])",
     "'properties' names 'nope', which is not a property"),
    ("api_manager.add_model(Home, exclude=['id'])", "'exclude' names the key column 'id'"),
    ("api_manager.add_model(Home, collection_name='pets')",
     "The models 'Home' and 'Pet' would both be served at '/api/pets/'"),
])
def test_wrong_model_options_stop_start_up(make_api: MakeAPI, extra: str, message: str) -> None:
    with pytest.raises((ValueError, RuntimeError), match=message):
        make_api(models=models_source(extra=extra))


def test_wrong_option_values_are_refused_at_once(project: Project) -> None:
    with project.app.app_context():  # mapped in this project's registry
        class Gadget(Model):
            id: Mapped[int] = mapped_column(primary_key=True)

    manager = APIManager()
    with pytest.raises(ValueError, match="unknown method 'FETCH'"):
        manager.add_model(Gadget, methods=["FETCH"])
    with pytest.raises(TypeError, match="unknown option 'relations'"):
        manager.add_all_models(relations=True)
    with pytest.raises(TypeError, match="takes a mapped model class"):
        manager.add_model(object)
    with pytest.raises(ValueError, match="'allow_put_many' must be True or False"):
        manager.add_all_models(allow_put_many="yes")


# -- configuration ----------------------------------------------------------------------------


def test_the_config_section_wins_over_the_constructor(make_api: MakeAPI) -> None:
    project = make_api(
        models=models_source(setup="").replace(
            "APIManager(add_all_models=True)",
            "APIManager(add_all_models=True, url_prefix='/constructor', page_size=2,"
            " max_page_size=3, max_depth=0, include_total=False)"),
        api="URL_PREFIX = /v1/\nMAX_PAGE_SIZE = 4\n",
    )
    client = project.app.test_client()
    for address in "abcde":
        client.post("/v1/homes/", json={"address": address})
    assert client.get("/constructor/homes/").status_code == 404
    page = client.get("/v1/homes/").get_json()
    assert len(page["items"]) == 2  # PAGE_SIZE from the constructor
    assert "total" not in page  # INCLUDE_TOTAL from the constructor
    assert client.get("/v1/homes/?limit=4").status_code == 200
    problem(client.get("/v1/homes/?limit=5"), 400)  # MAX_PAGE_SIZE from the section
    problem(client.get("/v1/homes/?depth=1"), 400)  # MAX_DEPTH from the constructor


# The three ways to register the manager, in the models module of the project.
REGISTRATIONS = {
    "constructor": "api_manager = APIManager(current_project.app, add_all_models=True)",
    "init_app": "api_manager = APIManager(add_all_models=True)\n"
                "api_manager.init_app(current_project.app)",
    "register_manager": "api_manager = current_project.register_manager("
                        "APIManager(add_all_models=True))",
}


def registered(registration: str) -> str:
    """The test models, the manager registered by the code ``registration``."""
    source = models_source()
    default = "api_manager = APIManager(add_all_models=True)\n" \
              "current_project.register_manager(api_manager)\n"
    assert default in source
    return source.replace(default, registration + "\n")


@pytest.mark.parametrize("how", list(REGISTRATIONS))
def test_the_api_section_is_read_however_the_manager_is_registered(make_api: MakeAPI,
                                                                    how: str) -> None:
    project = make_api(models=registered(REGISTRATIONS[how]), api="URL_PREFIX = /v1\nPAGE_SIZE = 1")
    client = project.app.test_client()
    for address in ("1 Road", "2 Lane"):
        assert client.post("/v1/homes/", json={"address": address}).status_code == 201
    page = client.get("/v1/homes/").get_json()
    assert (len(page["items"]), page["total"]) == (1, 2)
    assert client.get("/api/homes/").status_code == 404
    assert api_prefix(project.app) == "/v1"


@pytest.mark.parametrize("how", list(REGISTRATIONS))
def test_a_misspelt_key_in_the_api_section_is_refused(make_api: MakeAPI, how: str) -> None:
    with pytest.raises(ConfigError, match="Unknown key 'URL_PREFX' in section \\[API\\].*"
                                          "Did you mean 'URL_PREFIX'"):
        make_api(models=registered(REGISTRATIONS[how]), api="URL_PREFX = /v1")


def test_another_section_is_read_instead_when_named(make_api: MakeAPI) -> None:
    models = registered("api_manager = current_project.register_manager("
                        "APIManager(add_all_models=True), config_section='PUBLIC_API')")
    project = make_api(models=models,
                       api="URL_PREFIX = /v1\n[PUBLIC_API]\nURL_PREFIX = /public")
    client = project.app.test_client()
    assert client.get("/public/homes/").status_code == 200
    assert client.get("/v1/homes/").status_code == 404
    with pytest.raises(ConfigError, match="Unknown key 'PAGE' in section \\[PUBLIC_API\\]"):
        make_api(models=models, api="[PUBLIC_API]\nPAGE = 3")


def test_options_come_from_the_environment(make_api: MakeAPI,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASKER__API__PAGE_SIZE", "1")
    monkeypatch.setenv("FLASKER__API__MAX_DEPTH", "3")
    monkeypatch.setenv("FLASKER__API__INCLUDE_TOTAL", "false")
    project = make_api()
    client = project.app.test_client()
    seed(client)
    page = client.get("/api/homes/?depth=3").get_json()
    assert len(page["items"]) == 1
    assert "total" not in page
    assert client.get("/api/homes/?total=true").get_json()["total"] == 2


def test_add_all_models_from_the_config(make_api: MakeAPI) -> None:
    project = make_api(models=models_source(add_all=False), api="ADD_ALL_MODELS = true")
    assert project.app.test_client().get("/api/toys/").status_code == 200


@pytest.mark.parametrize(("api_cfg", "message"), [
    ("PAGE_SIZE = many", "Config 'API.PAGE_SIZE' has value 'many'"),
    ("PAGE_SIZE = 50\nMAX_PAGE_SIZE = 10", "'API.PAGE_SIZE' \\(50\\) is more than"),
    ("MAX_DEPTH = -1",
     r"Config 'API.MAX_DEPTH' has value -1 \(\S+default.cfg:\d+\). It must be at least 0."),
    ("URL_PREFIX = /", "Config 'API.URL_PREFIX' has value '/'"),
    ("PAGE_SIZ = 5", "Unknown key 'PAGE_SIZ' in section \\[API\\].*Did you mean 'PAGE_SIZE'"),
])
def test_bad_config_stops_start_up(make_api: MakeAPI, api_cfg: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_api(api=api_cfg)


def test_registering_twice_or_without_a_project_is_refused(api: Project) -> None:
    manager = APIManager()
    with pytest.raises(RuntimeError, match="already registered on the app"):
        manager.init_app(api.app)
    with pytest.raises(RuntimeError, match="is not a flasker project's app"):
        APIManager(Flask("plain"))
    with pytest.raises(RuntimeError, match="The APIManager is not registered on the app 'plain'"):
        manager.openapi(Flask("plain"))


# -- hooks ------------------------------------------------------------------------------------


HOOKS = """
    from flask import request

    @api_manager.authorize(Home, ["POST", "DELETE"])
    def only_admins(method, key):
        return request.headers.get("X-Role") == "admin"

    @api_manager.authorize(Toy, ["GET"])
    def toys_are_secret(method, key):
        return request.headers.get("X-Role") == "admin"

    @api_manager.validate(Pet)
    def adult_names(method, data, instance):
        if data.get("name", "").lower() == "nobody":
            return "A pet needs a real name."
        if (data.get("age") or 0) > 30:
            return {"age": "is too old for a pet"}
        return None

    @api_manager.scope(Pet)
    def own_pets():
        owner = request.headers.get("X-Owner")
        return None if owner is None else Pet.age == int(owner)
"""


@pytest.fixture
def hooked(make_api: MakeAPI) -> t.Any:
    project = make_api(models=models_source(extra=HOOKS))
    client = project.app.test_client()
    admin = {"X-Role": "admin"}
    for address in ("1 Road", "2 Lane"):
        assert client.post("/api/homes/", json={"address": address}, headers=admin)
    for name, age, home in (("Tom", 1, 1), ("Kitty", 2, 1), ("Rex", 1, 2)):
        assert client.post("/api/pets/", json={"name": name, "age": age, "home": home})
    client.post("/api/toys/", json={"kind": "ball", "pets": ["Tom", "Kitty"]}, headers=admin)
    return client


def test_authorize_hook_answers_403(hooked: t.Any) -> None:
    body = problem(hooked.post("/api/homes/", json={"address": "x"}), 403)
    assert body["detail"] == "You may not POST homes."
    problem(hooked.delete("/api/homes/1"), 403)
    assert hooked.get("/api/homes/1").status_code == 200
    assert hooked.patch("/api/homes/1", json={"rooms": 2}).status_code == 200
    assert hooked.delete("/api/homes/2", headers={"X-Role": "admin"}).status_code == 204
    # A model one may not read is forbidden, and left out of the others.
    problem(hooked.get("/api/toys/"), 403)
    problem(hooked.get("/api/pets/Tom/toys/"), 403)
    assert "toys" not in hooked.get("/api/pets/Tom").get_json()
    assert hooked.get("/api/pets/Tom", headers={"X-Role": "admin"}).get_json()["toys"] == [1]
    problem(hooked.get("/api/pets/?filter=toys.kind:eq:ball"), 400)
    problem(hooked.get("/api/pets/?fields=toys"), 400)


def test_validate_hook_answers_422_with_its_message(hooked: t.Any) -> None:
    body = problem(hooked.post("/api/pets/", json={"name": "Nobody"}), 422)
    assert body["detail"] == "A pet needs a real name."
    body = problem(hooked.patch("/api/pets/Tom", json={"age": 31}), 422)
    assert fields(body) == {"age": "is too old for a pet"}
    assert hooked.get("/api/pets/Tom").get_json()["age"] == 1
    assert hooked.patch("/api/pets/Tom", json={"age": 3}).get_json()["age"] == 3


def test_scope_limits_every_query_of_a_model(hooked: t.Any) -> None:
    mine = {"X-Owner": "1"}
    names = [p["name"] for p in hooked.get("/api/pets/", headers=mine).get_json()["items"]]
    assert names == ["Rex", "Tom"]
    assert hooked.get("/api/pets/", headers=mine).get_json()["total"] == 2
    problem(hooked.get("/api/pets/Kitty", headers=mine), 404)
    assert hooked.get("/api/pets/Tom", headers=mine).status_code == 200
    # Relationships, at any depth, and the lists of keys.
    assert hooked.get("/api/homes/1", headers=mine).get_json()["pets"] == ["Tom"]
    home = hooked.get("/api/homes/1?depth=1", headers=mine).get_json()
    assert [p["name"] for p in home["pets"]] == ["Tom"]
    assert hooked.get("/api/homes/1/pets/", headers=mine).get_json()["total"] == 1
    problem(hooked.get("/api/homes/1/pets/2", headers=mine), 404)
    # Filters through a relationship see only the scoped pets.
    homes = hooked.get("/api/homes/?filter=pets.name:eq:Kitty", headers=mine).get_json()
    assert homes["items"] == []
    # Writes: out of scope is not found; a list of members may not name one.
    problem(hooked.patch("/api/pets/Kitty", json={"age": 5}, headers=mine), 404)
    problem(hooked.delete("/api/pets/Kitty", headers=mine), 404)
    problem(hooked.put("/api/homes/2/pets/", json=["Kitty"], headers=mine), 409)
    # Without the header the scope is off.
    assert hooked.get("/api/pets/").get_json()["total"] == 3


# -- living with other extensions -------------------------------------------------------------


def test_csrf_protection_does_not_block_the_api(make_api: MakeAPI) -> None:
    project = make_api(models=models_source(setup="""
        from flask_wtf.csrf import CSRFProtect
        CSRFProtect(current_project.app)
    """), app="WTF_CSRF_ENABLED = true")
    client = project.app.test_client()
    assert client.post("/api/homes/", json={"address": "x"}).status_code == 201


def test_errors_outside_the_prefix_are_left_alone(api_client: t.Any, tmp_path: Path) -> None:
    response = api_client.get("/not-the-api")
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert api_client.get("/apiary").mimetype == "text/html"
