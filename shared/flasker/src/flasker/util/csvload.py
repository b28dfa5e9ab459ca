"""``load_csv``: a CSV file's rows into a model's table, each field checked (``flasker load``).

The rows are read by :class:`~flasker.util.csv.SmartDictReader` with the converters of the
model's columns, then streamed into one ``COPY`` (PostgreSQL, :mod:`flasker.util.pgcopy`)
or inserted by batches; a bad row is reported with its line number.
"""

from __future__ import annotations

import contextlib
import csv
import difflib
import operator
import time
import typing as t
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from .csv import CONVERTERS, ON_ERROR, CSVError, FieldType, OnError, RowError, SmartDictReader
from .pgcopy import dumper, formats

if t.TYPE_CHECKING:
    import os
    from collections.abc import Callable, Iterator, Mapping

    from .pgcopy import ColumnFormatter, Dump, Formatter


class LoadError(ValueError):
    """The file does not fit the model: unknown or missing columns, an unmapped class."""


@dataclass
class LoadResult:
    """What :func:`load_csv` did; ``stopped`` means nothing was written."""

    model: str
    table: str
    source: str
    rows: int = 0
    batches: int = 0
    errors: list[RowError] = field(default_factory=list)
    failed_batches: list[tuple[int, int, str]] = field(default_factory=list)
    dry_run: bool = False
    stopped: CSVError | None = None
    seconds: float = 0.0

    @property
    def written(self) -> bool:
        return not (self.dry_run or self.stopped)


def _python_type(column: sa.Column[t.Any]) -> FieldType | None:
    if isinstance(column.type, sa.JSON):
        return "json"
    try:
        kind = column.type.python_type
    except NotImplementedError:
        return None
    if kind in CONVERTERS:
        return kind
    return None  # an Enum, an Interval...: the column's type or the database parses the text


def columns_of(model: type[t.Any]) -> dict[str, sa.Column[t.Any]]:
    """The columns of the model's own table, by attribute name."""
    mapper = sa.inspect(model, raiseerr=False)
    table = getattr(model, "__table__", None)
    if mapper is None or not isinstance(table, sa.Table):
        raise LoadError(f"'{getattr(model, '__name__', model)}' is not a model mapped to a table.")
    found: dict[str, sa.Column[t.Any]] = {}
    for attr in mapper.column_attrs:
        for column in attr.columns:
            if isinstance(column, sa.Column) and column.table is table:
                found.setdefault(attr.key, column)
    return found


def _required(column: sa.Column[t.Any]) -> bool:
    return not (column.nullable or column.default is not None or column.server_default is not None
                or (column.primary_key and column.autoincrement in (True, "auto")
                    and column.table.autoincrement_column is column))


def _db_message(error: Exception) -> str:
    orig = getattr(error, "orig", None) or error
    # PostgreSQL's CONTEXT names a line of the batch's COPY, not of the file: left out.
    lines = [line.strip() for line in str(orig).splitlines()]
    text = " ".join(line for line in lines if line and not line.startswith("CONTEXT:"))
    return f"{type(orig).__name__}: {text}"


@contextlib.contextmanager
def _transaction(connection: sa.Connection) -> Iterator[sa.RootTransaction]:
    """One transaction in which savepoints nest, SQLite included.

    pysqlite opens a transaction only before a DML statement, so a SAVEPOINT would
    open (and its RELEASE commit) one of its own. SQLAlchemy's documented remedy,
    applied to this connection alone: pysqlite stops managing, we emit BEGIN.
    """
    if connection.dialect.name != "sqlite":
        yield connection.begin()
        return
    dbapi = t.cast(t.Any, connection.connection.driver_connection)
    previous = dbapi.isolation_level
    dbapi.isolation_level = None
    try:
        transaction = connection.begin()
        connection.exec_driver_sql("BEGIN")
        yield transaction
    finally:
        dbapi.isolation_level = previous


