"""What the API knows of a model: its options, columns, key, relationships and properties."""

from __future__ import annotations

import inspect as pyinspect
import typing as t
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import Mapper, RelationshipDirection
from sqlalchemy.orm.attributes import InstrumentedAttribute
from sqlalchemy.orm.exc import UnmappedColumnError

from .columns import Invalid, Kind, kind_of

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")

Key = t.Any
"""A primary key: the value itself for a one-column key, else a tuple in column order."""

MAX_STATEMENTS = 256  # kept per model, see ModelSpec.statement

# What a new key's value may be, as the OpenAPI document says it (ECMA-262, as JSON Schema
# reads patterns): the same rule as :func:`key_segment_fault`, for string values.
KEY_SEGMENT_SCHEMA: dict[str, t.Any] = {"minLength": 1,
                                        "pattern": r"^(?!\.\.?$)[^/\n\u0000]+$"}
# A key of a type the API passes through, as :func:`key_from_json` takes it.
ANY_KEY_SCHEMA: dict[str, t.Any] = {"anyOf": [
    {"type": "string", **KEY_SEGMENT_SCHEMA}, {"type": "boolean"},
    {"type": "number", "minimum": -(2**63), "exclusiveMaximum": 2**63}]}


def key_from_json(column: ColumnSpec, value: t.Any) -> t.Any:
    """A key column's value given in a body, as the column reads it; :class:`Invalid` if unfit.

    A type the API passes through (``any``, a custom ``TypeDecorator``) still takes a key
    only as a string, a boolean or a number within 64 bits: a list, an object or a larger
    integer would reach the database driver, which cannot bind it.
    """
    if column.kind.name == "any" and not (
            isinstance(value, str) or (isinstance(value, int | float) and
                                       -(2**63) <= value < 2**63)):
        raise Invalid("expected a key: a string, or a number within 64 bits")
    return column.kind.from_json(value)


def key_segment_fault(value: t.Any) -> str | None:
    """Why a new object's key value could never be read back at its URL; ``None`` if it can.

    Each key value is one segment of the object's URL (``/api/cats/<name>``): an empty one
    names the collection, a ``/`` (even as ``%2F``) splits the segment, a line feed ends
    the URL rule's match, and ``.``/``..`` are removed by clients that normalise URLs
    (RFC 3986, 5.2.4) before the request is sent.
    """
    text = str(getattr(value, "value", value))
    if text == "":
        return "may not be empty: a key is a segment of its object's URL"
    if "/" in text:
        return "may not contain '/': a key is one segment of its object's URL"
    if "\n" in text:
        return "may not contain a line feed: a key is one segment of its object's URL"
    if text in (".", ".."):
        return f"may not be {text!r}: clients remove it from URLs, where a key is a segment"
    return None


@dataclass(frozen=True)
class ModelOptions:
    """The options of ``add_model``/``add_all_models``; see :meth:`APIManager.add_model`."""

    relationships: bool | tuple[str, ...] = True
    allow_put_many: bool = False
    allow_delete_many: bool = False
    methods: tuple[str, ...] = METHODS
    properties: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    collection_name: str | None = None


OPTION_NAMES = frozenset(ModelOptions.__dataclass_fields__)


def check_options(given: t.Mapping[str, t.Any], where: str) -> dict[str, t.Any]:
    """Normalise options given in code; a wrong one is a ``ValueError`` naming it."""
    out: dict[str, t.Any] = {}
    for name, value in given.items():
        if name not in OPTION_NAMES:
            raise TypeError(f"{where}: unknown option '{name}'; the options are"
                            f" {', '.join(sorted(OPTION_NAMES))}.")
        if name == "relationships":
            if not isinstance(value, bool):
                value = _names(value, name, where)
        elif name in ("allow_put_many", "allow_delete_many"):
            if not isinstance(value, bool):
                raise ValueError(f"{where}: '{name}' must be True or False, not {value!r}.")
        elif name == "methods":
            value = tuple(m.upper() for m in _names(value, name, where))
            unknown = [m for m in value if m not in METHODS]
            if unknown:
                raise ValueError(f"{where}: unknown method {unknown[0]!r} in 'methods'; use"
                                 f" some of {', '.join(METHODS)}.")
        elif name in ("properties", "exclude"):
            value = _names(value, name, where)
        elif name == "collection_name":
            if value is not None and (not isinstance(value, str) or not value
                                      or "/" in value or value == "openapi.json"):
                raise ValueError(f"{where}: 'collection_name' must be a non-empty name without"
                                 f" '/', not {value!r}.")
        out[name] = value
    return out


