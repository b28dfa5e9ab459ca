"""``SmartDictReader``: typed fields, bad rows stopped or skipped; ``load_csv`` into a model."""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import time
import typing as t
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from flasker import Project
from flasker.util import CSVError, SmartDictReader
from flasker.util.convert import guess
from flasker.util.csv import RowError, converter
from flasker.util.csvload import load_csv

from .conftest import unique_package


def reader(text: str, **kwargs: object) -> SmartDictReader:
    return SmartDictReader(io.StringIO(text, newline=""), name="data.csv", **kwargs)  # type: ignore[arg-type]


def test_guessing_each_field() -> None:
    rows = list(reader(
        "n,x,b,d,ts,j,s,z,e\n"
        '3,1.5,true,2024-02-29,2024-02-29T10:30:00,"{""k"": [1, 2]}",hello,007,\n'
        "-4,1e3,FALSE,2024-13-01,2024-02-29 10:30,[1],12a,0,x\n"
    ))
    assert rows[0] == {
        "n": 3, "x": 1.5, "b": True, "d": dt.date(2024, 2, 29),
        "ts": dt.datetime(2024, 2, 29, 10, 30), "j": {"k": [1, 2]}, "s": "hello", "z": "007",
        "e": None,
    }
    # An impossible date stays text, as does anything that does not parse.
    assert rows[1] == {
        "n": -4, "x": 1000.0, "b": False, "d": "2024-13-01",
        "ts": dt.datetime(2024, 2, 29, 10, 30), "j": [1], "s": "12a", "z": 0, "e": "x",
    }


@pytest.mark.parametrize(("text", "expected"), [
    ("0", 0), ("+12", 12), ("01", "01"), ("1.", 1.0), (".5", 0.5), ("-2.5e-3", -0.0025),
    ("nan", "nan"), ("inf", "inf"), ("1e999", "1e999"), ("True", True), ("yes", "yes"),
    ("t", "t"), ("{not json", "{not json"), ("[1, 2]", [1, 2]), ("[1, NaN]", "[1, NaN]"),
    ("1 ", "1 "),
])
def test_guess(text: str, expected: object) -> None:
    assert guess(text) == expected
    assert type(guess(text)) is type(expected)


def test_types_by_mapping() -> None:
    rows = list(reader(
        "id,price,ok,day,at,meta,code,ref,label\n"
        "1,9.99,yes,2024-01-02,2024-01-02T03:04:05+00:00,{},007,"
        "12345678-1234-5678-1234-567812345678,\n",
        types={"id": int, "price": decimal.Decimal, "ok": bool, "day": dt.date,
               "at": dt.datetime, "meta": "json", "code": str, "ref": uuid.UUID, "label": str},
    ))
    assert rows == [{
        "id": 1, "price": decimal.Decimal("9.99"), "ok": True, "day": dt.date(2024, 1, 2),
        "at": dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC), "meta": {}, "code": "007",
        "ref": uuid.UUID("12345678-1234-5678-1234-567812345678"), "label": "",
    }]


@pytest.mark.parametrize(("kind", "text", "reason"), [
    (bool, "t", "not a boolean (true/false, yes/no, on/off or 1/0)"),
    (bool, "Y", "not a boolean (true/false, yes/no, on/off or 1/0)"),
    (int, "1_000", "not an integer"),
    (float, "nan", "not a number"),
    (decimal.Decimal, "NaN", "not a decimal number"),
])
def test_typed_columns_take_the_spellings_of_convert(kind: type, text: str, reason: str) -> None:
    r = reader(f"id,x\n1,{text}\n2,1\n3, On \n", types={"x": kind}, on_error="skip")
    assert [row["x"] for row in r] == ([True, True] if kind is bool else [1])
    assert r.errors[0] == RowError(2, f"field 'x' has value {text!r}: {reason}.")


def test_no_guessing_keeps_text() -> None:
    rows = list(reader("a,b\n1,\n", guess=False))
    assert rows == [{"a": "1", "b": ""}]


