"""``SmartDictReader``: ``csv.DictReader`` with typed fields.

Fields are converted by a given mapping (column → type) or by guessing, with the
spellings of :mod:`flasker.util.convert`; a bad row is reported with its line
number and either stops the read or is skipped and counted. :func:`.csvload.load_csv`
reads a file with it into a model's table.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import typing as t
import uuid

from .convert import (
    guess,
    to_bool,
    to_date,
    to_datetime,
    to_decimal,
    to_float,
    to_int,
    to_json,
    to_str,
    to_time,
    to_uuid,
)

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping


Converter = t.Callable[[str], t.Any]
FieldType = type | str | Converter
OnError = t.Literal["stop", "skip"]
ON_ERROR = ("stop", "skip")


class CSVError(ValueError):
    """A row (or the header) of a CSV file cannot be read; ``line`` is where it starts.

    ``skippable`` is false when the rest of the file cannot be read either (it does
    not decode), so that skipping the row would not help.
    """

    def __init__(self, message: str, line: int | None = None, skippable: bool = True) -> None:
        super().__init__(message)
        self.line = line
        self.skippable = skippable


class RowError(t.NamedTuple):
    """A row that was skipped: the line it starts on and why."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


# -- converting fields ------------------------------------------------------------------------

CONVERTERS: dict[t.Any, Converter] = {
    bool: to_bool, int: to_int, float: to_float, decimal.Decimal: to_decimal,
    dt.datetime: to_datetime, dt.date: to_date, dt.time: to_time, uuid.UUID: to_uuid,
    str: to_str, "json": to_json, dict: to_json, list: to_json,
    "bool": to_bool, "int": to_int, "float": to_float, "decimal": to_decimal,
    "datetime": to_datetime, "date": to_date, "time": to_time, "uuid": to_uuid, "str": to_str,
}


def converter(kind: FieldType) -> Converter:
    """The converter of a type (``int``, ``date``, ``"json"``...) or a callable as given."""
    found = CONVERTERS.get(kind)
    if found is not None:
        return found
    if callable(kind) and not isinstance(kind, str):
        return kind
    names = ", ".join(sorted(k for k in CONVERTERS if isinstance(k, str)))
    raise ValueError(f"Unknown field type {kind!r}: use a type, a callable, or one of {names}.")


# -- the reader -------------------------------------------------------------------------------


