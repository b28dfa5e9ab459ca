"""Reads whose JSON PostgreSQL writes: one statement gives a page's items as text.

On PostgreSQL a read of a collection or of one object is, when it can be, one SELECT
that writes the items' JSON itself (``||`` of the fields' texts, ``to_json`` for the
escaping of strings, ``string_agg`` for arrays; the lists of the page's items by a join
grouped by item, the relationships of nested objects by a correlated subquery on an
indexed column), and the view sends that text as it comes: no row becomes a Python object. The
text is byte for byte what :class:`.reader.Reader` and ``orjson`` give for the same
request (the README's "API" section says the formats), so that ETags agree whichever
path served a request.

A request this module cannot write exactly raises :class:`Unsupported` while its
statement is built, and the view takes the Python path (:func:`sql_page` returns
``None``): a scope on a model, opted-in properties, a composite key, a column kind
whose text PostgreSQL writes otherwise than orjson (floats, JSON, intervals, arrays,
custom types), a relationship expanded that is neither a plain one-to-many nor a plain
many-to-one or many-to-many of the page's own items, one joined by a condition of its
own, a model at two levels of the document, or a nested object's relationship whose
owner's column no declared index begins with. The Python path's rule "an object shown
already is given again as its key" then applies to the page's relationships only: a plain
one-to-many whose model appears at one level can show no object twice, and a many-to-one
or a many-to-many of the page's items shows each object at its first place in the
document (the page's order, then the relationship's), its key at the others
(``row_number()`` over the places of each key).
"""

from __future__ import annotations

import functools
import typing as t
from dataclasses import dataclass

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import BinaryExpression
from sqlalchemy.sql.operators import eq
from sqlalchemy.sql.util import ClauseAdapter

if t.TYPE_CHECKING:
    from sqlalchemy.sql.elements import KeyedColumnElement

    from .model import ColumnSpec, ModelSpec, RelationSpec
    from .reader import Reader

Expr = sa.ColumnElement[t.Any]
Column = t.Callable[[str], Expr]

# Kinds whose raw value (a key shown as itself) PostgreSQL writes as orjson does.
_RAW_KINDS = frozenset({"integer", "string", "uuid", "date", "boolean"})


_UNWRITABLE = object()  # a shape of request this module cannot write


class Unsupported(Exception):
    """This request's document is not one this module writes exactly: use the Python path."""


@dataclass
class TextPage:
    """A page written by PostgreSQL: the items' JSON (without brackets), and what follows."""

    items: str
    count: int
    has_more: bool
    last_order: tuple[t.Any, ...] | None
    total: int | None = None  # the collection's count, when asked for


def _lit(text: str) -> Expr:
    """A SQL string literal (standard conforming: only ``'`` is doubled)."""
    return sa.literal_column("'" + text.replace("'", "''") + "'", sa.Text)


def _cat(*parts: Expr) -> Expr:
    return functools.reduce(lambda a, b: a.op("||", return_type=sa.Text)(b), parts)


def _or_null(value: Expr) -> Expr:
    return sa.func.coalesce(value, _lit("null"))


def _quoted(value: Expr) -> Expr:
    return _cat(_lit('"'), value, _lit('"'))


def _clock(moment: Expr, pattern: str) -> Expr:
    """``moment`` by ``pattern``, then ``.ffffff`` unless its microseconds are 0 (as orjson)."""
    fraction = sa.case((sa.func.date_trunc("second", moment) == moment, _lit("")),
                       else_=sa.func.to_char(moment, _lit(".US")))
    return _cat(sa.func.to_char(moment, _lit(pattern)), fraction)


