"""``flasker.ext.api`` reads: depth, filters, sorting, fields, pages, cursors, ETags, types."""

from __future__ import annotations

import base64
import typing as t
import uuid

import pytest

from flasker import Project
from flasker.ext.api.views import Endpoints

from .conftest_api import MakeAPI, Statements, models_source, problem, seed


@pytest.fixture(autouse=True)
def both_paths(read_path: str) -> str:
    """Every read test: on SQLite, then on PostgreSQL by the SQL-JSON and the Python path."""
    return read_path


def names(response: t.Any) -> list[str]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return [item["name"] for item in response.get_json()["items"]]


@pytest.fixture
def pets(api_client: t.Any) -> t.Any:
    seed(api_client)
    for name, age, home in (("Bella", 3, 2), ("Max", None, None), ("Luna", 7, 2)):
        api_client.post("/api/pets/", json={"name": name, "age": age, "home": home})
    for name, age in (("Tom", 5), ("Kitty", 3), ("Rex", 1)):
        api_client.patch(f"/api/pets/{name}", json={"age": age})
    return api_client


# -- depth ------------------------------------------------------------------------------------


def test_depth_expands_relationships_and_shows_each_object_once(api_client: t.Any) -> None:
    seed(api_client)
    home = api_client.get("/api/homes/1?depth=1").get_json()
    assert home == {"id": 1, "address": "1 Road", "rooms": None, "pets": [
        {"name": "Kitty", "home_id": 1, "age": None, "home": 1, "toys": [1]},
        {"name": "Tom", "home_id": 1, "age": None, "home": 1, "toys": [1, 2]},
    ]}
    home = api_client.get("/api/homes/1?depth=2").get_json()
    kitty, tom = home["pets"]
    # The home itself is shown already: the pets give its key.
    assert kitty["home"] == 1
    assert kitty["toys"] == [{"id": 1, "kind": "ball", "pets": ["Kitty", "Tom"]}]
    # The ball is shown in full under Kitty, then only as its key.
    assert tom["toys"] == [1, {"id": 2, "kind": "mouse", "pets": ["Tom"]}]
    # In a list, every item is shown; a related object repeated is a key the second time.
    items = api_client.get("/api/pets/?depth=1").get_json()["items"]
    assert [(p["name"], p["home"]) for p in items] == [
        ("Kitty", {"id": 1, "address": "1 Road", "rooms": None, "pets": ["Kitty", "Tom"]}),
        ("Rex", {"id": 2, "address": "2 Lane", "rooms": None, "pets": ["Rex"]}),
        ("Tom", 1),
    ]
    problem(api_client.get("/api/homes/1?depth=3"), 400)
    problem(api_client.get("/api/homes/1?depth=-1"), 400)
    problem(api_client.get("/api/homes/1?depth=deep"), 400)


def test_a_many_to_one_shows_its_object_at_the_first_item_of_the_page(pets: t.Any) -> None:
    """The first item pointing to a home shows it; the next ones, and pages after, its key."""
    one = {"id": 1, "address": "1 Road", "rooms": None, "pets": ["Kitty", "Tom"]}
    two = {"id": 2, "address": "2 Lane", "rooms": None, "pets": ["Bella", "Luna", "Rex"]}

    def homes(query: str) -> list[tuple[str, t.Any]]:
        response = pets.get(f"/api/pets/?depth=1&fields=home&{query}")
        assert response.status_code == 200, response.get_data(as_text=True)
        return [(p["name"], p["home"]) for p in response.get_json()["items"]]

    assert homes("") == [("Bella", two), ("Kitty", one), ("Luna", 2), ("Max", None),
                         ("Rex", 2), ("Tom", 1)]
    assert homes("sort=-name") == [("Tom", one), ("Rex", two), ("Max", None), ("Luna", 2),
                                   ("Kitty", 1), ("Bella", 2)]
    assert homes("offset=2&limit=3") == [("Luna", two), ("Max", None), ("Rex", 2)]
    assert homes("filter=age:ge:3&sort=age") == [("Bella", two), ("Kitty", one),
                                                   ("Tom", 1), ("Luna", 2)]
    assert pets.get("/api/pets/Luna?depth=1&fields=home").get_json() == {
        "name": "Luna", "home": two}
    assert pets.get("/api/pets/Max?depth=1&fields=home").get_json() == {
        "name": "Max", "home": None}


