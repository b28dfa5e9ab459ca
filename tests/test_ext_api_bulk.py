"""``flasker.ext.api`` in bulk: arrays, upserts, filtered DELETE and CSV export (SQLite and PG)."""

from __future__ import annotations

import csv
import io
import typing as t

import pytest
import sqlalchemy as sa

from flasker import ConfigError, Project

from .conftest_api import MakeAPI, fields, models_source, problem, seed

MERGE = {"Prefer": "resolution=merge-duplicates"}
CSV = {"Accept": "text/csv"}


def count(client: t.Any, collection: str) -> int:
    return t.cast(int, client.get(f"/api/{collection}/").get_json()["total"])


def rows(response: t.Any) -> list[list[str]]:
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/csv"
    text = response.get_data(as_text=True)
    assert text.endswith("\r\n")
    return list(csv.reader(io.StringIO(text, newline="")))


# -- bulk create ------------------------------------------------------------------------------


def test_post_an_array_creates_every_object(api_client: t.Any) -> None:
    response = api_client.post("/api/homes/", json=[{"address": "1 Road", "rooms": 2},
                                                    {"address": "2 Lane"}])
    assert response.status_code == 201, response.get_data(as_text=True)
    body = response.get_json()
    assert body["items"] == [{"id": 1, "address": "1 Road", "rooms": 2, "pets": []},
                             {"id": 2, "address": "2 Lane", "rooms": None, "pets": []}]
    assert body["locations"] == ["http://localhost/api/homes/1", "http://localhost/api/homes/2"]
    assert "Location" not in response.headers
    assert api_client.get(body["locations"][1]).get_json()["address"] == "2 Lane"
    # Relationships by key, composite keys; the answer keeps the array's order.
    api_client.post("/api/toys/", json=[{"kind": "ball"}, {"kind": "mouse"}])
    pets = api_client.post("/api/pets/", json=[
        {"name": "Zed", "home": 2, "toys": [1, 2]}, {"name": "Amy", "home_id": 1}])
    assert [(p["name"], p["home"], p["toys"]) for p in pets.get_json()["items"]] == [
        ("Zed", 2, [1, 2]), ("Amy", 1, [])]
    parts = api_client.post("/api/parts/", json=[{"maker": "zeta", "number": 2},
                                                 {"maker": "acme", "number": 1}])
    assert parts.get_json()["locations"] == ["http://localhost/api/parts/zeta/2",
                                             "http://localhost/api/parts/acme/1"]


def test_an_invalid_item_is_named_by_its_index_and_nothing_is_written(
        api_client: t.Any) -> None:
    seed(api_client)
    body = problem(api_client.post("/api/pets/", json=[
        {"name": "A"}, {"name": "B", "age": "old"}, 7, {"age": 1, "colour": "red"}]), 422)
    assert fields(body) == {"[1].age": "expected an integer", "[2]": "expected a JSON object",
                            "[3].name": "is required",
                            "[3].colour": "is not a field of Pet"}
    assert "Nothing was written" in body["detail"]
    # A related key that does not exist, found while writing: a 409 naming its item.
    body = problem(api_client.post("/api/pets/", json=[
        {"name": "A", "home": 1}, {"name": "B", "toys": [1, 99]}]), 409)
    assert fields(body) == {"[1].toys[1]": "no Toy has the key '99'"}
    assert body["detail"].startswith("Item 1 of the array: ")
    assert count(api_client, "pets") == 3


def test_a_conflict_in_an_array_names_its_item(api_client: t.Any) -> None:
    seed(api_client)
    body = problem(api_client.post("/api/homes/", json=[
        {"address": "9 Hill"}, {"address": "9 Hill"}]), 409)
    assert [e["field"][:4] for e in body["errors"]] == ["[1]."]
    assert body["detail"].startswith("Item 1 of the array: ")
    body = problem(api_client.post("/api/homes/", json=[{"address": "1 Road"}]), 409)
    assert body["errors"][0]["field"].startswith("[0].")
    assert count(api_client, "homes") == 2


def test_the_size_of_an_array_is_bounded(make_api: MakeAPI) -> None:
    client = make_api(api="MAX_BULK_ITEMS = 2").app.test_client()
    body = problem(client.post("/api/homes/", json=[{}, {}, {}]), 422)
    assert "at most 2" in body["detail"]
    problem(client.post("/api/homes/", json=[]), 422)
    assert client.post("/api/homes/", json=[{}, {}]).status_code == 201
    with pytest.raises(ConfigError, match="MAX_BULK_ITEMS' has value 0"):
        make_api(api="MAX_BULK_ITEMS = 0")


