"""The API's CSV export (``Accept: text/csv``): memory while streaming a large collection.

A table of 1,000,000 houses (100,000 with ``--quick``) is filled in PostgreSQL by
``generate_series``; ``GET /api/bench_export_houses/`` with ``Accept: text/csv`` is then
read through the app (Flask's test client, unbuffered, so that the body is consumed
chunk by chunk as a WSGI server sends it), once at a tenth of the size and once at the
full size. Measured: the peak of the Python heap during the request (``tracemalloc``),
the growth of the process's peak resident memory, the bytes of CSV sent and the time.
The export is flat when the peak does not grow with the rows: the target is a peak at
the full size within 1.5 times the peak at a tenth of it, and far below the output.
"""

from __future__ import annotations

import datetime as dt
import resource
import time
import tracemalloc
import typing as t

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from flasker import Model, Project
from flasker.ext.api import APIManager

if t.TYPE_CHECKING:
    from .__main__ import Context

MIB = 1024 * 1024


def _fill(engine: sa.Engine, table: sa.Table, rows: int) -> None:
    with engine.begin() as connection:
        connection.execute(sa.text(f"TRUNCATE {table.name}"))
        connection.execute(sa.text(
            f"INSERT INTO {table.name} (id, address, rooms, built)"
            " SELECT i, 'house ' || i || ', \"the\" road', i % 7, now() - i * interval '1 hour'"
            " FROM generate_series(1, :rows) AS i"), {"rows": rows})
        connection.execute(sa.text(f"ANALYZE {table.name}"))


def _export(project: Project, rows: int) -> dict[str, float]:
    client = project.app.test_client()
    tracemalloc.start()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    response = client.get("/api/bench_export_houses/", headers={"Accept": "text/csv"},
                          buffered=False)
    assert response.status_code == 200, response.get_data(as_text=True)
    size = lines = 0
    for chunk in response.iter_encoded():
        size += len(chunk)
        lines += chunk.count(b"\r\n")
    response.close()
    seconds = time.perf_counter() - started
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before  # KiB
    assert lines == rows + 1, f"the export holds {lines - 1} rows, not {rows}"
    return {"peak": peak, "size": size, "seconds": seconds, "rss": rss_growth * 1024}


def run(ctx: Context) -> list[dict[str, t.Any]]:
    rows = 100_000 if ctx.quick else 1_000_000
    folder = ctx.tmp / "export-project"
    folder.mkdir(exist_ok=True)
    (folder / "default.cfg").write_text(f"[PROJECT]\nNAME = bench\nDB_URL = {ctx.pg_url}\n")
    project = Project(folder / "default.cfg", overrides={"APP": {"TESTING": True}})

    with project.app.app_context():
        class BenchExportHouse(Model):
            id: Mapped[int] = mapped_column(primary_key=True)
            address: Mapped[str] = mapped_column(sa.String(80))
            rooms: Mapped[int]
            built: Mapped[dt.datetime] = mapped_column(sa.DateTime(timezone=True))

    manager = APIManager(project.app)
    manager.add_model(BenchExportHouse)
    table = BenchExportHouse.__table__
    engine = project.engine
    try:
        table.drop(engine, checkfirst=True)
        table.create(engine)
        _fill(engine, table, rows // 10)
        small = _export(project, rows // 10)
        _fill(engine, table, rows)
        large = _export(project, rows)
    finally:
        table.drop(engine, checkfirst=True)
        project.close()

    growth = large["peak"] / small["peak"]
    return [
        {"name": f"export: CSV of {rows:,} rows, peak Python heap", "value": large["peak"] / MIB,
         "unit": "MiB", "ratio": large["peak"] / large["size"], "target": None,
         "note": f"{large['size'] / MIB:.0f} MiB of CSV sent in {large['seconds']:.1f} s"
                 f" ({rows / large['seconds']:,.0f} rows/s, under tracemalloc); ratio ="
                 f" peak / output; peak RSS grew {large['rss'] / MIB:.1f} MiB"},
        {"name": f"export: peak heap, {rows:,} / {rows // 10:,} rows", "value": growth,
         "unit": "x", "ratio": growth, "target": "<= 1.5",
         "note": f"{small['peak'] / MIB:.1f} MiB at {rows // 10:,} rows"
                 f" ({small['size'] / MIB:.0f} MiB of CSV), {large['peak'] / MIB:.1f} MiB at"
                 f" {rows:,} ({large['size'] / MIB:.0f} MiB)"},
    ]
