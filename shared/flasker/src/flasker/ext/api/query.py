"""The query string of a read: filters, sorting, sparse fieldsets, depth and pagination.

Syntax (documented in the README and the OpenAPI document):

- ``filter=PATH:OP:VALUE``, repeatable (all must hold). ``PATH`` is a column or
  ``relation.column`` (any depth); ``OP`` is one of :data:`OPERATORS`; for ``in``
  the value is a comma-separated list or a JSON array; ``is_null`` takes ``true``
  (default) or ``false`` and applies to a relationship too.
- ``sort=-address,id``: several columns, ``-`` for descending; the key ends every order.
- ``fields=address,cats`` for the listed model, ``fields[cats]=name`` for any model.
- ``depth=N`` expands relationships N levels deep.
- ``limit``/``offset`` pages; ``cursor`` (empty for the first page) pages by keyset.
- ``total=false`` leaves out the total count.
"""

from __future__ import annotations

import base64
import binascii
import typing as t
from dataclasses import dataclass, field

import orjson
import sqlalchemy as sa

from ...util.json import dumps
from .columns import Invalid
from .problems import Problem, parameter

if t.TYPE_CHECKING:
    from werkzeug.datastructures import MultiDict

    from .model import ColumnSpec, ModelSpec, RelationSpec

OPERATORS = ("eq", "ne", "lt", "le", "gt", "ge", "in", "like", "ilike", "is_null")
READ_PARAMETERS = frozenset({"depth", "fields"})
LIST_PARAMETERS = READ_PARAMETERS | {"filter", "sort", "limit", "offset", "cursor", "total"}
MAX_OFFSET = 2**63 - 1


class Catalog(t.Protocol):
    """What parsing needs of the API: the exposed models and the caller's rights."""

    def spec_of(self, model: type[t.Any]) -> ModelSpec | None: ...

    def spec_named(self, collection: str) -> ModelSpec | None: ...

    def readable(self, spec: ModelSpec) -> bool: ...

    @property
    def dialect(self) -> str: ...


@dataclass(frozen=True)
class Limits:
    page_size: int
    max_page_size: int
    max_depth: int
    include_total: bool


@dataclass
class ReadArgs:
    """The arguments of any read: how deep, and which fields of which model."""

    depth: int = 0
    fields: dict[str, frozenset[str]] = field(default_factory=dict)

    def fields_of(self, spec: ModelSpec) -> frozenset[str] | None:
        return self.fields.get(spec.collection)


@dataclass
class ListArgs(ReadArgs):
    """The arguments of a read of a collection."""

    criteria: list[sa.ColumnElement[bool]] = field(default_factory=list)
    order: list[tuple[ColumnSpec, bool]] = field(default_factory=list)
    limit: int = 20
    offset: int = 0
    keyset: bool = False
    after: tuple[t.Any, ...] | None = None
    total: bool = True
    sort_text: str = ""

    def order_by(self) -> list[sa.ColumnElement[t.Any]]:
        clauses: list[sa.ColumnElement[t.Any]] = []
        for column, descending in self.order:
            clause = column.attr.desc() if descending else column.attr.asc()
            # NULLs sort last both ways on every database, so that pages and cursors agree.
            clauses.append(clause.nulls_last() if column.nullable else clause)
        return clauses

    def window(self) -> list[sa.ColumnElement[bool]]:
        """The criteria of the page: the filters and, in keyset mode, "after the cursor"."""
        if self.after is None:
            return self.criteria
        return [*self.criteria, _after(self.order, self.after)]


def check_names(args: MultiDict[str, str], allowed: frozenset[str]) -> None:
    for name in args:
        base = name.split("[", 1)[0] if name.startswith("fields[") else name
        if base not in allowed:
            raise parameter(name, "is not known here",
                            f"The query parameter '{name}' is not known here; use"
                            f" {', '.join(sorted(allowed))}.")