def value_json(column: ColumnSpec, value: Expr) -> Expr:
    """The JSON text of a column's value, never NULL; :class:`Unsupported` for other kinds."""
    kind = column.kind
    name = kind.name
    type_ = column.attr.type
    if name == "integer":
        return _or_null(sa.cast(value, sa.Text))
    if name == "boolean":
        return sa.case((value, _lit("true")), (sa.not_(value), _lit("false")),
                       else_=_lit("null"))
    if name in ("string", "uuid", "date"):
        return _or_null(sa.cast(sa.func.to_json(value), sa.Text))
    if name == "decimal":
        if isinstance(type_, sa.Float):  # a float read as a decimal: Python's digits, not SQL's
            raise Unsupported(column.key)
        return _or_null(_quoted(sa.cast(value, sa.Text)))
    if name == "datetime":
        if kind.timezone:
            utc = sa.func.timezone(_lit("UTC"), value)
            return _or_null(_quoted(_cat(_clock(utc, 'YYYY-MM-DD"T"HH24:MI:SS'),
                                         _lit("+00:00"))))
        return _or_null(_quoted(_clock(value, 'YYYY-MM-DD"T"HH24:MI:SS')))
    if name == "time":
        if getattr(type_, "timezone", False):
            raise Unsupported(column.key)
        return _or_null(_quoted(_clock(sa.cast(value, sa.Interval), "HH24:MI:SS")))
    if name == "enum":
        lookup = getattr(type_, "_object_lookup", None)
        if not lookup or getattr(type_, "enum_class", None) is None:
            return _or_null(sa.cast(sa.func.to_json(sa.cast(value, sa.Text)), sa.Text))
        whens = [(sa.cast(value, sa.Text) == _lit(stored),
                  _lit(orjson.dumps(getattr(member, "value", member)).decode()))
                 for stored, member in lookup.items() if stored is not None]
        return sa.case(*whens, else_=_lit("null"))
    if name == "binary":
        text = sa.func.translate(sa.func.encode(value, _lit("base64")), sa.func.chr(10), _lit(""))
        return _or_null(_quoted(text))
    raise Unsupported(column.key)


def _raw_json(column: ColumnSpec, value: Expr) -> Expr:
    """A key's value shown as itself (as the Python path shows keys, unconverted)."""
    if column.kind.name not in _RAW_KINDS:
        raise Unsupported(column.key)
    return value_json(column, value)


