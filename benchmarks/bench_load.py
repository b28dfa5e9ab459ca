"""``flasker load`` against a plain ``COPY``: loading the same CSV into PostgreSQL.

The file has 100,000 rows (10,000 with ``--quick``) of five typed columns: text,
a number, a timestamp, a boolean and nullable text. The baseline streams the file
to ``COPY ... FROM STDIN (FORMAT csv, HEADER)``, which parses it in the server;
``flasker load`` runs in-process (``load_csv``, as the command calls it): it reads
each row, checks and converts every field as ``SmartDictReader`` does (same
messages), and streams the rows to one ``COPY`` in batches of 1,000, in one
transaction. The table is emptied between runs; rounds alternate and the best of
each is kept, so that the machine's drift hits both. ``ratio`` is flasker's time
over COPY's.

Memory: the loader runs in a child process of its own on 100,000 and 1,000,000
rows (10,000 and 100,000 with ``--quick``); the child reports its resident set
before the load and its peak during the load (the kernel's high-water mark, reset
before the load), and its time, set against a plain ``COPY`` of the same big file.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import resource
import subprocess
import sys
import time
import typing as t
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from flasker.models import Model
from flasker.project import Project
from flasker.util.csvload import load_csv

if t.TYPE_CHECKING:
    from .__main__ import Context

ROUNDS = 3
BATCH = 1000
ROOT = Path(__file__).parent.parent


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


def _project(folder: Path, pg_url: str) -> tuple[Project, type[t.Any]]:
    """A project on ``pg_url`` with the ``BenchReading`` model (its table is not created)."""
    folder.mkdir(exist_ok=True)
    (folder / "default.cfg").write_text(f"[PROJECT]\nNAME = bench\nDB_URL = {pg_url}\n")
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

    return project, BenchReading


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


def _status(field: str) -> int:
    """A field of /proc/self/status, in KiB (``VmRSS``, ``VmHWM``: the peak since reset)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def _child(pg_url: str, folder: str, path: str) -> None:
    """In a process of its own: load ``path``; print the RSS before, its peak during, and time.

    The peak is the kernel's high-water mark, reset just before the load (writing 5 to
    /proc/self/clear_refs), so that start-up's own peak does not hide the load's; where it
    cannot be reset, ``ru_maxrss`` (the process's peak) is reported.
    """
    project, model = _project(Path(folder), pg_url)
    engine = _engine(pg_url)
    with engine.connect():
        pass  # the pool's connection, made before the reading
    try:
        Path("/proc/self/clear_refs").write_text("5")
        reset = True
    except OSError:
        reset = False
    before = _status("VmRSS")
    result = load_csv(engine, model, path, batch=BATCH)
    peak = _status("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    engine.dispose()
    project.close()
    print(json.dumps({"before": before, "peak": peak, "reset": reset,
                      "seconds": result.seconds, "rows": result.rows,
                      "errors": len(result.errors)}))


def _load_in_child(ctx: Context, path: Path) -> dict[str, t.Any]:
    code = ("import sys; from benchmarks.bench_load import _child;"
            " _child(sys.argv[1], sys.argv[2], sys.argv[3])")
    done = subprocess.run([sys.executable, "-c", code, ctx.pg_url, str(ctx.tmp / "child"),
                           str(path)], cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"the loader's child process failed: {done.stderr[-2000:]}")
    found: dict[str, t.Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def run(ctx: Context) -> list[dict[str, t.Any]]:
    rows = 10_000 if ctx.quick else 100_000
    big = 100_000 if ctx.quick else 1_000_000
    path = ctx.tmp / "readings.csv"
    _write_csv(path, rows)
    project, model = _project(ctx.tmp / "load-project", ctx.pg_url)
    engine = _engine(ctx.pg_url)
    table = model.__table__
    memory: list[tuple[int, dict[str, t.Any]]] = []
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
            result = load_csv(engine, model, path, batch=BATCH)
            load_times.append(result.seconds)
            assert result.rows == rows and not result.errors and count_and_empty() == rows, (
                f"flasker load did not load every row: {result}"
            )

        # Peak RSS of the loader alone, in a child process, for the file and one 10 times longer.
        big_path = ctx.tmp / "readings-big.csv"
        _write_csv(big_path, big)
        big_copy = _copy(engine, big_path)
        assert count_and_empty() == big, "COPY did not load every row"
        for count, file in ((rows, path), (big, big_path)):
            found = _load_in_child(ctx, file)
            assert found["rows"] == count and not found["errors"] and count_and_empty() == count, (
                f"flasker load (child) did not load every row: {found}"
            )
            memory.append((count, found))
    finally:
        table.drop(engine, checkfirst=True)
        engine.dispose()
        project.close()

    copy_best, load_best = min(copy_times), min(load_times)
    size = f"{rows:,} rows"
    results = [
        {"name": f"load: flasker load ({size}, PostgreSQL)", "value": rows / load_best,
         "unit": "rows/s", "ratio": None, "target": None,
         "note": f"best of {len(load_times)}: {load_best:.2f} s, batches of {BATCH}"},
        {"name": f"load: plain COPY ({size}, PostgreSQL)", "value": rows / copy_best,
         "unit": "rows/s", "ratio": None, "target": None,
         "note": f"best of {len(copy_times)}: {copy_best:.2f} s"},
        {"name": "load: flasker load time / COPY time", "value": load_best / copy_best,
         "unit": "x", "ratio": load_best / copy_best, "target": "<= 1.5",
         "note": "every field checked as SmartDictReader does; one streamed COPY"},
    ]
    for count, found in memory:
        results.append(
            {"name": f"load: peak RSS, loader in a child ({count:,} rows)",
             "value": found["peak"] / 1024, "unit": "MiB", "ratio": None, "target": "flat",
             "note": f"{found['before'] / 1024:.1f} MiB before the load"
                     f"{'' if found['reset'] else ' (peak since start-up)'};"
                     f" {count / found['seconds']:,.0f} rows/s"})
    (small, small_found), (_, big_found) = memory
    results.append(
        {"name": f"load: peak RSS {big:,} / {small:,} rows", "value":
         big_found["peak"] / small_found["peak"], "unit": "x",
         "ratio": big_found["peak"] / small_found["peak"], "target": "~1",
         "note": f"{big:,} rows: {big_found['seconds']:.2f} s, COPY {big_copy:.2f} s"
                 f" ({big_found['seconds'] / big_copy:.2f} x, one run)"})
    return results