def test_a_many_to_many_shows_each_object_at_its_first_place(pets: t.Any) -> None:
    """In the page's order, then the relationship's: the object first, its key after."""
    ball = {"id": 1, "kind": "ball", "pets": ["Kitty", "Tom"]}
    mouse = {"id": 2, "kind": "mouse", "pets": ["Tom"]}

    def toys(query: str) -> list[tuple[str, t.Any]]:
        response = pets.get(f"/api/pets/?depth=1&fields=toys&{query}")
        assert response.status_code == 200, response.get_data(as_text=True)
        return [(p["name"], p["toys"]) for p in response.get_json()["items"]]

    assert toys("filter=name:in:Kitty,Tom,Rex") == [
        ("Kitty", [ball]), ("Rex", []), ("Tom", [1, mouse])]
    assert toys("sort=-name&limit=5") == [
        ("Tom", [ball, mouse]), ("Rex", []), ("Max", []), ("Luna", []), ("Kitty", [1])]
    assert toys("sort=-name&offset=5") == [("Bella", [])]
    # With the many-to-one beside it: each model's objects are shown once.
    item = pets.get("/api/pets/Tom?depth=1").get_json()
    assert (item["home"]["id"], item["toys"]) == (1, [ball, mouse])


def test_depth_on_a_self_referential_tree(api_client: t.Any) -> None:
    api_client.post("/api/nodes/", json={"title": "root"})
    for title in ("a", "b"):
        api_client.post("/api/nodes/", json={"title": title, "parent": 1})
    api_client.post("/api/nodes/", json={"title": "a1", "parent_id": 2})
    root = api_client.get("/api/nodes/1?depth=2").get_json()
    assert root == {"id": 1, "parent_id": None, "title": "root", "rank": 10, "parent": None,
                    "children": [
                        {"id": 2, "parent_id": 1, "title": "a", "rank": 20, "parent": 1,
                         "children": [{"id": 4, "parent_id": 2, "title": "a1", "rank": 40,
                                       "parent": 2, "children": []}]},
                        {"id": 3, "parent_id": 1, "title": "b", "rank": 30, "parent": 1,
                         "children": []},
                    ]}
    assert names_of(api_client.get("/api/nodes/2/children/")) == ["a1"]
    problem(api_client.patch("/api/nodes/1", json={"rank": 3}), 422)


def names_of(response: t.Any) -> list[str]:
    return [item["title"] for item in response.get_json()["items"]]


@pytest.mark.parametrize("depth", [0, 1, 2])
def test_statements_per_request_do_not_grow_with_the_page(
        api_client: t.Any, statements: Statements, depth: int, read_path: str) -> None:
    api_client.compare = False  # count the statements of one path
    counts = []
    for homes in (2, 20):
        while api_client.get("/api/homes/?total=true").get_json()["total"] < homes:
            number = api_client.get("/api/homes/").get_json()["total"] + 1
            api_client.post("/api/homes/", json={"address": f"{number} Street"})
            for cat in range(3):
                api_client.post("/api/pets/", json={"name": f"p{number}-{cat}", "home": number,
                                                    "toys": []})
        statements.reset()
        page = api_client.get(f"/api/homes/?depth={depth}&limit=100").get_json()
        assert len(page["items"]) == homes
        assert all(len(h["pets"]) == 3 for h in page["items"])
        counts.append(statements.count)
    assert counts[0] == counts[1]
    # count + homes + pets; depth 1 adds the pets' toys (their home is the foreign key);
    # depth 2 expands the pets' homes and toys, then lists the keys of those homes' pets
    # and those toys' pets.
    # By the SQL-JSON path: one statement (the page's JSON and the count), at any depth it
    # writes (depth 2 shows the pets' homes, objects shown already: the Python path's).
    expected = {0: 1, 1: 1, 2: 7} if read_path == "sql" else {0: 3, 1: 4, 2: 7}
    assert counts[0] == expected[depth]