HOOKS = """
    from flask import request

    @api_manager.authorize(Home, ["POST", "PATCH", "DELETE"])
    def editors_change_home_2(method, key):
        role = request.headers.get("X-Role")
        return role == "admin" or (role == "editor" and (method == "POST" or key in (None, 2)))

    @api_manager.validate(Pet)
    def real_names(method, data, instance):
        if data.get("name", "").lower() == "nobody":
            return {"name": f"is no name ({method})"}
        return None

    @api_manager.scope(Pet)
    def own_pets():
        owner = request.headers.get("X-Owner")
        return None if owner is None else Pet.age == int(owner)
"""


@pytest.fixture
def hooked(make_api: MakeAPI) -> t.Any:
    project = make_api(models=models_source(
        setup="api_manager.add_all_models(allow_delete_many=True)", extra=HOOKS))
    client = project.app.test_client()
    admin = {"X-Role": "admin"}
    assert client.post("/api/homes/", json=[{"address": "1 Road"}, {"address": "2 Lane"}],
                       headers=admin).status_code == 201
    assert client.post("/api/pets/", json=[{"name": "Tom", "age": 1, "home": 1},
                                           {"name": "Kitty", "age": 2, "home": 1},
                                           {"name": "Rex", "age": 1, "home": 2}]).status_code == 201
    return client


def test_bulk_writes_run_the_hooks(hooked: t.Any) -> None:
    problem(hooked.post("/api/homes/", json=[{"address": "x"}]), 403)
    body = problem(hooked.post("/api/pets/", json=[{"name": "Ann"}, {"name": "Nobody"}]), 422)
    assert fields(body) == {"[1].name": "is no name (POST)"}
    # An upsert updates with PATCH: authorized per object, validated as a PATCH.
    admin = {"X-Role": "admin"}
    body = problem(hooked.post("/api/pets/", json={"name": "nobody"}, headers=MERGE), 422)
    assert fields(body) == {"name": "is no name (POST)"}
    problem(hooked.post("/api/homes/?filter=x", json={}, headers={**MERGE, **admin}), 400)
    editor = {**MERGE, "X-Role": "editor"}
    problem(hooked.post("/api/homes/", json=[{"id": 1, "rooms": 3}], headers=editor), 403)
    assert hooked.post("/api/homes/", json=[{"id": 2, "rooms": 3}],
                       headers=editor).status_code == 200
    assert hooked.post("/api/homes/", json=[{"id": 1, "rooms": 3}],
                       headers={**MERGE, **admin}).status_code == 200
    assert hooked.get("/api/homes/1").get_json()["rooms"] == 3
    # A scope hides what is outside it: an upsert cannot reach it, and conflicts.
    problem(hooked.post("/api/pets/", json={"name": "Kitty", "age": 1}, headers={
        **MERGE, "X-Owner": "1"}), 409)
    assert hooked.get("/api/pets/Kitty").get_json()["age"] == 2
    # An item written outside the caller's scope: refused, and nothing is kept.
    body = problem(hooked.post("/api/pets/", json=[{"name": "Ann", "age": 1},
                                                   {"name": "Bob", "age": 5}],
                               headers={"X-Owner": "1"}), 403)
    assert body["detail"].startswith("Item 1 would be saved outside what you may read")
    assert count(hooked, "pets") == 3


# -- upsert -----------------------------------------------------------------------------------


def test_upsert_merges_by_key(api_client: t.Any) -> None:
    seed(api_client)
    response = api_client.post("/api/homes/", json=[
        {"id": 1, "rooms": 4}, {"id": 7, "address": "7 Mews"}, {"address": "8 Mews"}],
        headers=MERGE)
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.headers["Preference-Applied"] == "resolution=merge-duplicates"
    items = response.get_json()["items"]
    # Given fields only: the address of home 1 is kept.
    assert [(h["address"], h["rooms"]) for h in items] == [
        ("1 Road", 4), ("7 Mews", None), ("8 Mews", None)]
    assert [h["id"] for h in items[:2]] == [1, 7]
    assert count(api_client, "homes") == 4
    # A single object: 200 when it existed, 201 when it is created, with its Location.
    response = api_client.post("/api/pets/", json={"name": "Tom", "age": 9, "toys": [2]},
                               headers={"Prefer": "return=minimal, resolution=merge-duplicates"})
    assert response.status_code == 200
    assert response.headers["Location"] == "http://localhost/api/pets/Tom"
    assert response.get_json() == {"name": "Tom", "home_id": 1, "age": 9, "home": 1,
                                   "toys": [2]}
    response = api_client.post("/api/pets/", json={"name": "Max"}, headers=MERGE)
    assert response.status_code == 201
    assert response.headers["Location"] == "http://localhost/api/pets/Max"
    # A composite key.
    api_client.post("/api/parts/", json={"maker": "acme", "number": 1, "label": "old"})
    response = api_client.post("/api/parts/", json=[{"maker": "acme", "number": 1,
                                                     "label": "new"}], headers=MERGE)
    assert response.status_code == 200
    assert response.get_json()["items"][0]["label"] == "new"
    # Without the preference, the same array is a conflict.
    problem(api_client.post("/api/parts/", json=[{"maker": "acme", "number": 1}]), 409)
    assert "Preference-Applied" not in api_client.post("/api/parts/", json={
        "maker": "b", "number": 1}, headers={"Prefer": "resolution=ignore-duplicates"}).headers