def _names(value: t.Any, name: str, where: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, t.Iterable):
        raise ValueError(f"{where}: '{name}' must be a list of names, not {value!r}.")
    names = tuple(value)
    if not all(isinstance(n, str) for n in names):
        raise ValueError(f"{where}: '{name}' must be a list of names, not {value!r}.")
    return names


@dataclass
class ColumnSpec:
    """A mapped column attribute as the API reads and writes it."""

    key: str
    attr: InstrumentedAttribute[t.Any]
    kind: Kind
    nullable: bool
    primary_key: bool
    required: bool
    writable: bool
    has_default: bool
    doc: str | None = None


@dataclass
class RelationSpec:
    """A relationship the API exposes."""

    key: str
    attr: InstrumentedAttribute[t.Any]
    target: type[t.Any]
    many: bool
    # Each target object has one parent at most through it (a one-to-many on a foreign key).
    one_to_many: bool
    writable: bool
    # The parent's columns whose values are the target's key (a plain many-to-one).
    local_key: tuple[str, ...] | None
    order_by: tuple[t.Any, ...]
    # Where the targets hold their parent's key (a plain one-to-many or many-to-many).
    reach: Reach | None = None


@dataclass(frozen=True)
class Reach:
    """The columns beside the targets that hold their parent's key, in the key's order.

    The targets of a relationship are then selected by their parents' keys without
    the parent's table, as SQLAlchemy's ``selectinload`` does: on the foreign key of a
    one-to-many, on the association table of a many-to-many (``secondary``, joined to
    the targets by ``onclause``).
    """

    owner: tuple[sa.ColumnElement[t.Any], ...]
    secondary: sa.FromClause | None = None
    onclause: sa.ColumnElement[bool] | None = None
    # The targets' attributes mapped to ``owner`` (without ``secondary``), if all are.
    owner_keys: tuple[str, ...] | None = None


