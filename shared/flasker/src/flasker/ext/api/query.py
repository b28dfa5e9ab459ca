"""The query string of a read: filters, sorting, sparse fieldsets, depth and pagination.

Syntax (documented in the README and the OpenAPI document):

- ``filter=PATH:OP:VALUE``, repeatable (all must hold). ``PATH`` is a column or
  ``relation.column``, crossing at most :data:`MAX_FILTER_HOPS` relationships; ``OP``
  is one of :data:`OPERATORS`; for ``in`` the value is a comma-separated list or a
  JSON array; ``is_null`` takes a boolean (``true`` when the value is left out:
  ``age:is_null``) and applies to a relationship too.
- ``filter=or(age:lt:2,not(home:is_null))``: a group (:data:`GROUPS`) of conditions
  and groups, separated by commas (no blanks), at most :data:`MAX_FILTER_DEPTH` deep (a
  ``not`` of one condition counts no level); a filter holds at most
  :data:`MAX_FILTER_LENGTH` characters. In a group a value ends at ``,`` or ``)``; a
  value holding those is written as a JSON string (``name:eq:"a,b"``), a list for ``in``
  as a JSON array. A group is one SQL expression: the statements of a read
  do not grow with it.
- ``sort=-address,id``: several columns, ``-`` for descending; the key ends every order.
- ``fields=address,cats`` for the listed model, ``fields[cats]=name`` for any model.
- ``depth=N`` expands relationships N levels deep.
- ``limit``/``offset`` pages; ``cursor`` (empty for the first page) pages by keyset, an
  ``offset`` beside it skipping items after it; an unknown cursor is a 404.
- Every filter must match the exact pattern of :mod:`.grammar`, the document's.
- ``total=false`` leaves out the total count.

Values are read with the spellings of :mod:`flasker.util.convert` (booleans
``true``/``false``, ``yes``/``no``, ``on``/``off``, ``1``/``0``), as in the
configuration and CSV files; of those, a filter takes the one spelling its pattern
gives (:mod:`.grammar`).
"""

from __future__ import annotations

import base64
import binascii
import re
import typing as t
from dataclasses import dataclass, field

import orjson
import sqlalchemy as sa

from ...util.convert import to_bool, to_int, to_list
from ...util.json import dumps
from .columns import Invalid
from .grammar import (
    GROUPS,
    MAX_FILTER_DEPTH,
    MAX_FILTER_HOPS,
    MAX_FILTER_LENGTH,
    OPERATORS,
)
from .problems import Problem, not_found, parameter

if t.TYPE_CHECKING:
    from werkzeug.datastructures import MultiDict

    from .model import ColumnSpec, ModelSpec, RelationSpec

READ_PARAMETERS = frozenset({"depth", "fields"})
LIST_PARAMETERS = READ_PARAMETERS | {"filter", "sort", "limit", "offset", "cursor", "total"}
MAX_OFFSET = 2**63 - 1


class Catalog(t.Protocol):
    """What parsing needs of the API: the exposed models and the caller's rights."""

    def spec_of(self, model: type[t.Any]) -> ModelSpec | None: ...

    def spec_named(self, collection: str) -> ModelSpec | None: ...

    def readable(self, spec: ModelSpec) -> bool: ...

    def filter_pattern(self, spec: ModelSpec) -> re.Pattern[str]: ...

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
    read.sort_text = args.get("sort", "")
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
        try:
            read.total = to_bool(args["total"])
        except ValueError as e:
            raise parameter("total", f"is {e}") from None
    if "cursor" in args:
        # With a cursor, an offset skips that many items after it (the first page too).
        read.keyset = True
        if args["cursor"]:
            read.after = decode_cursor(args["cursor"], read, spec)
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
        # Exactly the OpenAPI pattern: names joined by commas, or nothing (the key alone);
        # an empty item or a space is a mistake, not a name to skip.
        text = args[name]
        listed = text.split(",") if text else []
        names = frozenset(listed)
        known = set(target.columns) | set(target.properties) | {
            r for r, rel in target.relations.items() if _visible(rel, catalog)}
        if "" in names:
            raise parameter(name, "has an empty item",
                            f"The query parameter '{name}' has an empty item: list field names"
                            " separated by single commas (as in 'name,house'), or leave it"
                            " empty for the key alone.")
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
    try:
        value = to_int(text)
    except ValueError as e:
        raise parameter(name, f"is {e}") from None
    if value < minimum:
        raise parameter(name, f"must be at least {minimum}")
    if value > MAX_OFFSET:
        raise parameter(name, f"must be at most {MAX_OFFSET}")
    return value