def test_upsert_on_a_unique_constraint(api_client: t.Any) -> None:
    seed(api_client)
    response = api_client.post("/api/homes/?on_conflict=address", json=[
        {"address": "2 Lane", "rooms": 5}, {"address": "3 Way", "rooms": 1}], headers=MERGE)
    assert response.status_code == 201, response.get_data(as_text=True)
    assert [(h["id"], h["rooms"]) for h in response.get_json()["items"]] == [(2, 5), (3, 1)]
    # The key may be repeated, not changed.
    assert api_client.post("/api/homes/?on_conflict=address", json={
        "id": 2, "address": "2 Lane"}, headers=MERGE).status_code == 200
    body = problem(api_client.post("/api/homes/?on_conflict=address", json=[
        {"address": "3 Way"}, {"id": 9, "address": "1 Road"}], headers=MERGE), 409)
    assert fields(body) == {"[1].id": "is the key and cannot be changed"}
    # Items that would be merged twice.
    body = problem(api_client.post("/api/homes/?on_conflict=address", json=[
        {"address": "4 Row"}, {"address": "4 Row"}], headers=MERGE), 409)
    assert fields(body) == {"[1]": "has the same 'address' as item 0"}
    body = problem(api_client.post("/api/homes/?on_conflict=rooms", json={}, headers=MERGE), 400)
    assert "id; address" in body["detail"]
    # Without the preference 'on_conflict' is checked, and a plain POST creates.
    problem(api_client.post("/api/homes/?on_conflict=rooms", json={}), 400)
    problem(api_client.post("/api/homes/?on_conflict=address", json={"address": "2 Lane"}), 409)
    assert count(api_client, "homes") == 3


# -- filtered DELETE --------------------------------------------------------------------------


def test_delete_many_is_off_unless_allowed(api_client: t.Any) -> None:
    seed(api_client)
    problem(api_client.delete("/api/pets/?filter=name:eq:Tom"), 405)
    assert count(api_client, "pets") == 3


def test_delete_many_takes_a_filter_or_all(hooked: t.Any) -> None:
    assert hooked.options("/api/pets/").headers["Allow"] == "GET, POST, DELETE, HEAD, OPTIONS"
    body = problem(hooked.delete("/api/pets/"), 400)
    assert "?all=true" in body["detail"]
    problem(hooked.delete("/api/pets/?all=false"), 400)
    problem(hooked.delete("/api/pets/?all=perhaps"), 400)
    problem(hooked.delete("/api/pets/?filter=colour:eq:red"), 400)
    problem(hooked.delete("/api/pets/?filter=age:eq:1&limit=3"), 400)
    response = hooked.delete("/api/pets/?filter=age:eq:1&filter=home.address:eq:1%20Road")
    assert response.status_code == 200
    assert response.get_json() == {"num_deleted": 1}
    assert [p["name"] for p in hooked.get("/api/pets/").get_json()["items"]] == ["Kitty", "Rex"]
    assert hooked.delete("/api/pets/?filter=age:gt:5").get_json() == {"num_deleted": 0}
    assert hooked.delete("/api/pets/?all=true").get_json() == {"num_deleted": 2}
    assert count(hooked, "pets") == 0


def test_delete_many_respects_scopes_and_authorization(hooked: t.Any) -> None:
    # The scope: only the caller's pets are deleted.
    response = hooked.delete("/api/pets/?all=true", headers={"X-Owner": "1"})
    assert response.get_json() == {"num_deleted": 2}
    assert [p["name"] for p in hooked.get("/api/pets/").get_json()["items"]] == ["Kitty"]
    # The collection, then each object, is authorized with its key: one refused, none deleted.
    editor = {"X-Role": "editor"}
    problem(hooked.delete("/api/homes/?filter=id:ge:1"), 403)
    problem(hooked.delete("/api/homes/?filter=id:ge:1", headers=editor), 403)
    assert count(hooked, "homes") == 2
    assert hooked.delete("/api/homes/?filter=id:eq:2", headers=editor).get_json() == {
        "num_deleted": 1}


