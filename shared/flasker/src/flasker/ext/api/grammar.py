"""The ``filter`` parameter of one collection as a regular expression: its exact syntax.

The OpenAPI document gives this pattern to clients (and to schemathesis), and the
server refuses any filter outside it (:func:`flasker.ext.api.query.parse_filter`),
so that the two agree both ways: a filter the pattern matches names real paths,
operators their kind takes and values the column reads; any other is a 400.

The pattern spells each value one way (no blanks around values or terms, booleans
in lower case, integers without leading zeros or '+'...), a subset of what the
converters of :mod:`flasker.util.convert` read: that subset is the documented
syntax. It is written for ECMA-262 and Python alike (no lookarounds, no ``\\d``),
so that hypothesis's ``from_regex`` generates from it. Groups nest by expansion
(each level repeats the level below three times), hence a small
:data:`MAX_FILTER_DEPTH`; their terms are unbounded but for the filter's length
(:data:`MAX_FILTER_LENGTH`), as a counted repetition would multiply the expression's
size in engines that unroll it (the Rust one of jsonschema-rs).
"""

from __future__ import annotations

import json
import re
import typing as t
from collections.abc import Callable, Iterator

from .columns import MONTH_DAY

if t.TYPE_CHECKING:
    from .columns import Kind
    from .model import ModelSpec, RelationSpec

OPERATORS = ("eq", "ne", "lt", "le", "gt", "ge", "in", "like", "ilike", "is_null")
#: The groups of a filter: all of, any of, and the negation of one condition or group.
GROUPS = ("and", "or", "not")
#: Groups nest at most this deep: a group holds conditions and negated conditions
#: (``or(not(age:eq:3),age:is_null)``: a ``not`` around one condition is never counted),
#: not groups. Each level
#: repeats the pattern of a condition three times: at 2 the document's pattern of a
#: collection is some 65 kB, and a client such as schemathesis that builds a generator
#: from it for every value spends a second a value. Any filter is still one: several
#: 'filter' parameters are and-ed, each an or(...) of conditions or of not(...).
MAX_FILTER_DEPTH = 1
#: Characters in one filter, so that it stays a small SQL expression (a bound on its terms
#: that a schema can state: ``maxLength``; a regular expression cannot count terms cheaply).
MAX_FILTER_LENGTH = 1000
#: Relationships one filter path may cross (``house.cats.name`` crosses 2): paths may be
#: cyclic (``house.cats.house...``), and the pattern lists every path there is.
MAX_FILTER_HOPS = 2

_COMPARE = "(eq|ne|lt|le|gt|ge)"
# What str.strip() removes: an item of an 'in' list must not start with it.
_BLANKS = "\\u0000-\\u0020\\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
_BOOLEAN = "(true|false|yes|no|on|off|1|0)"
# JSON string content without \\u escapes (so never a NUL) nor raw control characters.
_JSON_CHAR = '[^"\\\\\\u0000-\\u001f]'
_JSON_ESCAPE = '\\\\["/bfnrt]'
_BACKSLASH = "\\\\\\\\"  # a JSON-escaped backslash
_JSON_TEXT = f"({_JSON_CHAR}|{_JSON_ESCAPE}|{_BACKSLASH})*"
# A LIKE pattern never ends with a lone escape: each backslash escapes the next character.
_LIKE_TOP = "([^\\\\\\u0000]|\\\\[^\\u0000])*"
_LIKE_BARE = '([^,()"\\[\\\\\\u0000]|\\\\[^,()\\u0000])*'
_LIKE_JSON = (f'"({_JSON_CHAR}|{_JSON_ESCAPE}|{_BACKSLASH}({_JSON_CHAR}|{_JSON_ESCAPE}'
              f'|{_BACKSLASH}))*"')
# Years 1000-8999, so that no offset moves a moment out of Python's range.
_YEAR = "[1-8][0-9]{3}"
_LEAP_YEAR = "([1-8][0-9](0[48]|[2468][048]|[13579][26])|(1[26]|[2468][048]|[3579][26])00)"
_DATE = f"({_YEAR}-{MONTH_DAY}|{_LEAP_YEAR}-02-29)"
_CLOCK = "([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\\.[0-9]{1,6})?)?"
_OFFSET = "(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"