def count_lines(path: Path) -> int:
    """Lines in a file (a last line without newline counts), read in blocks: fast."""
    count = 0
    last = b"\n"
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


def load_csv(engine: sa.Engine, model: type[t.Any], path: str | os.PathLike[str], *,
             batch: int = 1000, dry_run: bool = False, on_error: OnError = "stop",
             progress: Callable[[int], None] | None = None,
             encoding: str = "utf-8-sig") -> LoadResult:
    """Insert the rows of a CSV file into ``model``'s table, in batches, in one transaction.

    The header names the columns (attribute or column names). Fields are typed from
    the columns. Rows go in by batches of core ``INSERT`` (executemany: column
    defaults apply, ORM events do not), each batch in a savepoint: a failed one is
    rolled back to it, then retried row by row to find the rows the database
    refuses. On PostgreSQL with psycopg, rows are streamed instead, checked field
    by field as above, to one ``COPY`` (in batches of ``batch`` rows); should the
    database refuse any row, that ``COPY`` is rolled back and the file read again
    by batches in savepoints, so that the outcome is the same. With
    ``on_error="stop"`` the first bad row (unreadable, or refused) rolls the whole
    load back; with ``"skip"`` bad rows are left out and listed in ``errors``.
    ``dry_run`` does all of it, then rolls back. ``progress(lines)`` is called with
    the lines each batch read. The file is read as it goes: memory does not grow
    with its size.

    :raises LoadError: the file's header does not fit the model (nothing is read).
    """
    if on_error not in ON_ERROR:
        raise ValueError(f"'on_error' must be 'stop' or 'skip', not {on_error!r}.")
    if batch < 1:
        raise ValueError(f"The batch size must be 1 or more, not {batch!r}.")
    path = Path(path)
    columns_of(model)  # a class that is not a mapped model is refused before the file is read
    table: sa.Table = model.__table__
    result = LoadResult(model=model.__name__, table=table.name, source=str(path), dry_run=dry_run)
    started = time.perf_counter()

    def read() -> contextlib.AbstractContextManager[tuple[SmartDictReader, list[str]]]:
        return _reading(path, encoding, model, on_error)

    with read() as (reader, keys), engine.connect() as connection, \
            _transaction(connection) as transaction:
        try:
            errors = _load(connection, table, keys, reader, read, batch, on_error, progress,
                           result, streamable=path.is_file())
        except BaseException:
            transaction.rollback()
            raise
        if result.written:
            transaction.commit()
        else:
            transaction.rollback()
    result.errors = errors + result.errors
    result.errors.sort()
    result.seconds = time.perf_counter() - started
    return result


@contextlib.contextmanager
def _reading(path: Path, encoding: str, model: type[t.Any],
             on_error: OnError) -> Iterator[tuple[SmartDictReader, list[str]]]:
    """The file open, its header matched to the model's columns: a reader typed from them."""
    columns = columns_of(model)
    table: sa.Table = model.__table__
    with path.open(newline="", encoding=encoding) as f:
        reader = SmartDictReader(f, guess=False, on_error=on_error, name=path.name)
        try:
            header = reader.fieldnames
        except CSVError as e:
            raise LoadError(str(e)) from e
        if not header:
            raise LoadError(f"'{path.name}' is empty: its first line must name the columns.")
        keys = _match_header(header, columns, model.__name__, path.name)
        reader.fieldnames = keys
        reader.types = {
            key: kind for key in keys if (kind := _python_type(table.c[key])) is not None
        }
        yield reader, keys


