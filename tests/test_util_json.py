"""``to_json_data``, ``Jsonifiable`` and the orjson JSON provider of the project's app."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import importlib
import threading
import typing as t
import uuid
from pathlib import Path

import pytest
import requests
from werkzeug.serving import make_server

from flasker import Project
from flasker.util import Jsonifiable, to_json_data
from flasker.util.json import dumps, loads
from flasker.util.json_data import OrjsonProvider, init_json

from .conftest import free_port, unique_package


class Colour(enum.Enum):
    RED = "red"
    BLUE = 2


class Size(enum.IntEnum):
    BIG = 3


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Opaque:
    pass


UID = uuid.UUID("12345678-1234-5678-1234-567812345678")


def test_values() -> None:
    value = {
        "when": dt.datetime(2024, 5, 6, 7, 8, 9, 123000),
        "aware": dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC),
        "day": dt.date(2024, 5, 6),
        "time": dt.time(7, 8),
        "price": decimal.Decimal("12345678901234567890.123456789"),
        "id": UID,
        "colour": Colour.RED,
        "blue": Colour.BLUE,
        "size": Size.BIG,
        "point": Point(1, 2),
        "tuple": (1, "a"),
        "set": {3, 1, 2},
        "nested": [{"a": [dt.date(2000, 1, 1)]}],
        "none": None, "bool": False, 5: "int key",
    }
    assert to_json_data(value) == {
        "when": "2024-05-06T07:08:09.123000",
        "aware": "2024-05-06T07:08:09+00:00",
        "day": "2024-05-06",
        "time": "07:08:00",
        "price": "12345678901234567890.123456789",
        "id": "12345678-1234-5678-1234-567812345678",
        "colour": "red",
        "blue": 2,
        "size": 3,
        "point": {"x": 1, "y": 2},
        "tuple": [1, "a"],
        "set": [1, 2, 3],
        "nested": [{"a": ["2000-01-01"]}],
        "none": None, "bool": False, "5": "int key",
    }


def test_unknown_type_is_a_type_error_naming_it() -> None:
    with pytest.raises(TypeError, match=r"Object of type 'tests.test_util_json.Opaque' is not JSON"
                                        r" serializable: give it a 'to_json\(\)' method"):
        to_json_data({"ok": 1, "bad": [Opaque()]})
    with pytest.raises(TypeError, match="'builtins.complex'"):
        dumps(1j)
    with pytest.raises(ValueError, match="depth of 'to_json_data' must be 0 or more"):
        to_json_data({}, depth=-1)


def test_jsonifiable_outside_a_model_says_what_is_missing() -> None:
    class Loose(Jsonifiable):
        pass

    with pytest.raises(TypeError, match="'Loose' is not a mapped model"):
        Loose().to_json()


MODELS = """
import datetime as dt
import decimal
import enum
import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from flasker import Model
from flasker.util import Cacheable, Jsonifiable, stored_property


class Form(enum.Enum):
    SONNET = "sonnet"
    HAIKU = "haiku"


class Poet(Jsonifiable, Cacheable, Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(50))
    born: Mapped[dt.date | None]
    poems: Mapped[list["Poem"]] = relationship(back_populates="poet", order_by="Poem.id")

    @property
    def initials(self) -> str:
        return "".join(part[0] for part in self.name.split())

    @stored_property
    def count(self) -> int:
        return len(self.poems)


class Poem(Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(50))
    form: Mapped[Form]
    price: Mapped[decimal.Decimal] = mapped_column(sa.Numeric(10, 2))
    ref: Mapped[uuid.UUID]
    written: Mapped[dt.datetime]
    poet_id: Mapped[int] = mapped_column(sa.ForeignKey("poets.id"))
    poet: Mapped[Poet] = relationship(back_populates="poems")
