"""The core's costs: flasker's task wrapper against a bare Celery task, and CLI start-up.

1. Task wrapper: the same no-op task, end to end through Redis (send, run in a
   real worker, result back), once in a bare Celery app and once as a flasker
   task (app context and session). Both apps have the same Celery settings and
   run in the same kind of worker (solo pool, one process); rounds alternate so
   that drift on the machine hits both. Target: ratio under 1.10.
2. ``flasker --help`` against ``flask --help``, each a fresh process; median of
   repeated runs. Target: ratio under 1.5.
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import textwrap
import time
import typing as t
from pathlib import Path

if t.TYPE_CHECKING:
    from .__main__ import Context

BIN = Path(sys.executable).parent

FLASKER_TASKS = """
from flasker import current_project

celery = current_project.celery


@celery.task(name="bench.noop")
def noop(x):
    return x
"""

BARE_APP = """
import json
import os

from celery import Celery

app = Celery("bare")
app.config_from_object(json.loads(os.environ["BENCH_CELERY_SETTINGS"]))


@app.task(name="bench.noop")
def noop(x):
    return x
"""


def _start(argv: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, cwd=cwd, env={**os.environ, **env}, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _round(app: t.Any, count: int) -> float:
    """Seconds to send ``count`` tasks and collect every result."""
    started = time.perf_counter()
    results = [app.send_task("bench.noop", args=(i,)) for i in range(count)]
    for i, result in enumerate(results):
        assert result.get(timeout=120) == i
    return time.perf_counter() - started


def task_wrapper(ctx: Context) -> list[dict[str, t.Any]]:
    from celery import Celery

    from flasker import Project
    from flasker.tasks import celery_settings

    folder = ctx.tmp / "wrapper"
    (folder / "benchtasks").mkdir(parents=True)
    (folder / "benchtasks" / "__init__.py").write_text("")
    (folder / "benchtasks" / "tasks.py").write_text(FLASKER_TASKS)
    (folder / "bare_app.py").write_text(BARE_APP)
    (folder / "default.cfg").write_text(textwrap.dedent(f"""
        [PROJECT]
        NAME = Bench Wrapper
        MODULES = benchtasks.tasks
        DB_URL = sqlite:///{folder / 'db.sqlite'}
        [APP]
        TESTING = true
        [CELERY]
        broker_url = {ctx.redis_url}
        result_backend = {ctx.redis_url}
    """))
    project = Project(folder / "default.cfg")
    settings = celery_settings(project.config)
    bare_settings = {**settings, "task_default_queue": "bench-bare"}
    import json

    env = {"BENCH_CELERY_SETTINGS": json.dumps(bare_settings), "PYTHONPATH": str(folder)}
    worker_args = [
        "--pool", "solo", "--without-mingle", "--without-gossip", "--loglevel", "WARNING",
    ]
    bare_worker = _start([str(BIN / "celery"), "-A", "bare_app", "worker", "-Q", "bench-bare",
                          "-n", "bare@%h", *worker_args], folder, env, folder / "bare.log")
    flasker_worker = _start([str(BIN / "flasker"), "-c", str(folder / "default.cfg"), "worker",
                             "--", "--pool", "solo", "--loglevel", "WARNING"],
                            folder, {}, folder / "flasker.log")
    bare = Celery("bare-client")
    bare.config_from_object(bare_settings)
    try:
        for app in (bare, project.celery):  # warm up: connections, imports, first messages
            _round(app, 50)
        count = 200 if ctx.quick else 1000
        rounds = 3 if ctx.quick else 7
        bare_times: list[float] = []
        flasker_times: list[float] = []
        for _ in range(rounds):
            bare_times.append(_round(bare, count))
            flasker_times.append(_round(project.celery, count))
    finally:
        _stop(bare_worker)
        _stop(flasker_worker)
        project.close()
    bare_best, flasker_best = min(bare_times), min(flasker_times)
    ratio = flasker_best / bare_best
    note = f"{count} tasks x {rounds} rounds, best round; bare {bare_best:.2f}s"
    return [
        {"name": "task wrapper: bare Celery task, per task", "value": bare_best / count * 1e3,
         "unit": "ms", "ratio": None, "target": None, "note": "Redis broker and backend"},
        {"name": "task wrapper: flasker task, per task (ratio vs bare)",
         "value": flasker_best / count * 1e3, "unit": "ms", "ratio": ratio, "target": "< 1.10",
         "note": note},
    ]


def _median_run(argv: list[str], cwd: Path, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, cwd=cwd, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def cli_startup(ctx: Context) -> list[dict[str, t.Any]]:
    flask = shutil.which("flask", path=str(BIN))
    flasker = shutil.which("flasker", path=str(BIN))
    assert flask and flasker, "flask and flasker must be installed beside this Python"
    empty = ctx.tmp / "empty"
    empty.mkdir()
    runs = 5 if ctx.quick else 15
    for argv in ([flask, "--help"], [flasker, "--help"]):  # warm the file cache
        subprocess.run(argv, cwd=empty, check=True, capture_output=True)
    flask_time = _median_run([flask, "--help"], empty, runs)
    flasker_time = _median_run([flasker, "--help"], empty, runs)
    return [
        {"name": "start-up: flask --help", "value": flask_time * 1e3, "unit": "ms",
         "ratio": None, "target": None, "note": f"median of {runs}"},
        {"name": "start-up: flasker --help (ratio vs flask)", "value": flasker_time * 1e3,
         "unit": "ms", "ratio": flasker_time / flask_time, "target": "< 1.5",
         "note": f"median of {runs}"},
    ]


def run(ctx: Context) -> list[dict[str, t.Any]]:
    return [*cli_startup(ctx), *task_wrapper(ctx)]
