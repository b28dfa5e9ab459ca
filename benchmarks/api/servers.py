"""One server of the API benchmark, run as its own process: ``python servers.py IMPL PORT DB_URL``.

IMPL is ``flasker``, ``bare`` (psycopg alone, running the SQL flasker runs and sending its
text), ``lower`` (hand-written: SQLAlchemy Core + orjson), ``smorest``
(flask-smorest + marshmallow-sqlalchemy) or ``restless`` (Flask-Restless-NG, run by the
Python of its own virtualenv). Every one is served the same way: gunicorn with one gthread
worker of one thread (the worker class of the project's web role), on 127.0.0.1, keeping
the client's connection alive (as production servers and clients do), and its engine
tests a connection before use (``pool_pre_ping``, flasker's default). Each response says how
many SQL statements it ran in the ``X-Statements`` header (SQLAlchemy's
``before_cursor_execute`` event) and the client's port in ``X-Client-Port``, by which the
benchmark checks the connection is reused.

This file imports nothing of the benchmark package: the Flask-Restless-NG virtualenv runs
it by path with only its own packages installed.
"""

from __future__ import annotations

import logging
import sys
import typing as t
from collections import defaultdict

import sqlalchemy as sa
from flask import Flask, Response, request
from sqlalchemy import ForeignKey, Unicode
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    mapped_column,
    relationship,
    scoped_session,
    selectinload,
    sessionmaker,
)

if t.TYPE_CHECKING:
    from collections.abc import Callable

    from flasker import Project

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
    address = Column(Unicode(128))


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
    address: Mapped[str | None] = mapped_column(Unicode(128))
    cats: Mapped[list[Cat]] = relationship(back_populates="house")


class Cat(Base):
    __tablename__ = "cats"
    name: Mapped[str] = mapped_column(Unicode(64), primary_key=True)
    house_id: Mapped[int | None] = mapped_column(ForeignKey("houses.id"), index=True)
    house: Mapped[House | None] = relationship(back_populates="cats")


def count_statements(app: Flask, engine: sa.Engine | None, counter: list[int] | None = None
                     ) -> None:
    """Put the number of SQL statements of each request in its ``X-Statements`` header.

    Counted by SQLAlchemy's ``before_cursor_execute`` event, or by the view in ``counter``
    (a server without SQLAlchemy).
    """
    counter = counter if counter is not None else [0]

    def seen(*_args: t.Any) -> None:
        counter[0] += 1

    if engine is not None:
        sa.event.listen(engine, "before_cursor_execute", seen)

    @app.before_request
    def reset() -> None:
        counter[0] = 0

    @app.after_request
    def report(response: Response) -> Response:
        response.headers["X-Statements"] = str(counter[0])
        response.headers["X-Client-Port"] = str(request.environ.get("REMOTE_PORT"))
        return response


def flasker_project(url: str, folder: str, package: str = "bench_api_app",
                    models: str = FLASKER_MODELS) -> Project:
    """A flasker project in ``folder`` whose package ``package`` holds ``models``: its API
    serves pages of up to 10,000 items at depth 0 or 1."""
    from pathlib import Path

    from flasker import Project
    from flasker.project import prepare_import

    root = Path(folder)
    (root / package).mkdir(parents=True, exist_ok=True)
    (root / package / "__init__.py").write_text("")
    (root / package / "models.py").write_text(models)
    (root / "default.cfg").write_text(
        f"[PROJECT]\nNAME = {package}\nMODULES = {package}.models\nLOG_LEVEL = WARNING\n"
        f"DB_URL = {url}\n[APP]\nSECRET_KEY = bench-0123456789abcdef0123456789abcdef\n"
        "[API]\nMAX_PAGE_SIZE = 10000\nMAX_DEPTH = 1\n"
    )
    prepare_import(root)
    return Project(root / "default.cfg")


def flasker_app(url: str, folder: str) -> tuple[Flask, sa.Engine]:
    project = flasker_project(url, folder)
    return project.app, project.engine


