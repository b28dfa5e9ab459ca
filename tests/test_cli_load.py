"""``flasker load MODEL FILE.csv``: batches, a progress bar, a summary, and nothing half-written."""

from __future__ import annotations

import datetime as dt
import decimal
import re
import typing as t
from pathlib import Path

import pytest
import sqlalchemy as sa

from flasker import Project

from .conftest import unique_package

MODELS = """
import datetime as dt
import decimal
import re
import enum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from flasker import Model


class Kind(enum.Enum):
    WATER = "water"
    POWER = "power"


class Reading(Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    meter: Mapped[str] = mapped_column(sa.String(20), unique=True)
    value: Mapped[decimal.Decimal] = mapped_column(sa.Numeric(10, 3))
    taken: Mapped[dt.datetime] = mapped_column("taken_at")
    ok: Mapped[bool] = mapped_column(default=True)
    kind: Mapped[Kind | None]
    meta: Mapped[dict | None] = mapped_column(sa.JSON)
    note: Mapped[str | None] = mapped_column(sa.String(50))
"""

HEADER = "meter,value,taken_at,ok,kind,meta,note\n"


def row(meter: str, value: str = "1.5", ok: str = "true", note: str = "") -> str:
    return f'{meter},{value},2024-03-04T05:06:07,{ok},WATER,"{{""a"": 1}}",{note}\n'


class Loader:
    """A project with the Reading model, its table created, and a way to run the command."""

    def __init__(self, project: Project, runner: t.Any, folder: Path) -> None:
        self.project = project
        self.table: sa.Table = project.models()["Reading"].__table__
        self.runner = runner
        self.folder = folder

    def csv(self, text: str, name: str = "readings.csv") -> Path:
        path = self.folder / name
        path.write_text(text)
        return path

    def load(self, *args: str) -> t.Any:
        return self.runner.invoke(["-c", str(self.project.config.path), "load", *args])

    def rows(self) -> list[t.Any]:
        with self.project.engine.connect() as connection:
            return list(connection.execute(sa.select(self.table).order_by(self.table.c.id)))