# -- filters ----------------------------------------------------------------------------------


def parse_filter(text: str, spec: ModelSpec, catalog: Catalog) -> sa.ColumnElement[bool]:
    """``path:op:value``, or a group ``or(...)``/``and(...)``/``not(...)`` → a criterion.

    Read, then matched against the document's pattern (:mod:`.grammar`): the reading
    names the fault of most mistakes; the pattern refuses what the document does not
    describe (a blank around a value, another spelling of a value), so that the server
    accepts exactly the filters the document does.
    """
    if len(text) > MAX_FILTER_LENGTH:
        raise parameter("filter", f"is longer than {MAX_FILTER_LENGTH} characters",
                        f"A filter holds at most {MAX_FILTER_LENGTH} characters (this one"
                        f" {len(text):,}); split it into several 'filter' parameters (all must"
                        " hold), or use 'in'.")
    opening = _OPENING.match(text)
    if opening is not None:
        if opening.group(1) not in GROUPS:
            raise _bad_group(text, f"'{opening.group(1)}(' is not a group: use"
                             f" {', '.join(g + '(...)' for g in GROUPS)}")
        criterion = _Group(text, spec, catalog).parse()
    else:
        path, sep, rest = text.partition(":")
        op, given, value = rest.partition(":")
        criterion = _condition(text, path if sep else "", op, value if given else None, spec,
                               catalog)
    if catalog.filter_pattern(spec).fullmatch(text) is None:
        raise parameter(
            "filter", f"{text!r} is not written as the document describes",
            f"The filter {text!r} is not written as this API's OpenAPI document describes"
            " (the pattern of its 'filter' parameter): no blanks around values or terms;"
            " booleans true, false, yes, no, on, off, 1 or 0 in lower case; numbers"
            " without leading zeros, '+' or '_'; dates YYYY-MM-DD (years 1000-8999), times"
            " HH:MM[:SS[.ffffff]], with an offset Z or +HH:MM; UUIDs with hyphens in lower"
            " case; 'in' lists without empty items; JSON strings without \\u escapes.")
    return criterion


# A group opens with a word and '('; a condition's path has no '(' (names are identifiers).
_OPENING = re.compile(r"([A-Za-z_]+)\(")
# In a group: PATH and OP end at ':', ',' or ')'; a bare value ends at ',' or ')'.
_HEAD = re.compile(r"([^:,()\"\[\]]*)(?::([^:,()\"\[\]]*))?")
_BARE = re.compile(r"[^,()]*")


def _bad_group(text: str, reason: str) -> Problem:
    return parameter("filter", f"{text!r}: {reason}",
                     f"The filter {text!r} cannot be read: {reason}. A group is"
                     " or(...), and(...) or not(...) of conditions PATH:OP:VALUE and groups,"
                     " separated by commas, as in 'or(age:lt:2,not(home:is_null))'.")