def parse_read(args: MultiDict[str, str], spec: ModelSpec, limits: Limits,
               catalog: Catalog) -> ReadArgs:
    check_names(args, READ_PARAMETERS)
    read = ReadArgs()
    _parse_common(args, spec, limits, catalog, read)
    return read


def parse_list(args: MultiDict[str, str], spec: ModelSpec, limits: Limits, catalog: Catalog,
               default_order: t.Sequence[t.Any] = ()) -> ListArgs:
    check_names(args, LIST_PARAMETERS)
    read = ListArgs(limit=limits.page_size, total=limits.include_total)
    _parse_common(args, spec, limits, catalog, read)
    for text in args.getlist("filter"):
        read.criteria.append(parse_filter(text, spec, catalog))
    read.sort_text = args.get("sort", "").strip()
    if read.sort_text:
        read.order = parse_sort(read.sort_text, spec)
    else:
        read.order = _default_order(default_order, spec)
    present = {c.key for c, _d in read.order}
    read.order += [(c, False) for c in spec.pk if c.key not in present]
    if "limit" in args:
        read.limit = _integer(args["limit"], "limit", 1)
        if read.limit > limits.max_page_size:
            raise Problem.of(
                "page-too-large",
                f"A page holds at most {limits.max_page_size} items; ask for 'limit' up to that"
                " and follow the 'next' link for more.",
                [parameter("limit", f"is more than {limits.max_page_size}").errors[0]],
            )
    if "offset" in args:
        read.offset = _integer(args["offset"], "offset", 0)
    if "total" in args:
        lowered = args["total"].strip().lower()
        if lowered not in ("true", "false", "1", "0"):
            raise parameter("total", "must be true or false")
        read.total = lowered in ("true", "1")
    if "cursor" in args:
        if "offset" in args:
            raise parameter("cursor", "cannot be used with 'offset'",
                            "Give either 'cursor' (keyset paging) or 'offset', not both.")
        read.keyset = True
        if args["cursor"]:
            read.after = decode_cursor(args["cursor"], read)
    return read


def _default_order(columns: t.Sequence[t.Any], spec: ModelSpec) -> list[tuple[ColumnSpec, bool]]:
    """The order of a relationship (its ``order_by``), as columns of the target model."""
    by_column = {c.attr.property.columns[0]: c for c in spec.columns.values()}
    out = []
    for clause in columns:
        descending = False
        element = clause
        modifier = getattr(clause, "modifier", None)
        if modifier is not None and getattr(clause, "element", None) is not None:
            descending = modifier is sa.sql.operators.desc_op
            element = clause.element
        column = by_column.get(element)
        if column is not None:
            out.append((column, descending))
    return out


def _parse_common(args: MultiDict[str, str], spec: ModelSpec, limits: Limits, catalog: Catalog,
                  read: ReadArgs) -> None:
    if "depth" in args:
        read.depth = _integer(args["depth"], "depth", 0)
        if read.depth > limits.max_depth:
            raise parameter("depth", f"is more than {limits.max_depth}",
                            f"The query parameter 'depth' may be at most {limits.max_depth}.")
    for name in args:
        if name == "fields":
            target: ModelSpec | None = spec
        elif name.startswith("fields[") and name.endswith("]"):
            target = catalog.spec_named(name[len("fields["):-1])
            if target is None:
                raise parameter(name, "names no collection of this API")
        else:
            continue
        assert target is not None
        names = frozenset(n.strip() for n in args[name].split(",") if n.strip())
        known = set(target.columns) | set(target.properties) | {
            r for r, rel in target.relations.items() if _visible(rel, catalog)}
        for unknown in sorted(names - known):
            raise parameter(name, f"names '{unknown}', which is not a field of {target.name}",
                            f"The query parameter '{name}' names '{unknown}', which is not a"
                            f" field of {target.name}; the fields are"
                            f" {', '.join(sorted(known))}.")
        read.fields[target.collection] = names


def _visible(relation: RelationSpec, catalog: Catalog) -> bool:
    target = catalog.spec_of(relation.target)
    return target is not None and catalog.readable(target)