def test_custom_converter_and_unknown_type() -> None:
    rows = list(reader("a\nx y\n", types={"a": str.split}))
    assert rows == [{"a": ["x", "y"]}]
    with pytest.raises(ValueError, match="Unknown field type 'money'"):
        list(reader("a\n1\n", types={"a": "money"}))


def test_type_for_a_missing_column_is_an_error() -> None:
    with pytest.raises(CSVError, match="column 'age', which 'data.csv' does not have. Its columns:"
                                       " 'name'"):
        list(reader("name\nx\n", types={"age": int}))


def test_bad_value_stops_with_its_line() -> None:
    r = reader("id,age\n1,30\n2,thirty\n3,40\n", types={"age": int})
    assert next(r) == {"id": 1, "age": 30}
    with pytest.raises(CSVError) as info:
        next(r)
    assert str(info.value) == (
        "Line 3 of 'data.csv': field 'age' has value 'thirty': not an integer."
    )
    assert info.value.line == 3
    assert r.rows_imported == 1


def test_bad_rows_skipped_and_counted() -> None:
    text = (
        "id,age,born\n"
        "1,30,2000-01-01\n"
        "2,x,2000-01-01\n"        # line 3: not an integer
        "3,31\n"                  # line 4: too few fields
        "\n"                      # line 5: blank, ignored
        '4,32,"2000-01-01"\n'     # line 6: fine (quoted)
        "5,33,2000-01-01,extra\n"  # line 7: too many fields
        '6,34,"multi\nline"\n'    # lines 8-9: a bad date spanning two lines
        "7,35,2000-02-30\n"       # line 10: no such day
        "8,36,1999-12-31\n"       # line 11
    )
    r = reader(text, types={"age": int, "born": dt.date}, on_error="skip")
    rows = list(r)
    assert [row["id"] for row in rows] == [1, 4, 8]
    assert r.rows_imported == 3
    assert r.errors == [
        RowError(3, "field 'age' has value 'x': not an integer."),
        RowError(4, "2 fields where the header has 3."),
        RowError(7, "4 fields where the header has 3."),
        RowError(8, "field 'born' has value 'multi\\nline': not an ISO 8601 date (YYYY-MM-DD)."),
        RowError(10, "field 'born' has value '2000-02-30': not an ISO 8601 date (YYYY-MM-DD)."),
    ]
    assert str(r.errors[0]) == "line 3: field 'age' has value 'x': not an integer."


def test_malformed_csv_lines() -> None:
    text = 'a,b\n1,2\n"x"y,3\n4,5\n6,"unterminated\n'
    r = reader(text, on_error="skip")
    assert list(r) == [{"a": 1, "b": 2}, {"a": 4, "b": 5}]
    assert [e.line for e in r.errors] == [3, 5]
    assert all(e.message.startswith("malformed CSV:") for e in r.errors)
    with pytest.raises(CSVError, match=r"Line 3 of 'data.csv': malformed CSV: ',' expected after"):
        list(reader(text))


