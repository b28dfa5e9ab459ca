"""The bare peers of the reference app's page ``/``: the same page written without flasker.

``python -m gunicorn --config /app/services/web/gunicorn.conf.py --chdir /bench page:app`` in
the stack's own image (``bench_stack.py``), or imported in process (``bench_page.py``). Flask,
Flask-WTF, Jinja and SQLAlchemy as a Flask user writes them, nothing of flasker's:

- ``/`` does the reference view's work (``reference/app/views.py``, ``render_index``): the same
  four statements (the count and the page of 20 houses, the cats per house, beat's last tick)
  through plain SQLAlchemy (its own engine with SQLAlchemy's defaults, a session per request),
  the same templates (``reference/app/templates``: ``index.html`` and its base), the same
  Flask-WTF form and CSRF token, so the same new signed session cookie per request.
- ``/template`` renders the same template from 20 houses held in memory: no database, no session
  (a fixed string stands for the CSRF token). It is "a bare gunicorn + Flask page with a
  template".

The database URL and the secret come from ``PAGE_DB_URL`` and ``PAGE_SECRET_KEY``; the
templates are the reference app's own, found at ``PAGE_TEMPLATES``, else in the image
(``/app/reference/app/templates``), else beside this repository's ``benchmarks/``.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import typing as t
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from flask import Flask, abort, render_template, request
from flask_wtf import FlaskForm
from flask_wtf.csrf import CSRFProtect
from markupsafe import Markup
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, scoped_session, sessionmaker
from wtforms import StringField  # type: ignore[import-untyped]
from wtforms.validators import DataRequired, Length  # type: ignore[import-untyped]

if t.TYPE_CHECKING:
    from flask.typing import ResponseReturnValue

PROJECT_NAME = "Houses and Cats"


def templates_folder() -> Path:
    # '.parent' thrice, not 'parents[2]': mounted as /bench/page.py, the file has two parents.
    repository = Path(__file__).resolve().parent.parent.parent
    candidates = [os.environ.get("PAGE_TEMPLATES", ""), "/app/reference/app/templates",
                  str(repository / "reference" / "app" / "templates")]
    for candidate in candidates:
        if candidate and (Path(candidate) / "index.html").is_file():
            return Path(candidate)
    raise RuntimeError(f"The reference app's templates are in none of {candidates[1:]}: set"
                       " 'PAGE_TEMPLATES' to the folder holding 'index.html'.")


class Base(DeclarativeBase):
    pass


class House(Base):
    __tablename__ = "houses"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True),
                                                    server_default=sa.func.now())


class Cat(Base):
    __tablename__ = "cats"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(50))
    house_id: Mapped[int] = mapped_column(sa.ForeignKey("houses.id", ondelete="CASCADE"))


class BeatRun(Base):
    __tablename__ = "beat_runs"
    name: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    ran_at: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))
    runs: Mapped[int] = mapped_column(default=0)


class HouseForm(FlaskForm):  # type: ignore[misc]  # Flask-WTF is untyped
    name = StringField("Name", validators=[DataRequired(), Length(max=100)])


@dataclass
class Page:
    """What the template reads of a page of houses (flasker's ``Pagination``, by hand)."""

    items: list[t.Any]
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(math.ceil(self.total / self.per_page), 1)

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages


@dataclass(frozen=True)
class _Field:
    data: str | None = None
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class _StaticForm:
    """The template's form without a session: a fixed hidden field stands for the token."""

    csrf_token: Markup = Markup('<input id="csrf_token" name="csrf_token" type="hidden"'
                                ' value="bare-template-page">')
    name: _Field = _Field()


def create_app(db_url: str, secret_key: str) -> Flask:
    """The bare app: ``/`` (the reference page's work) and ``/template`` (the template alone)."""
    folder = templates_folder()
    app = Flask(__name__, template_folder=str(folder),
                static_folder=str(folder.parent / "static"))
    app.config.update(SECRET_KEY=secret_key, FLASKER_PROJECT_NAME=PROJECT_NAME,
                      SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                      SESSION_COOKIE_SECURE=True)
    CSRFProtect(app)
    engine = sa.create_engine(db_url)
    session = scoped_session(sessionmaker(engine))
    app.extensions["bare_page_engine"] = engine

    @app.teardown_appcontext
    def remove_session(exc: BaseException | None) -> None:
        session.remove()

    @app.get("/")
    def index() -> ResponseReturnValue:
        number = request.args.get("page", 1, type=int)
        select = sa.select(House).order_by(House.name)
        total = session.scalar(sa.select(sa.func.count()).select_from(
            select.order_by(None).subquery()))
        items = list(session.scalars(select.limit(20).offset((number - 1) * 20)))
        ids = [h.id for h in items]
        cat_counts = dict(session.execute(
            sa.select(Cat.house_id, sa.func.count()).where(Cat.house_id.in_(ids))
            .group_by(Cat.house_id)
        ).tuples().all())
        return render_template("index.html", houses=Page(items, number, 20, total or 0),
                               cat_counts=cat_counts, form=HouseForm(), task=None,
                               tick=session.get(BeatRun, "tick"))

    houses = [House(id=i, name=f"House {i:03d}") for i in range(1, 21)]
    tick = BeatRun(name="tick", ran_at=dt.datetime.now(dt.UTC), runs=1)

    @app.get("/template")
    def template() -> ResponseReturnValue:
        return render_template("index.html", houses=Page(houses, 1, 20, 50),
                               cat_counts={h.id: 3 for h in houses}, form=_StaticForm(),
                               task=None, tick=tick, csrf_token=lambda: "bare-template-page")

    # The endpoints the template links to: only their URLs are built here.
    for rule, endpoint, methods in (("/houses", "create_house", ["POST"]),
                                    ("/houses/<int:house_id>", "house", ["GET"]),
                                    ("/tasks", "enqueue", ["POST"]),
                                    ("/tasks/<task_id>", "task_status", ["GET"])):
        app.add_url_rule(rule, endpoint, lambda **_: abort(404), methods=methods)
    return app


def _from_environment() -> Flask | None:
    url, secret = os.environ.get("PAGE_DB_URL"), os.environ.get("PAGE_SECRET_KEY")
    return create_app(url, secret) if url and secret else None


# gunicorn's 'page:app' (the benchmark's container sets both variables).
app = _from_environment()
