"""CSV fields as PostgreSQL ``COPY`` text, checked by the converters of :mod:`.convert`.

What ``flasker load`` streams to ``COPY ... FROM STDIN`` (text format). Each column
gets its formats, chosen once (:func:`formats`): they check a field with the
column's converter, exactly as :class:`~flasker.util.csv.SmartDictReader` does,
and raise what the converter raises; a batch's column is checked at once, in
C-level passes, where its fields are spelt the usual way. Where the field's own
text means the same value to PostgreSQL as the converted value would (``42`` for
an integer column, ``2024-02-29 10:30:00`` for a timestamp), the text is sent as it
is; otherwise the converted value goes through the column's bind processor and
psycopg's text dumper, as ``Copy.write_row`` would send it. Empty fields of typed
columns are NULL.

Sending the text as it is stays safe because the database parses it: a spelling it
would read otherwise than Python (``1e-400``) is refused, and the load that
streamed it starts over by batches in savepoints (see :func:`flasker.util.csvload.load_csv`).
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import operator
import typing as t

from .convert import to_bool, to_date, to_datetime, to_decimal, to_float, to_int

if t.TYPE_CHECKING:
    from collections.abc import Callable

    from psycopg.abc import Transformer

Formatter = t.Callable[[str], str]
ColumnFormatter = t.Callable[[t.Sequence[str]], t.Sequence[str]]
Dump = t.Callable[[t.Any], str]

NULL = "\\N"

# PostgreSQL's type OIDs (pg_type.oid: stable since they are built in).
INT2, INT4, INT8, FLOAT8, NUMERIC, BOOL = 21, 23, 20, 701, 1700, 16
DATE, TIMESTAMP, TIMESTAMPTZ = 1082, 1114, 1184

_fromisoformat = dt.datetime.fromisoformat

_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def escape(text: str) -> str:
    """Text as a field of ``COPY``'s text format: backslash, tab, newline and CR escaped."""
    return text.translate(_ESCAPES)


def text(raw: str) -> str:
    """A text field: as it is, escaped where it must be (empty stays empty, not NULL)."""
    if raw.isprintable() and "\\" not in raw:
        return raw
    return escape(raw)


def dumper(transformer: Transformer, encoding: str,
           process: Callable[[t.Any], t.Any] | None) -> Dump:
    """A converted value as ``write_row`` sends it: bind processor, then psycopg's text dumper."""
    from psycopg.adapt import PyFormat  # noqa: PLC0415 (psycopg: only with its dialect)

    formats = [PyFormat.TEXT]

    def dump(value: t.Any) -> str:
        if value is None:
            return NULL
        if process is not None:
            value = process(value)
        data = transformer.dump_sequence([value], formats)[0]
        return NULL if data is None else escape(bytes(data).decode(encoding))

    return dump


# The spellings of booleans met most, mapped through to_bool itself so that they can't drift.
_BOOL_TEXT = {
    spelling: "t" if to_bool(spelling) else "f"
    for word in ("true", "false", "yes", "no", "on", "off", "1", "0")
    for spelling in (word, word.upper(), word.title())
}
_BOOL_COLUMN = {**_BOOL_TEXT, "": NULL}


class Formats(t.NamedTuple):
    """How a column's fields become COPY text: one field, or a batch's column at once.

    ``column`` takes the column's fields of a batch of rows and gives their COPY text;
    it checks them with C-level passes (``"".join``, ``map(float, ...)``) where it can,
    and raises at a field the converter refuses, or another error that calls for the
    row-by-row path (which names the field). ``field`` formats one field.
    """

    field: Formatter
    column: ColumnFormatter


def formats(convert: Callable[[str], t.Any] | None, oid: int | None,
            process: Callable[[t.Any], t.Any] | None, dump: Dump) -> Formats:
    """The formats of a column: its converter (``None``: text), its type's OID, its processor.

    ``dump`` formats a converted value (see :func:`dumper`).
    """
    if convert is None:
        if process is None:
            return Formats(text, _text_column)
        # The text goes through the processor, empty or not, as an INSERT's would.
        return Formats(dump, _mapped(dump))
    if process is None or _benign(convert, process):
        fast = _fast(convert, oid, dump)
        if fast is not None:
            return fast

    def converted(raw: str) -> str:
        return dump(convert(raw)) if raw else NULL

    return Formats(converted, _mapped(converted))


def _mapped(field: Formatter) -> ColumnFormatter:
    def column(values: t.Sequence[str]) -> t.Sequence[str]:
        return list(map(field, values))

    return column


def _text_column(values: t.Sequence[str]) -> t.Sequence[str]:
    joined = "".join(values)
    if joined.isprintable() and "\\" not in joined:
        return values
    return list(map(text, values))


def _present(values: t.Sequence[str]) -> t.Sequence[str]:
    return [value for value in values if value] if "" in values else values


def _nulls(values: t.Sequence[str]) -> t.Sequence[str]:
    return [value or NULL for value in values] if "" in values else values