class Writer:
    """Builds the JSON text expressions of one request's objects, for :class:`Reader`'s plans."""

    def __init__(self, reader: Reader) -> None:
        if not reader.arrays or reader.options:
            raise Unsupported("not PostgreSQL, or a scope applies")
        self.reader = reader
        self.levels: dict[str, int] = {}
        # The page's many-to-ones shown as objects: for each, whether the row is the first
        # of the page to point to its target (an expression, 1 if so).
        self.top: ModelSpec | None = None
        self.first: dict[str, Expr] = {}
        # The lists of the page's items: the row's list, written (NULL if empty).
        self.written: dict[str, Expr] = {}

    def check_tree(self, spec: ModelSpec, depth: int) -> None:
        """Raise :class:`Unsupported` unless every object shown is written as Python would."""
        top = self.top is None
        if top:
            self.top = spec
        self.levels[spec.collection] = self.levels.get(spec.collection, 0) + 1
        if depth == 0:
            return
        for relation, target, _local in self.reader.plan(spec).relations:
            if not (relation.one_to_many and relation.reach is not None
                    or top and (_parent(relation) or _shared(relation))):
                raise Unsupported(relation.key)
            self.check_tree(target, depth - 1)
        if any(n > 1 for n in self.levels.values()):
            raise Unsupported("a model at two levels")

    def parents(self, spec: ModelSpec, depth: int) -> list[RelationSpec]:
        """The many-to-ones of the page's items shown as objects (after :meth:`check_tree`)."""
        if depth == 0:
            return []
        return [r for r, _target, _local in self.reader.plan(spec).relations if _parent(r)]

    def lists(self, spec: ModelSpec) -> list[tuple[RelationSpec, ModelSpec]]:
        """The lists of the page's items (one-to-many, many-to-many): keys or objects."""
        return [(r, target) for r, target, _local in self.reader.plan(spec).relations
                if r.many and r.reach is not None]

    def targets(self, relation: RelationSpec, target: ModelSpec
                ) -> tuple[t.Any, tuple[sa.FromClause, Expr] | None, Expr, list[t.Any]]:
        """How the targets of ``relation`` are found by their owner's key.

        ``(alias, secondary, owner, order)``: the targets' alias, the association table
        joined to it (its alias and the join's condition) or ``None``, the column holding
        the owner's key (on the targets or on the association table), and the list's order.
        """
        reach = relation.reach
        if reach is None or len(reach.owner) != 1 or len(target.pk) != 1:
            raise Unsupported(relation.key)
        alias = aliased(target.model)
        adapt = ClauseAdapter(sa.inspect(alias).selectable)
        secondary: tuple[sa.FromClause, Expr] | None = None
        owner: Expr | None
        if reach.secondary is None:
            if reach.owner_keys is None:
                raise Unsupported(relation.key)
            owner = getattr(alias, reach.owner_keys[0])
        else:
            table = reach.secondary.alias()
            assert reach.onclause is not None
            secondary = (table, ClauseAdapter(table).chain(adapt).traverse(reach.onclause))
            owner = table.corresponding_column(
                t.cast("KeyedColumnElement[t.Any]", reach.owner[0]))
            if owner is None:
                raise Unsupported(relation.key)
        order = [adapt.traverse(c) for c in relation.order_by] or [
            getattr(alias, c.key) for c in target.pk]
        return alias, secondary, owner, order

    def places(self, relation: RelationSpec, target: ModelSpec, depth: int, rows: sa.CTE,
               owner_key: Expr) -> sa.Subquery:
        """A list of each of the page's ``rows``, one row per item whose list is not empty.

        A join of the page's rows to the targets, grouped by row: the planner searches an
        index of the owner's column when there is one and reads the table once when there is
        none, where a subquery per row would read it once per row. A target of a
        many-to-many is found at every place it has in the document, numbered by the
        page's position then the relationship's order: its object at the first, its key
        after. Columns: ``pos`` (the item's position) and ``json`` (``[...]``).
        """
        alias, secondary, owner, order = self.targets(relation, target)
        key_column = target.pk[0]
        key = getattr(alias, key_column.key)
        pos = rows.c.api_pos
        through = _through(relation, target, secondary[0]) if secondary is not None else None
        if depth == 0 and not relation.order_by and through is not None:
            # Keys in the key's order: the association table has them, without the targets.
            assert secondary is not None
            return _lists(pos, _raw_json(key_column, through), [through],
                          rows.join(secondary[0], owner == owner_key))
        element = _raw_json(key_column, key)
        if secondary is None:
            joined = rows.join(alias, owner == owner_key)
        else:
            joined = rows.join(secondary[0], owner == owner_key).join(alias, secondary[1])
        if depth > 0:
            found_once = self.obj(target, depth - 1, functools.partial(getattr, alias))
            if relation.one_to_many:  # one owner each: every target is shown once
                element = found_once
            else:  # the places of each target, numbered: a window, then the lists
                first = sa.func.row_number().over(partition_by=key, order_by=[pos, *order])
                found = sa.select(
                    pos.label("pos"), sa.case((first == 1, found_once), else_=element).label("doc"),
                    sa.func.row_number().over(partition_by=pos, order_by=order).label("ord"),
                ).select_from(joined).subquery()
                return _lists(found.c.pos, found.c.doc, [found.c.ord], found)
        return _lists(pos, element, order, joined)

    def obj(self, spec: ModelSpec, depth: int, col: Column) -> Expr:
        """The JSON object of the row whose columns ``col`` gives, ``depth`` levels deep."""
        plan = self.reader.plan(spec)
        if plan.properties or len(spec.pk) != 1:
            raise Unsupported(spec.collection)
        parts: list[Expr] = []
        fields: list[tuple[str, Expr]] = [
            (name, value_json(spec.columns[name], col(name))) for name in plan.out]
        inline: list[tuple[str, Expr]] = []
        linked: list[tuple[str, Expr]] = []
        for relation, target, local in plan.relations:
            if depth == 0 and relation.local_key is not None:
                if local is None or len(local) != 1:
                    raise Unsupported(relation.key)
                local_column = spec.columns[relation.local_key[0]]
                inline.append((relation.key, _raw_json(local_column, col(local_column.key))))
            elif spec is self.top and relation.key in self.first:
                linked.append((relation.key, self.parent(spec, relation, target, depth, col)))
            elif spec is self.top and relation.key in self.written:
                linked.append((relation.key, sa.func.coalesce(self.written[relation.key],
                                                              _lit("[]"))))
            else:
                linked.append((relation.key, self.related(spec, relation, target, depth, col)))
        for at, (name, value) in enumerate([*fields, *inline, *linked]):
            key = orjson.dumps(name).decode()
            parts += [_lit(("{" if at == 0 else ",") + key + ":"), value]
        parts.append(_lit("}"))
        return _cat(*parts)

    def parent(self, spec: ModelSpec, relation: RelationSpec, target: ModelSpec, depth: int,
               col: Column) -> Expr:
        """A many-to-one of the page's row: its object at the first row pointing to it, else
        its key (as the Python path, which shows an object once)."""
        assert relation.local_key is not None
        if len(target.pk) != 1:
            raise Unsupported(relation.key)
        local = spec.columns[relation.local_key[0]]
        key = col(local.key)
        alias = aliased(target.model)
        element = self.obj(target, depth - 1, functools.partial(getattr, alias))
        found = (sa.select(element).select_from(alias)
                 .where(getattr(alias, target.pk[0].key) == key).scalar_subquery())
        return sa.case((self.first[relation.key] == 1, sa.func.coalesce(found, _lit("null"))),
                       else_=_raw_json(local, key))

    def related(self, spec: ModelSpec, relation: RelationSpec, target: ModelSpec, depth: int,
                col: Column) -> Expr:
        """A relationship of the row: its targets' keys (depth 0) or objects, as JSON.

        A subquery per row, hence only on an indexed owner's column (:func:`_indexed`):
        without an index it would read the whole table once per row.
        """
        reach = relation.reach
        if reach is None or not _indexed(reach.owner[0]):
            raise Unsupported(relation.key)
        alias, secondary, owner, order = self.targets(relation, target)
        joins = [secondary] if secondary is not None else []
        where = [owner == col(spec.pk[0].key)]
        key_column = target.pk[0]
        if depth == 0:
            element = _raw_json(key_column, getattr(alias, key_column.key))
        else:
            element = self.obj(target, depth - 1, functools.partial(getattr, alias))
        if relation.many:
            aggregate = sa.func.string_agg(element, aggregate_order_by(_lit(","), *order))
            stmt = sa.select(_cat(_lit("["), aggregate, _lit("]")))
        else:
            stmt = sa.select(element)
        stmt = stmt.select_from(alias)
        for table, onclause in joins:
            stmt = stmt.join(table, onclause)
        stmt = stmt.where(*where)
        if not relation.many:
            stmt = stmt.order_by(*order).limit(1)
        return sa.func.coalesce(stmt.scalar_subquery(), _lit("[]" if relation.many else "null"))


