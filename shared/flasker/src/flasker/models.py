"""``Model``: the base of every flasker model, mapped in the registry of its own project.

Each :class:`~flasker.Project` has a SQLAlchemy registry of its own (``project.registry``,
whose ``metadata`` holds its tables), as each Flask-SQLAlchemy ``db`` has its own
``db.Model``. A class that subclasses :class:`Model` is mapped, as it is declared, in
the registry of ``current_project``: the project importing its MODULES, or the one whose
app context is pushed. Two projects in one process each have their own ``House``.
"""

from __future__ import annotations

import math
import re
import typing as t
from dataclasses import dataclass

import sqlalchemy as sa
from flask import abort
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapper, Session, declared_attr, registry
from sqlalchemy.orm.relationships import RelationshipProperty

from .globals import current_project, has_project

_T = t.TypeVar("_T", bound="Model")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def table_name(class_name: str) -> str:
    """Snake-case plural table name: ``House`` → ``houses``, ``BoxTax`` → ``box_taxes``."""
    snake = _CAMEL.sub("_", class_name).lower()
    if re.search(r"(s|x|z|ch|sh)$", snake):
        return snake + "es"
    if re.search(r"[^aeiou]y$", snake):
        return snake[:-1] + "ies"
    return snake + "s"


def new_registry() -> registry:
    """A registry with flasker's constraint naming convention, for one project."""
    return registry(metadata=sa.MetaData(naming_convention=NAMING_CONVENTION))


@dataclass
class Pagination(t.Generic[_T]):
    """One page of results, as ``Model.paginate`` returns it."""

    items: list[_T]
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page)) if self.per_page else 1

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages


_outside_project_msg = """\
The model '{name}' is declared outside a flasker project.

A model is mapped in the registry of the project that declares it. Declare models in
a module of the project's [PROJECT] MODULES (imported when the project starts), or
inside 'with project.app.app_context():'. An abstract base ('__abstract__ = True')
needs no project.\
"""


class Model:
    """The base of a project's models: keyword constructor, table name from the class name.

    ``House(address="1 Road")`` works out of the box, ``House.__tablename__`` is
    ``houses``. Helpers use the project's session unless another one is passed.
    A subclass is mapped in ``current_project.registry`` when it is declared (SQLAlchemy's
    public ``registry.map_declaratively``); one with ``__abstract__ = True`` in its own
    body is a mixin, mapped with each of its subclasses.
    """

    __abstract__ = True

    if t.TYPE_CHECKING:
        __table__: t.ClassVar[sa.Table]
        __mapper__: t.ClassVar[Mapper[t.Any]]

    def __init_subclass__(cls, **kwargs: t.Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("__abstract__", False):
            return
        if not has_project():
            raise RuntimeError(_outside_project_msg.format(name=cls.__name__))
        current_project.registry.map_declaratively(cls)

    def __init__(self, **kwargs: t.Any) -> None:
        """Set each keyword as an attribute; an unknown name is a ``TypeError``."""
        cls = type(self)
        for key, value in kwargs.items():
            if not hasattr(cls, key):
                raise TypeError(f"{key!r} is an invalid keyword argument for {cls.__name__}")
            setattr(self, key, value)

    @declared_attr.directive
    def __tablename__(cls) -> str:
        # SQLAlchemy calls a directive with the class being mapped, not an instance.
        return table_name(t.cast("type[Model]", cls).__name__)

    def __repr__(self) -> str:
        pairs = zip(self.primary_key_names(), self.primary_key(), strict=True)
        keys = ", ".join(f"{k}={v!r}" for k, v in pairs)
        return f"<{type(self).__name__} {keys}>"

    # -- introspection ----------------------------------------------------------------------

    @classmethod
    def primary_key_names(cls) -> tuple[str, ...]:
        """Attribute names of the primary key columns, in table order."""
        mapper = sa.inspect(cls)
        return tuple(mapper.get_property_by_column(c).key for c in mapper.primary_key)

    def primary_key(self) -> tuple[t.Any, ...]:
        """This instance's primary key values (``None`` entries before a flush)."""
        return tuple(getattr(self, name) for name in self.primary_key_names())

    @classmethod
    def column_names(cls) -> tuple[str, ...]:
        return tuple(p.key for p in sa.inspect(cls).column_attrs)

    @classmethod
    def relationships(cls) -> dict[str, RelationshipProperty[t.Any]]:
        """Relationship properties by name (backrefs included)."""
        return dict(sa.inspect(cls).relationships.items())

    # -- queries ----------------------------------------------------------------------------

    @staticmethod
    def _session(session: Session | None) -> Session:
        return session if session is not None else current_project.db()

    @classmethod
    def get(cls: type[_T], ident: t.Any, session: Session | None = None) -> _T | None:
        return cls._session(session).get(cls, ident)

    @classmethod
    def get_or_404(cls: type[_T], ident: t.Any, session: Session | None = None,
                   description: str | None = None) -> _T:
        instance = cls._session(session).get(cls, ident)
        if instance is None:
            abort(404, description=description or f"No {cls.__name__} with key {ident!r}.")
        return instance

    @classmethod
    def first_or_404(cls: type[_T], *criteria: t.Any, session: Session | None = None,
                     description: str | None = None, **filters: t.Any) -> _T:
        stmt = sa.select(cls).filter(*criteria).filter_by(**filters).limit(1)
        instance = cls._session(session).scalars(stmt).first()
        if instance is None:
            abort(404, description=description or f"No {cls.__name__} matches.")
        return instance

    @classmethod
    def get_or_create(cls: type[_T], defaults: t.Mapping[str, t.Any] | None = None,
                      session: Session | None = None, **filters: t.Any) -> tuple[_T, bool]:
        """Return ``(instance, created)``: the row matching ``filters``, made if missing.

        The insert runs in a savepoint, so when another transaction creates the same
        row first (a unique constraint fires) the existing row is returned and the
        caller's transaction is left intact.
        """
        db = cls._session(session)
        stmt = sa.select(cls).filter_by(**filters).limit(1)
        instance = db.scalars(stmt).first()
        if instance is not None:
            return instance, False
        instance = cls(**filters, **(defaults or {}))
        try:
            with db.begin_nested():
                db.add(instance)
        except IntegrityError:
            found = db.scalars(stmt).first()
            if found is None:
                raise
            return found, False
        return instance, True

    @classmethod
    def paginate(cls: type[_T], page: int = 1, per_page: int = 20, *,
                 select: sa.Select[t.Any] | None = None, max_per_page: int = 100,
                 session: Session | None = None, error_out: bool = True) -> Pagination[_T]:
        """One page of ``select`` (all rows by primary key by default).

        A page below 1, a size below 1 or past the last page is a 404 when
        ``error_out`` (as in a view), else it is clamped.
        """
        db = cls._session(session)
        if select is None:
            select = sa.select(cls).order_by(*sa.inspect(cls).primary_key)
        if page < 1 or per_page < 1:
            if error_out:
                abort(404)
            page, per_page = max(page, 1), max(per_page, 1)
        per_page = min(per_page, max_per_page)
        total = db.scalar(sa.select(sa.func.count()).select_from(select.order_by(None).subquery()))
        items = list(db.scalars(select.limit(per_page).offset((page - 1) * per_page)))
        if not items and page != 1 and error_out:
            abort(404)
        return Pagination(items=items, page=page, per_page=per_page, total=total or 0)