def bare_app(url: str, folder: str) -> tuple[Flask, list[int]]:
    """The new lower bound: flasker's own SQL, run straight through psycopg, its text sent.

    A flasker project on the same tables is asked once for each depth, in-process, and the
    statement it runs is recorded (SQLAlchemy's ``before_cursor_execute``): the page whose
    JSON PostgreSQL writes, with the collection's count. The view then runs it with its own
    values on one psycopg connection and sends the text, in flasker's envelope: what is
    left of a request once every Python layer but Flask and the driver is gone.
    """
    import psycopg

    app_, engine = flasker_app(url, folder)
    recorded: dict[int, list[tuple[str, dict[str, t.Any]]]] = {}

    def record(_conn: t.Any, _cursor: t.Any, statement: str, parameters: t.Any,
               _context: t.Any, _many: bool) -> None:
        recorded.setdefault(depth, []).append((statement, dict(parameters or {})))

    sa.event.listen(engine, "before_cursor_execute", record)
    client = app_.test_client()
    for depth in (0, 1):
        response = client.get(f"/api/houses/?limit=10&depth={depth}")
        assert response.status_code == 200, response.get_data(as_text=True)
    sa.event.remove(engine, "before_cursor_execute", record)
    engine.dispose()
    for depth, statements in recorded.items():
        if len(statements) != 1 or "string_agg" not in statements[0][0]:
            raise RuntimeError(f"flasker did not write the JSON in PostgreSQL at depth {depth}:"
                               f" {[s for s, _p in statements]}")
    connection = psycopg.connect(sa.make_url(url).set(drivername="postgresql")
                                 .render_as_string(hide_password=False), autocommit=True)
    app = Flask("bare")
    counter = [0]

    @app.get("/api/houses/")
    def index() -> Response:
        limit = int(request.args.get("limit", 20))
        ((page, params),) = recorded[int(request.args.get("depth", 0))]
        with connection.cursor() as cursor:
            row = cursor.execute(page, {**params, "api_limit": limit + 1, "api_offset": 0,
                                        "api_shown": limit}).fetchone()
        counter[0] += 1
        assert row is not None
        # The items, the rows read, then the collection's count.
        body = (f'{{"items":[{row[0]}],"limit":{limit},"total":{row[2]},"offset":0}}')
        return Response(body.encode(), mimetype="application/json")

    return app, counter


def lower_app(url: str) -> tuple[Flask, sa.Engine]:
    """The lower bound: the same JSON as flasker's, from Core selects of the columns + orjson.

    The cats are selected by the keys of the houses already read, given as one array
    parameter: the plan PostgreSQL makes best (an index search), as flasker does.
    """
    import orjson
    from sqlalchemy.dialects.postgresql import ARRAY

    engine = sa.create_engine(url, pool_pre_ping=True)  # as flasker's engines
    houses, cats = House.__table__, Cat.__table__
    app = Flask("lower")
    page = sa.select(houses.c.id, houses.c.address).order_by(houses.c.id).limit(
        sa.bindparam("limit"))
    related = (sa.select(cats.c.house_id, cats.c.name)
               .where(cats.c.house_id == sa.any_(sa.bindparam("keys", type_=ARRAY(sa.Integer))))
               .order_by(cats.c.house_id, cats.c.name))
    count = sa.select(sa.func.count()).select_from(houses)

    @app.get("/api/houses/")
    def index() -> Response:
        limit = int(request.args.get("limit", 20))
        depth = int(request.args.get("depth", 0))
        with engine.connect() as connection:
            total = connection.execute(count).scalar()
            rows = connection.execute(page, {"limit": limit}).all()
            owned: defaultdict[int, list[t.Any]] = defaultdict(list)
            found = connection.execute(related, {"keys": [i for i, _a in rows]}).all()
            if depth:
                for house, name in found:
                    owned[house].append({"name": name, "house_id": house, "house": house})
            else:
                for house, name in found:
                    owned[house].append(name)
            items = [{"id": i, "address": a, "cats": owned.get(i, [])} for i, a in rows]
        body = {"items": items, "limit": limit, "total": total, "offset": 0}
        return Response(orjson.dumps(body), mimetype="application/json")

    return app, engine


