"""Reading objects at any depth, fast: column rows only, a constant number of statements.

A page is read as rows of the columns it shows (never as ORM objects). Each
relationship shown adds one statement, whatever the page size: its rows are
selected by joining the relationship from the page's own SELECT of keys, used as
a subquery, so there is no N+1 and no list of a thousand bound keys. Objects
are then assembled depth first; an object already shown in the response is given
again only as its key, and relationships past the depth are keys.
"""

from __future__ import annotations

import itertools
import operator
import typing as t
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import aliased

if t.TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from .model import ColumnSpec, Key, ModelSpec, RelationSpec
    from .query import Catalog, ReadArgs


@dataclass
class Plan:
    """The columns selected for a model in one request, and what each row gives."""

    spec: ModelSpec
    out: list[str]
    select: list[t.Any]
    key_at: list[int]
    convert: list[tuple[str, t.Callable[[t.Any], t.Any]]]
    # Relationships shown: (relation, target spec, index of its local key in the row or None).
    relations: list[tuple[RelationSpec, ModelSpec, list[int] | None]]
    properties: list[str]
    index: dict[str, int]
    _makers: dict[tuple[tuple[str, int], ...], t.Callable[[t.Any], dict[str, t.Any]]] = field(
        default_factory=dict)

    def key(self, row: t.Sequence[t.Any]) -> Key:
        at = self.key_at
        return row[at[0]] if len(at) == 1 else tuple(row[i] for i in at)

    def maker(self, inline: list[tuple[str, int]]) -> t.Callable[[t.Any], dict[str, t.Any]]:
        """A function building an object from a row, written for these columns.

        A dict display is three times faster than ``dict(zip(names, row))``, and a page
        holds thousands of rows. The names are the model's attribute names, quoted with
        ``repr``; nothing of the request goes into the code.
        """
        cache_key = tuple(inline)
        found = self._makers.get(cache_key)
        if found is None:
            entries = [*((n, i) for i, n in enumerate(self.out)), *inline]
            source = "lambda row: {" + ", ".join(f"{n!r}: row[{i}]" for n, i in entries) + "}"
            found = self._makers[cache_key] = eval(source)  # noqa: S307 (see above)
        return found


@dataclass
class Link:
    relation: RelationSpec
    target: ModelSpec
    children: dict[Key, list[Key]] = field(default_factory=dict)
    level: Level | None = None
    unique: bool = False
    # For a one-to-many: each parent's children objects, in order.
    members: dict[Key, list[dict[str, t.Any]]] | None = None


@dataclass
class Level:
    """The objects of one model at one depth, with the links to the next depth."""

    plan: Plan
    items: list[dict[str, t.Any]] = field(default_factory=list)
    keys: list[Key] = field(default_factory=list)
    by_key: dict[Key, dict[str, t.Any]] = field(default_factory=dict)
    links: list[Link] = field(default_factory=list)


@dataclass
class Page:
    items: list[dict[str, t.Any]]
    has_more: bool
    last_order: tuple[t.Any, ...] | None


