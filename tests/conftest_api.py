"""The API tests' fixtures and helpers: a project whose MODULES declare the test models.

Registered for every test by ``pytest_plugins`` in ``conftest.py``; the ``test_ext_api*.py``
files ask for the fixtures by name (``make_api``, ``api``, ``api_client``, ``statements``)
and import the helpers (``models_source``, ``seed``, ``problem``, ``fields``).
"""

from __future__ import annotations

import textwrap
import typing as t
from pathlib import Path

import flask
import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from flasker import Project
from flasker.ext.api.views import Endpoints

from .conftest import unique_package

# The test models: Column style and typed 2.0 style, a composite key, a many-to-many,
# a self-referential tree, every column type the API knows. Each project maps them in its
# own registry, from a package of its own (MODULES = <unique package>.models).
MODELS = '''
from __future__ import annotations

import datetime as dt
import decimal
import enum
import uuid

from sqlalchemy import (JSON, Column, DateTime, ForeignKey, ForeignKeyConstraint, Integer,
                        LargeBinary, Numeric, String, Unicode)
from sqlalchemy.orm import Mapped, column_property, mapped_column, relationship

from flasker import Model, current_project
from flasker.ext.api import APIManager

api_manager = APIManager(add_all_models=ADD_ALL)
current_project.register_manager(api_manager)
SETUP


class Home(Model):
    id = Column(Integer, primary_key=True)
    address = Column(Unicode(128), unique=True)
    rooms = Column(Integer)

    @property
    def label(self) -> str:
        return f"Home {self.id} at {self.address}"


class Pet(Model):
    name = Column(Unicode(64), primary_key=True)
    home_id = Column(ForeignKey("homes.id"))
    age = Column(Integer)
    home = relationship("Home", backref="pets")
    toys = relationship("Toy", secondary="pet_toys", back_populates="pets",
                        order_by="Toy.id")


class PetToy(Model):
    pet_name = Column(ForeignKey("pets.name"), primary_key=True)
    toy_id = Column(ForeignKey("toys.id"), primary_key=True)


class Toy(Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    pets: Mapped[list[Pet]] = relationship(secondary="pet_toys", back_populates="toys")


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Reading(Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    taken_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    local_at: Mapped[dt.datetime | None]
    day: Mapped[dt.date | None]
    value: Mapped[decimal.Decimal] = mapped_column(Numeric(14, 6))
    ratio: Mapped[float | None]
    ok: Mapped[bool] = mapped_column(default=True)
    color: Mapped[Color | None]
    note: Mapped[str | None] = mapped_column(String(10))
    data: Mapped[dict | None] = mapped_column(JSON)
    blob: Mapped[bytes | None] = mapped_column(LargeBinary)
    token: Mapped[uuid.UUID | None]


class Part(Model):
    maker: Mapped[str] = mapped_column(String(16), primary_key=True)
    number: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str | None] = mapped_column(String(32))
    screws: Mapped[list[Screw]] = relationship(back_populates="part", order_by="Screw.id")


class Screw(Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    maker: Mapped[str | None] = mapped_column(String(16))
    number: Mapped[int | None]
    part: Mapped[Part | None] = relationship(back_populates="screws")
    __table_args__ = (ForeignKeyConstraint(["maker", "number"], ["parts.maker", "parts.number"]),)


class Node(Model):
    id = Column(Integer, primary_key=True)
    parent_id = Column(ForeignKey("nodes.id"))
    title = Column(String(40))
    children = relationship("Node", back_populates="parent", order_by="Node.id")
    parent = relationship("Node", back_populates="children", remote_side=[id])
    rank = column_property(id * 10)
'''


def models_source(*, add_all: bool = True, setup: str = "", extra: str = "") -> str:
    """The models module, with the manager's options and extra code after registration."""
    source = MODELS.replace("ADD_ALL", repr(add_all)).replace("SETUP", textwrap.dedent(setup))
    return source + textwrap.dedent(extra)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Drop the SQL-JSON path's runs on SQLite, which reads by the Python path only."""
    kept, dropped = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if params.get("read_path") == "sql" and params.get("db_url") == "sqlite":
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


