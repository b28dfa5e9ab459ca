"""The core's costs: flasker's task wrapper against a bare Celery task, and CLI start-up.

1. Task wrapper: the same no-op task, end to end through Redis (send, run in a
   real worker, result back), once in a bare Celery app and once as a flasker
   task (app context and session). Both apps have the same Celery settings and
   run in the same kind of worker (solo pool, one process); rounds alternate so
   that drift on the machine hits both. Target: ratio under 1.10.
2. Tasks at full speed: a burst of no-op tasks through Redis into a prefork worker
   (``--concurrency 2``, the stack's default), tasks per second from the first send
   until every result is stored in Redis, for a bare Celery worker, a flasker worker,
   and a flasker worker with its reliability machinery off (no lease thread, kombu's
   own visibility timeout and sweep, no retry on outages). Targets: flasker/bare
   tasks per second at least 0.95, and the reliability machinery costs at most 5 %.
3. ``flasker --help`` against ``flask --help``, each a fresh process; median of
   repeated runs. Target: ratio under 1.5.
"""

from __future__ import annotations

import json
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
import os

from flasker import current_project
from flasker.lease import LeaseStep

celery = current_project.celery
reliable = os.environ.get("BENCH_RELIABILITY", "on") == "on"
if not reliable:  # no thread renewing the lease of held messages
    celery.steps["consumer"].discard(LeaseStep)


@celery.task(name="bench.noop", retry_on_outage=reliable)
def noop(x):
    return x
