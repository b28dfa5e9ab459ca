"""The API's SQL reader: objects at any depth from column rows, in a constant number of statements.

A page is read as rows of the columns it shows (never as ORM objects). Each
relationship shown adds one statement, whatever the page size (no N+1): its rows
are selected by the keys of the objects read at the level above, on the columns
that hold them beside the targets (a foreign key, an association table) when
there are such, else by a join from the parents. On PostgreSQL the keys are one
array parameter, so that the planner searches an index; other databases are
given the SELECT of those keys as a subquery. Objects are then assembled depth
first; an object already shown in the response is given again only as its key,
and relationships past the depth are keys.
"""

from __future__ import annotations

import operator
import typing as t
from collections import deque
from dataclasses import dataclass, field
from functools import partial
from itertools import repeat

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
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

    def items(self, rows: t.Sequence[t.Any], inline: t.Sequence[tuple[str, int]]
              ) -> list[dict[str, t.Any]]:
        """The objects of ``rows``: the columns shown, by name, then ``inline`` (name, index).

        The objects are filled a column at a time, each column by a loop in C (``map``
        over the rows): within 2 % of a request of 10,000 houses and their 30,000 cats
        of a dict display written for these columns, which only ``eval`` could write.
        ``dict(zip(names, row))`` allocates three objects a row; the garbage collector
        counting, it costs 6 % of that request.
        """
        items: list[dict[str, t.Any]] = [{} for _row in rows]
        shown = [(name, at) for at, name in enumerate(self.out)]
        for name, at in [*shown, *inline]:
            _exhaust(map(operator.setitem, items, repeat(name), map(operator.itemgetter(at), rows)))
        return items


def _exhaust(iterator: t.Iterator[object]) -> None:
    """Run ``iterator`` to its end in C, keeping nothing (itertools' "consume" recipe)."""
    deque(iterator, maxlen=0)


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
class Keys:
    """The keys of one level's objects, and how to select them again in SQL."""

    values: list[Key]
    select: t.Callable[[], sa.Select[t.Any]]
    width: int = 1  # columns of a key


_NOTHING = object()  # equal to no key


def _key_names(width: int) -> list[str]:
    """The parameters of the arrays of keys, one per key column."""
    return ["api_keys"] if width == 1 else [f"api_keys{i}" for i in range(width)]