def _integer(text: str, name: str, minimum: int) -> int:
    stripped = text.strip()
    if not stripped.isdigit() and not (stripped.startswith("-") and stripped[1:].isdigit()):
        raise parameter(name, "must be an integer")
    value = int(stripped)
    if value < minimum:
        raise parameter(name, f"must be at least {minimum}")
    if value > MAX_OFFSET:
        raise parameter(name, f"must be at most {MAX_OFFSET}")
    return value


# -- filters ----------------------------------------------------------------------------------


def parse_filter(text: str, spec: ModelSpec, catalog: Catalog) -> sa.ColumnElement[bool]:
    """``path:op:value`` → a criterion on ``spec``'s model."""
    path, sep, rest = text.partition(":")
    op, _sep, value = rest.partition(":")
    if not sep or not path or op not in OPERATORS:
        raise parameter("filter", f"{text!r} is not of the form PATH:OP:VALUE",
                        f"The filter {text!r} is not of the form PATH:OP:VALUE with OP one of"
                        f" {', '.join(OPERATORS)} (as in 'house.address:ilike:%road%').")
    steps = path.split(".")
    current = spec
    relations: list[RelationSpec] = []
    for step in steps[:-1]:
        relation = current.relations.get(step)
        target = catalog.spec_of(relation.target) if relation is not None else None
        if relation is None or target is None or not catalog.readable(target):
            raise parameter("filter", f"{path!r}: {current.name} has no relationship '{step}'")
        relations.append(relation)
        current = target
    last = steps[-1]
    if last in current.relations and op == "is_null":
        relation = current.relations[last]
        target = catalog.spec_of(relation.target)
        if target is None or not catalog.readable(target):
            raise parameter("filter", f"{path!r}: {current.name} has no field '{last}'")
        exists = relation.attr.any() if relation.many else relation.attr.has()
        criterion: sa.ColumnElement[bool] = ~exists if _truth(value) else exists
    else:
        column = current.columns.get(last)
        if column is None:
            raise parameter("filter", f"{path!r}: {current.name} has no column '{last}'")
        criterion = _compare(column, op, value, text, catalog.dialect)
    for relation in reversed(relations):
        criterion = relation.attr.any(criterion) if relation.many else relation.attr.has(criterion)
    return criterion


