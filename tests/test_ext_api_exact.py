"""``flasker.ext.api``: keys, positions and PUT, exact (SQLite and PostgreSQL).

No key, position or filter value, however large, reaches the database driver as a value it
cannot hold; PUT writes a relationship by key as PATCH does; and every key the API lets a
client create can be read back at its ``Location``.
"""

from __future__ import annotations

import json
import re
import typing as t
from urllib.parse import quote

import pytest

from .conftest_api import MakeAPI, fields, models_source, problem, seed

# Past 2**63: positions, and keys of any integer column (2**63 itself is the last offset).
BEYOND = ("9223372036854775809", "18446744073709551616", "99999999999999999999",
          "1" + "0" * 5000)


def _seed_all(client: t.Any) -> None:
    """The seed, plus a tree of nodes and a part with screws (every kind of to-many)."""
    seed(client)
    assert client.post("/api/nodes/", json={"title": "root"}).status_code == 201
    assert client.post("/api/nodes/", json={"title": "leaf", "parent": 1}).status_code == 201
    assert client.post("/api/parts/", json={"maker": "acme", "number": 7}).status_code == 201
    response = client.post("/api/screws/", json={"part": {"maker": "acme", "number": 7}})
    assert response.status_code == 201, response.get_data(as_text=True)


# -- positions --------------------------------------------------------------------------------


def test_every_position_endpoint_answers_404_past_any_list(api_client: t.Any) -> None:
    _seed_all(api_client)
    lists = ["/api/homes/1/pets/", "/api/pets/Tom/toys/", "/api/toys/1/pets/",
             "/api/nodes/1/children/", "/api/parts/acme/7/screws/"]
    # Every to-many relationship of the test models is in the list above.
    listing = api_client.get("/api/").get_json()["endpoints"]
    many = {(e["collection"], name) for e in listing
            for name, r in e["relationships"].items() if r["many"]}
    assert many == {("homes", "pets"), ("pets", "toys"), ("toys", "pets"),
                    ("nodes", "children"), ("parts", "screws")}
    for url in lists:
        assert api_client.get(url + "1").status_code == 200, url
        for position in BEYOND:
            body = problem(api_client.get(url + position), 404)
            assert "no list is that long" in body["detail"]
            assert len(body["detail"]) < 200  # a 5,000-digit position is not repeated whole
        # The last offset a database holds is an empty position too, not a driver's error.
        body = problem(api_client.get(url + str(2**63)), 404)
        problem(api_client.get(url + str(2**63 - 1)), 404)
        assert api_client.head(url + BEYOND[0]).status_code == 404


@pytest.mark.parametrize("text", ["0", "00", "-1", "1.0", "1e3", "²", "١", "0x1", " 1", "x" * 5000])
def test_a_position_that_is_no_count_is_404(api_client: t.Any, text: str) -> None:
    seed(api_client)
    body = problem(api_client.get("/api/homes/1/pets/" + quote(text)), 404)
    assert "count from 1" in body["detail"] or "There is nothing at this URL" in body["detail"]
    assert len(body["detail"]) < 200


def test_a_position_may_have_leading_zeros(api_client: t.Any) -> None:
    seed(api_client)
    assert api_client.get("/api/homes/1/pets/02").get_json()["name"] == "Tom"
    body = problem(api_client.get("/api/homes/1/pets/3"), 404)
    assert body["detail"] == "Home '1' has no pets at position 3."


def test_offsets_past_32_bits_are_an_empty_page(api_client: t.Any) -> None:
    """PostgreSQL casts the offset to its parameter's type: a 64-bit one."""
    seed(api_client)
    for offset in (2**31, 2**63 - 1):
        response = api_client.get(f"/api/homes/?offset={offset}")
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.get_json()["items"] == []
        assert response.get_json()["total"] == 2
        response = api_client.get(f"/api/homes/1/pets/?offset={offset}")
        assert response.get_json()["items"] == []


def test_the_document_bounds_positions(api_client: t.Any) -> None:
    paths = api_client.get("/api/openapi.json").get_json()["paths"]
    parameters = paths["/homes/{id}/pets/{position}"]["get"]["parameters"]
    position = next(p for p in parameters if p.get("name") == "position")
    assert position["schema"] == {"type": "integer", "minimum": 1, "maximum": 2**63}


# -- integer keys and values beyond their columns ---------------------------------------------