def page_statement(reader: Reader, spec: ModelSpec, criteria: t.Sequence[Expr],
                   order: t.Sequence[tuple[ColumnSpec, bool]], order_by: t.Sequence[t.Any],
                   total: sa.Select[t.Any] | None = None) -> sa.Select[t.Any]:
    """The SELECT of a page's items as one JSON text; :class:`Unsupported` if it cannot be.

    Parameters: ``api_limit`` (the page's size plus one, to know whether more follow),
    ``api_offset`` and ``api_shown`` (the page's size). It gives one row: the items'
    objects joined by commas, the number of rows read, the result of ``total`` (a count of
    the collection) if given, then the sort values of the last item shown when more follow
    (for the cursor).
    """
    writer = Writer(reader)
    depth = reader.read.depth
    writer.check_tree(spec, depth)
    plan = reader.plan(spec, [c.key for c, _d in order])
    inner = (sa.select(*[a.label(f"c{i}") for i, a in enumerate(plan.select)])
             .where(*criteria).order_by(*order_by)
             .limit(sa.bindparam("api_limit", type_=sa.Integer))
             .offset(sa.bindparam("api_offset", type_=sa.BigInteger))
             .subquery("api_page"))

    source: sa.Subquery | sa.CTE = inner
    joined: sa.FromClause = inner
    # The rows come in the page's order (PostgreSQL aggregates a sorted subquery's rows in
    # that order, as PostgREST relies on), numbered as they come.
    position: Expr = sa.func.row_number().over()
    parents = writer.parents(spec, depth)
    lists = writer.lists(spec)
    if parents or lists:  # each row's position, to join each row's lists and parents
        numbered = sa.select(*inner.c, position.label("api_pos")).cte("api_numbered")
        source = joined = numbered
        if parents:  # whether the row is the first of the page to show each parent
            source = joined = sa.select(*numbered.c, *[
                sa.func.row_number().over(
                    partition_by=numbered.c[f"c{plan.index[r.local_key[0]]}"],  # type: ignore[index]
                    order_by=numbered.c.api_pos).label(f"f{i}")
                for i, r in enumerate(parents)]).subquery("api_flagged")
            writer.first = {r.key: source.c[f"f{i}"] for i, r in enumerate(parents)}
        owner_key = numbered.c[f"c{plan.index[spec.pk[0].key]}"]
        for i, (relation, target) in enumerate(lists):
            places = writer.places(relation, target, depth, numbered, owner_key).alias(f"api_l{i}")
            joined = joined.outerjoin(places, places.c.pos == source.c.api_pos)
            writer.written[relation.key] = places.c.json
        position = source.c.api_pos

    def col(name: str) -> Expr:
        return t.cast(Expr, source.c[f"c{plan.index[name]}"])

    document = writer.obj(spec, depth, col)
    sorted_by = [col(c.key).label(f"o{i}") for i, (c, _d) in enumerate(order)]
    rows = sa.select(position.label("rn"), document.label("doc"),
                     *sorted_by).select_from(joined).subquery("api_rows")
    shown = sa.bindparam("api_shown", type_=sa.Integer)
    # The windows and joins of shared objects sort the rows otherwise: put them in order.
    separator = aggregate_order_by(_lit(","), rows.c.rn) if parents or lists else _lit(",")
    items = sa.func.string_agg(rows.c.doc, separator).filter(rows.c.rn <= shown)
    last = [sa.type_coerce(_first(rows.c[f"o{i}"], rows.c.rn == shown), c.attr.type)
            for i, (c, _d) in enumerate(order)]
    counted = [] if total is None else [total.scalar_subquery()]
    return sa.select(sa.func.coalesce(items, _lit("")), sa.func.count(), *counted, *last)