"""

# Reliability off: kombu's own Redis transport options, in place of flasker's short
# visibility timeout and frequent sweep (REDIS_TRANSPORT_OPTIONS in flasker.lease).
KOMBU_REDIS_OPTIONS = {"visibility_timeout": 3600, "unacked_restore_interval": 10,
                       "unacked_restore_throttle": 10, "unacked_mutex_expire": 300}

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


def _write_project(ctx: Context, folder: Path) -> Path:
    """A flasker project with the ``bench.noop`` task, and the bare Celery app beside it.

    Its package is named after the folder: one process imports a project's modules once.
    """
    package = f"bench_{folder.name}"
    (folder / package).mkdir(parents=True)
    (folder / package / "__init__.py").write_text("")
    (folder / package / "tasks.py").write_text(FLASKER_TASKS)
    (folder / "bare_app.py").write_text(BARE_APP)
    (folder / "default.cfg").write_text(textwrap.dedent(f"""
        [PROJECT]
        NAME = Bench Wrapper
        MODULES = {package}.tasks
        DB_URL = sqlite:///{folder / 'db.sqlite'}
        [APP]
        TESTING = true
        [CELERY]
        broker_url = {ctx.redis_url}
        result_backend = {ctx.redis_url}
    """))
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))  # the client's project imports its tasks from there
    return folder / "default.cfg"


def task_wrapper(ctx: Context) -> list[dict[str, t.Any]]:
    from celery import Celery

    from flasker import Project
    from flasker.tasks import celery_settings

    folder = ctx.tmp / "wrapper"
    project = Project(_write_project(ctx, folder))
    settings = celery_settings(project.config)
    bare_settings = {**settings, "task_default_queue": "bench-bare"}
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


def _burst(app: t.Any, queue: str, count: int, client: t.Any) -> float:
    """Seconds from the first send of ``count`` tasks until all their results are in Redis.

    Sent as fast as the client can, without subscribing to the results (as a request that
    does not wait for its task); the end is found by polling for the result keys, newest
    first, every 2 ms; then every result is checked, outside the time.
    """
    from celery._state import _set_task_join_will_block

    _set_task_join_will_block(True)  # no pub/sub subscription per task sent
    try:
        started = time.perf_counter()
        ids = [app.send_task("bench.noop", args=(i,), queue=queue).id for i in range(count)]
        keys = [app.backend.get_key_for_task(task_id) for task_id in ids]
        pending = keys
        deadline = time.monotonic() + 300
        while pending:
            if not client.exists(pending[-1]):  # results come nearly in order
                time.sleep(0.002)
            else:
                with client.pipeline(transaction=False) as pipe:
                    for key in pending:
                        pipe.exists(key)
                    found = pipe.execute()
                pending = [key for key, there in zip(pending, found, strict=True) if not there]
            assert time.monotonic() < deadline, f"{len(pending)} of {count} tasks never ended"
        elapsed = time.perf_counter() - started
    finally:
        _set_task_join_will_block(False)
    with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.get(key)
        values = pipe.execute()
        for key in keys:
            pipe.delete(key)
        pipe.execute()
    for i, value in enumerate(values):
        meta = json.loads(value)
        assert meta["status"] == "SUCCESS" and meta["result"] == i, meta
    return elapsed


def _group_cpu(pgid: int) -> float:
    """CPU seconds (user and system) used so far by the live processes of a process group.

    Read from /proc (Linux; 0 elsewhere). A worker's pool processes live as long as it does
    (no ``--max-tasks-per-child``), so the difference over a round is that round's work.
    """
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = 0.0
    for entry in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = entry.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid:  # the fields after the name: state, ppid, pgrp, ...
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def prefork(ctx: Context) -> list[dict[str, t.Any]]:
    from celery import Celery
    from redis import Redis

    from flasker import Project
    from flasker.tasks import celery_settings

    folder = ctx.tmp / "prefork"
    project = Project(_write_project(ctx, folder))
    settings = celery_settings(project.config)
    queues = {"bare": "bench-bare-prefork", "flasker": "bench-flasker-prefork",
              "off": "bench-off-prefork"}
    bare_settings = {**settings, "task_default_queue": queues["bare"]}
    env = {"BENCH_CELERY_SETTINGS": json.dumps(bare_settings), "PYTHONPATH": str(folder)}
    pool = ["--pool", "prefork", "--concurrency", "2", "--loglevel", "WARNING"]
    flasker_worker = [str(BIN / "flasker"), "-c", str(folder / "default.cfg"), "worker"]
    off_env = {"BENCH_RELIABILITY": "off",
               "FLASKER__CELERY__BROKER_TRANSPORT_OPTIONS": json.dumps(KOMBU_REDIS_OPTIONS)}
    workers = [
        _start([str(BIN / "celery"), "-A", "bare_app", "worker", "-Q", queues["bare"],
                "-n", "bare-prefork@%h", "--without-mingle", "--without-gossip", *pool],
               folder, env, folder / "bare.log"),
        _start([*flasker_worker, "-Q", queues["flasker"], *pool, "--", "-n", "flasker@%h"],
               folder, {}, folder / "flasker.log"),
        _start([*flasker_worker, "-Q", queues["off"], *pool, "--", "-n", "off@%h"],
               folder, off_env, folder / "off.log"),
    ]
    apps = {"bare": Celery("bare-client"), "flasker": project.celery, "off": project.celery}
    apps["bare"].config_from_object(bare_settings)
    client = Redis.from_url(settings["result_backend"])
    count = 1000 if ctx.quick else 5000
    rounds = 2 if ctx.quick else 5
    times: dict[str, list[float]] = {name: [] for name in queues}
    cpu: dict[str, list[float]] = {name: [] for name in queues}
    groups = dict(zip(queues, (worker.pid for worker in workers), strict=True))
    try:
        for name, queue in queues.items():  # warm up: connections, imports, pool processes
            _burst(apps[name], queue, 200, client)
        for done in range(rounds):
            names = list(queues)
            for name in names[done % 3:] + names[:done % 3]:  # each goes first in turn
                queue = queues[name]
                before = _group_cpu(groups[name])
                times[name].append(_burst(apps[name], queue, count, client))
                cpu[name].append((_group_cpu(groups[name]) - before) / count * 1e6)
    finally:
        for worker in workers:
            _stop(worker)
        client.close()
        project.close()
    rate = {name: count / min(found) for name, found in times.items()}
    median = {name: count / statistics.median(found) for name, found in times.items()}
    # The worker's CPU per task (all its processes, mean over the rounds): steadier than the
    # rate on a busy machine.
    used = {name: statistics.fmean(found) for name, found in cpu.items()}
    note = f"{count} tasks x {rounds} rounds, best round"
    return [
        {"name": "prefork: bare Celery worker", "value": rate["bare"], "unit": "tasks/s",
         "ratio": None, "target": None,
         "note": f"{note}; median {median['bare']:.0f}/s; worker CPU {used['bare']:.0f} us/task"},
        {"name": "prefork: flasker worker (ratio vs bare)", "value": rate["flasker"],
         "unit": "tasks/s", "ratio": rate["flasker"] / rate["bare"], "target": ">= 0.95",
         "note": f"median ratio {median['flasker'] / median['bare']:.2f}; worker CPU"
                 f" {used['flasker']:.0f} us/task ({used['flasker'] / used['bare']:.2f} x bare)"},
        {"name": "prefork: flasker, reliability off", "value": rate["off"], "unit": "tasks/s",
         "ratio": None, "target": None,
         "note": f"median {median['off']:.0f}/s; worker CPU {used['off']:.0f} us/task"},
        {"name": "prefork: flasker reliability on vs off (ratio)", "value": rate["flasker"],
         "unit": "tasks/s", "ratio": rate["flasker"] / rate["off"], "target": ">= 0.95",
         "note": f"median ratio {median['flasker'] / median['off']:.2f}; worker CPU"
                 f" {used['flasker'] / used['off']:.2f} x off"},
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
    return [*cli_startup(ctx), *task_wrapper(ctx), *prefork(ctx)]