def test_delete_many_deletes_as_a_single_delete_does(make_api: MakeAPI) -> None:
    project = make_api(models=models_source(
        setup="api_manager.add_all_models(allow_delete_many=True)"))
    client = project.app.test_client()
    seed(client)
    for title, parent in (("root", None), ("a", 1), ("a1", 2)):
        client.post("/api/nodes/", json={"title": title, "parent": parent})
    # Pets in their toys' association rows and homes' pets: emptied, as one DELETE does.
    assert client.delete("/api/pets/?filter=name:in:Tom,Kitty").get_json() == {
        "num_deleted": 2}
    assert client.get("/api/toys/1").get_json()["pets"] == []
    assert client.delete("/api/homes/?filter=id:eq:2").get_json() == {"num_deleted": 1}
    assert client.get("/api/pets/Rex").get_json()["home"] is None
    # A tree: the parent and its children at once.
    assert client.delete("/api/nodes/?filter=id:le:2").get_json() == {"num_deleted": 2}
    assert client.get("/api/nodes/3").get_json()["parent"] is None


# -- CSV export -------------------------------------------------------------------------------


def test_csv_export_with_filters_sort_and_fields(api_client: t.Any) -> None:
    seed(api_client)
    api_client.patch("/api/homes/2", json={"address": 'The "Big", House\nBy the sea'})
    response = api_client.get("/api/homes/", headers=CSV)
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8; header=present"
    assert response.headers["Content-Disposition"] == "attachment; filename=homes.csv"
    assert "ETag" not in response.headers
    assert response.get_data(as_text=True) == (
        'id,address,rooms,pets\r\n1,1 Road,,"[""Kitty"",""Tom""]"\r\n'
        '2,"The ""Big"", House\nBy the sea",,"[""Rex""]"\r\n')
    assert rows(api_client.get("/api/pets/?format=csv&sort=-name&fields=age,home,toys")) == [
        ["name", "age", "home", "toys"], ["Tom", "", "1", "[1,2]"],
        ["Rex", "", "2", "[]"], ["Kitty", "", "1", "[1]"]]
    assert rows(api_client.get("/api/pets/?filter=home.address:eq:1%20Road&fields=name",
                               headers=CSV)) == [["name"], ["Kitty"], ["Tom"]]
    # A window, when asked for; 'depth' changes nothing, relationships stay keys.
    assert rows(api_client.get("/api/pets/?format=csv&fields=name&limit=1&offset=1"
                               "&depth=2&total=true")) == [["name"], ["Rex"]]
    assert rows(api_client.get("/api/pets/?fields=name&cursor=", headers=CSV)) == [
        ["name"], ["Kitty"], ["Rex"], ["Tom"]]
    assert rows(api_client.get("/api/pets/?filter=age:gt:99", headers=CSV)) == [
        ["name", "home_id", "age", "home", "toys"]]
    # JSON stays the default; a browser's Accept gets JSON.
    assert api_client.get("/api/pets/?format=json").mimetype == "application/json"
    assert api_client.get("/api/pets/", headers={
        "Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}).mimetype == "application/json"
    problem(api_client.get("/api/pets/?format=xml"), 400)
    problem(api_client.get("/api/pets/?format=csv&format=json"), 400)
    problem(api_client.get("/api/pets/?filter=nope:eq:1", headers=CSV), 400)
    head = api_client.head("/api/pets/", headers=CSV)
    assert head.status_code == 200
    assert head.data == b""


def test_csv_cells_of_every_type(api_client: t.Any) -> None:
    response = api_client.post("/api/readings/", json={
        "taken_at": "2024-05-01T12:00:00+02:00", "local_at": "2024-05-01T08:30:00",
        "day": "2024-05-01", "value": "12.5", "ratio": 0.25, "ok": False, "color": "red",
        "note": "a,b", "data": {"k": [1, "x"]}, "blob": "AAE=",
        "token": "12345678-1234-5678-1234-567812345678"})
    assert response.status_code == 201, response.get_data(as_text=True)
    api_client.post("/api/readings/", json={"taken_at": "2024-05-02T00:00:00Z", "value": 1})
    header, first, second = rows(api_client.get("/api/readings/", headers=CSV))
    assert dict(zip(header, first, strict=True)) == {
        "id": "1", "taken_at": "2024-05-01T10:00:00+00:00", "local_at": "2024-05-01T08:30:00",
        "day": "2024-05-01", "value": "12.500000", "ratio": "0.25", "ok": "false",
        "color": "red", "note": "a,b", "data": '{"k":[1,"x"]}', "blob": "AAE=",
        "token": "12345678-1234-5678-1234-567812345678"}
    assert dict(zip(header, second, strict=True))["data"] == ""
    assert dict(zip(header, second, strict=True))["ok"] == "true"
    # Composite keys as JSON.
    api_client.post("/api/parts/", json={"maker": "acme", "number": 7})
    api_client.post("/api/screws/", json={"part": {"maker": "acme", "number": 7}})
    assert rows(api_client.get("/api/screws/", headers=CSV))[1] == [
        "1", "acme", "7", '{"maker":"acme","number":7}']


def test_csv_export_respects_scopes(hooked: t.Any) -> None:
    assert rows(hooked.get("/api/pets/?fields=name", headers={**CSV, "X-Owner": "1"})) == [
        ["name"], ["Rex"], ["Tom"]]
    assert rows(hooked.get("/api/homes/?fields=pets", headers={**CSV, "X-Owner": "2"})) == [
        ["id", "pets"], ["1", '["Kitty"]'], ["2", "[]"]]


def test_csv_export_is_streamed_in_batches(api: Project) -> None:
    """The rows are fetched a batch at a time, and each batch is sent as it is read."""
    total = 2500
    with api.engine.begin() as connection:
        homes = sa.Table("homes", sa.MetaData(), autoload_with=connection)
        connection.execute(homes.insert(), [{"id": i, "address": f"{i} Road"}
                                            for i in range(1, total + 1)])
    selects: list[dict[str, t.Any]] = []

    def seen(_conn: t.Any, cursor: t.Any, statement: str, _params: t.Any, context: t.Any,
             _many: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM homes" in statement:
            selects.append({"yield_per": context.execution_options.get("yield_per"),
                            "cursor": type(cursor).__name__})

    sa.event.listen(api.engine, "before_cursor_execute", seen)
    try:
        response = api.app.test_client().get("/api/homes/?fields=address", headers=CSV,
                                             buffered=False)
        chunks = response.iter_encoded()
        first = next(chunks).decode()
        # The first batch is sent before the rest is read: one SELECT so far, streamed.
        assert first.count("\r\n") == 1 + 1000
        assert len(selects) == 1
        assert selects[0]["yield_per"] == 1000
        if api.engine.dialect.name == "postgresql":
            assert selects[0]["cursor"] == "ServerCursor"  # rows stay on the server
        rest = b"".join(chunks).decode()
        # Sent: the export's session is closed, its connection back in the pool.
        assert t.cast(t.Any, api.engine.pool).checkedout() == 0
        response.close()
    finally:
        sa.event.remove(api.engine, "before_cursor_execute", seen)
    lines = (first + rest).split("\r\n")
    assert lines[0] == "id,address"
    assert lines[1:-1] == [f"{i},{i} Road" for i in range(1, total + 1)]
    assert len(selects) == 1  # the other batches came from the same cursor


# -- the document -----------------------------------------------------------------------------


def test_the_document_describes_bulk_writes_and_csv(make_api: MakeAPI) -> None:
    project = make_api(api="MAX_BULK_ITEMS = 50", models=models_source(
        setup="api_manager.add_all_models(allow_delete_many=True)"))
    document = project.app.test_client().get("/api/openapi.json").get_json()
    homes = document["paths"]["/homes/"]
    schema = homes["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert schema["oneOf"][0] == {"$ref": "#/components/schemas/Home.create"}
    assert schema["oneOf"][1] == {"type": "array", "items": schema["oneOf"][0], "minItems": 1,
                                  "maxItems": 50}
    parameters = {p["name"]: p for p in homes["post"]["parameters"]}
    assert parameters["Prefer"]["in"] == "header"
    assert parameters["on_conflict"]["schema"] == {"enum": ["id", "address"]}
    assert set(homes["post"]["responses"]["201"]["headers"]) == {"Location",
                                                                 "Preference-Applied"}
    assert "text/csv" in homes["get"]["responses"]["200"]["content"]
    delete = homes["delete"]
    assert delete["parameters"][0]["name"] == "filter"
    assert delete["parameters"][0]["required"] is True
    assert delete["responses"]["200"]["content"]["application/json"]["schema"]["required"] == [
        "num_deleted"]
