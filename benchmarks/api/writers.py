"""One server of the writes benchmark, run as its own process: ``python writers.py IMPL PORT URL``.

IMPL is ``flasker`` (``APIManager``), ``smorest`` (flask-smorest + marshmallow-sqlalchemy
schemas, written as its documentation shows) or ``restless`` (Flask-Restless-NG, run by the
Python of its own virtualenv). Every one serves the same tables with the same rules: a house
has a required ``address`` of at most 128 characters and a required integer ``rooms``; a cat
a required ``name`` of at most 64 characters (its key) and an optional ``house_id``. flasker
and flask-smorest check them before writing (from the columns: required, type, length);
Flask-Restless-NG checks nothing itself and leaves them to PostgreSQL (``NOT NULL``,
``integer``, ``varchar(128)``), which refuses the same bodies.

Each is served as ``servers.py`` serves the read benchmark's (gunicorn, one gthread worker of
one thread, keep-alive, ``pool_pre_ping``), and reports its SQL statements and the client's
port in headers (``servers.count_statements``). Like ``servers.py``, this file imports nothing
of the benchmark package: the Flask-Restless-NG virtualenv runs it by path.
"""

from __future__ import annotations

import sys
import typing as t
from pathlib import Path

import sqlalchemy as sa
from flask import Flask, request
from sqlalchemy import ForeignKey, Integer, Unicode
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    mapped_column,
    relationship,
    scoped_session,
    sessionmaker,
)

FLASKER_MODELS = '''
from flasker import current_project
from flasker.ext.api import APIManager
from flasker import Model
from sqlalchemy import Column, ForeignKey, Integer, Unicode
from sqlalchemy.orm import relationship

api_manager = APIManager(add_all_models=True)
current_project.register_manager(api_manager, config_section="API")


class House(Model):
    id = Column(Integer, primary_key=True)
    address = Column(Unicode(128), nullable=False, index=True)
    rooms = Column(Integer, nullable=False)


class Cat(Model):
    name = Column(Unicode(64), primary_key=True)
    house_id = Column(ForeignKey("houses.id"), index=True)
    house = relationship("House", backref="cats")
'''


class Base(DeclarativeBase):
    pass


class House(Base):
    __tablename__ = "houses"
    id: Mapped[int] = mapped_column(primary_key=True)
    address: Mapped[str] = mapped_column(Unicode(128), index=True)
    rooms: Mapped[int] = mapped_column(Integer)
    cats: Mapped[list[Cat]] = relationship(back_populates="house")


class Cat(Base):
    __tablename__ = "cats"
    name: Mapped[str] = mapped_column(Unicode(64), primary_key=True)
    house_id: Mapped[int | None] = mapped_column(ForeignKey("houses.id"), index=True)
    house: Mapped[House | None] = relationship(back_populates="cats")


def flasker_app(url: str, folder: str) -> tuple[Flask, sa.Engine]:
    from flasker import Project
    from flasker.project import prepare_import

    root = Path(folder)
    (root / "bench_writes_app").mkdir(parents=True, exist_ok=True)
    (root / "bench_writes_app" / "__init__.py").write_text("")
    (root / "bench_writes_app" / "models.py").write_text(FLASKER_MODELS)
    (root / "default.cfg").write_text(
        "[PROJECT]\nNAME = bench\nMODULES = bench_writes_app.models\nLOG_LEVEL = WARNING\n"
        f"DB_URL = {url}\n[APP]\nSECRET_KEY = bench-0123456789abcdef0123456789abcdef\n"
        "[API]\nMAX_PAGE_SIZE = 100\nMAX_DEPTH = 1\nMAX_BULK_ITEMS = 1000\n"
    )
    prepare_import(root)
    project = Project(root / "default.cfg")
    return project.app, project.engine