def _load(connection: sa.Connection, table: sa.Table, keys: list[str], reader: SmartDictReader,
          read: Callable[[], contextlib.AbstractContextManager[tuple[SmartDictReader, list[str]]]],
          size: int, on_error: OnError, progress: Callable[[int], None] | None,
          result: LoadResult, streamable: bool) -> list[RowError]:
    """Load the rows, streamed where it can be; return the rows the reader left out.

    ``streamable``: the file can be read again (not a pipe), should a row be refused.
    """
    # COPY talks to the driver directly: its errors come unwrapped.
    refusals = (sa.exc.DBAPIError, connection.dialect.loaded_dbapi.Error, UnicodeEncodeError)
    stream = _copy_stream(connection, table, keys, reader) if streamable else None
    if stream is None:
        _load_batches(connection, table, keys, reader, size, on_error, progress, result)
        return reader.errors
    shown = 0

    def counted(lines: int) -> None:
        nonlocal shown
        shown += lines
        assert progress is not None
        progress(lines)

    savepoint = connection.begin_nested()
    try:
        stream(size, counted if progress is not None else None, result)
    except refusals:
        savepoint.rollback()
    else:
        savepoint.commit()
        return reader.errors
    # A row was refused: start over, by batches in savepoints, to find and name it (them).
    result.rows = result.batches = 0
    result.stopped = None
    done = 0

    def resumed(lines: int) -> None:  # the bar goes on from where the stream left it
        nonlocal shown, done
        done += lines
        if done > shown:
            assert progress is not None
            progress(done - shown)
            shown = done

    with read() as (again, _):
        _load_batches(connection, table, keys, again, size, on_error,
                      resumed if progress is not None else None, result)
        return again.errors


def _match_header(header: list[str], columns: Mapping[str, sa.Column[t.Any]], model: str,
                  source: str) -> list[str]:
    keys: list[str] = []
    by_name = {column.name: column for column in columns.values()}
    for name in header:
        column = columns.get(name, by_name.get(name))
        if column is None:
            close = difflib.get_close_matches(name, list(columns), n=1, cutoff=0.6)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            names = ", ".join(f"'{n}'" for n in sorted(columns))
            raise LoadError(
                f"The column '{name}' of '{source}' is not a column of '{model}'.{hint}"
                f" Its columns: {names}."
            )
        if column.key in keys:
            raise LoadError(f"'{source}' gives the column '{column.key}' of '{model}' twice.")
        keys.append(column.key)
    missing = [name for name, c in columns.items() if _required(c) and c.key not in keys]
    if missing:
        raise LoadError(
            f"'{source}' has no column '{missing[0]}', which '{model}' requires (not nullable,"
            " no default). Add it to the header."
        )
    return keys


Writer = t.Callable[[list[dict[str, t.Any]]], None]
Stream = t.Callable[[int, t.Callable[[int], None] | None, LoadResult], None]


def _copy_statement(connection: sa.Connection, table: sa.Table, keys: list[str]) -> str | None:
    """PostgreSQL's ``COPY`` of the file's columns, where it keeps ``INSERT``'s meaning.

    COPY (through psycopg) is several times faster than an executemany INSERT. It
    skips Python-side column defaults, so it is used only when no column left out
    of the file has one.
    """
    dialect = connection.dialect
    omitted = [c for c in table.columns if c.key not in keys]
    if dialect.name != "postgresql" or dialect.driver != "psycopg" or any(
            c.default is not None for c in omitted):
        return None
    preparer = dialect.identifier_preparer
    names = ", ".join(preparer.quote(table.c[key].name) for key in keys)
    return f"COPY {preparer.format_table(table)} ({names}) FROM STDIN"


def _writer(connection: sa.Connection, table: sa.Table, keys: list[str]) -> Writer:
    """How a batch goes in: ``COPY`` where it can (see :func:`_copy_statement`), else INSERT.

    Values go through the columns' bind processors, as an INSERT's would.
    """
    insert = sa.insert(table)
    statement = _copy_statement(connection, table, keys)
    if statement is None:

        def execute(rows: list[dict[str, t.Any]]) -> None:
            connection.execute(insert, rows)

        return execute

    dialect = connection.dialect
    processors = [table.c[key].type.dialect_impl(dialect).bind_processor(dialect) for key in keys]
    converting = [(i, p) for i, p in enumerate(processors) if p is not None]
    driver = t.cast(t.Any, connection.connection.driver_connection)

    def copy(rows: list[dict[str, t.Any]]) -> None:
        with driver.cursor() as cursor, cursor.copy(statement) as copying:
            for row in rows:
                values = list(row.values())
                for index, process in converting:
                    if values[index] is not None:
                        values[index] = process(values[index])
                copying.write_row(values)

    return copy