def test_each_read_takes_the_sql_path_when_it_can(make_api: MakeAPI,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """On PostgreSQL a read whose JSON the database can write is one statement; else Python's."""
    project = make_api(models=models_source(setup="", extra="""
        api_manager.add_model(Home, properties=["label"])
        api_manager.add_model(Pet)
        api_manager.add_model(Toy)
        api_manager.add_model(Node)
    """))
    client: t.Any = project.app.test_client()
    client.compare = False  # count the statements of each path
    seed(client)
    client.post("/api/nodes/", json={"title": "root"})
    client.post("/api/nodes/", json={"title": "a", "parent": 1})
    counter = Statements(project.engine)
    on_postgresql = project.engine.dialect.name == "postgresql"
    try:
        for url, written in (
                ("/api/pets/?total=false", True),  # keys of a many-to-one and a many-to-many
                ("/api/pets/Tom", True),
                ("/api/homes/1/pets/?total=false&fields=name,toys", True),
                ("/api/nodes/?total=false", True),
                # A many-to-one (without the home's opted-in property).
                ("/api/pets/?total=false&depth=1&fields=home&fields[homes]=address", True),
                # The home's pets would be a subquery per home, on pets.home_id, which no
                # index of the models begins with: the Python path, one statement for all.
                ("/api/pets/?total=false&depth=1&fields=home&fields[homes]=address,pets", False),
                # The pets' toys at depth 1: on pet_toys' key, which begins with pet_name.
                ("/api/homes/?total=false&depth=1&fields=address,pets", True),
                ("/api/pets/Tom?depth=1&fields=home&fields[homes]=address", True),
                ("/api/pets/?total=false&depth=1&fields=home", False),  # with the property
                # A many-to-many; the toys' pets are on pet_toys.toy_id, not indexed first.
                ("/api/pets/?total=false&depth=1&fields=toys&fields[toys]=kind", True),
                ("/api/pets/?total=false&depth=1&fields=toys", False),
                ("/api/pets/Tom?depth=1&fields[homes]=address&fields[toys]=kind", True),
                ("/api/pets/?total=false&depth=1", False),  # the home's property
                ("/api/homes/1", False),  # an opted-in property
                ("/api/nodes/1?depth=1", False)):  # one model at two levels
            counts = []
            for sql_json in (True, False):
                monkeypatch.setattr(Endpoints, "sql_json", sql_json)
                counter.reset()
                assert client.get(url).status_code == 200, url
                counts.append(counter.count)
            if written and on_postgresql:  # the page, and the key checked for a relationship
                assert counts[0] == (2 if "/1/pets/" in url else 1) < counts[1], (url, counts)
            else:
                assert counts[0] == counts[1], (url, counts)
    finally:
        counter.close()


SHELTERS = """
class Shelter(Model):
    id = Column(Integer, primary_key=True)
    home_id = Column(ForeignKey("homes.id"))
    # A join condition of its own (not "key = foreign key"): read by a join from shelters.
    grown = relationship("Pet", viewonly=True, order_by="Pet.name", primaryjoin=(
        "and_(Shelter.home_id == foreign(Pet.home_id), Pet.age >= 3)"))
"""


def test_a_relationship_with_a_join_condition_of_its_own(make_api: MakeAPI) -> None:
    client = make_api(models=models_source(extra=SHELTERS)).app.test_client()
    seed(client)
    for name, age in (("Tom", 5), ("Kitty", 3), ("Rex", 1)):
        client.patch(f"/api/pets/{name}", json={"age": age})
    for name, age in (("Bella", 3), ("Luna", 7)):
        client.post("/api/pets/", json={"name": name, "age": age, "home": 2})
    for home in (1, 2, None):
        assert client.post("/api/shelters/", json={"home_id": home}).status_code == 201
    grown = [["Kitty", "Tom"], ["Bella", "Luna"], []]
    assert [s["grown"] for s in client.get("/api/shelters/").get_json()["items"]] == grown
    page = client.get("/api/shelters/?depth=1").get_json()["items"]
    assert [[p["name"] for p in s["grown"]] for s in page] == grown
    assert page[0]["grown"][0] == {"name": "Kitty", "home_id": 1, "age": 3, "home": 1,
                                   "toys": [1]}
    page = client.get("/api/shelters/?depth=1&offset=1&limit=1").get_json()["items"]
    assert [[p["name"] for p in s["grown"]] for s in page] == [["Bella", "Luna"]]
    assert client.get("/api/shelters/2").get_json()["grown"] == ["Bella", "Luna"]
    assert names(client.get("/api/shelters/1/grown/")) == ["Kitty", "Tom"]


SCOPED_HOMES = """
from flask import request


@api_manager.scope(Home)
def homes_of_a_size():
    rooms = request.headers.get("X-Rooms")
    return None if rooms is None else Home.rooms == int(rooms)
"""


@pytest.mark.parametrize("depth", [0, 1])
def test_a_scoped_model_is_left_out_of_the_objects_that_point_to_it(
        make_api: MakeAPI, depth: int) -> None:
    client = make_api(models=models_source(extra=SCOPED_HOMES)).app.test_client()
    seed(client)
    client.patch("/api/homes/1", json={"rooms": 3})
    client.patch("/api/homes/2", json={"rooms": 4})
    page = client.get(f"/api/pets/?depth={depth}&fields=name,home",
                      headers={"X-Rooms": "3"}).get_json()["items"]
    home = 1 if depth == 0 else {"id": 1, "address": "1 Road", "rooms": 3, "pets": ["Kitty",
                                                                                   "Tom"]}
    # Rex lives in home 2, which the caller may not see; Tom's home is shown already.
    assert page == [{"name": "Kitty", "home": home}, {"name": "Rex", "home": None},
                    {"name": "Tom", "home": 1}]
    pet = client.get(f"/api/pets/Rex?depth={depth}", headers={"X-Rooms": "4"}).get_json()
    assert pet["home"] == (2 if depth == 0 else {"id": 2, "address": "2 Lane", "rooms": 4,
                                                  "pets": ["Rex"]})


# -- filters ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("query", "expected"), [
    ("age:eq:3", ["Bella", "Kitty"]),
    ("age:ne:3", ["Luna", "Rex", "Tom"]),
    ("age:lt:3", ["Rex"]),
    ("age:le:3", ["Bella", "Kitty", "Rex"]),
    ("age:gt:3", ["Luna", "Tom"]),
    ("age:ge:5", ["Luna", "Tom"]),
    ("age:in:1,7", ["Luna", "Rex"]),
    ("name:in:[\"Max\",\"Tom\"]", ["Max", "Tom"]),
    ("name:like:%a", ["Bella", "Luna"]),
    ("name:like:%A", []),
    ("name:ilike:%A", ["Bella", "Luna"]),
    ("name:ilike:_e%", ["Bella", "Rex"]),
    ("age:is_null", ["Max"]),
    ("age:is_null:false", ["Bella", "Kitty", "Luna", "Rex", "Tom"]),
    ("home:is_null:true", ["Max"]),
    ("home.address:ilike:%road%", ["Kitty", "Tom"]),
    ("home.address:eq:2 Lane", ["Bella", "Luna", "Rex"]),
    ("toys.kind:eq:mouse", ["Tom"]),
    ("toys:is_null:false", ["Kitty", "Tom"]),
    ("home.pets.name:eq:Tom", ["Kitty", "Tom"]),
])
def test_filters(pets: t.Any, query: str, expected: list[str]) -> None:
    assert names(pets.get("/api/pets/", query_string={"filter": query})) == expected