def escape(text: str) -> str:
    """``text`` as a literal of a pattern that ECMA-262 and Python read alike."""
    return re.sub(r"([\\^$.|?*+()\[\]{}/])", r"\\\1", text)


def _alternatives(patterns: t.Iterable[str]) -> str | None:
    found = list(dict.fromkeys(patterns))
    return "(" + "|".join(found) + ")" if found else None


def _upto(limit: int) -> str:
    """Decimal numbers from 0 to ``limit`` (at least 0), without leading zeros."""
    text = str(limit)
    if len(text) == 1:
        return f"[0-{limit}]"
    parts = ["[0-9]"]  # every number of fewer digits, then those of as many
    parts += [f"[1-9][0-9]{{{n - 1}}}" for n in range(2, len(text))]
    for i, digit in enumerate(text):
        low = 1 if i == 0 else 0
        if int(digit) > low:
            rest = len(text) - i - 1
            higher = f"[{low}-{int(digit) - 1}]"
            parts.append(text[:i] + higher + (f"[0-9]{{{rest}}}" if rest else ""))
    parts.append(text)
    return "(" + "|".join(parts) + ")"


def _integer(kind: Kind) -> str:
    if kind.minimum is None or kind.maximum is None:
        return "(0|-?[1-9][0-9]{0,17})"
    parts = []
    if kind.maximum >= 0:
        parts.append(_upto(kind.maximum))
    if kind.minimum < 0:
        # -1 to the minimum: '-' before a number from 0 would allow '-0'.
        parts.append(f"-(?:{_upto(-kind.minimum)})".replace("(?:", "("))
    return "(" + "|".join(parts) + ")"


def value_pattern(kind: Kind) -> str | None:
    """The one spelling of a value of ``kind`` in a filter; ``None`` for text and enums.

    It never holds ``,``, ``(``, ``)``, ``"``, ``\\`` nor starts with ``[``, so that it
    stands as it is inside a group and inside a JSON string.
    """
    name = kind.name
    if name == "integer":
        return _integer(kind)
    if name == "number":  # finite: at most 10**115
        return "-?(0|[1-9][0-9]{0,14})(\\.[0-9]{1,15})?([eE][+-]?[0-9]{1,2})?"
    if name == "interval":  # what a timedelta holds
        return "-?(0|[1-9][0-9]{0,12})(\\.[0-9]{1,6})?"
    if name == "decimal":  # the digits before the point that the precision allows
        whole = 30 if kind.precision is None else kind.precision - (kind.scale or 0)
        integer = "0" if whole <= 0 else f"(0|[1-9][0-9]{{0,{whole - 1}}})"
        return f"-?{integer}(\\.[0-9]{{1,20}})?"
    if name == "boolean":
        return _BOOLEAN
    if name == "datetime":
        return f"{_DATE}[T ]{_CLOCK}{_OFFSET}?"
    if name == "date":
        return _DATE
    if name == "time":
        return _CLOCK
    if name == "uuid":
        return "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    return None


def _json_inner(text: str) -> str:
    """``text`` as the inside of a JSON string."""
    return json.dumps(text, ensure_ascii=False)[1:-1]