def smorest_app(url: str) -> tuple[Flask, sa.Engine]:
    """flask-smorest with marshmallow-sqlalchemy schemas, as its documentation shows them."""
    from flask.views import MethodView
    from flask_smorest import Api, Blueprint  # type: ignore[import-untyped]
    from marshmallow_sqlalchemy import SQLAlchemyAutoSchema
    from marshmallow_sqlalchemy.fields import Nested

    engine = sa.create_engine(url, pool_pre_ping=True)  # as flasker's engines
    session = scoped_session(sessionmaker(bind=engine))
    app = Flask("smorest")
    app.config.update(API_TITLE="bench", API_VERSION="1", OPENAPI_VERSION="3.0.3")

    class CatSchema(SQLAlchemyAutoSchema[t.Any]):
        class Meta:
            model = Cat
            include_fk = True

    class HouseSchema(SQLAlchemyAutoSchema[t.Any]):
        class Meta:
            model = House
            include_relationships = True  # the cats' keys

    class DeepHouseSchema(SQLAlchemyAutoSchema[t.Any]):
        class Meta:
            model = House

        cats = Nested(CatSchema, many=True)

    blp = Blueprint("houses", "houses", url_prefix="/api")

    def listing(schema: type[SQLAlchemyAutoSchema[t.Any]]) -> Callable[..., t.Any]:
        @blp.response(200, schema(many=True))  # type: ignore[untyped-decorator]
        @blp.paginate(page_size=20, max_page_size=10000)  # type: ignore[untyped-decorator]
        def get(self: t.Any, pagination_parameters: t.Any) -> t.Any:
            query = session.query(House).options(selectinload(House.cats)).order_by(House.id)
            pagination_parameters.item_count = query.count()
            return (query.limit(pagination_parameters.page_size)
                    .offset(pagination_parameters.first_item).all())

        return t.cast("Callable[..., t.Any]", get)

    blp.route("/houses/")(type("Houses", (MethodView,), {"get": listing(HouseSchema)}))
    blp.route("/houses/deep/")(type("DeepHouses", (MethodView,), {"get": listing(DeepHouseSchema)}))
    Api(app).register_blueprint(blp)
    app.teardown_appcontext(lambda _exc: session.remove())
    return app, engine


def restless_app(url: str) -> tuple[Flask, sa.Engine]:
    """Flask-Restless-NG with its defaults (JSON:API), page size up to 10,000."""
    # Installed in its own virtualenv only; untyped where it is installed.
    from flask_restless import APIManager  # type: ignore[import-not-found,import-untyped,unused-ignore]

    engine = sa.create_engine(url, pool_pre_ping=True)  # as flasker's engines
    session = scoped_session(sessionmaker(bind=engine))
    app = Flask("restless")
    manager = APIManager(app, session=session)
    manager.create_api(House, collection_name="houses", max_page_size=10000)
    manager.create_api(Cat, collection_name="cats", max_page_size=10000)
    app.teardown_appcontext(lambda _exc: session.remove())
    return app, engine


def run_gunicorn(port: int, make: t.Callable[[], Flask]) -> None:
    """gunicorn, as the project's web role runs it: a gthread worker keeping connections alive.

    One worker with one thread, so every server answers one request at a time; the app is
    made in the worker (after the fork) by ``make``, as ``flasker web`` makes it.
    """
    from gunicorn.app.base import BaseApplication  # type: ignore[import-untyped,unused-ignore]

    class Application(BaseApplication):  # type: ignore[misc,unused-ignore]
        def load_config(self) -> None:
            for key, value in {
                "bind": [f"127.0.0.1:{port}"], "workers": 1, "worker_class": "gthread",
                "threads": 1,
                # Longer than any pause of the benchmark between two requests to one server
                # (re-seeding, the other servers' turns), so the connection is never dropped.
                "keepalive": 120, "timeout": 300, "loglevel": "warning",
                "accesslog": None, "control_socket_disable": True,
            }.items():
                if key in self.cfg.settings:
                    self.cfg.set(key, value)

        def load(self) -> Flask:
            return make()

    Application().run()


def serve(impl: str, port: int, url: str, folder: str) -> None:
    """The read benchmark's server ``impl``, under :func:`run_gunicorn`."""

    def make() -> Flask:
        if impl == "flasker":
            app, engine = flasker_app(url, folder)
        elif impl == "bare":
            app, counter = bare_app(url, folder)
            count_statements(app, None, counter)
            return app
        else:
            app, engine = {"lower": lower_app, "smorest": smorest_app,
                           "restless": restless_app}[impl](url)
        count_statements(app, engine)
        return app

    run_gunicorn(port, make)


def main(serve: t.Callable[[str, int, str, str], None] = serve) -> None:
    """``python servers.py IMPL PORT DB_URL [FOLDER]``: serve until stopped."""
    impl, port, url = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    folder = sys.argv[4] if len(sys.argv) > 4 else ""
    logging.basicConfig(level=logging.WARNING)
    print(f"serving {impl} on 127.0.0.1:{port}", flush=True)
    sys.argv = sys.argv[:1]  # gunicorn parses the command line: give it none of ours
    serve(impl, port, url, folder)


if __name__ == "__main__":
    main()