def _benign(convert: Callable[[str], t.Any], process: Callable[[t.Any], t.Any]) -> bool:
    # A Boolean's processor checks its value and gives it back: tried on both values.
    return convert is to_bool and process(True) is True and process(False) is False


def _fast(convert: Callable[[str], t.Any], oid: int | None, dump: Dump) -> Formats | None:
    if convert is to_int and oid in (INT2, INT4, INT8):

        def integer(raw: str) -> str:
            if raw.isdigit() and raw.isascii():
                return raw
            return dump(to_int(raw)) if raw else NULL

        def integers(values: t.Sequence[str]) -> t.Sequence[str]:
            joined = "".join(values)
            if joined.isdigit() and joined.isascii():  # each field digits, or empty
                return _nulls(values)
            return list(map(integer, values))

        return Formats(integer, integers)
    if convert is to_float and oid == FLOAT8:
        # Both sides round the decimal text correctly, to the same double; the test is
        # to_float's own (ASCII, no '_', finite), with float() raising what it refuses.
        def double(raw: str) -> str:
            if not raw:
                return NULL
            if raw.isprintable() and raw.isascii() and "_" not in raw:
                value = float(raw)
                if value - value == 0.0:  # finite
                    return raw
            return dump(to_float(raw))

        def doubles(values: t.Sequence[str]) -> t.Sequence[str]:
            present = _present(values)
            joined = "".join(present)
            if joined.isprintable() and joined.isascii() and "_" not in joined:
                found = list(map(float, present))
                if not (any(map(math.isinf, found)) or any(map(math.isnan, found))):
                    return _nulls(values)
            return list(map(double, values))

        return Formats(double, doubles)
    if convert is to_decimal and oid == NUMERIC:

        def number(raw: str) -> str:  # the same digits, so the same value and scale
            if not raw:
                return NULL
            value = to_decimal(raw)
            return raw if raw.isprintable() else dump(value)

        def numbers(values: t.Sequence[str]) -> t.Sequence[str]:
            present = _present(values)
            joined = "".join(present)
            if (joined.isprintable() and joined.isascii() and "_" not in joined
                    and all(map(decimal.Decimal.is_finite, map(decimal.Decimal, present)))):
                return _nulls(values)
            return list(map(number, values))

        return Formats(number, numbers)
    if convert is to_bool and oid == BOOL:

        def boolean(raw: str) -> str:
            found = _BOOL_TEXT.get(raw)
            if found is not None:
                return found
            return ("t" if to_bool(raw) else "f") if raw else NULL

        def booleans(values: t.Sequence[str]) -> t.Sequence[str]:
            found = list(map(_BOOL_COLUMN.get, values))
            return list(map(boolean, values)) if None in found else t.cast(list[str], found)

        return Formats(boolean, booleans)
    if convert is to_datetime and oid in (TIMESTAMP, TIMESTAMPTZ):

        def timestamp(raw: str) -> str:
            if (len(raw) == 19 and raw[10] in "T " and raw[4] == raw[7] == "-"
                    and raw[13] == raw[16] == ":" and _fromisoformat(raw).tzinfo is None):
                # YYYY-MM-DD HH:MM:SS ('T' or ' '), which to_datetime reads the same (nothing
                # to strip where fromisoformat succeeds), and PostgreSQL reads as str(value).
                return raw
            return dump(to_datetime(raw)) if raw else NULL

        def timestamps(values: t.Sequence[str]) -> t.Sequence[str]:
            present = _present(values)
            if _shaped(present, 19, {4: "-", 7: "-", 13: ":", 16: ":"}, 10) and not any(
                    map(_tzinfo, map(_fromisoformat, present))):
                return _nulls(values)
            return list(map(timestamp, values))

        return Formats(timestamp, timestamps)
    if convert is to_date and oid == DATE:

        def date(raw: str) -> str:
            if not raw:
                return NULL
            value = to_date(raw)
            return raw if len(raw) == 10 and raw[4] == raw[7] == "-" else dump(value)

        def dates(values: t.Sequence[str]) -> t.Sequence[str]:
            present = _present(values)
            if _shaped(present, 10, {4: "-", 7: "-"}, None):
                list(map(dt.date.fromisoformat, present))  # raises at a bad one
                return _nulls(values)
            return list(map(date, values))

        return Formats(date, dates)
    return None


_tzinfo = operator.attrgetter("tzinfo")


def _shaped(values: t.Sequence[str], width: int, marks: dict[int, str],
            separator: int | None) -> bool:
    """Every value ``width`` long, with ``marks`` at their places (and 'T' or ' ' there)."""
    if not values or set(map(len, values)) != {width}:
        return False
    joined = "".join(values)
    count = len(values)
    if any(joined[at::width].count(mark) != count for at, mark in marks.items()):
        return False
    if separator is None:
        return True
    found = joined[separator::width]
    return found.count("T") + found.count(" ") == count
