"""``flasker.Model`` on SQLite and PostgreSQL: each project maps its models in its own registry."""

from __future__ import annotations

import threading
import typing as t
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from sqlalchemy import Column, ForeignKey, Integer, String, Unicode
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.exceptions import NotFound

from flasker import Model, Project
from flasker.models import table_name

from .conftest import write_project


def declare_models() -> SimpleNamespace:
    """The models of these tests, declared in the current project's registry."""

    class House(Model):
        id = Column(Integer, primary_key=True)
        address = Column(Unicode(128), unique=True)

    class Cat(Model):
        name = Column(Unicode(64), primary_key=True)
        house_id = Column(Integer, ForeignKey("houses.id"))
        house = relationship("House", backref="cats")

    class BoxTax(Model):
        """A typed 2.0 model with a composite key."""

        region: Mapped[str] = mapped_column(String(8), primary_key=True)
        year: Mapped[int] = mapped_column(primary_key=True)
        rate: Mapped[float] = mapped_column(default=0.0)

    return SimpleNamespace(House=House, Cat=Cat, BoxTax=BoxTax)


@pytest.fixture
def project(tmp_path: Path, db_url: str) -> t.Iterator[Project]:
    path = write_project(tmp_path / "p", f"[PROJECT]\nNAME = models\nDB_URL = {db_url}\n")
    project = Project(path, overrides={"APP": {"TESTING": True}})
    with project.app.app_context():
        yield project
    project.metadata.drop_all(project.engine)
    project.close()


def create_models(project: Project) -> SimpleNamespace:
    """Declare the models in ``project`` and create their tables.

    The namespace keeps the classes alive: a registry holds its classes weakly, as
    SQLAlchemy's do, and a module normally keeps them.
    """
    models = declare_models()
    project.metadata.create_all(project.engine)
    return models


@pytest.fixture
def models(project: Project) -> SimpleNamespace:
    return create_models(project)


@pytest.fixture
def pg_models(pg_project: Project) -> SimpleNamespace:
    return create_models(pg_project)


@pytest.mark.parametrize(
    ("name", "table"),
    [("House", "houses"), ("Cat", "cats"), ("BoxTax", "box_taxes"), ("Category", "categories"),
     ("Day", "days"), ("HTTPLog", "http_logs"), ("Match", "matches")],
)
def test_table_name_derives_from_the_class_name(name: str, table: str) -> None:
    assert table_name(name) == table


def test_models_use_derived_names(models: SimpleNamespace) -> None:
    assert models.House.__tablename__ == "houses"
    assert models.Cat.__tablename__ == "cats"
    assert models.BoxTax.__tablename__ == "box_taxes"


def test_keyword_constructor_and_helpers(project: Project, models: SimpleNamespace) -> None:
    house = models.House(address="1 Road")
    with pytest.raises(TypeError, match="colour"):
        models.Cat(name="Tom", colour="grey")
    db = project.db
    db.add(house)
    db.add(models.Cat(name="Tom", house=house))
    db.commit()
    assert models.House.primary_key_names() == ("id",)
    assert models.BoxTax.primary_key_names() == ("region", "year")
    assert house.primary_key() == (house.id,)
    assert set(models.House.relationships()) == {"cats"}
    assert models.House.column_names() == ("id", "address")
    assert repr(house) == f"<House id={house.id}>"


def test_get_or_404(project: Project, models: SimpleNamespace) -> None:
    house = models.House(address="2 Road")
    project.db.add(house)
    project.db.commit()
    assert models.House.get_or_404(house.id) is house
    with pytest.raises(NotFound) as info:
        models.House.get_or_404(9999)
    assert "No House with key 9999" in str(info.value.description)


def test_first_or_404(project: Project, models: SimpleNamespace) -> None:
    project.db.add_all([models.House(address="a"), models.House(address="b")])
    project.db.commit()
    assert models.House.first_or_404(address="b").address == "b"
    assert models.House.first_or_404(models.House.address.like("a%")).address == "a"
    with pytest.raises(NotFound):
        models.House.first_or_404(address="zzz")