def _copy_stream(connection: sa.Connection, table: sa.Table, keys: list[str],
                 reader: SmartDictReader) -> Stream | None:
    """The rows of ``reader`` streamed to one ``COPY``, or ``None`` where COPY does not apply.

    The stream checks each row as the reader would (same messages, same lines, same
    batches of good rows) and formats its fields as COPY text once (:mod:`.pgcopy`):
    a batch's fields column by column, in C-level passes, or row by row where a
    column has a field that needs a closer look. Each batch goes as one block while
    the server parses the one before: no savepoint, no round trip per batch. It
    raises the driver's error if the database refuses a row.
    """
    statement = _copy_statement(connection, table, keys)
    if statement is None:
        return None
    from psycopg.adapt import Transformer  # noqa: PLC0415 (psycopg: only with its dialect)

    dialect = connection.dialect
    driver = t.cast(t.Any, connection.connection.driver_connection)
    with driver.cursor() as cursor:  # the columns' types as the database has them
        cursor.execute("SELECT attname, atttypid FROM pg_attribute WHERE attrelid ="
                       " %s::regclass AND attnum > 0 AND NOT attisdropped",
                       (dialect.identifier_preparer.format_table(table),))
        oids: dict[str, int] = dict(cursor.fetchall())
    transformer = Transformer(driver)
    columns = reader._prepare()
    fields: list[Formatter] = []
    by_column: list[ColumnFormatter] = []
    dumps: list[Dump] = []
    for key, (_, convert) in zip(keys, columns, strict=True):
        column = table.c[key]
        process = column.type.dialect_impl(dialect).bind_processor(dialect)
        dump = dumper(transformer, driver.info.encoding, process)
        found = formats(convert, oids.get(column.name), process, dump)
        dumps.append(dump)
        fields.append(found.field)
        by_column.append(found.column)
    call = operator.call

    def row_by_row(rows: list[list[str]], starts: list[int]) -> list[str]:
        lines: list[str] = []
        for row, start in zip(rows, starts, strict=True):
            try:
                lines.append("\t".join(map(call, fields, row)))
            except Exception:  # the reader's own path names the bad field
                values = reader._values(columns, row, start)
                if values is not None:
                    lines.append("\t".join(map(call, dumps, values)))
        return lines

    def text_of(rows: list[list[str]], starts: list[int]) -> list[str]:
        """The COPY lines of rows read whole (and of the right width), bad ones left out."""
        try:
            texts = list(map(call, by_column, zip(*rows, strict=True)))
        except Exception:  # a field to look at closely: row by row
            return row_by_row(rows, starts)
        return list(map("\t".join, zip(*texts, strict=True)))

    def stream(size: int, progress: Callable[[int], None] | None, result: LoadResult) -> None:
        lines = reader._reader
        width = len(fields)
        batch: list[str] = []  # the batch's good rows, as COPY lines
        rows: list[list[str]] = []  # rows read since, not yet checked, and their lines
        starts: list[int] = []
        line = reported = lines.line_num

        def check() -> None:
            # Rows are checked before a reading error is raised, as the reader checks
            # each row as it reads it: the first bad row (in the file) is the one named.
            nonlocal rows, starts
            if rows:
                batch.extend(text_of(rows, starts))
                rows, starts = [], []

        def send() -> None:
            nonlocal batch, reported
            copying.write("\n".join(batch) + "\n")
            result.rows += len(batch)
            reader.rows_imported += len(batch)
            result.batches += 1
            batch = []
            if progress is not None:
                progress(line - reported)
            reported = line

        with driver.cursor() as cursor, cursor.copy(statement) as copying:
            try:
                while True:
                    try:
                        for row in lines:
                            # 'line' is the last line of the row before: this one starts after.
                            if len(row) == width:
                                rows.append(row)
                                starts.append(line + 1)
                                line = lines.line_num
                                if len(batch) + len(rows) == size:
                                    check()
                                    if len(batch) == size:
                                        send()
                            else:
                                if row:  # a blank line is skipped, as csv.DictReader does
                                    check()
                                    reader._bad(line + 1, f"{len(row)} fields where the header"
                                                          f" has {width}")
                                line = lines.line_num
                        break
                    except csv.Error as e:
                        start = line + 1
                        line = lines.line_num
                        check()
                        reader._bad(start, f"malformed CSV: {e}")
                    except UnicodeDecodeError as e:  # the rest of the file cannot be read
                        check()
                        raise reader._undecodable(e) from None
                check()
            except CSVError as e:  # stopped: the batches before it still go through COPY,
                result.stopped = e  # to learn whether the database refused one of them
                return
            if batch:
                send()
        if progress is not None and line > reported:
            progress(line - reported)

    return stream


