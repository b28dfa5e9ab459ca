"""``flasker.util.Model`` on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import typing as t
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import Column, ForeignKey, Integer, String, Unicode
from sqlalchemy.orm import Mapped, mapped_column, relationship
from werkzeug.exceptions import NotFound

from flasker import Project
from flasker.util import Model, table_name

from .conftest import write_project


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


TABLES = [Model.metadata.tables[name] for name in ("houses", "cats", "box_taxes")]


@pytest.fixture
def project(tmp_path: Path, db_url: str) -> t.Iterator[Project]:
    path = write_project(tmp_path / "p", f"[PROJECT]\nNAME = models\nDB_URL = {db_url}\n")
    project = Project(path, overrides={"APP": {"TESTING": True}})
    Model.metadata.create_all(project.engine, tables=TABLES)
    with project.app.app_context():
        yield project
    Model.metadata.drop_all(project.engine, tables=TABLES)
    project.engine.dispose()


@pytest.mark.parametrize(
    ("name", "table"),
    [("House", "houses"), ("Cat", "cats"), ("BoxTax", "box_taxes"), ("Category", "categories"),
     ("Day", "days"), ("HTTPLog", "http_logs"), ("Match", "matches")],
)
def test_table_name_derives_from_the_class_name(name: str, table: str) -> None:
    assert table_name(name) == table


def test_models_use_derived_names() -> None:
    assert House.__tablename__ == "houses"
    assert Cat.__tablename__ == "cats"
    assert BoxTax.__tablename__ == "box_taxes"


def test_keyword_constructor_and_helpers(project: Project) -> None:
    house = House(address="1 Road")
    with pytest.raises(TypeError, match="colour"):
        Cat(name="Tom", colour="grey")
    db = project.db
    db.add(house)
    db.add(Cat(name="Tom", house=house))
    db.commit()
    assert House.primary_key_names() == ("id",)
    assert BoxTax.primary_key_names() == ("region", "year")
    assert house.primary_key() == (house.id,)
    assert set(House.relationships()) == {"cats"}
    assert House.column_names() == ("id", "address")
    assert repr(house) == f"<House id={house.id}>"


def test_get_or_404(project: Project) -> None:
    house = House(address="2 Road")
    project.db.add(house)
    project.db.commit()
    assert House.get_or_404(house.id) is house
    with pytest.raises(NotFound) as info:
        House.get_or_404(9999)
    assert "No House with key 9999" in str(info.value.description)


def test_first_or_404(project: Project) -> None:
    project.db.add_all([House(address="a"), House(address="b")])
    project.db.commit()
    assert House.first_or_404(address="b").address == "b"
    assert House.first_or_404(House.address.like("a%")).address == "a"
    with pytest.raises(NotFound):
        House.first_or_404(address="zzz")


def test_get_or_create_creates_once(project: Project) -> None:
    first, created = House.get_or_create(address="3 Road")
    second, created_again = House.get_or_create(address="3 Road")
    assert created and not created_again
    assert first is second
    tax, made = BoxTax.get_or_create(region="eu", year=2026, defaults={"rate": 0.2})
    assert made and tax.rate == 0.2


@pytest.fixture
def pg_project(tmp_path: Path, clean_pg: str) -> t.Iterator[Project]:
    """PostgreSQL only: SQLite serialises writers, and the race needs two open transactions."""
    path = write_project(tmp_path / "pg", f"[PROJECT]\nNAME = race\nDB_URL = {clean_pg}\n")
    project = Project(path, overrides={"APP": {"TESTING": True}})
    Model.metadata.create_all(project.engine, tables=TABLES)
    with project.app.app_context():
        yield project
    project.db.remove()
    project.engine.dispose()


def test_get_or_create_loses_a_race_gracefully(pg_project: Project) -> None:
    """Another transaction inserts the row between our select and our insert."""
    project = pg_project
    db = project.db
    db.add(House(address="before"))
    db.flush()  # our transaction is open and holds a row of its own
    barrier = threading.Event()

    original = House.__init__

    def racing_init(self: House, **kwargs: t.Any) -> None:
        # Runs after our SELECT found nothing: the other transaction commits the row now.
        if not barrier.is_set():
            barrier.set()
            with project.engine.begin() as other:
                other.execute(sa.insert(TABLES[0]).values(address="raced"))
        original(self, **kwargs)

    House.__init__ = racing_init  # type: ignore[method-assign,assignment]
    try:
        house, created = House.get_or_create(address="raced")
    finally:
        House.__init__ = original  # type: ignore[method-assign]
    assert not created
    assert house.address == "raced"
    db.commit()  # the savepoint rolled back alone: our earlier row survives
    assert db.scalar(sa.select(sa.func.count()).select_from(House)) == 2


def test_paginate(project: Project) -> None:
    project.db.add_all([House(address=f"{i:02d} Street") for i in range(25)])
    project.db.commit()
    page = House.paginate(page=2, per_page=10)
    assert page.total == 25 and page.pages == 3
    assert [h.address for h in page.items] == [f"{i:02d} Street" for i in range(10, 20)]
    assert page.has_prev and page.has_next
    last = House.paginate(page=3, per_page=10)
    assert len(last.items) == 5 and not last.has_next
    filtered = House.paginate(select=sa.select(House).where(House.address.like("0%")), per_page=5)
    assert filtered.total == 10
    assert House.paginate(per_page=1000, max_per_page=20).per_page == 20
    with pytest.raises(NotFound):
        House.paginate(page=4, per_page=10)
    with pytest.raises(NotFound):
        House.paginate(page=0)
    assert House.paginate(page=0, error_out=False).page == 1


def test_foreign_keys_are_enforced(project: Project) -> None:
    project.db.add(Cat(name="Stray", house_id=12345))
    with pytest.raises(sa.exc.IntegrityError):
        project.db.commit()
    project.db.rollback()