@pytest.mark.parametrize("text", [*BEYOND, "9223372036854775808", "2147483648", "-2147483649",
                                  "-99999999999999999999"])
def test_integer_keys_in_urls_beyond_the_column_are_404(api_client: t.Any, text: str) -> None:
    _seed_all(api_client)
    for url in (f"/api/homes/{text}", f"/api/homes/{text}/pets/", f"/api/homes/{text}/pets/1",
                f"/api/parts/acme/{text}", f"/api/parts/acme/{text}/screws/",
                f"/api/screws/{text}/part", f"/api/nodes/{text}/parent"):
        problem(api_client.get(url), 404)
    problem(api_client.patch(f"/api/homes/{text}", json={"rooms": 1}), 404)
    problem(api_client.put(f"/api/homes/{text}", json={"address": "x"}), 404)
    problem(api_client.delete(f"/api/homes/{text}"), 404)
    problem(api_client.put(f"/api/homes/{text}/pets/", json=["Tom"]), 404)


BIG = [99999999999999999999, 2**63, 2**63 - 1, 2**31, -(2**31) - 1, -(2**63) - 1, 2**64]


@pytest.mark.parametrize("value", BIG)
def test_integer_keys_in_bodies_beyond_the_column_are_422(api_client: t.Any, value: int) -> None:
    _seed_all(api_client)
    cases: list[tuple[str, str, t.Any, str]] = [
        ("post", "/api/pets/", {"name": "Ghost", "home": value}, "home"),
        ("post", "/api/pets/", {"name": "Ghost", "home_id": value}, "home_id"),
        ("post", "/api/pets/", {"name": "Ghost", "toys": [1, value]}, "toys[1]"),
        ("post", "/api/homes/", {"id": value, "address": "x"}, "id"),
        ("post", "/api/screws/", {"part": {"maker": "acme", "number": value}}, "part"),
        ("post", "/api/nodes/", {"parent": value}, "parent"),
        ("patch", "/api/pets/Tom", {"home": value}, "home"),
        ("put", "/api/pets/Tom", {"home": value}, "home"),
        ("patch", "/api/homes/1", {"rooms": value}, "rooms"),
        ("put", "/api/homes/1/pets/", ["Tom", value], "pets[1]"),
        ("put", "/api/pets/Tom/toys/", [value], "toys[0]"),
    ]
    for method, url, body, field in cases:
        # The standard library writes integers of any size (the test client's orjson, 64 bits).
        response = getattr(api_client, method)(url, data=json.dumps(body),
                                               content_type="application/json")
        assert field in fields(problem(response, 422)), (method, url, body)
    problem(api_client.get("/api/pets/Ghost"), 404)
    assert api_client.get("/api/pets/Tom").get_json()["home"] == 1


@pytest.mark.parametrize("value", [str(v) for v in BIG])
def test_integer_filters_beyond_the_column_are_400(api_client: t.Any, value: str) -> None:
    """A filter is a query parameter: its faults are the README's 400 'invalid-parameter'."""
    _seed_all(api_client)
    for url in (f"/api/homes/?filter=id:eq:{value}", f"/api/homes/?filter=id:in:1,{value}",
                f'/api/homes/?filter=id:in:[1,{value}]', f"/api/pets/?filter=home.id:gt:{value}",
                f"/api/pets/?filter=home_id:lt:{value}", f"/api/homes/?filter=pets.age:ge:{value}",
                f"/api/screws/?filter=part.number:ne:{value}",
                f"/api/homes/1/pets/?filter=toys.id:eq:{value}"):
        body = problem(api_client.get(url), 400)
        assert body["type"].endswith("/invalid-parameter")
        assert fields(body).keys() == {"filter"}


def test_integer_keys_at_the_column_limits_are_served(api_client: t.Any) -> None:
    """The largest keys a column holds are found (or not) without any error."""
    for value in (2**31 - 1, -(2**31)):
        assert api_client.post("/api/homes/", json={"id": value}).status_code == 201
        assert api_client.get(f"/api/homes/{value}").get_json()["id"] == value
        response = api_client.get(f"/api/homes/?filter=id:eq:{value}").get_json()
        assert [h["id"] for h in response["items"]] == [value]
        problem(api_client.get(f"/api/homes/{value}/pets/{2**63}"), 404)


# -- PUT writes a relationship by key ---------------------------------------------------------