"""


@pytest.fixture
def poets(make_project: t.Callable[..., Project], db_url: str) -> t.Iterator[Project]:
    package = unique_package()
    project = make_project(
        f"[PROJECT]\nNAME = Poets\nMODULES = {package}.models\nDB_URL = {db_url}\n",
        files={f"{package}/__init__.py": "", f"{package}/models.py": MODELS},
    )
    models = project.models()
    tables = [models["Poet"].__table__, models["Poem"].__table__]
    tables[0].metadata.create_all(project.engine, tables=tables)
    module = importlib.import_module(models["Poem"].__module__)
    with project.app.app_context():
        poet = models["Poet"](id=1, name="Emily Dickinson", born=dt.date(1830, 12, 10))
        project.db.add(poet)
        for number, form in ((1, module.Form.SONNET), (2, module.Form.HAIKU)):
            project.db.add(models["Poem"](
                id=number, title=f"Poem {number}", form=form, price=decimal.Decimal("9.50"),
                ref=UID, written=dt.datetime(1860, 1, number, 12, 0), poet=poet,
            ))
        project.db.commit()
    with project.app.app_context():
        yield project


# SQLAlchemy's Enum stores the member's name; orjson writes the member's value.
POEM_1 = {"id": 1, "title": "Poem 1", "form": "sonnet", "price": "9.50",
          "ref": "12345678-1234-5678-1234-567812345678", "written": "1860-01-01T12:00:00",
          "poet_id": 1}


def test_models_from_the_database(poets: Project) -> None:
    models = poets.models()
    poet = poets.db.get_one(models["Poet"], 1)
    poem_1 = POEM_1
    poem_2 = {**poem_1, "id": 2, "title": "Poem 2", "form": "haiku",
              "written": "1860-01-02T12:00:00"}
    person = {"id": 1, "name": "Emily Dickinson", "born": "1830-12-10"}

    assert to_json_data(poet, depth=0) == person  # Cacheable's '_cache' column stays out
    assert to_json_data(poet) == {**person, "poems": [poem_1, poem_2]}
    assert to_json_data(poet, depth=2) == {
        **person, "poems": [{**poem_1, "poet": person}, {**poem_2, "poet": person}],
    }
    poem = poets.db.get_one(models["Poem"], 1)
    assert to_json_data([poem], depth=0) == [poem_1]
    # A Jsonifiable related object follows the remaining depth.
    assert to_json_data(poem, depth=1)["poet"] == person
    assert to_json_data(poem, depth=2)["poet"]["poems"][1]["title"] == "Poem 2"


def test_to_json_fields(poets: Project) -> None:
    poet = poets.db.get_one(poets.models()["Poet"], 1)
    assert poet.to_json(fields=["name", "initials", "count"]) == {
        "name": "Emily Dickinson", "initials": "ED", "count": 2,
    }
    assert poet.to_json(depth=0, fields=["id", "poems"])["poems"][0]["title"] == "Poem 1"
    assert dumps(poet) == dumps(poet.to_json())  # the serializer calls to_json()
    with pytest.raises(ValueError, match="'Poet' has no field 'nickname' to serialize. Its"
                                         " columns: 'id', 'name', 'born', '_cache'."):
        poet.to_json(fields=["name", "nickname"])
    with pytest.raises(ValueError, match="depth of 'to_json' must be 0 or more"):
        poet.to_json(depth=-1)


# -- the Flask JSON provider, over real HTTP ---------------------------------------------------

VIEWS = """
import datetime as dt
import decimal

from flask import jsonify, render_template_string, request, session

from flasker import current_project
from flasker.util.json_data import init_json

app = current_project.app
init_json(app)


@app.get("/data")
def data():
    return {"when": dt.datetime(2024, 1, 2, 3, 4, 5), "day": dt.date(2024, 1, 2),
            "price": decimal.Decimal("1.10")}


@app.get("/list")
def listing():
    return jsonify([1, dt.date(2024, 1, 2)])


@app.post("/echo")
def echo():
    return {"got": request.get_json()}


@app.get("/bad")
def bad():
    return {"bad": object()}