@dataclass
class ModelSpec:
    """A model as the API serves it: built once from the model and its options."""

    model: type[t.Any]
    options: ModelOptions
    name: str
    collection: str
    columns: dict[str, ColumnSpec]
    pk: tuple[ColumnSpec, ...]
    relations: dict[str, RelationSpec] = field(default_factory=dict)
    properties: dict[str, dict[str, t.Any]] = field(default_factory=dict)
    _statements: dict[tuple[t.Any, ...], t.Any] = field(
        default_factory=dict, compare=False, repr=False)

    def statement(self, key: tuple[t.Any, ...], build: t.Callable[[], t.Any]) -> t.Any:
        """The statement ``build`` makes for ``key``, made once for every request.

        Only for statements that hold nothing of one request (its values are given when
        it runs): SQLAlchemy then finds its compiled form without walking it again, a
        tenth of a millisecond saved per statement. The keys name the columns and sort
        a request chose, so there is a bound.
        """
        found = self._statements.get(key)
        if found is None:
            found = build()
            if len(self._statements) < MAX_STATEMENTS:
                self._statements[key] = found
        return found

    @classmethod
    def build(cls, model: type[t.Any], options: ModelOptions) -> ModelSpec:
        where = f"API options of model '{model.__name__}'"
        mapper: Mapper[t.Any] = sa.inspect(model)
        excluded = set(options.exclude)
        known = {p.key for p in mapper.column_attrs}
        for name in excluded - known:
            raise ValueError(f"{where}: 'exclude' names '{name}', which is not a column.")
        autoincrement = {getattr(table, "autoincrement_column", None) for table in mapper.tables}
        columns: dict[str, ColumnSpec] = {}
        pk_columns = set(mapper.primary_key)
        for prop in mapper.column_attrs:
            column = prop.columns[0]
            # Joined inheritance maps several columns to one key; the first is the model's own.
            is_column = isinstance(column, sa.Column) and column.table in mapper.tables
            primary = column in pk_columns
            if primary and prop.key in excluded:
                raise ValueError(f"{where}: 'exclude' names the key column '{prop.key}'; a key"
                                 " is always shown.")
            if prop.key in excluded:
                continue
            if isinstance(column, sa.Column) and is_column:
                generated = column.computed is not None or column.identity is not None
                has_default = (column.default is not None or column.server_default is not None
                               or generated or column in autoincrement)
                columns[prop.key] = ColumnSpec(
                    key=prop.key, attr=getattr(model, prop.key), kind=kind_of(column.type),
                    nullable=bool(column.nullable) and not primary, primary_key=primary,
                    required=not column.nullable and not has_default,
                    writable=column.computed is None, has_default=has_default,
                    doc=column.doc or column.comment,
                )
            else:  # a column_property expression: read-only
                columns[prop.key] = ColumnSpec(
                    key=prop.key, attr=getattr(model, prop.key), kind=kind_of(column.type),
                    nullable=True, primary_key=False, required=False, writable=False,
                    has_default=True, doc=prop.doc,
                )
        pk = tuple(columns[mapper.get_property_by_column(c).key] for c in mapper.primary_key)
        table = t.cast(sa.Table, mapper.local_table)
        spec = cls(model=model, options=options, name=model.__name__,
                   collection=options.collection_name or table.name,
                   columns=columns, pk=pk)
        spec.relations = _relations(model, mapper, options, where)
        spec.properties = _properties(model, options, where, set(columns) | set(spec.relations))
        return spec

    # -- keys -------------------------------------------------------------------------------

    @property
    def pk_attrs(self) -> list[InstrumentedAttribute[t.Any]]:
        return [c.attr for c in self.pk]

    def key_from_text(self, segments: t.Sequence[str]) -> Key:
        """The key written in a URL, one segment per key column; :class:`Invalid` if unfit."""
        values = tuple(c.kind.from_text(s) for c, s in zip(self.pk, segments, strict=True))
        return values[0] if len(values) == 1 else values

    def key_from_json(self, value: t.Any) -> Key:
        """The key given in a body: the value itself, or an object holding the key fields."""
        if isinstance(value, dict):
            missing = [c.key for c in self.pk if c.key not in value]
            if missing:
                raise Invalid(f"lacks the key field '{missing[0]}' of {self.name}")
            values = tuple(key_from_json(c, value[c.key]) for c in self.pk)
        elif len(self.pk) == 1:
            if value is None:
                raise Invalid(f"expected the key of a {self.name}")
            values = (key_from_json(self.pk[0], value),)
        else:
            raise Invalid(f"expected an object with the key fields"
                          f" {', '.join(repr(c.key) for c in self.pk)} of {self.name}")
        return values[0] if len(values) == 1 else values

    def key_json(self, key: Key) -> t.Any:
        """A key as the API shows it: the value, or ``{field: value}`` for a composite key."""
        if len(self.pk) == 1:
            return key
        return {c.key: v for c, v in zip(self.pk, key, strict=True)}

    def key_text(self, key: Key) -> str:
        values = (key,) if len(self.pk) == 1 else key
        return "/".join(str(getattr(v, "value", v)) for v in values)

    def where_key(self, key: Key, entity: t.Any = None) -> sa.ColumnElement[bool]:
        """``pk == key`` on the model, or on ``entity`` (an alias of it)."""
        values = (key,) if len(self.pk) == 1 else key
        source = entity if entity is not None else self.model
        clauses = [getattr(source, c.key) == v for c, v in zip(self.pk, values, strict=True)]
        return sa.and_(*clauses)

    def key_in(self, keys: t.Any, entity: t.Any = None) -> sa.ColumnElement[bool]:
        """``pk IN keys`` where ``keys`` is a SELECT of keys or a list of keys."""
        source = entity if entity is not None else self.model
        attrs = [getattr(source, c.key) for c in self.pk]
        if len(attrs) == 1:
            return t.cast("sa.ColumnElement[bool]", attrs[0].in_(keys))
        return sa.tuple_(*attrs).in_(keys)