class _Group:
    """Reads a filter that is a group, term by term, into one SQL expression.

    A recursive descent bounded by :data:`MAX_FILTER_DEPTH` (so Python's stack and
    the database's expression depth are never at stake) and by the filter's length. No
    blank is skipped: the document's pattern has none.
    """

    def __init__(self, text: str, spec: ModelSpec, catalog: Catalog) -> None:
        self.text = text
        self.spec = spec
        self.catalog = catalog
        self.pos = 0

    def fail(self, reason: str) -> Problem:
        return _bad_group(self.text, reason)

    def parse(self) -> sa.ColumnElement[bool]:
        criterion = self.term(0)
        if self.pos < len(self.text):
            raise self.fail(f"{self.text[self.pos:]!r} follows the last ')' (at character"
                            f" {self.pos + 1}); combine several groups in one, or give"
                            " several 'filter' parameters")
        return criterion

    def term(self, depth: int) -> sa.ColumnElement[bool]:
        opening = _OPENING.match(self.text, self.pos)
        if opening is None:
            return self.condition()
        name, start = opening.group(1), opening.start(1)
        if name not in GROUPS:
            raise self.fail(f"'{name}(' at character {start + 1} is not a group: use"
                            f" {', '.join(g + '(...)' for g in GROUPS)}")
        # not(...) of one condition counts no level: or(not(a),b) at any depth.
        if depth >= MAX_FILTER_DEPTH and not (name == "not" and depth == MAX_FILTER_DEPTH):
            raise self.fail(f"groups nest more than {MAX_FILTER_DEPTH} deep (at character"
                            f" {start + 1}); write the filter with fewer levels")
        self.pos = opening.end()
        items = [self.term(depth + 1)]
        while True:
            if self.pos >= len(self.text):
                raise self.fail(f"'{name}(' at character {start + 1} is never closed: add ')'")
            char = self.text[self.pos]
            self.pos += 1
            if char == ")":
                break
            if char != ",":
                raise self.fail(f"{char!r} at character {self.pos} where ',' or ')' should be")
            items.append(self.term(depth + 1))
        if name == "not":
            if len(items) != 1:
                raise self.fail(f"'not(' at character {start + 1} holds {len(items)}"
                                " conditions: it takes one (use not(or(...)) or not(and(...)))")
            return sa.not_(items[0])
        return sa.or_(*items) if name == "or" else sa.and_(*items)

    def condition(self) -> sa.ColumnElement[bool]:
        """``PATH:OP[:VALUE]`` inside a group: the value ends at ``,`` or ``)``, or is JSON."""
        start = self.pos
        head = _HEAD.match(self.text, start)
        assert head is not None  # the pattern matches the empty text
        path, op = head.group(1), head.group(2) or ""
        self.pos = head.end()
        value: str | None = None
        if self.text.startswith(":", self.pos):
            self.pos += 1
            value = self.value()
        if not path and not op:
            found = repr(self.text[self.pos]) if self.pos < len(self.text) else "the end"
            raise self.fail(f"{found} at character {self.pos + 1} where a condition"
                            " PATH:OP:VALUE or a group should be")
        return _condition(self.text[start:self.pos], path, op, value, self.spec, self.catalog)

    def value(self) -> str:
        text, start = self.text, self.pos
        if text.startswith('"', start):
            end = _string_end(text, start)
            if end is None:
                raise self.fail(f'the value at character {start + 1} opens a \'"\' that is'
                                " never closed")
            self.pos = end
            try:
                decoded = orjson.loads(text[start:end])
            except orjson.JSONDecodeError as e:
                raise self.fail(f"the value at character {start + 1} is not a JSON string"
                                f" ({e})") from None
            return t.cast(str, decoded)
        if text.startswith("[", start):
            end = _array_end(text, start)
            if end is None:
                raise self.fail(f"the list at character {start + 1} opens a '[' that is never"
                                " closed")
            self.pos = end
            return text[start:end]
        bare = _BARE.match(text, start)
        assert bare is not None  # the pattern matches the empty text
        self.pos = bare.end()
        if text.startswith("(", self.pos):
            raise self.fail(f"the value at character {start + 1} holds '(': write a value"
                            ' with , ( or ) as a JSON string, as in name:eq:"a(b)"')
        return bare.group()


def _string_end(text: str, start: int) -> int | None:
    """The index after the JSON string that opens at ``start`` (``None``: never closed)."""
    pos = start + 1
    while pos < len(text):
        char = text[pos]
        if char == "\\":
            pos += 2
            continue
        if char == '"':
            return pos + 1
        pos += 1
    return None


def _array_end(text: str, start: int) -> int | None:
    """The index after the bracketed list that opens at ``start``, strings skipped."""
    depth = 0
    pos = start
    while pos < len(text):
        char = text[pos]
        if char == '"':
            end = _string_end(text, pos)
            if end is None:
                return None
            pos = end
            continue
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth == 0:
                return pos + 1
        pos += 1
    return None