class _Values:
    """The spellings of one kind's values in each place a filter holds them.

    ``top``: a value at the top level, to the end of the filter; ``bare``: a value in a
    group, ended by ``,`` or ``)``; ``quoted``: a JSON string in a group, for a value
    that holds them (text and enums: the others never do); ``item``, ``bare_item``: one
    item of an ``in`` list (top level, in a group); ``array_item``: an item of a JSON
    array. One spelling each keeps the pattern small, as groups repeat it.
    """

    def __init__(self, kind: Kind) -> None:
        self.kind = kind
        self.text = kind.name in ("string", "any")
        core = value_pattern(kind)
        if self.text:
            self.top: str | None = "[^\\u0000]*"
            self.bare: str | None = '([^,()"\\[\\u0000][^,()\\u0000]*)?'
            self.quoted: str | None = f'"{_JSON_TEXT}"'
            self.item: str | None = f"[^,\\n\\[{_BLANKS}][^,\\n\\u0000]*"
            self.bare_item: str | None = f'[^,()"\\[{_BLANKS}][^,()\\n\\u0000]*'
            self.array_item: str | None = f'"{_JSON_TEXT}"'
        elif kind.name == "enum":
            choices = [str(getattr(c, "value", c)) for c in kind.choices]
            listed = [c for c in choices if c and c.strip() == c and not re.search(
                r'[,\n\x00-\x1f"\\]|^\[', c)]
            self.top = _alternatives(escape(c) for c in choices)
            self.bare = _alternatives(escape(c) for c in choices
                                      if c and not re.search(r'[,()]|^["\[]', c))
            self.quoted = _alternatives(f'"{escape(_json_inner(c))}"' for c in choices)
            self.item = _alternatives(escape(c) for c in listed)
            self.bare_item = _alternatives(escape(c) for c in listed if not re.search("[()]", c))
            self.array_item = self.quoted
        else:
            self.top = self.bare = self.item = self.bare_item = core
            self.quoted = None
            # Numbers as JSON numbers, other values as JSON strings.
            self.array_item = (None if core is None else core
                               if kind.name in ("integer", "number", "interval") else f'"{core}"')

    @property
    def comparable(self) -> bool:
        return self.kind.comparable and self.top is not None

    def conditions(self, top: bool) -> str:
        """The operators of this kind and their values, after ``PATH:``."""
        out = [f"is_null(:{_BOOLEAN})?"]
        if not self.comparable:
            return _alternatives(out) or ""
        value = self.top if top else _alternatives(p for p in (self.bare, self.quoted) if p)
        # Text reads a missing value as '': 'name:eq' is 'name:eq:'.
        compare = _COMPARE if self.kind.ordered else "(eq|ne)"
        out.append(f"{compare}(:{value})?" if self.text else f"{compare}:{value}")
        array = (None if self.array_item is None
                 else f"\\[{self.array_item}(,{self.array_item})*\\]")
        if top and self.item:  # 'a, b' as the configuration's lists are written
            listed = [f"{self.item}(, ?{self.item})*"]
        else:
            listed = [self.bare_item] if self.bare_item else []
        members = _alternatives([*listed, *([array] if array else [])])
        if members:
            out.append(f"in:{members}")
        if self.kind.textual:
            out.append(f"(like|ilike)(:{_LIKE_TOP})?" if top
                       else f"(like|ilike)(:({_LIKE_BARE}|{_LIKE_JSON}))?")
        return _alternatives(out) or ""


Targets = Callable[["RelationSpec"], "ModelSpec | None"]


def paths(spec: ModelSpec, targets: Targets, prefix: str = "", hops: int = 0
          ) -> Iterator[tuple[str, Kind | None]]:
    """Every path a filter of ``spec`` may name, with its column's kind (``None``: a
    relationship), crossing at most :data:`MAX_FILTER_HOPS` relationships."""
    for name, column in spec.columns.items():
        yield prefix + name, column.kind
    for name, relation in spec.relations.items():
        target = targets(relation)
        if target is None:
            continue
        yield prefix + name, None
        if hops < MAX_FILTER_HOPS:
            yield from paths(target, targets, f"{prefix}{name}.", hops + 1)


def filter_pattern(spec: ModelSpec, targets: Targets) -> str:
    """The pattern of every filter of ``spec``, anchored (``^...$``).

    :param targets: the readable model a relationship leads to, ``None`` if none.
    """
    by_kind: dict[Kind | None, list[str]] = {}
    for path, kind in paths(spec, targets):
        by_kind.setdefault(kind, []).append(escape(path))
    top, inner = [], []
    for kind, names in by_kind.items():
        chosen = "(" + "|".join(names) + ")"
        if kind is None:
            top.append(f"{chosen}:is_null(:{_BOOLEAN})?")
            inner.append(top[-1])
            continue
        values = _Values(kind)
        top.append(f"{chosen}:{values.conditions(True)}")
        inner.append(f"{chosen}:{values.conditions(False)}")
    condition = "|".join(inner)
    term = f"({condition}|not\\(({condition})\\))"  # a negated condition is no level
    for _level in range(MAX_FILTER_DEPTH):
        group = f"(and|or)\\({term}(,{term})*\\)|not\\({term}\\)"
        term = f"({condition}|{group})"
    return f"^({'|'.join(top)}|{group})$"