@pytest.fixture
def loader(make_project: t.Callable[..., Project], runner: t.Any, db_url: str, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> Loader:
    package = unique_package()
    project = make_project(
        f"[PROJECT]\nNAME = Meters\nMODULES = {package}.models\nDB_URL = {db_url}\n"
        "[APP]\nTESTING = true\n",
        files={f"{package}/__init__.py": "", f"{package}/models.py": MODELS},
    )
    table = project.models()["Reading"].__table__
    table.metadata.create_all(project.engine, tables=[table])
    # The command remembers its file here; keep that inside the test.
    monkeypatch.setenv("FLASKER_CONFIG", str(project.config.path))
    return Loader(project, runner, tmp_path)


def test_loads_typed_rows_with_a_summary(loader: Loader) -> None:
    path = loader.csv(HEADER + row("a") + row("b", "2.25", "no", "second") + row("c", ok="1"))
    result = loader.load("Reading", str(path), "--batch", "2")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(
        "Loaded 3 rows into Reading (table 'readings') from readings.csv in 2 batches, 0 skipped ("
    )
    assert "Loading readings.csv" in result.stderr  # the progress bar's label
    rows = loader.rows()
    assert [r.meter for r in rows] == ["a", "b", "c"]
    assert rows[1].value == decimal.Decimal("2.25")
    assert rows[1].taken_at == dt.datetime(2024, 3, 4, 5, 6, 7)
    assert [r.ok for r in rows] == [True, False, True]
    assert {r.kind.name for r in rows} == {"WATER"}
    assert rows[0].meta == {"a": 1}
    assert rows[0].note == ""  # a text column keeps an empty field as text
    assert rows[1].note == "second"


def test_omitted_columns_get_their_defaults(loader: Loader) -> None:
    path = loader.csv("meter,value,taken\nx,3,2024-01-01 00:00:00\ny,4,2024-01-02\n")
    result = loader.load("Reading", str(path))
    assert result.exit_code == 0, result.output
    assert [(r.meter, r.ok, r.note) for r in loader.rows()] == [("x", True, None),
                                                               ("y", True, None)]


def test_dry_run_writes_nothing(loader: Loader) -> None:
    path = loader.csv(HEADER + row("a") + row("b"))
    result = loader.load("Reading", str(path), "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.stdout == ("Dry run: 2 rows of readings.csv would be loaded into Reading (table"
                             " 'readings'), 0 skipped; nothing was written.\n")
    assert loader.rows() == []


def test_a_bad_value_stops_and_rolls_everything_back(loader: Loader) -> None:
    good = "".join(row(f"m{i}") for i in range(5))
    path = loader.csv(HEADER + good + row("bad", value="lots") + row("after"))
    result = loader.load("Reading", str(path), "--batch", "2")
    assert result.exit_code == 1
    assert result.stderr.endswith(
        "Error: Line 7 of 'readings.csv': field 'value' has value 'lots': not a decimal number."
        " Nothing was written: the whole load was rolled back. Fix the file, or pass"
        " '--on-error skip' to leave bad rows out.\n"
    )
    assert loader.rows() == []  # the two batches before it are gone too


def test_a_refused_row_stops_with_its_line(loader: Loader) -> None:
    path = loader.csv(HEADER + row("a") + row("b") + row("c") + row("a") + row("d"))
    result = loader.load("Reading", str(path), "--batch", "2", "--on-error", "stop")
    assert result.exit_code == 1
    # SQLite names the error class IntegrityError, psycopg UniqueViolation.
    assert re.search(r"Error: Line 5 of 'readings.csv': (IntegrityError|UniqueViolation): .*"
                     r"(UNIQUE constraint failed: readings.meter|Key \(meter\)=\(a\) already"
                     r" exists)", result.stderr)
    assert "Nothing was written" in result.stderr
    assert loader.rows() == []


def test_the_first_bad_row_is_named_whichever_kind(loader: Loader) -> None:
    # A row the database refuses (line 3) in a batch before a row that does not convert
    # (line 7) is the one named; in the same batch, the row that does not convert is, as
    # each batch is read whole before it is written.
    path = loader.csv(HEADER + row("a") + row("a") + "".join(row(f"m{i}") for i in range(3))
                      + row("bad", value="lots"))
    result = loader.load("Reading", str(path), "--batch", "2")
    assert result.exit_code == 1
    assert re.search(r"Error: Line 3 of 'readings.csv': (IntegrityError|UniqueViolation): ",
                     result.stderr)
    result = loader.load("Reading", str(path), "--batch", "10")
    assert result.exit_code == 1
    assert "Error: Line 7 of 'readings.csv': field 'value' has value 'lots'" in result.stderr
    assert loader.rows() == []


def test_skip_leaves_bad_rows_out_and_lists_them(loader: Loader) -> None:
    text = (HEADER + row("a") + row("b", value="x") + "c,1\n" + row("d") + row("a", note="dup")
            + row("e", ok="maybe") + row("f") + row("g", note="n" * 60) + row("h"))
    path = loader.csv(text)
    result = loader.load("Reading", str(path), "--batch", "3", "--on-error", "skip")
    assert result.exit_code == 0, result.output
    # SQLite does not enforce VARCHAR(50): there, 'g' is loaded.
    long_refused = loader.project.engine.dialect.name == "postgresql"
    kept = ["a", "d", "f", "h"] if long_refused else ["a", "d", "f", "g", "h"]
    assert [r.meter for r in loader.rows()] == kept
    err = result.stderr
    # The first batch (lines 2-6: a, d and a again, as b and c are unreadable) fails.
    assert re.search(r"The batch of lines 2-6 failed and was rolled back \((IntegrityError|"
                     r"UniqueViolation): .*\); its rows were retried one by one.", err)
    assert "COPY readings, line" not in err  # a line of the batch, not of the file
    assert f"Skipped {9 - len(kept)} bad rows:\n" in err
    assert "  line 3: field 'value' has value 'x': not a decimal number.\n" in err
    assert "  line 4: 2 fields where the header has 7.\n" in err
    assert re.search(r"  line 6: (IntegrityError|UniqueViolation): ", err)
    assert ("  line 7: field 'ok' has value 'maybe':"
            " not a boolean (true/false, yes/no, on/off or 1/0).\n"
            in err)
    assert bool(re.search(r"  line 9: \w+: value too long", err)) == long_refused
    assert result.stdout.startswith(f"Loaded {len(kept)} rows into Reading")


def test_header_must_fit_the_model(loader: Loader) -> None:
    result = loader.load("Reading", str(loader.csv("meter,valeu,taken\n")))
    assert result.exit_code == 2
    assert ("The column 'valeu' of 'readings.csv' is not a column of 'Reading'. Did you mean"
            " 'value'? Its columns: 'id', 'kind', 'meta', 'meter', 'note', 'ok', 'taken', 'value'."
            ) in result.stderr
    result = loader.load("Reading", str(loader.csv("meter,taken\n")))
    assert result.exit_code == 2
    assert "'readings.csv' has no column 'value', which 'Reading' requires" in result.stderr
    result = loader.load("Reading", str(loader.csv("meter,value,taken,meter\n")))
    assert result.exit_code == 2
    assert "names the column 'meter' twice" in result.stderr
    result = loader.load("Reading", str(loader.csv("")))
    assert result.exit_code == 2
    assert "'readings.csv' is empty: its first line must name the columns." in result.stderr
    assert loader.rows() == []


def test_encodings(loader: Loader) -> None:
    path = loader.folder / "latin.csv"
    path.write_bytes((HEADER + row("a") + row("b", note="café")).encode("latin-1"))
    # A small file is decoded whole with its header: nothing is read.
    result = loader.load("Reading", str(path))
    assert result.exit_code == 2
    assert ("Error: 'latin.csv' cannot be decoded as utf-8 at or after line 1: invalid"
            " continuation byte. Save it as UTF-8, or give its encoding. Pass its encoding with"
            " '--encoding'.\n") in result.stderr
    # Further down, the rows before it were loaded: they are rolled back, even when skipping.
    rows = "".join(row(f"m{i}") for i in range(500))
    far = loader.folder / "far.csv"
    far.write_bytes((HEADER + rows + row("b", note="café")).encode("latin-1"))
    for on_error in ("stop", "skip"):
        result = loader.load("Reading", str(far), "--on-error", on_error, "--batch", "100")
        assert result.exit_code == 1
        assert re.search(r"Error: 'far.csv' cannot be decoded as utf-8 at or after line \d+:"
                         r" invalid continuation byte. Save it as UTF-8, or give its encoding."
                         r" Nothing was written: the whole load was rolled back. Pass its"
                         r" encoding with '--encoding'.\n", result.stderr)
    assert loader.rows() == []
    result = loader.load("Reading", str(path), "--encoding", "latin-1")
    assert result.exit_code == 0, result.output
    assert [r.note for r in loader.rows()] == ["", "café"]
    result = loader.load("Reading", str(path), "--encoding", "klingon")
    assert result.exit_code == 2
    assert "Unknown encoding 'klingon'." in result.stderr
    bom = loader.folder / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + (HEADER + row("c")).encode())  # as Excel saves it
    assert loader.load("Reading", str(bom)).exit_code == 0
    assert [r.meter for r in loader.rows()] == ["a", "b", "c"]


def test_a_header_alone_loads_nothing(loader: Loader) -> None:
    result = loader.load("Reading", str(loader.csv(HEADER.rstrip("\n"))))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Loaded 0 rows into Reading (table 'readings') from"
                                    " readings.csv in 0 batches, 0 skipped")