def _relations(model: type[t.Any], mapper: Mapper[t.Any], options: ModelOptions,
               where: str) -> dict[str, RelationSpec]:
    chosen = options.relationships
    available = dict(mapper.relationships.items())
    if chosen is False:
        names: list[str] = []
    elif chosen is True:
        names = list(available)
    else:
        names = list(chosen)
        for name in names:
            if name not in available:
                raise ValueError(f"{where}: 'relationships' names '{name}', which is not a"
                                 f" relationship; there are: {', '.join(available) or 'none'}.")
    relations: dict[str, RelationSpec] = {}
    for name in names:
        prop = available[name]
        relations[name] = RelationSpec(
            key=name, attr=getattr(model, name), target=prop.mapper.class_,
            many=bool(prop.uselist), writable=not prop.viewonly,
            one_to_many=prop.direction is RelationshipDirection.ONETOMANY,
            local_key=_plain_local_key(mapper, prop),
            order_by=tuple(prop.order_by) if prop.order_by else (),
            reach=_reach(mapper, prop),
        )
    return relations


def _plain(join: sa.ColumnElement[bool], pairs: t.Sequence[tuple[t.Any, t.Any]]) -> bool:
    """Whether ``join`` is only ``a = b AND ...`` over ``pairs``, written either way round."""
    if join.compare(sa.and_(*(a == b for a, b in pairs))) or join.compare(
            sa.and_(*(b == a for a, b in pairs))):
        return True
    return len(pairs) == 1 and (join.compare(pairs[0][0] == pairs[0][1])
                                or join.compare(pairs[0][1] == pairs[0][0]))


def _reach(mapper: Mapper[t.Any], prop: t.Any) -> Reach | None:
    """For a relationship joined only on "parent key = columns beside the target": those."""
    if prop.secondary is None:
        if prop.direction is not RelationshipDirection.ONETOMANY:
            return None
        pairs = list(prop.local_remote_pairs)
    else:  # the parent's side of the association table
        pairs = list(prop.synchronize_pairs)
    parent_key = list(mapper.primary_key)
    by_local = dict(pairs)
    if len(pairs) != len(parent_key) or set(by_local) != set(parent_key):
        return None
    if not _plain(prop.primaryjoin, pairs):
        return None  # a custom join condition: join from the parents
    owner = tuple(by_local[c] for c in parent_key)
    if prop.secondary is not None:
        return Reach(owner, prop.secondary, prop.secondaryjoin)
    try:
        keys = tuple(prop.mapper.get_property_by_column(c).key for c in owner)
    except UnmappedColumnError:  # a column the target does not map as an attribute
        return Reach(owner)
    return Reach(owner, owner_keys=keys)


def _plain_local_key(mapper: Mapper[t.Any], prop: t.Any) -> tuple[str, ...] | None:
    """For a many-to-one joined only on foreign key = target key: the foreign key's attributes."""
    if prop.direction is not RelationshipDirection.MANYTOONE or prop.secondary is not None:
        return None
    target_pk = list(prop.mapper.primary_key)
    pairs = list(prop.local_remote_pairs)
    if len(pairs) != len(target_pk) or {r for _l, r in pairs} != set(target_pk):
        return None
    if not _plain(prop.primaryjoin, pairs):
        return None  # a custom join condition: ask the database
    by_remote = {remote: local for local, remote in pairs}
    try:
        return tuple(mapper.get_property_by_column(by_remote[c]).key for c in target_pk)
    except Exception:  # the local column is not mapped as an attribute
        return None


def _properties(model: type[t.Any], options: ModelOptions, where: str,
                taken: set[str]) -> dict[str, dict[str, t.Any]]:
    out: dict[str, dict[str, t.Any]] = {}
    for name in options.properties:
        if name in taken:
            raise ValueError(f"{where}: 'properties' names '{name}', which is a column or a"
                             " relationship (they are shown already).")
        raw = pyinspect.getattr_static(model, name, None)
        if isinstance(raw, property):
            getter = raw.fget
        elif isinstance(raw, hybrid_property):
            getter = raw.fget
        else:
            raise ValueError(f"{where}: 'properties' names '{name}', which is not a property"
                             f" of '{model.__name__}'.")
        out[name] = _return_schema(getter)
    return out


_SCHEMAS: dict[t.Any, dict[str, t.Any]] = {
    int: {"type": "integer"}, float: {"type": "number"}, str: {"type": "string"},
    bool: {"type": "boolean"},
}


def _return_schema(getter: t.Any) -> dict[str, t.Any]:
    """The schema of a property from its return annotation, when it is a plain type."""
    try:
        hints = t.get_type_hints(getter)
    except Exception:  # unresolvable annotations: describe the property as any value
        return {}
    return dict(_SCHEMAS.get(hints.get("return"), {}))