@app.get("/page")
def page():
    return render_template_string("<script>var x = {{ value|tojson }};</script>",
                                  value={"a": "</script>", "d": dt.date(2024, 1, 2)})


@app.get("/login")
def login():
    session["user"] = {"id": 7, "at": dt.datetime(2024, 1, 2, 3, 4, 5)}
    return "ok"


@app.get("/me")
def me():
    return {"user": session.get("user")}
"""


@pytest.fixture
def served(make_project: t.Callable[..., Project], tmp_path: Path) -> t.Iterator[str]:
    package = unique_package()
    project = make_project(
        f"[PROJECT]\nNAME = Json\nMODULES = {package}.views\n"
        f"DB_URL = sqlite:///{tmp_path / 'j.sqlite'}\n",
        files={f"{package}/__init__.py": "", f"{package}/views.py": VIEWS},
        # Served over plain HTTP to 'requests', which keeps no Secure cookie for http://.
        overrides={"APP": {"TESTING": False, "PROPAGATE_EXCEPTIONS": False,
                           "SESSION_COOKIE_SECURE": False}},
    )
    port = free_port()
    server = make_server("127.0.0.1", port, project.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()
    thread.join(10)


def test_provider_serves_responses_with_flaskers_serializer(served: str) -> None:
    response = requests.get(f"{served}/data", timeout=10)
    assert response.headers["Content-Type"] == "application/json"
    assert response.content == (b'{"when":"2024-01-02T03:04:05","day":"2024-01-02",'
                                b'"price":"1.10"}\n')
    assert requests.get(f"{served}/list", timeout=10).json() == [1, "2024-01-02"]


def test_provider_reads_requests(served: str) -> None:
    answer = requests.post(f"{served}/echo", json={"a": [1, 2.5, None]}, timeout=10)
    assert answer.json() == {"got": {"a": [1, 2.5, None]}}
    broken = requests.post(f"{served}/echo", data=b"{not json",
                           headers={"Content-Type": "application/json"}, timeout=10)
    assert broken.status_code == 400


def test_unknown_type_in_a_response_is_an_error_not_output(served: str) -> None:
    response = requests.get(f"{served}/bad", timeout=10)
    assert response.status_code == 500
    assert b"object at 0x" not in response.content


def test_tojson_filter_and_session(served: str) -> None:
    page = requests.get(f"{served}/page", timeout=10).text
    assert page == ('<script>var x = {"a":"\\u003c/script\\u003e","d":"2024-01-02"};</script>')
    with requests.Session() as browser:
        assert browser.get(f"{served}/login", timeout=10).text == "ok"
        # The cookie keeps a datetime (Flask's tagged JSON); the response writes ISO 8601.
        assert browser.get(f"{served}/me", timeout=10).json() == {
            "user": {"id": 7, "at": "2024-01-02T03:04:05+00:00"},
        }


def test_init_json_after_the_jinja_environment_exists(project: Project) -> None:
    app = project.app
    _ = app.jinja_env
    provider = init_json(app)
    assert app.json is provider
    assert app.jinja_env.policies["json.dumps_function"] == provider.dumps
    assert provider.loads(b'{"a": 1}') == {"a": 1}
    with app.app_context():
        assert provider.dumps({"d": dt.date(2024, 1, 2)}, indent=2) == '{\n  "d": "2024-01-02"\n}'


def test_debug_responses_are_indented(project: Project) -> None:
    provider = init_json(project.app)
    project.app.debug = True
    with project.app.app_context():
        assert provider.response({"a": 1}).get_data() == b'{\n  "a": 1\n}\n'
    provider.compact = True
    with project.app.app_context():
        assert provider.response(a=1).get_data() == b'{"a":1}\n'


def test_the_projects_app_uses_the_orjson_provider(project: Project) -> None:
    assert isinstance(project.app.json, OrjsonProvider)


def test_loads_refuses_malformed_json() -> None:
    with pytest.raises(ValueError):
        loads(b"{")