def test_filters_combine_and_escape(pets: t.Any) -> None:
    response = pets.get("/api/pets/", query_string=[("filter", "age:ge:3"),
                                                    ("filter", "home.address:eq:2 Lane")])
    assert names(response) == ["Bella", "Luna"]
    pets.post("/api/pets/", json={"name": "50%_off"})
    assert names(pets.get("/api/pets/", query_string={"filter": "name:like:%\\%\\_%"})) == [
        "50%_off"]
    assert names(pets.get("/api/homes/1/pets/", query_string={"filter": "age:gt:3"})) == ["Tom"]


@pytest.mark.parametrize(("query", "reason"), [
    ("age", "is not of the form PATH:OP:VALUE"),
    ("age:about:3", "is not of the form PATH:OP:VALUE"),
    ("weight:eq:3", "Pet has no column 'weight'"),
    ("nest.name:eq:3", "Pet has no relationship 'nest'"),
    ("age:eq:three", "'three' is not an integer"),
    ("age:eq:99999999999", "must be at most 2147483647"),
    ("age:like:3", "'like' applies to text columns only"),
    ("name:like:oops\\", "the pattern ends with a lone escape"),
    ("age:in:", "'in' needs at least one value"),
    ("age:in:[1,", "the list is not valid JSON"),
    ("name:eq:a\x00b", "contains a NUL character"),
    ("age:is_null:maybe", "is_null takes true or false"),
])
def test_bad_filters_are_400(pets: t.Any, query: str, reason: str) -> None:
    body = problem(pets.get("/api/pets/", query_string={"filter": query}), 400)
    assert body["errors"][0]["field"] == "filter"
    assert reason in body["errors"][0]["reason"]


