"""``Model``: the declarative base of every flasker project."""

from __future__ import annotations

import math
import re
import typing as t
from dataclasses import dataclass

import sqlalchemy as sa
from flask import abort
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Session, declared_attr
from sqlalchemy.orm.relationships import RelationshipProperty

from ..globals import current_project

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


@dataclass
class Page(t.Generic[_T]):
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


class Model(DeclarativeBase):
    """Declarative base: keyword constructor, table name from the class name, helpers.

    ``House(address="1 Road")`` works out of the box, ``House.__tablename__`` is
    ``houses``. Helpers use the project's session unless another one is passed.
    """

    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

    @declared_attr.directive
    def __tablename__(cls) -> str:
        return table_name(cls.__name__)

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
                 session: Session | None = None, error_out: bool = True) -> Page[_T]:
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
        return Page(items=items, page=page, per_page=per_page, total=total or 0)


def forget_models(modules: t.Collection[str]) -> None:
    """Unmap the models declared in ``modules`` or in modules below them; drop their tables.

    A project that imports its modules anew (a second project in one process) would
    otherwise find its tables "already defined". SQLAlchemy only disposes whole
    registries publicly, so this uses the per-class half of ``registry.dispose``.
    """
    registry = Model.registry
    for manager in list(registry._managers):
        cls = manager.class_
        if not any(cls.__module__ == m or cls.__module__.startswith(m + ".") for m in modules):
            continue
        # A class whose mapping failed half-way has a manager but no '__table__' of its own.
        table = cls.__dict__.get("__table__")
        del registry._managers[manager]
        registry._dispose_manager_and_mapper(manager)
        if isinstance(table, sa.Table) and table.name in Model.metadata.tables:
            Model.metadata.remove(table)