class SmartDictReader:
    """Read CSV rows as dicts of typed values, reporting bad rows with their line numbers.

    :param f: an open text file (with ``newline=""``) or any iterable of lines.
    :param fieldnames: the column names; read from the first row when omitted.
    :param types: column → type (``int``, ``float``, ``bool``, ``Decimal``, ``date``,
        ``datetime``, ``time``, ``UUID``, ``str``, ``"json"``) or any callable taking
        the text. Other columns are guessed (see :func:`guess`), or kept as text when
        ``guess`` is false.
    :param on_error: ``"stop"`` raises :class:`CSVError` at the first bad row;
        ``"skip"`` records it in ``errors`` and goes on.
    :param name: how messages name the input (default: the file's name).

    An empty field is ``None``, except in a column typed ``str``. A row with more or
    fewer fields than the header is bad, as is a malformed line (quotes opened and
    not closed, a NUL byte). After the read, ``rows_imported`` counts the rows given
    and ``errors`` lists the skipped ones.
    """

    def __init__(self, f: Iterable[str], fieldnames: t.Sequence[str] | None = None,
                 types: Mapping[str, FieldType] | None = None, *, guess: bool = True,
                 on_error: OnError = "stop", name: str | None = None,
                 dialect: str | type[csv.Dialect] | csv.Dialect = "excel",
                 **fmtparams: t.Any) -> None:
        if on_error not in ON_ERROR:
            raise ValueError(f"'on_error' must be 'stop' or 'skip', not {on_error!r}.")
        fmtparams.setdefault("strict", True)
        self._reader = csv.reader(f, dialect, **fmtparams)
        self._fieldnames = list(fieldnames) if fieldnames is not None else None
        self.types: dict[str, FieldType] = dict(types or {})
        self.guess = guess
        self.on_error: OnError = on_error
        self.name = name if name is not None else str(getattr(f, "name", "the CSV input"))
        self.errors: list[RowError] = []
        self.rows_imported = 0
        self.row_line = 0
        self._columns: list[tuple[str, Converter | None]] | None = None

    @property
    def line_num(self) -> int:
        """Lines read from the input so far (a quoted field may span several)."""
        return self._reader.line_num

    @property
    def fieldnames(self) -> list[str]:
        """The column names, read from the header row on first use."""
        if self._fieldnames is None:
            header: list[str] | None = None
            try:
                while header == [] or header is None:
                    header = next(self._reader)
            except StopIteration:
                header = []
            except csv.Error as e:
                raise CSVError(f"The header of {self.where()} cannot be read: {e}.",
                               self.line_num) from None
            except UnicodeDecodeError as e:
                raise self._undecodable(e) from None
            seen: set[str] = set()
            for column in header:
                if column in seen:
                    raise CSVError(
                        f"The header of {self.where()} names the column '{column}' twice:"
                        " each column needs its own name.", self.line_num
                    )
                seen.add(column)
            self._fieldnames = header
        return self._fieldnames

    @fieldnames.setter
    def fieldnames(self, names: t.Sequence[str]) -> None:
        self._fieldnames = list(names)
        self._columns = None

    def where(self, line: int | None = None) -> str:
        return f"'{self.name}'" if line is None else f"line {line} of '{self.name}'"

    def _prepare(self) -> list[tuple[str, Converter | None]]:
        """``(name, converter)`` per column; ``None`` keeps the text as it is."""
        names = self.fieldnames
        unknown = [name for name in self.types if name not in names]
        if unknown:
            listed = ", ".join(f"'{n}'" for n in names)
            raise CSVError(
                f"A type is given for the column '{unknown[0]}', which {self.where()} does not"
                f" have. Its columns: {listed}."
            )
        columns: list[tuple[str, Converter | None]] = []
        for name in names:
            kind = self.types.get(name)
            convert = converter(kind) if kind is not None else guess if self.guess else to_str
            columns.append((name, None if convert is to_str else convert))
        return columns

    def __iter__(self) -> Iterator[dict[str, t.Any]]:
        return self

    def __next__(self) -> dict[str, t.Any]:
        if self._columns is None:
            self._columns = self._prepare()
        columns = self._columns
        width = len(columns)
        while True:
            start = self._reader.line_num + 1
            try:
                row = next(self._reader)
            except csv.Error as e:
                self._bad(start, f"malformed CSV: {e}")
                continue
            except UnicodeDecodeError as e:  # the rest of the file cannot be read either
                raise self._undecodable(e) from None
            if not row:
                continue  # a blank line, as csv.DictReader skips it
            self.row_line = start
            if len(row) != width:
                self._bad(start, f"{len(row)} fields where the header has {width}")
                continue
            values: dict[str, t.Any] = {}
            try:
                # The hot loop of 'flasker load': the width is checked, so no strict zip.
                for (name, convert), raw in zip(columns, row, strict=False):
                    if convert is None:
                        values[name] = raw
                    elif raw:
                        values[name] = convert(raw)
                    else:
                        values[name] = None
            except (ValueError, TypeError, ArithmeticError) as e:
                self._bad(start, f"field '{name}' has value {raw!r}: {e}")
                continue
            self.rows_imported += 1
            return values

    def _values(self, columns: list[tuple[str, Converter | None]], row: list[str],
                line: int) -> list[t.Any] | None:
        """A row's values, as :meth:`__next__` converts them; ``None`` once reported bad."""
        values: list[t.Any] = []
        for (name, convert), raw in zip(columns, row, strict=True):
            try:
                values.append(raw if convert is None else convert(raw) if raw else None)
            except (ValueError, TypeError, ArithmeticError) as e:
                self._bad(line, f"field '{name}' has value {raw!r}: {e}")
                return None
        return values

    def _undecodable(self, error: UnicodeDecodeError) -> CSVError:
        line = self.line_num + 1
        return CSVError(
            f"{self.where()} cannot be decoded as {error.encoding} at or after line {line}:"
            f" {error.reason}. Save it as UTF-8, or give its encoding.", line, skippable=False
        )

    def _bad(self, line: int, message: str) -> None:
        if self.on_error == "stop":
            raise CSVError(f"Line {line} of '{self.name}': {message}.", line)
        self.errors.append(RowError(line, message + "."))