def _load_batches(connection: sa.Connection, table: sa.Table, keys: list[str],
                  reader: SmartDictReader, size: int, on_error: OnError,
                  progress: Callable[[int], None] | None, result: LoadResult) -> None:
    write = _writer(connection, table, keys)
    insert = sa.insert(table)
    # COPY talks to the driver directly: its errors come unwrapped.
    refusals = (sa.exc.DBAPIError, connection.dialect.loaded_dbapi.Error)
    lines_done = reader.line_num
    rows: list[dict[str, t.Any]] = []
    starts: list[int] = []
    exhausted = False
    while not exhausted:
        try:
            for row in reader:
                rows.append(row)
                starts.append(reader.row_line)
                if len(rows) == size:
                    break
            else:
                exhausted = True
        except CSVError as e:  # on_error="stop": the load ends, all of it rolled back
            result.stopped = e
            return
        if rows:
            savepoint = connection.begin_nested()
            try:
                write(rows)
            except refusals as e:
                savepoint.rollback()
                message = _db_message(e)
                if on_error == "skip":
                    result.failed_batches.append((starts[0], reader.line_num, message))
                # Row by row, to name the rows the database refuses.
                refused = _retry_rows(connection, insert, rows, starts, result,
                                      stop=on_error == "stop")
                if on_error == "stop":
                    line, reason = refused[0] if refused else (starts[0], message)
                    result.stopped = CSVError(f"Line {line} of '{reader.name}': {reason}", line)
                    return
            else:
                savepoint.commit()
                result.rows += len(rows)
            result.batches += 1
            rows, starts = [], []
        if progress is not None:
            progress(reader.line_num - lines_done)
            lines_done = reader.line_num


def _retry_rows(connection: sa.Connection, insert: sa.Insert, rows: list[dict[str, t.Any]],
                starts: list[int], result: LoadResult, stop: bool) -> list[RowError]:
    """Insert a failed batch's rows one by one, each in a savepoint; return the refused ones.

    With ``stop`` it ends at the first refused row; otherwise refused rows are
    recorded in ``result.errors`` and the others are kept.
    """
    refused: list[RowError] = []
    for row, line in zip(rows, starts, strict=True):
        savepoint = connection.begin_nested()
        try:
            connection.execute(insert, row)
        except sa.exc.DBAPIError as e:
            savepoint.rollback()
            refused.append(RowError(line, _db_message(e) + "."))
            if stop:
                break
        else:
            savepoint.commit()
            result.rows += 1
    if not stop:
        result.errors.extend(refused)
    return refused