def test_filters_on_every_column_type(api_client: t.Any) -> None:
    token = str(uuid.uuid4())
    api_client.post("/api/readings/", json={
        "taken_at": "2024-05-01T10:00:00+02:00", "local_at": "2024-05-01T10:00:00",
        "day": "2024-05-01", "value": "1.5", "ratio": 0.5, "ok": False, "color": "red",
        "note": "x", "token": token})
    api_client.post("/api/readings/", json={"taken_at": "2024-06-01T00:00:00Z", "value": 2,
                                            "data": {"x": 1}})
    for query in ("taken_at:lt:2024-05-02T00:00:00Z", "local_at:ge:2024-05-01T09:00:00",
                  "day:eq:2024-05-01", "value:lt:2", "ratio:gt:0.1", "ok:eq:false",
                  "color:eq:red", f"token:eq:{token}", "data:is_null:true"):
        items = api_client.get("/api/readings/", query_string={"filter": query}).get_json()["items"]
        assert [r["id"] for r in items] == [1], query
    # JSON null given in a body is stored as SQL NULL, as an omitted value is.
    api_client.patch("/api/readings/2", json={"data": None})
    items = api_client.get("/api/readings/?filter=data:is_null:true").get_json()["items"]
    assert [r["id"] for r in items] == [1, 2]
    problem(api_client.get("/api/readings/?filter=color:eq:green"), 400)
    problem(api_client.get("/api/readings/?filter=data:eq:1"), 400)
    problem(api_client.get("/api/readings/?filter=blob:eq:1"), 400)
    problem(api_client.get("/api/readings/?filter=token:eq:nope"), 400)
    # Booleans have no order in SQL: a 400, not the database's error.
    body = problem(api_client.get("/api/readings/?filter=ok:le:yes"), 400)
    assert "'le' does not apply to the boolean column 'ok'" in body["errors"][0]["reason"]


# -- sorting and fields -----------------------------------------------------------------------


def test_sort_on_several_columns(pets: t.Any) -> None:
    assert names(pets.get("/api/pets/?sort=age,name")) == [
        "Rex", "Bella", "Kitty", "Tom", "Luna", "Max"]  # NULLs last on every database
    assert names(pets.get("/api/pets/?sort=-age,-name")) == [
        "Luna", "Tom", "Kitty", "Bella", "Rex", "Max"]
    assert names(pets.get("/api/pets/?sort=home_id,-age")) == [
        "Tom", "Kitty", "Luna", "Bella", "Rex", "Max"]
    problem(pets.get("/api/pets/?sort=weight"), 400)
    problem(pets.get("/api/readings/?sort=data"), 400)


def test_sparse_fieldsets(pets: t.Any) -> None:
    items = pets.get("/api/pets/?fields=age&limit=2").get_json()["items"]
    assert items == [{"name": "Bella", "age": 3}, {"name": "Kitty", "age": 3}]
    home = pets.get("/api/homes/1?depth=1&fields=pets&fields[pets]=age").get_json()
    assert home == {"id": 1, "pets": [{"name": "Kitty", "age": 3}, {"name": "Tom", "age": 5}]}
    # The sort column need not be shown.
    items = pets.get("/api/pets/?fields=home&sort=-age&limit=1").get_json()["items"]
    assert items == [{"name": "Luna", "home": 2}]
    body = problem(pets.get("/api/pets/?fields=weight"), 400)
    assert "not a field of Pet" in body["detail"]
    problem(pets.get("/api/pets/?fields[kennels]=x"), 400)


# -- pages ------------------------------------------------------------------------------------


def link(response: t.Any, rel: str) -> str | None:
    header: str = response.headers.get("Link", "")
    for part in header.split(", "):
        url, _sep, relation = part.partition("; ")
        if relation == f'rel="{rel}"':
            return url.strip("<>")
    return None