def test_undecodable_input_stops_even_when_skipping(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("a\n1\ncafé\n".encode("latin-1"))
    with path.open(newline="", encoding="utf-8") as f:
        r = SmartDictReader(f, on_error="skip")
        with pytest.raises(CSVError, match="latin.csv' cannot be decoded as utf-8 at or after"
                                           " line 1: invalid continuation byte") as info:
            list(r)
    assert not info.value.skippable


def test_header_problems() -> None:
    with pytest.raises(CSVError, match="names the column 'a' twice"):
        list(reader("a,b,a\n1,2,3\n"))
    assert list(reader("")) == []
    assert reader("").fieldnames == []
    assert list(reader("\n\na\n1\n")) == [{"a": 1}]
    with pytest.raises(ValueError, match="'on_error' must be 'stop' or 'skip'"):
        reader("a\n", on_error="ignore")


def test_given_fieldnames_and_dialect(tmp_path: Path) -> None:
    path = tmp_path / "semi.csv"
    path.write_text("1;x\n2;y\n")
    with path.open(newline="") as f:
        r = SmartDictReader(f, fieldnames=["n", "s"], delimiter=";")
        assert list(r) == [{"n": 1, "s": "x"}, {"n": 2, "s": "y"}]
        assert r.name.endswith("semi.csv")
        assert r.line_num == 2


# -- load_csv: what is stored is what the converters read ---------------------------------------

SPELLINGS_MODELS = """
import datetime as dt
import decimal

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from flasker import Model


class Sample(Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    n: Mapped[int | None]
    big: Mapped[int | None] = mapped_column(sa.BigInteger)
    x: Mapped[float | None]
    price: Mapped[decimal.Decimal | None] = mapped_column(sa.Numeric(12, 4))
    ok: Mapped[bool | None]
    at: Mapped[dt.datetime | None]
    day: Mapped[dt.date | None]
    label: Mapped[str] = mapped_column(sa.Text)
"""

# Per column, spellings the converters take: each row is stored as they read it, whether its
# text goes to the database as it is or converted.
SPELLINGS = {
    "n": ["7", "007", "+3", "-12", " 5 ", ""],
    "big": ["9007199254740993", "-1", "0", "", "42", "1"],
    "x": ["1.5", ".5", "1.", "6.02e23", " 2.25 ", "-0.0"],
    "price": ["1.5000", "-0.0001", "1e3", " 7 ", "", "12345678.1234"],
    "ok": ["true", "FALSE", "Yes", " on ", "0", ""],
    "at": ["2024-02-29T10:30:00", "2024-02-29 10:30:00", "2024-02-29T10:30:00.25",
           "2024-02-29T10:30", " 2024-02-29 10:30:00 ", ""],
    "day": ["2024-02-29", " 2024-02-29", "20240229", "", "1999-12-31", "0001-01-01"],
    "label": ["plain", "tab\there", "new\nline", "back\\slash", "\\N", ""],
}


def make_samples(make_project: t.Callable[..., Project], db_url: str) -> Project:
    package = unique_package()
    project = make_project(
        f"[PROJECT]\nNAME = Samples\nMODULES = {package}.models\nDB_URL = {db_url}\n"
        "[APP]\nTESTING = true\n",
        files={f"{package}/__init__.py": "", f"{package}/models.py": SPELLINGS_MODELS},
    )
    table = project.models()["Sample"].__table__
    table.metadata.create_all(project.engine, tables=[table])
    return project


@pytest.fixture
def samples(make_project: t.Callable[..., Project], db_url: str) -> Project:
    return make_samples(make_project, db_url)


@pytest.mark.parametrize(("underflow", "batch"), [
    (False, 1), (False, 2), (False, 4), (False, 1000), (True, 4),
])
def test_load_csv_stores_what_the_converters_read(samples: Project, tmp_path: Path,
                                                  underflow: bool, batch: int) -> None:
    # Batches of 1 and 2 rows check the usual spellings column by column (with NULLs among
    # them), longer ones meet the unusual ones in the same column and go row by row.
    path = tmp_path / "samples.csv"
    names = list(SPELLINGS)
    rows = list(zip(*SPELLINGS.values(), strict=True))
    if underflow:
        # 0.0 to Python, out of range to PostgreSQL: the streamed COPY is refused and the
        # load starts over by batches, which the user does not see.
        rows[2] = (*rows[2][:2], "1e-400", *rows[2][3:])
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(names)
        writer.writerows(rows)
    model = samples.models()["Sample"]
    result = load_csv(samples.engine, model, path, batch=batch)
    assert (result.rows, result.errors, result.failed_batches) == (len(rows), [], [])
    assert result.batches == -(-len(rows) // batch)
    types = {"n": int, "big": int, "x": float, "price": decimal.Decimal, "ok": bool,
             "at": dt.datetime, "day": dt.date, "label": str}
    expected = [
        tuple(converter(types[name])(text) if text or name == "label" else None
              for name, text in zip(names, row, strict=True))
        for row in rows
    ]
    table = model.__table__
    with samples.engine.connect() as connection:
        stored = connection.execute(
            sa.select(*(table.c[name] for name in names)).order_by(table.c.id)).all()
    assert [tuple(r) for r in stored] == expected


def test_load_csv_streams_rows_while_it_reads(make_project: t.Callable[..., Project],
                                              clean_pg: str, tmp_path: Path) -> None:
    # Memory stays flat with the file's size: rows reach the database batch by batch while
    # the file is still being read. Seen from another session, through PostgreSQL's
    # progress view of the COPY, when the loader reports its third batch of 100 rows.
    project = make_samples(make_project, clean_pg)
    path = tmp_path / "many.csv"
    path.write_text("n,label\n" + "".join(f"{i},{'x' * 100}\n" for i in range(5000)))
    watcher = sa.create_engine(clean_pg)
    seen: list[int] = []

    def progress(lines: int) -> None:
        if len(seen) == 2:  # after the third batch: wait (at most 30 s) until rows are in
            with watcher.connect() as connection:
                for _ in range(300):
                    done = connection.scalar(sa.text(
                        "SELECT tuples_processed FROM pg_stat_progress_copy"
                        " WHERE relid = 'samples'::regclass"))
                    if done:
                        break
                    connection.rollback()
                    time.sleep(0.1)
            seen.append(int(done or 0))
        else:
            seen.append(0)

    try:
        result = load_csv(project.engine, project.models()["Sample"], path, batch=100,
                          progress=progress)
    finally:
        watcher.dispose()
    assert result.rows == 5000 and result.batches == 50
    assert len(seen) == 50 and 100 <= seen[2] < 5000


@pytest.mark.parametrize("batch", [1, 3, 1000])
def test_load_csv_names_each_bad_row_by_its_line(samples: Project, tmp_path: Path,
                                                 batch: int) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(
        "n,day,label\n"
        "1,2000-01-01,a\n"
        "x,2000-01-01,b\n"         # line 3: not an integer
        "3,2000-01-01\n"           # line 4: too few fields
        "\n"                       # line 5: blank, ignored
        '4,"2000-01-01",c\n'       # line 6: fine (quoted)
        "5,2000-01-01,d,extra\n"   # line 7: too many fields
        '6,"multi\nline",e\n'      # lines 8-9: a bad date spanning two lines
        '"x"y,2000-01-01,f\n'      # line 10: malformed
        "8,2000-02-30,g\n"         # line 11: no such day
        "9,1999-12-31,h\n"         # line 12
    )
    model = samples.models()["Sample"]
    result = load_csv(samples.engine, model, path, batch=batch, on_error="skip")
    assert result.rows == 3 and result.batches == -(-3 // batch)
    assert [(e.line, e.message) for e in result.errors] == [
        (3, "field 'n' has value 'x': not an integer."),
        (4, "2 fields where the header has 3."),
        (7, "4 fields where the header has 3."),
        (8, "field 'day' has value 'multi\\nline': not an ISO 8601 date (YYYY-MM-DD)."),
        (10, "malformed CSV: ',' expected after '\"'."),
        (11, "field 'day' has value '2000-02-30': not an ISO 8601 date (YYYY-MM-DD)."),
    ]
    table = model.__table__
    with samples.engine.connect() as connection:
        assert connection.execute(sa.select(table.c.n, table.c.label).order_by(table.c.id)
                                  ).all() == [(1, "a"), (4, "c"), (9, "h")]
    # Stopping, the first of them is named, whatever the batch holds.
    result = load_csv(samples.engine, model, path, batch=batch)
    assert str(result.stopped) == "Line 3 of 'bad.csv': field 'n' has value 'x': not an integer."
    assert result.stopped is not None and result.stopped.line == 3
