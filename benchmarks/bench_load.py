"""``flasker load`` against a plain ``COPY``: loading the same CSV into PostgreSQL.

The file has 100,000 rows (10,000 with ``--quick``) of five typed columns: text,
a number, a timestamp, a boolean and nullable text. The baseline streams the file
to ``COPY ... FROM STDIN (FORMAT csv, HEADER)``, which parses it in the server;
``flasker load`` runs in-process (``load_csv``, as the command calls it): it reads
each row with ``SmartDictReader``, converts every field to its column's type,
and writes batches of 1,000 rows, each in a savepoint, in one transaction. The
table is emptied between runs; rounds alternate and the best of each is kept, so
that the machine's drift hits both. ``ratio`` is flasker's time over COPY's.
"""

from __future__ import annotations

import datetime as dt
import random
import time
import typing as t

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from flasker import Model, Project
from flasker.util.csv import load_csv

if t.TYPE_CHECKING:
    from pathlib import Path

    from .__main__ import Context

ROUNDS = 3
BATCH = 1000


def _write_csv(path: Path, rows: int) -> None:
    rng = random.Random(7)
    with path.open("w") as f:
        f.write("meter,value,taken,ok,note\n")
        for i in range(rows):
            note = "" if i % 3 else f"checked by team {i % 17}"
            f.write(f"meter-{i},{rng.uniform(0, 1000):.3f},2024-{1 + i % 12:02d}-"
                    f"{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:00,{'true' if i % 2 else 'false'},"
                    f"{note}\n")


def _engine(url: str) -> sa.Engine:
    parsed = sa.make_url(url)
    if parsed.drivername == "postgresql":  # the project's driver: psycopg 3
        parsed = parsed.set(drivername="postgresql+psycopg")
    return sa.create_engine(parsed)


def _copy(engine: sa.Engine, path: Path) -> float:
    raw = engine.raw_connection()
    try:
        started = time.perf_counter()
        with raw.cursor() as cursor, path.open("rb") as f:  # type: ignore[attr-defined]
            with cursor.copy("COPY bench_readings (meter, value, taken, ok, note)"
                             " FROM STDIN (FORMAT csv, HEADER)") as copy:
                while block := f.read(1 << 16):
                    copy.write(block)
        raw.commit()
        return time.perf_counter() - started
    finally:
        raw.close()


def run(ctx: Context) -> list[dict[str, t.Any]]:
    rows = 10_000 if ctx.quick else 100_000
    path = ctx.tmp / "readings.csv"
    _write_csv(path, rows)
    folder = ctx.tmp / "load-project"
    folder.mkdir(exist_ok=True)
    (folder / "default.cfg").write_text(f"[PROJECT]\nNAME = bench\nDB_URL = {ctx.pg_url}\n")
    project = Project(folder / "default.cfg", overrides={"APP": {"TESTING": True}})

    # Declared in the project's registry (annotations resolve against this module's names).
    with project.app.app_context():
        class BenchReading(Model):
            id: Mapped[int] = mapped_column(primary_key=True)
            meter: Mapped[str] = mapped_column(sa.String(40))
            value: Mapped[float]
            taken: Mapped[dt.datetime]
            ok: Mapped[bool]
            note: Mapped[str | None] = mapped_column(sa.String(80))

    engine = _engine(ctx.pg_url)
    table = BenchReading.__table__
    try:
        table.drop(engine, checkfirst=True)
        table.create(engine)

        def count_and_empty() -> int:
            with engine.begin() as connection:
                found = connection.scalar(sa.select(sa.func.count()).select_from(table))
                connection.execute(sa.text("TRUNCATE bench_readings"))
            return int(found or 0)

        copy_times: list[float] = []
        load_times: list[float] = []
        for _ in range(1 if ctx.quick else ROUNDS):
            copy_times.append(_copy(engine, path))
            assert count_and_empty() == rows, "COPY did not load every row"
            result = load_csv(engine, BenchReading, path, batch=BATCH)
            load_times.append(result.seconds)
            assert result.rows == rows and not result.errors and count_and_empty() == rows, (
                f"flasker load did not load every row: {result}"
            )
    finally:
        table.drop(engine, checkfirst=True)
        engine.dispose()
        project.close()

    copy_best, load_best = min(copy_times), min(load_times)
    size = f"{rows:,} rows"
    return [
        {"name": f"load: flasker load ({size}, PostgreSQL)", "value": rows / load_best,
         "unit": "rows/s", "ratio": None, "target": None,
         "note": f"best of {len(load_times)}: {load_best:.2f} s, batches of {BATCH}"},
        {"name": f"load: plain COPY ({size}, PostgreSQL)", "value": rows / copy_best,
         "unit": "rows/s", "ratio": None, "target": None,
         "note": f"best of {len(copy_times)}: {copy_best:.2f} s"},
        {"name": "load: flasker load time / COPY time", "value": load_best / copy_best,
         "unit": "x", "ratio": load_best / copy_best, "target": None,
         "note": "typed rows, savepoint per batch, one transaction; COPY parses in the server"},
    ]