def test_limit_offset_total_and_links(pets: t.Any) -> None:
    response = pets.get("/api/pets/?limit=2&offset=2&sort=name")
    body = response.get_json()
    assert body == {"items": body["items"], "limit": 2, "offset": 2, "total": 6}
    assert [p["name"] for p in body["items"]] == ["Luna", "Max"]
    assert link(response, "next") == "http://localhost/api/pets/?limit=2&sort=name&offset=4"
    assert link(response, "prev") == "http://localhost/api/pets/?limit=2&sort=name&offset=0"
    assert link(response, "first") == "http://localhost/api/pets/?limit=2&sort=name&offset=0"
    assert link(response, "last") == "http://localhost/api/pets/?limit=2&sort=name&offset=4"
    last = pets.get(link(response, "last"))
    assert names(last) == ["Rex", "Tom"]
    assert link(last, "next") is None
    response = pets.get("/api/pets/?total=false&limit=5")
    assert "total" not in response.get_json()
    assert link(response, "last") is None
    assert link(response, "next") is not None
    assert len(pets.get("/api/pets/").get_json()["items"]) == 6  # PAGE_SIZE 20
    assert pets.get("/api/pets/?limit=100").status_code == 200  # MAX_PAGE_SIZE 100
    body = problem(pets.get("/api/pets/?limit=101"), 400)
    assert body["title"] == "Page too large"
    problem(pets.get("/api/pets/?limit=0"), 400)
    problem(pets.get("/api/pets/?offset=-1"), 400)
    problem(pets.get("/api/pets/?total=maybe"), 400)
    assert pets.get("/api/pets/?offset=50").get_json()["items"] == []


def test_keyset_cursor_walks_every_item_once(pets: t.Any) -> None:
    for sort in ("-age,name", "age", "name", "home_id,-name"):
        expected = names(pets.get("/api/pets/", query_string={"sort": sort}))
        seen: list[str] = []
        response = pets.get("/api/pets/", query_string={"sort": sort, "limit": 2, "cursor": ""})
        while True:
            body = response.get_json()
            seen += [p["name"] for p in body["items"]]
            assert body["total"] == 6
            if body["next_cursor"] is None:
                assert link(response, "next") is None
                break
            response = pets.get(link(response, "next"))
        assert seen == expected, sort



def test_an_unknown_cursor_is_not_found(pets: t.Any) -> None:
    # A cursor is opaque, as a key: one the API did not give names no page (404).
    for cursor in ("garbage!", "WyIiXQ", "bm90IGpzb24", "WyIiLFsxLDIsM11d"):
        body = problem(pets.get("/api/pets/", query_string={"cursor": cursor}), 404)
        assert body["type"] == "tag:flasker,2024:api/not-found"
        assert body["detail"].startswith("This cursor names no page of pets: start again"
                                         " without 'cursor'"), body
    token = pets.get("/api/pets/?limit=1&cursor=&sort=age").get_json()["next_cursor"]
    body = problem(pets.get(f"/api/pets/?limit=1&cursor={token}&sort=name"), 404)
    assert "it was made for the sort 'age'" in body["detail"]
    document = pets.get("/api/openapi.json").get_json()
    assert "names no page (404)" in document["components"]["parameters"]["cursor"][
        "description"]
    assert "'cursor'" in document["paths"]["/pets/"]["get"]["responses"]["404"]["description"]


def test_an_offset_beside_a_cursor_skips_items_after_it(pets: t.Any) -> None:
    every = names(pets.get("/api/pets/", query_string={"sort": "name"}))
    response = pets.get("/api/pets/", query_string={"sort": "name", "limit": 2, "cursor": "",
                                                    "offset": 1})
    assert [p["name"] for p in response.get_json()["items"]] == every[1:3]
    following = link(response, "next")
    assert following is not None and "offset" not in following  # skipped once, not per page
    assert [p["name"] for p in pets.get(following).get_json()["items"]] == every[3:5]


# -- conditional requests ---------------------------------------------------------------------