def smorest_app(url: str) -> tuple[Flask, sa.Engine]:
    """flask-smorest with marshmallow-sqlalchemy auto schemas, as its documentation shows.

    The schemas give the same checks as flasker's (required, type, length, from the
    columns); a bulk create is what a smorest user writes for many objects: one view that
    loads a list (``many=True``), adds every object and commits once.
    """
    from flask.views import MethodView
    from flask_smorest import Api, Blueprint, abort  # type: ignore[import-untyped]
    from marshmallow import fields
    from marshmallow_sqlalchemy import SQLAlchemyAutoSchema

    engine = sa.create_engine(url, pool_pre_ping=True)  # as flasker's engines
    session = scoped_session(sessionmaker(bind=engine))
    app = Flask("smorest")
    app.config.update(API_TITLE="bench", API_VERSION="1", OPENAPI_VERSION="3.0.3")

    class HouseSchema(SQLAlchemyAutoSchema[t.Any]):
        class Meta:
            model = House
            dump_only = ("id",)

    class HouseQuery(SQLAlchemyAutoSchema[t.Any]):
        class Meta:
            model = House
            fields = ("rooms_min",)

        rooms_min = fields.Integer()

    blp = Blueprint("houses", "houses", url_prefix="/api")
    many, partial = HouseSchema(many=True), HouseSchema(partial=True)  # type: ignore[no-untyped-call]

    def one(key: int) -> House:
        house = session.get(House, key)
        if house is None:
            abort(404)  # raises
        return t.cast(House, house)

    class Houses(MethodView):
        @blp.arguments(HouseQuery, location="query")  # type: ignore[untyped-decorator]
        @blp.response(200, many)  # type: ignore[untyped-decorator]
        @blp.paginate(page_size=20, max_page_size=100)  # type: ignore[untyped-decorator]
        def get(self, args: dict[str, t.Any], pagination_parameters: t.Any) -> t.Any:
            query = session.query(House).order_by(House.address, House.id)
            if "rooms_min" in args:
                query = query.filter(House.rooms >= args["rooms_min"])
            pagination_parameters.item_count = query.count()
            return (query.limit(pagination_parameters.page_size)
                    .offset(pagination_parameters.first_item).all())

        @blp.arguments(HouseSchema)  # type: ignore[untyped-decorator]
        @blp.response(201, HouseSchema)  # type: ignore[untyped-decorator]
        def post(self, data: dict[str, t.Any]) -> t.Any:
            house = House(**data)
            session.add(house)
            session.commit()
            return house

    class Bulk(MethodView):
        @blp.arguments(many)  # type: ignore[untyped-decorator]
        @blp.response(201, many)  # type: ignore[untyped-decorator]
        def post(self, data: list[dict[str, t.Any]]) -> t.Any:
            houses = [House(**item) for item in data]
            session.add_all(houses)
            session.commit()
            return houses

    class OneHouse(MethodView):
        @blp.arguments(HouseSchema)  # type: ignore[untyped-decorator]
        @blp.response(200, HouseSchema)  # type: ignore[untyped-decorator]
        def put(self, data: dict[str, t.Any], key: int) -> t.Any:
            house = one(key)
            for name, value in data.items():
                setattr(house, name, value)
            session.commit()
            return house

        @blp.arguments(partial)  # type: ignore[untyped-decorator]
        @blp.response(200, HouseSchema)  # type: ignore[untyped-decorator]
        def patch(self, data: dict[str, t.Any], key: int) -> t.Any:
            house = one(key)
            for name, value in data.items():
                setattr(house, name, value)
            session.commit()
            return house

        @blp.response(204)  # type: ignore[untyped-decorator]
        def delete(self, key: int) -> None:
            session.delete(one(key))
            session.commit()

    blp.route("/houses/")(Houses)
    blp.route("/houses/bulk")(Bulk)
    blp.route("/houses/<int:key>")(OneHouse)
    Api(app).register_blueprint(blp)
    app.teardown_appcontext(lambda _exc: session.remove())
    return app, engine


def restless_app(url: str) -> tuple[Flask, sa.Engine]:
    """Flask-Restless-NG with its defaults (JSON:API), every write method allowed."""
    # Installed in its own virtualenv only; untyped where it is installed.
    from flask_restless import APIManager  # type: ignore[import-not-found,import-untyped,unused-ignore]

    engine = sa.create_engine(url, pool_pre_ping=True)  # as flasker's engines
    session = scoped_session(sessionmaker(bind=engine))
    app = Flask("restless")
    manager = APIManager(app, session=session)
    methods = ["GET", "POST", "PATCH", "DELETE"]
    manager.create_api(House, collection_name="houses", methods=methods, max_page_size=100)
    manager.create_api(Cat, collection_name="cats", methods=methods, max_page_size=100)
    app.teardown_appcontext(lambda _exc: session.remove())
    return app, engine


def servers() -> t.Any:
    """``servers.py``, beside this file: run by path (no package), it is imported by its name."""
    import importlib

    sys.path.insert(0, str(Path(__file__).parent))
    return importlib.import_module("servers")


def serve(impl: str, port: int, url: str, folder: str) -> None:
    """The write benchmark's server ``impl``, under ``servers.run_gunicorn``."""
    read_servers = servers()

    def make() -> Flask:
        if impl == "flasker":
            app, engine = flasker_app(url, folder)
        else:
            app, engine = {"smorest": smorest_app, "restless": restless_app}[impl](url)
        read_servers.count_statements(app, engine)

        @app.get("/ready")
        def ready() -> str:
            return request.method

        return app

    read_servers.run_gunicorn(port, make)


if __name__ == "__main__":
    servers().main(serve)