def _truth(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("", "true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise parameter("filter", f"is_null takes true or false, not {value!r}")


def like_to_glob(pattern: str) -> str:
    """A LIKE pattern (``%``, ``_``, ``\\`` escapes) as the equivalent SQLite GLOB pattern."""
    out = []
    chars = iter(pattern)
    for char in chars:
        if char == "\\":
            char = next(chars)
        elif char == "%":
            out.append("*")
            continue
        elif char == "_":
            out.append("?")
            continue
        out.append(f"[{char}]" if char in "*?[" else char)
    return "".join(out)


def _compare(column: ColumnSpec, op: str, value: str, text: str,
             dialect: str) -> sa.ColumnElement[bool]:
    attr = column.attr
    if op == "is_null":
        return attr.is_(None) if _truth(value) else attr.is_not(None)
    if not column.kind.comparable:
        raise parameter("filter", f"{text!r}: the column '{column.key}' ({column.kind.name})"
                        " can only be tested with is_null")
    if op in ("like", "ilike"):
        if not column.kind.textual:
            raise parameter("filter", f"{text!r}: '{op}' applies to text columns only")
        if "\x00" in value:
            raise parameter("filter", f"{text!r}: the pattern contains a NUL character")
        if (len(value) - len(value.rstrip("\\"))) % 2:
            raise parameter("filter", f"{text!r}: the pattern ends with a lone escape '\\'")
        if op == "ilike":
            return attr.ilike(value, escape="\\")
        if dialect == "sqlite":
            # SQLite's LIKE ignores case; its GLOB is LIKE with case, as on other databases.
            return attr.op("GLOB")(like_to_glob(value))
        # One escape character everywhere (PostgreSQL's default; SQLite has none by default).
        return attr.like(value, escape="\\")
    if op == "in":
        values = _in_values(value, text)
        try:
            converted = [column.kind.from_text(v) if isinstance(v, str)
                         else column.kind.from_json(v) for v in values]
        except Invalid as e:
            raise parameter("filter", f"{text!r}: {e}") from None
        return attr.in_(converted)
    try:
        converted_value = column.kind.from_text(value)
    except Invalid as e:
        raise parameter("filter", f"{text!r}: {e}") from None
    return {
        "eq": attr.__eq__, "ne": attr.__ne__, "lt": attr.__lt__, "le": attr.__le__,
        "gt": attr.__gt__, "ge": attr.__ge__,
    }[op](converted_value)


def _in_values(value: str, text: str) -> list[t.Any]:
    stripped = value.strip()
    if stripped.startswith("["):
        try:
            values = orjson.loads(stripped)
        except orjson.JSONDecodeError:
            raise parameter("filter", f"{text!r}: the list is not valid JSON") from None
        if not isinstance(values, list) or not all(
                isinstance(v, str | int | float | bool) for v in values):
            raise parameter("filter", f"{text!r}: the list must hold plain values")
        items: list[t.Any] = values
    else:
        items = value.split(",") if value else []
    if not items:
        raise parameter("filter", f"{text!r}: 'in' needs at least one value")
    return items


# -- sorting ----------------------------------------------------------------------------------


def parse_sort(text: str, spec: ModelSpec) -> list[tuple[ColumnSpec, bool]]:
    order: list[tuple[ColumnSpec, bool]] = []
    seen: set[str] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        descending = part.startswith("-")
        name = part.lstrip("-+")
        column = spec.columns.get(name)
        if column is None:
            raise parameter("sort", f"names '{name}', which is not a column of {spec.name}")
        if not column.kind.sortable:
            raise parameter("sort", f"names '{name}', a {column.kind.name} column that has no"
                            " order")
        if name not in seen:
            seen.add(name)
            order.append((column, descending))
    return order


# -- keyset cursors ---------------------------------------------------------------------------


def encode_cursor(read: ListArgs, values: t.Sequence[t.Any]) -> str:
    """An opaque token for "after the item with these order values"."""
    data = dumps([read.sort_text, list(values)])
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def decode_cursor(token: str, read: ListArgs) -> tuple[t.Any, ...]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        sort_text, values = orjson.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        raise parameter("cursor", "is not a cursor given by this API",
                        "The query parameter 'cursor' is not a cursor given by this API: copy"
                        " it from 'next_cursor' or the 'next' link of a page.") from None
    if sort_text != read.sort_text:
        raise parameter("cursor", f"was made for the sort {sort_text!r}",
                        f"The cursor was made for the sort {sort_text!r}; keep that sort or"
                        " start again without a cursor.")
    if not isinstance(values, list) or len(values) != len(read.order):
        raise parameter("cursor", "is not a cursor given by this API")
    out = []
    for (column, _d), value in zip(read.order, values, strict=True):
        try:
            out.append(None if value is None else column.kind.from_json(value))
        except Invalid:
            raise parameter("cursor", "is not a cursor given by this API") from None
    return tuple(out)


def _after(order: list[tuple[ColumnSpec, bool]], values: t.Sequence[t.Any]
           ) -> sa.ColumnElement[bool]:
    """Rows after ``values`` in ``order`` (NULLs last), as lexicographic comparisons."""
    branches: list[sa.ColumnElement[bool]] = []
    equal: list[sa.ColumnElement[bool]] = []
    for (column, descending), value in zip(order, values, strict=True):
        attr = column.attr
        if value is None:
            after: sa.ColumnElement[bool] | None = None  # nothing sorts after NULL
            same = attr.is_(None)
        else:
            beyond = attr < value if descending else attr > value
            after = sa.or_(beyond, attr.is_(None)) if column.nullable else beyond
            same = attr == value
        if after is not None:
            branches.append(sa.and_(*equal, after))
        equal.append(same)
    return sa.or_(*branches) if branches else sa.false()