def _parent(relation: RelationSpec) -> bool:
    """A plain many-to-one: one object, found by the one column of the row holding its key."""
    return (not relation.many and relation.reach is None
            and relation.local_key is not None and len(relation.local_key) == 1)


def _lists(pos: Expr, element: Expr, order: t.Sequence[t.Any], source: sa.FromClause
           ) -> sa.Subquery:
    """``pos`` and ``json``: the ``[...]`` of the elements of each position, in ``order``."""
    aggregate = sa.func.string_agg(element, aggregate_order_by(_lit(","), *order))
    return (sa.select(pos.label("pos"), _cat(_lit("["), aggregate, _lit("]")).label("json"))
            .select_from(source).group_by(pos).subquery())


def _through(relation: RelationSpec, target: ModelSpec, table: sa.FromClause) -> Expr | None:
    """The column of the association ``table`` (an alias) that holds the targets' keys.

    ``None`` unless the association is joined to the targets by ``key == column`` alone.
    """
    reach = relation.reach
    clause = reach.onclause if reach is not None else None
    if reach is None or not isinstance(clause, BinaryExpression) or clause.operator is not eq:
        return None
    key = sa.inspect(target.model).primary_key[0]
    for mine, theirs in ((clause.left, clause.right), (clause.right, clause.left)):
        if theirs is key and getattr(mine, "table", None) is reach.secondary:
            return table.corresponding_column(t.cast("KeyedColumnElement[t.Any]", mine))
    return None