class ComparingClient(FlaskClient):
    """A test client that reads every GET of the API a second time by the Python path.

    The response the test sees is the SQL-JSON path's (``sqljson``); the same request
    answered with ``Endpoints.sql_json`` off must give the same bytes and ETag.
    """

    compare = True  # off where a test counts statements

    def open(self, *args: t.Any, **kwargs: t.Any) -> t.Any:
        response = super().open(*args, **kwargs)
        request = response.request
        if (self.compare and request.method == "GET" and response.status_code == 200
                and response.mimetype == "application/json"
                and "/api/" in request.path and not request.path.endswith("openapi.json")):
            Endpoints.sql_json = False
            try:
                again = super().open(*args, **kwargs)
            finally:
                Endpoints.sql_json = True
            assert again.data == response.data, (request.full_path, response.data, again.data)
            assert again.headers.get("ETag") == response.headers.get("ETag")
        return response


@pytest.fixture(params=["sql", "python"])
def read_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """``sql``: reads by the SQL-JSON path, each compared with the Python path; ``python``."""
    path = t.cast(str, request.param)
    monkeypatch.setattr(Endpoints, "sql_json", path == "sql")
    if path == "sql":
        monkeypatch.setattr(flask.Flask, "test_client_class", ComparingClient)
    return path


class MakeAPI(t.Protocol):
    def __call__(self, *, models: str | None = ..., api: str = ...,
                 app: str = ...) -> Project: ...


@pytest.fixture
def make_api(make_project: t.Callable[..., Project], db_url: str, tmp_path: Path) -> MakeAPI:
    """``make_api(models=..., api="KEY = value\\n")``: a started project with its tables."""

    def make(*, models: str | None = None, api: str = "", app: str = "") -> Project:
        package = unique_package()
        cfg = (f"[PROJECT]\nNAME = API test\nMODULES = {package}.models\nDB_URL = {db_url}\n"
               f"[API]\n{api}\n[APP]\n{app}\n")
        project = make_project(cfg, files={f"{package}/__init__.py": "",
                                           f"{package}/models.py": models or models_source()},
                               folder=tmp_path / package)
        project.metadata.create_all(project.engine)
        return project

    return make


@pytest.fixture
def api(make_api: MakeAPI) -> Project:
    """The test project with every model exposed and default options."""
    return make_api()


@pytest.fixture
def api_client(api: Project) -> t.Any:
    """A test client of :func:`api` (``client`` is the plain project's, in ``conftest.py``)."""
    return api.app.test_client()


class Statements:
    """Counts the SQL statements an engine runs (SQLAlchemy's before_cursor_execute event)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.count = 0
        self.engine = engine
        sa.event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, *_args: t.Any) -> None:
        self.count += 1

    def reset(self) -> None:
        self.count = 0

    def close(self) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self._seen)


@pytest.fixture
def statements(api: Project) -> t.Iterator[Statements]:
    counter = Statements(api.engine)
    yield counter
    counter.close()


def problem(response: t.Any, status: int) -> dict[str, t.Any]:
    """Assert ``response`` is problem details with ``status``; return its body."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = t.cast(dict[str, t.Any], response.get_json(force=True))
    assert body["status"] == status
    assert set(body) == {"type", "title", "status", "detail", "errors"}
    assert body["detail"]
    return body


def fields(body: dict[str, t.Any]) -> dict[str, str]:
    return {e["field"]: e["reason"] for e in body["errors"]}


def seed(client: t.Any) -> None:
    """Two homes with pets, toys shared between pets."""
    for address in ("1 Road", "2 Lane"):
        assert client.post("/api/homes/", json={"address": address}).status_code == 201
    for kind in ("ball", "mouse"):
        assert client.post("/api/toys/", json={"kind": kind}).status_code == 201
    for name, home, toys in (("Tom", 1, [1, 2]), ("Kitty", 1, [1]), ("Rex", 2, [])):
        response = client.post("/api/pets/", json={"name": name, "home": home, "toys": toys})
        assert response.status_code == 201, response.get_data(as_text=True)