COLLAR = """
    class Collar(Model):
        id = Column(Integer, primary_key=True)
        pet_name = Column(ForeignKey("pets.name"), nullable=False)
        color = Column(String(10))
        pet = relationship("Pet")
"""


def test_put_writes_a_relationship_by_key(api_client: t.Any) -> None:
    seed(api_client)
    api_client.patch("/api/pets/Rex", json={"age": 3})
    response = api_client.put("/api/pets/Rex", json={"home": 1})
    assert response.status_code == 200, response.get_data(as_text=True)
    # The relationship sets the foreign key; the other omitted fields are emptied.
    assert response.get_json() == {"name": "Rex", "home_id": 1, "age": None, "home": 1,
                                   "toys": []}
    assert api_client.get("/api/homes/1").get_json()["pets"] == ["Kitty", "Rex", "Tom"]
    assert api_client.put("/api/pets/Rex", json={"home": 2, "home_id": 2}).status_code == 200
    body = problem(api_client.put("/api/pets/Rex", json={"home": 1, "home_id": 2}), 409)
    assert fields(body) == {"home": "disagrees with 'home_id'"}
    assert api_client.get("/api/pets/Rex").get_json()["home_id"] == 2
    assert api_client.put("/api/pets/Rex", json={"home": None}).get_json()["home_id"] is None
    body = problem(api_client.put("/api/pets/Rex", json={"home": None, "home_id": 1}), 409)
    assert fields(body) == {"home": "disagrees with 'home_id'"}
    assert api_client.put("/api/pets/Rex", json={"home_id": 2}).get_json()["home"] == 2
    # Without the relationship, an omitted foreign key is emptied as any other field.
    assert api_client.put("/api/pets/Rex", json={}).get_json()["home"] is None
    body = problem(api_client.put("/api/pets/Rex", json={"home": 99}), 409)
    assert fields(body) == {"home": "no Home has the key '99'"}


def test_put_writes_a_composite_relationship_by_key(api_client: t.Any) -> None:
    _seed_all(api_client)
    assert api_client.post("/api/parts/", json={"maker": "bolt", "number": 1}).status_code == 201
    response = api_client.put("/api/screws/1", json={"part": {"maker": "bolt", "number": 1}})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {"id": 1, "maker": "bolt", "number": 1,
                                   "part": {"maker": "bolt", "number": 1}}
    body = problem(api_client.put("/api/screws/1", json={
        "part": {"maker": "acme", "number": 7}, "maker": "acme", "number": 8}), 409)
    assert fields(body) == {"part": "disagrees with 'maker', 'number'"}


def test_a_required_foreign_key_may_be_given_by_its_relationship(make_api: MakeAPI) -> None:
    client = make_api(models=models_source(extra=COLLAR)).app.test_client()
    seed(client)
    response = client.post("/api/collars/", json={"pet": "Tom", "color": "red"})
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.get_json()["pet_name"] == "Tom"
    response = client.put("/api/collars/1", json={"pet": "Kitty"})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {"id": 1, "pet_name": "Kitty", "color": None, "pet": "Kitty"}
    # Still required when neither is given, or when the relationship is emptied.
    assert fields(problem(client.post("/api/collars/", json={}), 422)) == {
        "pet_name": "is required"}
    assert fields(problem(client.put("/api/collars/1", json={"pet": None}), 422)) == {
        "pet_name": "is required"}
    assert fields(problem(client.post("/api/collars/", json={"pet": "Nobody"}), 409)) == {
        "pet": "no Pet has the key 'Nobody'"}


# -- keys that could never be addressed are refused -------------------------------------------

REFUSED = {
    "": "may not be empty",
    "A/B": "may not contain '/'",
    "/": "may not contain '/'",
    "a/": "may not contain '/'",
    "a\nb": "may not contain a line feed",
    "a\n": "may not contain a line feed",
    ".": "may not be '.'",
    "..": "may not be '..'",
}

ODD = [" ", " lead", "trail ", "a b", "100%", "%2F", "%", "%%41", "?", "?q=1", "#", "#frag",
       "a&b=c", "a;b", "a+b", "+", "é", "猫", "🐈", "Ωmega", "a.b", "...", ".a", "a..",
       ".hidden", "\t", "a\rb", "\\", "'\"", "~", "<>", "a:b", "@", "[]", "{x}", "*", "!$&()",
       "x" * 64]