@dataclass
class ReadPage:
    """What :meth:`Reader.page` read: its objects, whether more follow, the last sort values."""

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
        self.arrays = catalog.dialect == "postgresql"
        self._plans: dict[str, Plan] = {}
        self._connection: sa.Connection | None = None

    # -- entry points -----------------------------------------------------------------------

    def page(self, spec: ModelSpec, criteria: t.Sequence[sa.ColumnElement[bool]],
             order: t.Sequence[tuple[ColumnSpec, bool]], order_by: t.Sequence[t.Any],
             limit: int, offset: int) -> ReadPage:
        """One page: ``limit`` objects after ``offset`` in ``order``, and whether more follow.

        ``order_by`` is ``order`` as clauses.
        """
        plan = self.plan(spec, [c.key for c, _d in order])

        def build() -> sa.Select[t.Any]:
            return (sa.select(*plan.select).where(*criteria).order_by(*order_by)
                    .limit(sa.bindparam("api_limit", type_=sa.Integer))
                    # 64 bits, as offsets and positions go (PostgreSQL casts to the type).
                    .offset(sa.bindparam("api_offset", type_=sa.BigInteger))
                    .options(*self.options))

        shape = ("page", tuple(plan.index), tuple((c.key, d) for c, d in order))
        stmt = self._statement(spec, shape, build, not criteria)
        rows = list(self._rows(stmt, {"api_limit": limit + 1, "api_offset": offset}).all())
        has_more = len(rows) > limit
        if has_more:
            del rows[limit:]

        def keys() -> sa.Select[t.Any]:
            return (sa.select(*spec.pk_attrs).where(*criteria).order_by(*order_by)
                    .limit(limit).offset(offset or None))

        level = self._level(plan, rows, keys, self.read.depth)
        last = None
        if rows:
            last = tuple(rows[-1][plan.index[c.key]] for c, _d in order)
        return ReadPage(self._assemble(level), has_more, last)

    def one(self, spec: ModelSpec, key: Key) -> dict[str, t.Any] | None:
        plan = self.plan(spec)
        criterion = spec.where_key(key)
        rows = self._rows(
            sa.select(*plan.select).where(criterion).options(*self.options)).all()
        if not rows:
            return None
        level = self._level(plan, rows, lambda: sa.select(*spec.pk_attrs).where(criterion),
                            self.read.depth)
        return self._assemble(level)[0]

    def stream(self, spec: ModelSpec, criteria: t.Sequence[sa.ColumnElement[bool]],
               order_by: t.Sequence[t.Any], size: int, limit: int | None = None,
               offset: int = 0) -> tuple[list[str], t.Iterator[list[dict[str, t.Any]]]]:
        """The objects matching ``criteria`` in order (``limit`` after ``offset``), in batches.

        Gives the fields of each object (columns, relationships, properties, in the order
        a JSON object shows them) and an iterator of batches. The SELECT runs at once, so
        that its errors are the caller's to answer; its rows are then fetched ``size`` at
        a time (``yield_per``: a server-side cursor on PostgreSQL, SQLite steps its own),
        so memory holds one batch however many rows match. Relationships are keys (depth
        0), read per batch as for a page: one statement per relationship and batch.
        """
        plan = self.plan(spec)
        stmt = (sa.select(*plan.select).where(*criteria).order_by(*order_by)
                .limit(limit).offset(offset or None).options(*self.options))
        result = self._rows_streamed(stmt, size)
        names = [*plan.out, *(r.key for r, _tgt, _local in plan.relations), *plan.properties]
        return names, self._batches(plan, result)

    def connection(self) -> sa.Connection:
        """The session's connection, for the whole read: nothing commits meanwhile."""
        connection = self._connection
        if connection is None:
            connection = self._connection = self.db.connection()
        return connection

    def _rows_streamed(self, stmt: sa.Select[t.Any], size: int) -> sa.CursorResult[t.Any]:
        connection = self._connection
        if connection is None:
            connection = self._connection = self.db.connection()
        return connection.execute(stmt, execution_options={"yield_per": size})

    def _batches(self, plan: Plan, result: sa.CursorResult[t.Any]
                 ) -> t.Iterator[list[dict[str, t.Any]]]:
        spec = plan.spec
        key_of = operator.itemgetter(*plan.key_at)
        try:
            for rows in result.partitions():
                keys = list(map(key_of, rows))
                level = self._level(plan, rows, partial(_select_keys, spec, keys), 0)
                yield self._assemble(level)
        finally:
            result.close()

    def _rows(self, stmt: sa.Select[t.Any], params: dict[str, t.Any] | None = None
              ) -> sa.CursorResult[t.Any]:
        """Run a SELECT of columns on the session's connection.

        The statement is compiled as the ORM compiles it (relationship joins, scopes), but
        its rows skip the ORM's loading step: they are plain rows, read by position.
        """
        connection = self._connection
        if connection is None:  # the session's, for the whole read: nothing commits meanwhile
            connection = self._connection = self.db.connection()
        return connection.execute(stmt, params)

    def _statement(self, spec: ModelSpec, shape: tuple[t.Any, ...],
                   build: t.Callable[[], sa.Select[t.Any]], reusable: bool = True
                   ) -> sa.Select[t.Any]:
        """``build()``, made once for all requests when nothing of this one is in it.

        A scope (the caller's rows only) is of the request; ``reusable`` says whether the
        statement holds values of the request otherwise.
        """
        if self.options or not reusable:
            return build()
        return t.cast("sa.Select[t.Any]", spec.statement(shape, build))

    def _among(self, columns: t.Sequence[t.Any], keys: Keys) -> sa.ColumnElement[bool]:
        """``columns`` (holding a key) equal to one of ``keys``; see :meth:`_key_values`.

        PostgreSQL takes the keys as one array parameter per column: the statement stays
        the same whatever their number (compiled once, prepared by the driver), and it is
        planned as an index search, where ``IN (SELECT ...)`` is planned as a join that
        scans the whole table. Other databases limit the parameters of a statement and
        take the SELECT of the keys instead.
        """
        if not self.arrays:
            select = keys.select().correlate(None)  # its own FROM, even if a table repeats
            if len(columns) == 1:
                return t.cast("sa.ColumnElement[bool]", columns[0].in_(select))
            return sa.tuple_(*columns).in_(select)
        names = _key_names(len(columns))
        arrays = [sa.bindparam(name, type_=ARRAY(column.type))
                  for name, column in zip(names, columns, strict=True)]
        if len(columns) == 1:
            return t.cast("sa.ColumnElement[bool]", columns[0] == sa.any_(arrays[0]))
        table = sa.func.unnest(*arrays).table_valued(*names).render_derived()
        return sa.tuple_(*columns).in_(sa.select(*table.c))

    def _key_values(self, keys: Keys) -> dict[str, t.Any]:
        """The parameters of :meth:`_among`: an array of each key column on PostgreSQL."""
        if not self.arrays:
            return {}
        if keys.width == 1:
            return {"api_keys": keys.values}
        return {name: [key[i] for key in keys.values]
                for i, name in enumerate(_key_names(keys.width))}

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
            if relation.local_key:
                extra += [n for n in relation.local_key if n not in out and n not in extra]
        names = out + extra
        index = {name: i for i, name in enumerate(names)}
        plan = Plan(
            spec=spec, out=out, select=[spec.columns[n].attr for n in names],
            key_at=[index[c.key] for c in spec.pk],
            convert=[(k, f) for k in out if (f := spec.columns[k].kind.to_json) is not None],
            relations=[
                (r, tgt, [index[n] for n in r.local_key] if r.local_key else None)
                for r, tgt in relations
            ],
            properties=[p for p in spec.properties if fields is None or p in fields],
            index=index,
        )
        if not need:
            self._plans[spec.collection] = plan
        return plan

    # -- loading ----------------------------------------------------------------------------

    def _level(self, plan: Plan, rows: t.Sequence[t.Any],
               select_keys: t.Callable[[], sa.Select[t.Any]], depth: int,
               owners: tuple[t.Callable[[t.Any], Key], dict[Key, list[Key]],
                             dict[Key, list[dict[str, t.Any]]] | None] | None = None
               ) -> Level:
        """Build the objects of ``rows``, then load what the next depth shows of them.

        ``select_keys`` builds a SELECT of the rows' keys, for databases that take no
        array of keys. ``owners`` is given for the rows of a relationship, ordered by
        parent: the parent's key of a row, the parent → children keys map to fill, and,
        when each child has one parent, the parent → children objects map to fill.
        """
        level = Level(plan)
        key_at = plan.key_at
        key_of = operator.itemgetter(*key_at)  # a tuple for a composite key
        scoped = self.scoped
        # Many-to-ones past the depth whose key is a column of the row already (unless the
        # target is scoped: whether the caller may see it is then the database's to say).
        inline = [(r.key, local[0]) for r, _tgt, local in plan.relations
                  if depth == 0 and local is not None and len(local) == 1
                  and r.target not in scoped]
        if owners is None:
            items = plan.items(rows, inline)
        else:
            # The rows come ordered by parent: each parent's children are one run of rows.
            owner_of, children, members = owners
            last: t.Any = _NOTHING
            keyed: list[Key] = []
            if members is None:  # a child may have several parents: build it once
                for row in rows:
                    owner = owner_of(row)
                    if owner != last:
                        keyed = children[owner] = []
                        last = owner
                    keyed.append(key_of(row))
                rows = list({key_of(row): row for row in rows}.values())
                items = plan.items(rows, inline)
            else:  # one parent each: the parents get their children's objects at once
                items = plan.items(rows, inline)
                made: list[dict[str, t.Any]] = []
                for row, item in zip(rows, items, strict=True):
                    owner = owner_of(row)
                    if owner != last:
                        made = members[owner] = []
                        keyed = children[owner] = []
                        last = owner
                    made.append(item)
                    keyed.append(key_of(row))
        level.items = items
        keys = level.keys = list(map(key_of, rows))
        level.by_key = dict(zip(keys, items, strict=True))
        for name, convert in plan.convert:
            for item in items:
                value = item[name]
                if value is not None:
                    item[name] = convert(value)
        source = Keys(keys, select_keys, len(key_at))
        for relation, target, local in plan.relations:
            if local is None:
                level.links.append(self._link(plan, source, relation, target, depth))
            elif depth or relation.target in scoped:
                level.links.append(
                    self._link_local(plan, rows, source, relation, target, local, depth))
            elif len(local) > 1:
                self._local_keys(level, rows, relation, target, local)
        if plan.properties:
            self._properties(plan, level, source)
        return level

    def _local_keys(self, level: Level, rows: t.Sequence[t.Any], relation: RelationSpec,
                    target: ModelSpec, local: list[int]) -> None:
        """A many-to-one past the depth on a composite key: its key is in the row already."""
        name = relation.key
        for item, row in zip(level.items, rows, strict=True):
            values = tuple(row[i] for i in local)
            item[name] = None if None in values else target.key_json(values)

    def _link(self, plan: Plan, keys: Keys, relation: RelationSpec, target: ModelSpec,
              depth: int) -> Link:
        """The targets of a relationship of the objects ``keys``, in one statement."""
        parent_spec = plan.spec
        reach = relation.reach

        def frame() -> tuple[list[t.Any], t.Callable[..., sa.Select[t.Any]]]:
            """The columns holding the parent's key beside the targets; a SELECT there."""
            if reach is not None:  # the columns beside the targets that name their parent
                def select(*columns: t.Any) -> sa.Select[t.Any]:
                    stmt = sa.select(*columns).select_from(target.model)
                    if reach.secondary is not None:
                        stmt = stmt.join(reach.secondary, reach.onclause)
                    return stmt

                return list(reach.owner), select
            parent = aliased(parent_spec.model)  # else a join from the parents
            joined = getattr(parent, relation.key)

            def joined_select(*columns: t.Any) -> sa.Select[t.Any]:
                return sa.select(*columns).select_from(parent).join(joined)

            return [getattr(parent, c.key) for c in parent_spec.pk], joined_select

        order = list(relation.order_by) or target.pk_attrs

        def build(columns: t.Sequence[t.Any], with_owner: bool = True) -> sa.Select[t.Any]:
            owner, select = frame()
            return (select(*columns, *(owner if with_owner else ()))
                    .where(self._among(owner, keys)).order_by(*owner, *order)
                    .options(*self.options))

        params = self._key_values(keys)
        width = keys.width
        link = Link(relation, target)
        children = link.children
        if depth == 0:
            stmt = self._statement(parent_spec, ("keys", relation.key),
                                   lambda: build(target.pk_attrs), self.arrays)
            rows = self._rows(stmt, params).all()
            size = len(target.pk)
            key_of = operator.itemgetter(*range(size))
            owner_of = operator.itemgetter(*range(size, size + width))
            as_json = size > 1  # keys only are shown as the API shows keys
            last: t.Any = _NOTHING
            keyed: list[t.Any] = []
            for row in rows:
                owner = owner_of(row)
                if owner != last:
                    keyed = children[owner] = []
                    last = owner
                keyed.append(target.key_json(key_of(row)) if as_json else key_of(row))
            return link
        target_plan = self.plan(target)
        # The target's columns as its plan reads them; the parent's key after them, unless
        # it is one of them already.
        columns = target_plan.select
        own = reach.owner_keys if reach is not None else None
        if own is not None and all(name in target_plan.index for name in own):
            owner_of = operator.itemgetter(*(target_plan.index[name] for name in own))
        else:
            owner_of = operator.itemgetter(*range(len(columns), len(columns) + width))
            own = None
        stmt = self._statement(
            parent_spec, ("objects", relation.key, tuple(target_plan.index)),
            lambda: build(columns, with_owner=own is None), self.arrays)
        rows = self._rows(stmt, params).all()
        if relation.one_to_many:
            link.members = {}

        def child_keys() -> sa.Select[t.Any]:
            owner, select = frame()
            return select(*target.pk_attrs).where(self._among(owner, keys))

        link.level = self._level(target_plan, rows, child_keys, depth - 1,
                                 owners=(owner_of, children, link.members))
        return link

    def _link_local(self, plan: Plan, rows: t.Sequence[t.Any], keys: Keys,
                    relation: RelationSpec, target: ModelSpec, local: list[int],
                    depth: int) -> Link:
        """A many-to-one whose key is in the parents' rows: the targets of those keys."""
        link = Link(relation, target)
        single = len(local) == 1
        wanted = [row[local[0]] if single else tuple(row[i] for i in local) for row in rows]
        spec = plan.spec
        local_attrs = [spec.columns[n].attr for n in relation.local_key or ()]

        def local_keys() -> sa.Select[t.Any]:
            return sa.select(*local_attrs).where(self._among(spec.pk_attrs, keys))

        found_keys = Keys(list(dict.fromkeys(k for k in wanted if k is not None and
                                             (single or None not in k))), local_keys, len(local))
        params = self._key_values(found_keys)

        def build(*columns: t.Any) -> sa.Select[t.Any]:
            return (sa.select(*columns).where(self._among(target.pk_attrs, found_keys))
                    .options(*self.options))

        found: t.Container[Key]
        if depth == 0:
            stmt = self._statement(spec, ("keys", relation.key),
                                   lambda: build(*target.pk_attrs), self.arrays)
            found = {row[0] if single else tuple(row) for row in self._rows(stmt, params)}
        else:
            target_plan = self.plan(target)
            stmt = self._statement(spec, ("objects", relation.key, tuple(target_plan.index)),
                                   lambda: build(*target_plan.select), self.arrays)
            link.level = self._level(target_plan, self._rows(stmt, params).all(),
                                     lambda: build(*target.pk_attrs), depth - 1)
            found = link.level.by_key
        # Keys only are shown as the API shows keys; expanded objects are found by key.
        as_json = link.level is None and not single
        children = link.children
        for parent_key, key in zip(keys.values, wanted, strict=True):
            if key is not None and key in found:
                children[parent_key] = [target.key_json(key) if as_json else key]
        return link

    def _properties(self, plan: Plan, level: Level, keys: Keys) -> None:
        spec = plan.spec
        stmt = (sa.select(spec.model).where(self._among(spec.pk_attrs, keys))
                .options(*self.options))
        for instance in self.db.scalars(stmt, self._key_values(keys)):
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


def _select_keys(spec: ModelSpec, keys: list[Key]) -> sa.Select[t.Any]:
    """The SELECT of ``keys`` (a batch's), for databases that take no array of keys."""
    return sa.select(*spec.pk_attrs).where(spec.key_in(keys))


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