def test_unknown_model_and_bad_options(loader: Loader) -> None:
    path = loader.csv(HEADER + row("a"))
    result = loader.load("Readings", str(path))
    assert result.exit_code == 2
    assert "No model named 'Readings'. Did you mean 'Reading'?" in result.stderr
    assert "Traceback" not in result.output
    result = loader.load("Reading", str(loader.folder / "missing.csv"))
    assert result.exit_code == 2
    assert "does not exist" in result.stderr
    assert loader.load("Reading", str(path), "--batch", "0").exit_code == 2
    assert loader.load("Reading", str(path), "--on-error", "ignore").exit_code == 2
    assert loader.rows() == []


def test_as_a_real_process(loader: Loader, spawn: t.Callable[..., t.Any]) -> None:
    path = loader.csv(HEADER + "".join(row(f"m{i}") for i in range(25)) + row("x", value="?"))
    process = spawn(["load", "Reading", str(path), "--batch", "10", "--on-error", "skip"],
                    cwd=loader.folder)
    assert process.popen.wait(60) == 0, process.output()
    output = process.output()
    assert "Loading readings.csv" in output
    assert "Skipped 1 bad row:\n  line 27: field 'value' has value '?'" in output
    assert "Loaded 25 rows into Reading (table 'readings') from readings.csv in 3 batches" in output
    assert len(loader.rows()) == 25


def test_help_lists_the_command(runner: t.Any) -> None:
    result = runner.invoke(["--help"])
    assert "load" in result.output and "Load the rows of a CSV file" in result.output
    result = runner.invoke(["load", "--help"])
    assert result.exit_code == 0
    assert "--on-error [skip|stop]" in result.output
    assert "--dry-run" in result.output