def _condition(text: str, path: str, op: str, value: str | None, spec: ModelSpec,
               catalog: Catalog) -> sa.ColumnElement[bool]:
    """The criterion of one condition ``PATH:OP:VALUE`` (``text``, for messages)."""
    if not path or op not in OPERATORS:
        raise parameter("filter", f"{text!r} is not of the form PATH:OP:VALUE",
                        f"The filter {text!r} is not of the form PATH:OP:VALUE with OP one of"
                        f" {', '.join(OPERATORS)} (as in 'house.address:ilike:%road%').")
    if value is None:  # the operator's default; an empty value ('age:is_null:') is no boolean
        value = "true" if op == "is_null" else ""
    steps = path.split(".")
    if len(steps) - 1 > MAX_FILTER_HOPS:
        raise parameter("filter", f"{path!r} crosses {len(steps) - 1} relationships, more"
                        f" than {MAX_FILTER_HOPS}",
                        f"The filter path {path!r} crosses {len(steps) - 1} relationships; a"
                        f" path crosses at most {MAX_FILTER_HOPS} (as in 'house.cats.name'):"
                        " filter the collection closer to what you test.")
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
    try:
        return to_bool(value)
    except ValueError as e:
        raise parameter("filter", f"is_null takes true or false: {value!r} is {e}") from None


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
            return attr.op("GLOB", is_comparison=True)(like_to_glob(value))
        # One escape character everywhere (PostgreSQL's default; SQLite has none by default).
        return attr.like(value, escape="\\")
    if op in ("lt", "le", "gt", "ge") and not column.kind.ordered:
        raise parameter("filter", f"{text!r}: '{op}' does not apply to the {column.kind.name}"
                        f" column '{column.key}'; use eq, ne, in or is_null")
    if op == "in":
        values = _in_values(value, text)
        try:
            converted = [column.kind.from_text(v) for v in values]
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


def _in_values(value: str, text: str) -> list[str]:
    try:
        items = to_list(value)
    except ValueError as e:
        raise parameter("filter", f"{text!r}: {e}") from None
    if not items:
        raise parameter("filter", f"{text!r}: 'in' needs at least one value")
    return items


# -- sorting ----------------------------------------------------------------------------------


def parse_sort(text: str, spec: ModelSpec) -> list[tuple[ColumnSpec, bool]]:
    order: list[tuple[ColumnSpec, bool]] = []
    seen: set[str] = set()
    # Exactly the OpenAPI pattern: columns joined by commas, each with an optional '-'.
    for part in text.split(","):
        if not part:
            raise parameter("sort", "has an empty item",
                            "The query parameter 'sort' has an empty item: list columns"
                            " separated by single commas, '-' before one for descending (as in"
                            " '-age,name').")
        descending = part.startswith("-")
        name = part[1:] if descending else part
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


def decode_cursor(token: str, read: ListArgs, spec: ModelSpec) -> tuple[t.Any, ...]:
    """The order values a cursor of :func:`encode_cursor` holds; a 404 for any other token.

    A cursor is opaque, as a key is: one the API did not give (or gave for another sort)
    names no page, whatever its spelling, so it is not found rather than malformed.
    """
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        sort_text, values = orjson.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        raise _no_page(spec, read) from None
    if sort_text != read.sort_text:
        raise not_found(f"This cursor names no page of {spec.collection} sorted by"
                        f" {read.sort_text or 'default'!r}: it was made for the sort"
                        f" {sort_text or 'default'!r}; keep that sort or start again without"
                        " 'cursor'.")
    if not isinstance(values, list) or len(values) != len(read.order):
        raise _no_page(spec, read)
    out = []
    for (column, _d), value in zip(read.order, values, strict=True):
        try:
            out.append(None if value is None else column.kind.from_json(value))
        except Invalid:
            raise _no_page(spec, read) from None
    return tuple(out)


def _no_page(spec: ModelSpec, read: ListArgs) -> Problem:
    return not_found(f"This cursor names no page of {spec.collection}: start again without"
                     " 'cursor' (or with it empty), then copy 'next_cursor' or the 'next' link"
                     " of a page.")


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
    if not branches:
        return sa.false()
    (first, descending), value = order[0], values[0]
    if len(branches) > 1 and value is not None and not first.nullable:
        # Implied by the branches, but an index searches by it only when it stands alone:
        # without it PostgreSQL reads the index from its start, however deep the cursor.
        bound = first.attr <= value if descending else first.attr >= value
        return sa.and_(bound, sa.or_(*branches))
    return sa.or_(*branches)