@pytest.mark.parametrize("name", list(REFUSED))
def test_a_key_that_could_not_be_read_back_is_refused(api_client: t.Any, name: str) -> None:
    body = problem(api_client.post("/api/pets/", json={"name": name, "age": 2}), 422)
    assert fields(body) == {"name": body["errors"][0]["reason"]}
    reason = fields(body)["name"]
    assert reason.startswith(REFUSED[name])
    assert "URL" in reason
    assert f"'name' {REFUSED[name]}" in body["detail"]
    # Every fault at once, the key's among them.
    body = problem(api_client.post("/api/pets/", json={"name": name, "age": "old"}), 422)
    assert set(fields(body)) == {"name", "age"}
    # Each column of a composite key.
    body = problem(api_client.post("/api/parts/", json={"maker": name, "number": 1}), 422)
    assert fields(body)["maker"].startswith(REFUSED[name])
    assert api_client.get("/api/pets/").get_json()["total"] == 0
    assert api_client.get("/api/parts/").get_json()["total"] == 0


def test_an_existing_key_may_be_repeated_in_a_body(api_client: t.Any) -> None:
    seed(api_client)
    assert api_client.put("/api/pets/Tom", json={"name": "Tom", "age": 1}).status_code == 200
    assert api_client.patch("/api/pets/Tom", json={"name": "Tom"}).status_code == 200
    body = problem(api_client.patch("/api/pets/Tom", json={"name": "A/B"}), 422)
    assert fields(body) == {"name": "is the key and cannot be changed"}


@pytest.mark.parametrize("name", ODD)
def test_every_key_that_can_be_created_is_read_back_at_its_location(
        api_client: t.Any, name: str) -> None:
    seed(api_client)
    response = api_client.post("/api/pets/", json={"name": name, "home": 1, "toys": [1]})
    assert response.status_code == 201, response.get_data(as_text=True)
    location = response.headers["Location"]
    assert location == "http://localhost/api/pets/" + quote(name, safe="")
    assert api_client.get(location).get_json()["name"] == name
    assert api_client.patch(location, json={"age": 5}).get_json()["age"] == 5
    assert api_client.get(location + "/home").get_json()["id"] == 1
    assert api_client.get(location + "/toys/1").get_json()["id"] == 1
    assert api_client.put(location + "/toys/", json=[2]).status_code == 204
    assert name in [p["name"] for p in api_client.get("/api/homes/1/pets/").get_json()["items"]]
    # As a related key, and in a filter.
    response = api_client.get("/api/pets/?filter=name:eq:" + quote(name, safe=""))
    assert [p["name"] for p in response.get_json()["items"]] == [name]
    assert api_client.put("/api/homes/2/pets/", json=[name]).status_code == 204
    assert api_client.get(location).get_json()["home"] == 2
    # A composite key with the odd value in its first column.
    response = api_client.post("/api/parts/", json={"maker": name[:16], "number": 1})
    assert response.status_code == 201, response.get_data(as_text=True)
    assert api_client.get(response.headers["Location"]).get_json()["maker"] == name[:16]
    assert api_client.delete(location).status_code == 204
    problem(api_client.get(location), 404)


SLOT = """
    class Slot(Model):
        day: Mapped[dt.date] = mapped_column(primary_key=True)
        at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
        local: Mapped[dt.datetime] = mapped_column(primary_key=True)
        code: Mapped[uuid.UUID] = mapped_column(primary_key=True)
        price: Mapped[decimal.Decimal] = mapped_column(Numeric(10, 2), primary_key=True)
        shade: Mapped[Color] = mapped_column(primary_key=True)
        is_open: Mapped[bool] = mapped_column(primary_key=True)
        weight: Mapped[float] = mapped_column(primary_key=True)
        hour: Mapped[dt.time] = mapped_column(primary_key=True)
        note: Mapped[str | None] = mapped_column(String(20))
"""