def test_get_or_create_creates_once(project: Project, models: SimpleNamespace) -> None:
    first, created = models.House.get_or_create(address="3 Road")
    second, created_again = models.House.get_or_create(address="3 Road")
    assert created and not created_again
    assert first is second
    tax, made = models.BoxTax.get_or_create(region="eu", year=2026, defaults={"rate": 0.2})
    assert made and tax.rate == 0.2


@pytest.fixture
def pg_project(tmp_path: Path, clean_pg: str) -> t.Iterator[Project]:
    """PostgreSQL only: SQLite serialises writers, and the race needs two open transactions."""
    path = write_project(tmp_path / "pg", f"[PROJECT]\nNAME = race\nDB_URL = {clean_pg}\n")
    project = Project(path, overrides={"APP": {"TESTING": True}})
    with project.app.app_context():
        yield project
    project.close()


def test_get_or_create_loses_a_race_gracefully(pg_project: Project,
                                              pg_models: SimpleNamespace) -> None:
    """Another transaction inserts the row between our select and our insert."""
    project = pg_project
    db = project.db
    db.add(pg_models.House(address="before"))
    db.flush()  # our transaction is open and holds a row of its own
    barrier = threading.Event()

    original = pg_models.House.__init__

    def racing_init(self: t.Any, **kwargs: t.Any) -> None:
        # Runs after our SELECT found nothing: the other transaction commits the row now.
        if not barrier.is_set():
            barrier.set()
            with project.engine.begin() as other:
                other.execute(sa.insert(pg_models.House.__table__).values(address="raced"))
        original(self, **kwargs)

    pg_models.House.__init__ = racing_init
    try:
        house, created = pg_models.House.get_or_create(address="raced")
    finally:
        pg_models.House.__init__ = original
    assert not created
    assert house.address == "raced"
    db.commit()  # the savepoint rolled back alone: our earlier row survives
    assert db.scalar(sa.select(sa.func.count()).select_from(pg_models.House)) == 2


def test_paginate(project: Project, models: SimpleNamespace) -> None:
    project.db.add_all([models.House(address=f"{i:02d} Street") for i in range(25)])
    project.db.commit()
    page = models.House.paginate(page=2, per_page=10)
    assert page.total == 25 and page.pages == 3
    assert [h.address for h in page.items] == [f"{i:02d} Street" for i in range(10, 20)]
    assert page.has_prev and page.has_next
    last = models.House.paginate(page=3, per_page=10)
    assert len(last.items) == 5 and not last.has_next
    House = models.House
    filtered = House.paginate(select=sa.select(House).where(House.address.like("0%")), per_page=5)
    assert filtered.total == 10
    assert models.House.paginate(per_page=1000, max_per_page=20).per_page == 20
    with pytest.raises(NotFound):
        models.House.paginate(page=4, per_page=10)
    with pytest.raises(NotFound):
        models.House.paginate(page=0)
    assert models.House.paginate(page=0, error_out=False).page == 1


def test_foreign_keys_are_enforced(project: Project, models: SimpleNamespace) -> None:
    project.db.add(models.Cat(name="Stray", house_id=12345))
    with pytest.raises(sa.exc.IntegrityError):
        project.db.commit()
    project.db.rollback()


def test_an_abstract_base_is_shared_and_mapped_with_each_subclass(project: Project) -> None:
    class Named(Model):
        __abstract__ = True
        name: Mapped[str] = mapped_column(String(20))

    class Dog(Named):
        id: Mapped[int] = mapped_column(primary_key=True)

    assert set(Dog.__table__.c.keys()) == {"id", "name"}
    assert project.models()["Dog"] is Dog
    assert "Named" not in project.models()


def test_a_model_belongs_to_the_project_that_declared_it(project: Project, models: SimpleNamespace,
                                                        tmp_path: Path) -> None:
    path = write_project(tmp_path / "other", "[PROJECT]\nNAME = other\n")
    other = Project(path, overrides={"APP": {"TESTING": True}})
    with other.app.app_context():
        class House(Model):  # the same name and table as the first project's, side by side
            id: Mapped[int] = mapped_column(primary_key=True)

    assert other.models() == {"House": House}
    assert project.models()["House"] is models.House is not House
    assert set(project.metadata.tables) == {"houses", "cats", "box_taxes"}
    other.close()