class Reader:
    """Reads one request's objects with ``db``; ``options`` scope every model's rows."""

    def __init__(self, db: Session, catalog: Catalog, read: ReadArgs,
                 options: t.Sequence[t.Any] = (), scoped: t.Collection[type[t.Any]] = ()) -> None:
        self.db = db
        self.catalog = catalog
        self.read = read
        self.options = tuple(options)
        self.scoped = scoped
        self._plans: dict[str, Plan] = {}

    # -- entry points -----------------------------------------------------------------------

    def page(self, spec: ModelSpec, criteria: t.Sequence[sa.ColumnElement[bool]],
             order: t.Sequence[tuple[ColumnSpec, bool]], order_by: t.Sequence[t.Any],
             limit: int, offset: int) -> Page:
        """One page: ``limit`` objects after ``offset`` in ``order``, and whether more follow."""
        plan = self.plan(spec, [c.key for c, _d in order])
        stmt = sa.select(*plan.select).where(*criteria).order_by(*order_by)
        rows = list(self._rows(
            stmt.limit(limit + 1).offset(offset or None).options(*self.options)).all())
        has_more = len(rows) > limit
        if has_more:
            del rows[limit:]
        keys = sa.select(*spec.pk_attrs).where(*criteria).order_by(*order_by).limit(limit)
        level = self._level(plan, rows, keys.offset(offset or None), self.read.depth)
        last = None
        if rows:
            last = tuple(rows[-1][plan.index[c.key]] for c, _d in order)
        return Page(self._assemble(level), has_more, last)

    def one(self, spec: ModelSpec, key: Key) -> dict[str, t.Any] | None:
        plan = self.plan(spec)
        criterion = spec.where_key(key)
        rows = self._rows(
            sa.select(*plan.select).where(criterion).options(*self.options)).all()
        if not rows:
            return None
        level = self._level(plan, rows, sa.select(*spec.pk_attrs).where(criterion),
                            self.read.depth)
        return self._assemble(level)[0]

    def _rows(self, stmt: sa.Select[t.Any]) -> sa.CursorResult[t.Any]:
        """Run a SELECT of columns on the session's connection.

        The statement is compiled as the ORM compiles it (relationship joins, scopes), but
        its rows skip the ORM's loading step: they are plain rows, read by position.
        """
        return self.db.connection().execute(stmt)

    # -- plans ------------------------------------------------------------------------------

    def plan(self, spec: ModelSpec, need: t.Sequence[str] = ()) -> Plan:
        cached = self._plans.get(spec.collection)
        if cached is not None and all(n in cached.index for n in need):
            return cached
        fields = self.read.fields_of(spec)
        out = [k for k, c in spec.columns.items()
               if fields is None or k in fields or c.primary_key]
        relations = []
        for name, relation in spec.relations.items():
            if fields is not None and name not in fields:
                continue
            target = self.catalog.spec_of(relation.target)
            if target is None or not self.catalog.readable(target):
                continue
            relations.append((relation, target))
        extra = [n for n in need if n not in out]
        for relation, _target in relations:
            if relation.local_key and relation.target not in self.scoped:
                extra += [n for n in relation.local_key if n not in out and n not in extra]
        names = out + extra
        index = {name: i for i, name in enumerate(names)}
        plan = Plan(
            spec=spec, out=out, select=[spec.columns[n].attr for n in names],
            key_at=[index[c.key] for c in spec.pk],
            convert=[(k, f) for k in out if (f := spec.columns[k].kind.to_json) is not None],
            relations=[
                (r, tgt, [index[n] for n in r.local_key]
                 if r.local_key and r.target not in self.scoped else None)
                for r, tgt in relations
            ],
            properties=[p for p in spec.properties if fields is None or p in fields],
            index=index,
        )
        if not need:
            self._plans[spec.collection] = plan
        return plan

    # -- loading ----------------------------------------------------------------------------

    def _level(self, plan: Plan, rows: t.Sequence[t.Any], select_keys: sa.Select[t.Any],
               depth: int, owners: tuple[int, dict[Key, list[Key]],
                                         dict[Key, list[dict[str, t.Any]]] | None] | None = None
               ) -> Level:
        """Build the objects of ``rows``; ``keys`` selects their keys for the next depth.

        ``owners`` is given for the rows of a relationship, ordered by parent: the position
        of the parent's key in each row, the parent → children keys map to fill, and, when
        each child has one parent, the parent → children objects map to fill.
        """
        level = Level(plan)
        key_at = plan.key_at
        first = key_at[0] if len(key_at) == 1 else -1
        # Many-to-ones past the depth whose key is a column of the row already.
        inline = [(r.key, local[0]) for r, _tgt, local in plan.relations
                  if depth == 0 and local is not None and len(local) == 1]
        make = plan.maker(inline)
        if owners is not None:
            # The rows come ordered by parent: each parent's children are one group.
            owner_at, children, members = owners
            get_owner = operator.itemgetter(owner_at)
            if members is None:  # a child may have several parents: build it once
                for owner, same in itertools.groupby(rows, get_owner):
                    children[owner] = [row[first] if first >= 0 else
                                       tuple(row[i] for i in key_at) for row in same]
                rows = list({(row[first] if first >= 0 else tuple(row[i] for i in key_at)):
                             row for row in rows}.values())
            else:  # one parent each: the parents get their children's objects at once
                items: list[dict[str, t.Any]] = []
                for owner, grouped in itertools.groupby(rows, get_owner):
                    group = list(grouped)
                    made = [make(row) for row in group]
                    members[owner] = made
                    children[owner] = ([row[first] for row in group] if first >= 0 else
                                       [tuple(row[i] for i in key_at) for row in group])
                    items += made
                level.items = items
        if owners is None or owners[2] is None:
            level.items = [make(row) for row in rows]
        items = level.items
        keys = level.keys = ([row[first] for row in rows] if first >= 0 else
                             [tuple(row[i] for i in key_at) for row in rows])
        level.by_key = dict(zip(keys, items, strict=True))
        kept = rows
        for name, convert in plan.convert:
            for item in items:
                value = item[name]
                if value is not None:
                    item[name] = convert(value)
        keys_stmt = select_keys.correlate(None)  # a subquery of its own, even if a table repeats
        for relation, target, local in plan.relations:
            if depth == 0 and local is not None:
                if len(local) > 1:
                    self._local_keys(level, kept, relation, target, local)
            else:
                level.links.append(self._link(plan, keys_stmt, relation, target, depth))
        if plan.properties and items:
            self._properties(plan, level, keys_stmt)
        return level

    def _local_keys(self, level: Level, rows: t.Sequence[t.Any], relation: RelationSpec,
                    target: ModelSpec, local: list[int]) -> None:
        """A many-to-one past the depth on a composite key: its key is in the row already."""
        name = relation.key
        for item, row in zip(level.items, rows, strict=True):
            values = tuple(row[i] for i in local)
            item[name] = None if None in values else target.key_json(values)

    def _link(self, plan: Plan, keys: sa.Select[t.Any], relation: RelationSpec,
              target: ModelSpec, depth: int) -> Link:
        parent = aliased(plan.spec.model)
        parent_key = [getattr(parent, c.key) for c in plan.spec.pk]
        joined = getattr(parent, relation.key)
        source = plan.spec.key_in(keys, parent)
        order = list(relation.order_by) or target.pk_attrs
        link = Link(relation, target)
        children = link.children
        if depth == 0:
            stmt = (sa.select(*target.pk_attrs, *parent_key).select_from(parent).join(joined)
                    .where(source).order_by(*parent_key, *order).options(*self.options))
            width = len(target.pk)
            rows: t.Sequence[t.Any] = self._rows(stmt).all()
            if len(parent_key) > 1:
                rows = [(*row[:width], tuple(row[width:])) for row in rows]
            for owner, group in itertools.groupby(rows, operator.itemgetter(width)):
                if width == 1:
                    children[owner] = [row[0] for row in group]
                else:
                    children[owner] = [target.key_json(tuple(row[:width])) for row in group]
            return link
        target_plan = self.plan(target)
        # The target's columns first, so that its plan reads the row as it is; the parent's
        # key last.
        select = [*target_plan.select, *parent_key]
        stmt = (sa.select(*select).select_from(parent).join(joined)
                .where(source).order_by(*parent_key, *order).options(*self.options))
        rows = self._rows(stmt).all()
        owner_at = len(target_plan.select)
        if len(parent_key) > 1:
            rows = [(*row[:owner_at], tuple(row[owner_at:])) for row in rows]
        child_keys = (sa.select(*target.pk_attrs).select_from(parent).join(joined)
                      .where(source))
        if relation.one_to_many:
            link.members = {}
        link.level = self._level(target_plan, rows, child_keys, depth - 1,
                                 owners=(owner_at, children, link.members))
        return link

    def _properties(self, plan: Plan, level: Level, keys: sa.Select[t.Any]) -> None:
        spec = plan.spec
        stmt = sa.select(spec.model).where(spec.key_in(keys)).options(*self.options)
        for instance in self.db.scalars(stmt):
            values = tuple(getattr(instance, c.key) for c in spec.pk)
            item = level.by_key.get(values[0] if len(values) == 1 else values)
            if item is not None:
                for name in plan.properties:
                    item[name] = getattr(instance, name)

    # -- assembling -------------------------------------------------------------------------

    def _assemble(self, level: Level) -> list[dict[str, t.Any]]:
        collection = level.plan.spec.collection
        if not level.links:
            return level.items
        levels: dict[str, int] = {}
        _count(level, levels)
        for link in _links(level):
            # Without a second level of its model, and one parent per object, no object of
            # this link can be met twice: its items go in without the bookkeeping.
            link.unique = (link.relation.one_to_many
                           and levels.get(link.target.collection) == 1)
        if all(link.level is None or link.unique for link in _links(level)):
            # No object can be met twice: attach each relationship to all items at once.
            _attach(level)
            return level.items
        shown = {(collection, key) for key in level.keys}
        for item, key in zip(level.items, level.keys, strict=True):
            self._fill(level, item, key, shown)
        return level.items

    def _fill(self, level: Level, item: dict[str, t.Any], key: Key,
              shown: set[tuple[str, Key]]) -> None:
        for link in level.links:
            name = link.relation.key
            many = link.relation.many
            keys = link.children.get(key)
            child_level = link.level
            if child_level is None:  # keys only
                if many:
                    item[name] = keys if keys is not None else []
                else:
                    item[name] = keys[0] if keys else None
                continue
            by_key = child_level.by_key
            if link.unique and link.members is not None:
                out = link.members.get(key) or []
                if child_level.links:
                    for child, child_item in zip(keys or (), out, strict=True):
                        self._fill(child_level, child_item, child, shown)
                item[name] = out if many else (out[0] if out else None)
                continue
            target = link.target
            collection = target.collection
            out = []
            for child in keys or ():
                token = (collection, child)
                if token in shown:
                    out.append(target.key_json(child))
                    continue
                shown.add(token)
                child_item = by_key[child]
                if child_level.links:
                    self._fill(child_level, child_item, child, shown)
                out.append(child_item)
            item[name] = out if many else (out[0] if out else None)


def _attach(level: Level) -> None:
    """Give every item its relationships, one relationship at a time (no object repeats)."""
    for link in level.links:
        name = link.relation.key
        source = link.children if link.level is None else link.members
        assert source is not None  # unique links carry their members
        items_keys = zip(level.items, level.keys, strict=True)
        if link.relation.many:
            for item, key in items_keys:
                found = source.get(key)
                item[name] = found if found is not None else []
        else:
            for item, key in items_keys:
                found = source.get(key)
                item[name] = found[0] if found else None
        if link.level is not None and link.level.links:
            _attach(link.level)


def _count(level: Level, levels: dict[str, int]) -> None:
    collection = level.plan.spec.collection
    levels[collection] = levels.get(collection, 0) + 1
    for link in level.links:
        if link.level is not None:
            _count(link.level, levels)


def _links(level: Level) -> t.Iterator[Link]:
    for link in level.links:
        yield link
        if link.level is not None:
            yield from _links(link.level)