def test_keys_of_every_type_are_read_back_at_their_location(make_api: MakeAPI) -> None:
    client = make_api(models=models_source(extra=SLOT)).app.test_client()
    given = {"day": "2024-05-01", "at": "2024-05-01T12:30:00+02:00",
             "local": "2024-05-01T08:00:00.250000", "code": "12345678-1234-5678-1234-567812345678",
             "price": "12.50", "shade": "blue", "is_open": False,
             "weight": 1e20, "hour": "08:15:30"}
    response = client.post("/api/slots/", json={**given, "note": "x"})
    assert response.status_code == 201, response.get_data(as_text=True)
    item = client.get(response.headers["Location"]).get_json()
    assert item["note"] == "x"
    assert item["at"] == "2024-05-01T10:30:00+00:00"
    assert client.patch(response.headers["Location"], json={"note": "y"}).status_code == 200
    assert client.delete(response.headers["Location"]).status_code == 204


# -- the document says which keys may be created ----------------------------------------------


KEY_PATTERN = r"^(?!\.\.?$)[^/\n\u0000]+$"


def test_the_document_constrains_new_string_keys(api_client: t.Any) -> None:
    schemas = api_client.get("/api/openapi.json").get_json()["components"]["schemas"]
    assert schemas["Pet.create"]["properties"]["name"] == {
        "type": "string", "maxLength": 64, "minLength": 1, "pattern": KEY_PATTERN}
    for name, field in (("Pet", "name"), ("Part", "maker")):
        assert "pattern" in schemas[f"{name}.create"]["properties"][field]
        for shape in ("create", "replace", "update"):
            schema = schemas[f"{name}.{shape}"]["properties"].get(field)
            if schema is None or schema.get("readOnly"):
                continue  # a key that may only be repeated need not be described so
            assert schema["minLength"] == 1
            # JSON Schema's '$' is the end of the text (ECMA-262), Python's '\Z'.
            pattern = re.compile(schema["pattern"][:-1] + r"\Z")
            for key in REFUSED:
                assert len(key) < 1 or not pattern.search(key), key
            for key in ODD:
                assert pattern.search(key), key
    # Integer keys and the output schemas are unchanged.
    assert "pattern" not in schemas["Home.create"]["properties"]["id"]
    assert "pattern" not in schemas["Pet"]["properties"]["name"]


# -- keys of a type the API passes through ----------------------------------------------------

TAGGED = """
    from sqlalchemy.types import TypeDecorator


    class Code(TypeDecorator):
        impl = Integer
        cache_ok = True


    class Badge(Model):
        id = Column(Code, primary_key=True)
        label = Column(String(10))


    class Pin(Model):
        id = Column(Integer, primary_key=True)
        badge_id = Column(ForeignKey("badges.id"))
        badge = relationship("Badge")
"""


def test_keys_of_a_custom_type_never_give_a_500(make_api: MakeAPI) -> None:
    client = make_api(models=models_source(extra=TAGGED)).app.test_client()
    assert client.post("/api/badges/", json={"id": 7, "label": "x"}).status_code == 201
    for text in ("99999999999999999999", "-99999999999999999999", "x", "1.5", "%5B1%5D"):
        assert client.get(f"/api/badges/{text}").status_code in (404, 422), text
        assert client.get(f"/api/badges/?filter=id:eq:{text}").status_code in (200, 400, 422)
    body = problem(client.post("/api/pins/", json={"badge": [1]}), 422)
    assert fields(body) == {"badge": "expected a key: a string, or a number within 64 bits"}
    # What the driver cannot bind is refused by the API; the rest is the type's to judge.
    values: list[t.Any] = [99999999999999999999, 2**63, -(2**63) - 1, [1], {"a": 1}, "x", 1.5,
                           True]
    for value in values:
        # JSON reads integers past 64 bits as floats (orjson); -(2**63) - 1 rounds to -(2**63).
        refused = value in ([1], {"a": 1}, 2**63, 99999999999999999999)
        for url, body in (("/api/badges/", {"id": value}), ("/api/pins/", {"badge": value}),
                          ("/api/pins/", {"badge": {"id": value}})):
            response = client.post(url, data=json.dumps(body), content_type="application/json")
            assert response.status_code != 500, (value, response.get_data(as_text=True))
            if refused:
                assert set(fields(problem(response, 422))) == set(body)
    # The document says so, for new keys.
    schemas = client.get("/api/openapi.json").get_json()["components"]["schemas"]
    assert schemas["Badge.create"]["properties"]["id"] == {"anyOf": [
        {"type": "string", "minLength": 1, "pattern": KEY_PATTERN}, {"type": "boolean"},
        {"type": "number", "minimum": -(2**63), "exclusiveMaximum": 2**63}]}