def _indexed(column: t.Any) -> bool:
    """Whether an index of ``column``'s table (declared in the models) begins with it."""
    table = column.table
    unique = [c for c in table.constraints if isinstance(c, sa.UniqueConstraint)]
    firsts = [next(iter(c.columns), None) for c in (table.primary_key, *table.indexes, *unique)]
    return any(first is not None and first.name == column.name for first in firsts)


def _shared(relation: RelationSpec) -> bool:
    """A plain many-to-many: its targets found by the parent's key in an association table."""
    reach = relation.reach
    return (relation.many and not relation.one_to_many and reach is not None
            and reach.secondary is not None and reach.onclause is not None)


def _first(value: Expr, where: Expr) -> Expr:
    """``(array_agg(value) FILTER (WHERE where))[1]``: the value of the one row ``where``."""
    aggregate = sa.func.array_agg(value, type_=ARRAY(value.type)).filter(where)
    return sa.type_coerce(aggregate, ARRAY(value.type))[1]


def sql_page(reader: Reader, spec: ModelSpec, criteria: t.Sequence[Expr],
             order: t.Sequence[tuple[ColumnSpec, bool]], order_by: t.Sequence[t.Any],
             limit: int, offset: int, reusable: bool, params: dict[str, t.Any] | None = None,
             total: sa.Select[t.Any] | None = None) -> TextPage | None:
    """A page written by PostgreSQL, in one statement; ``None`` if the Python path must read it.

    ``reusable`` says the statement holds no value of this request (no filter; a key given
    as a parameter, in ``params``), so that it is built once for all requests of the same
    shape. ``total``, a count of the collection, is run by the same statement (one snapshot).
    """
    if not reader.arrays or reader.options:  # not PostgreSQL, or a scope of this request
        return None

    def build() -> sa.Select[t.Any] | object:
        try:
            return page_statement(reader, spec, criteria, order, order_by, total)
        except Unsupported:
            return _UNWRITABLE

    if reusable:  # made once, or found unwritable once, for every request of this shape
        shape = ("sqljson", _signature(reader, spec, reader.read.depth),
                 tuple((c.key, d) for c, d in order), tuple(params or ()), total is not None)
        stmt = spec.statement(shape, build)
    else:
        stmt = build()
    if stmt is _UNWRITABLE:
        return None
    row = reader.connection().execute(
        stmt, {"api_limit": limit + 1, "api_offset": offset, "api_shown": limit,
               **(params or {})}).one()
    count = row[1]
    has_more = count > limit
    last = 2 if total is None else 3
    return TextPage(row[0], min(count, limit), has_more,
                    tuple(row[last:]) if has_more else None, None if total is None else row[2])


def one_object(reader: Reader, spec: ModelSpec, key: t.Any) -> bytes | None | Unsupported:
    """The JSON of the object ``key`` written by PostgreSQL, ``None`` if there is none.

    :class:`Unsupported` (returned, not raised) when the Python path must read it.
    """
    if len(spec.pk) == 1:  # the key as a parameter: one statement for every object
        column = spec.pk[0]
        criterion = column.attr == sa.bindparam("api_key", type_=column.attr.type)
        written = sql_page(reader, spec, [criterion], [], [], 1, 0, True, {"api_key": key})
    else:
        written = None
    if written is None:
        return Unsupported(spec.collection)
    return written.items.encode() if written.count else None


def _signature(reader: Reader, spec: ModelSpec, depth: int) -> tuple[t.Any, ...]:
    """What the statement of ``spec`` at ``depth`` shows: columns and relationships, nested."""
    plan = reader.plan(spec)
    return (spec.collection, depth, tuple(plan.out), tuple(plan.properties), tuple(
        (r.key, _signature(reader, target, depth - 1) if depth else None)
        for r, target, _local in plan.relations))