def test_etag_and_if_none_match(pets: t.Any) -> None:
    for url in ("/api/pets/Tom", "/api/pets/?sort=name", "/api/homes/1/pets/"):
        response = pets.get(url)
        etag = response.headers["ETag"]
        again = pets.get(url, headers={"If-None-Match": etag})
        assert again.status_code == 304
        assert again.data == b""
        assert again.headers["ETag"] == etag
        assert pets.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
    etag = pets.get("/api/pets/Tom").headers["ETag"]
    pets.patch("/api/pets/Tom", json={"age": 6})
    changed = pets.get("/api/pets/Tom", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["ETag"] != etag


# -- values -----------------------------------------------------------------------------------


def test_values_of_every_type(api_client: t.Any) -> None:
    token = uuid.uuid4()
    response = api_client.post("/api/readings/", json={
        "taken_at": "2024-05-01T10:00:00+02:00", "local_at": "2024-05-01T10:00:00.250000",
        "day": "2024-05-01", "value": "12345678.123456", "ratio": 0.25, "color": "blue",
        "note": "ok", "data": {"a": [1, 2]}, "blob": base64.b64encode(b"\x00\xff").decode(),
        "token": str(token)})
    assert response.status_code == 201, response.get_data(as_text=True)
    reading = api_client.get("/api/readings/1").get_json()
    assert reading.pop("taken_at") == "2024-05-01T08:00:00+00:00"  # in UTC
    assert reading == {
        "id": 1, "local_at": "2024-05-01T10:00:00.250000", "day": "2024-05-01",
        "value": "12345678.123456", "ratio": 0.25, "ok": True, "color": "blue",
        "note": "ok", "data": {"a": [1, 2]}, "blob": "AP8=", "token": str(token)}
    # Without the float and JSON columns (the Python path's), PostgreSQL writes the document.
    shown = "taken_at,local_at,day,value,ok,color,note,blob,token"
    reading = api_client.get(f"/api/readings/?fields={shown}").get_json()["items"][0]
    assert reading == {
        "id": 1, "taken_at": "2024-05-01T08:00:00+00:00", "local_at": "2024-05-01T10:00:00.250000",
        "day": "2024-05-01", "value": "12345678.123456", "ok": True, "color": "blue",
        "note": "ok", "blob": "AP8=", "token": str(token)}
    # A naive column holds UTC; numbers are accepted for decimals too.
    api_client.patch("/api/readings/1",
                     json={"local_at": "2024-05-01T12:00:00+02:00", "value": 2.5})
    reading = api_client.get("/api/readings/1").get_json()
    assert reading["local_at"] == "2024-05-01T10:00:00"
    assert reading["value"] == "2.500000"


MOMENTS = """
import datetime as dt


class Moment(Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.time | None]
    when: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    tiny: Mapped[decimal.Decimal | None] = mapped_column(Numeric(20, 12))
    text: Mapped[str | None] = mapped_column(String(40))
"""


def test_one_format_for_times_decimals_and_text_on_both_paths(make_api: MakeAPI) -> None:
    client = make_api(models=models_source(extra=MOMENTS)).app.test_client()
    for body in ({"at": "10:00:00", "when": "2024-05-01T10:00:00.000001+02:00",
                  "tiny": "0.0000001", "text": 'a "quoted"\tline\n\u0001é'},
                 {"at": "23:59:59.5", "when": "0999-01-01T00:00:00Z", "tiny": "-100"},
                 {}):
        assert client.post("/api/moments/", json=body).status_code == 201
    items = client.get("/api/moments/").get_json()["items"]
    # Times and datetimes in ISO 8601, microseconds only when not 0; decimals in plain
    # notation, as many places as the column keeps (README, "API": formats).
    assert items == [
        {"id": 1, "at": "10:00:00", "when": "2024-05-01T08:00:00.000001+00:00",
         "tiny": "0.000000100000", "text": 'a "quoted"\tline\n\u0001é'},
        {"id": 2, "at": "23:59:59.500000", "when": "0999-01-01T00:00:00+00:00",
         "tiny": "-100.000000000000", "text": None},
        {"id": 3, "at": None, "when": None, "tiny": None, "text": None}]


def test_properties_are_shown_only_when_asked(make_api: MakeAPI) -> None:
    project = make_api(models=models_source(setup="", extra="""
        api_manager.add_model(Home, properties=["label"])
    """))
    client = project.app.test_client()
    client.post("/api/homes/", json={"address": "1 Road"})
    assert client.get("/api/homes/1").get_json()["label"] == "Home 1 at 1 Road"
    assert client.get("/api/homes/1?fields=address").get_json() == {"id": 1, "address": "1 Road"}
    client.post("/api/pets/", json={"name": "Tom", "home": 1})
    assert client.get("/api/pets/Tom?depth=1").get_json()["home"]["label"] == "Home 1 at 1 Road"


def test_project_fixture_is_parametrized(api: Project, db_url: str) -> None:
    assert api.engine.dialect.name == db_url.split(":")[0].split("+")[0]
