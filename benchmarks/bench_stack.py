"""The stack under load: the web role under wrk, and 10,000 tasks through the stack.

The real compose stack (``compose.yaml``, the image ``make build`` makes, tagged as the stack
tests tag it) runs under a project name of its own, on 127.0.0.1 with ports Docker chooses,
with an env file of fresh secrets in a temporary folder, and is always taken down with its
volumes. A compose override file in the same folder adds what the benchmark needs, and
nothing else: the bare peers ``hello`` (``benchmarks/stack/hello.py``) and ``page``
(``benchmarks/stack/page.py``: the reference page's template alone at ``/template``, and the
page's whole work written without flasker at ``/``), each mounted read-only, served
by the same image's gunicorn with the web role's settings file and WEB_CONCURRENCY and
WEB_THREADS), and to the worker one module of tasks (``benchmarks/stack/stacktasks.py``);
to the web role the REST API (``benchmarks/stack/stackapi.py``) only while the reference app
registers none of its own.

1. The web role under wrk (16 connections, 2 threads, 60 s each, 10 s with ``--quick``):
   the bare "hello", the bare template page, the bare same-work page, the reference app's
   page ``/`` and its API ``/api/houses/`` (50 houses of
   3 cats, made through the API): requests/s, p50, p99 and errors (socket errors and answers
   other than 2xx/3xx); the page as a ratio of the bare same-work page's requests/s (and of
   the template page's and the hello's in its note), the rest of the hello's. Then the
   same five again while the worker is busy: a producer keeps 2,000 of the reference app's
   ``census`` tasks queued for the whole time, so that the worker never waits for work.
2. 10,000 tasks, each writing one row keyed by its task id, sent by a producer in a one-off
   container (``.delay()``, as the app sends them), with 1 and then 2 worker containers:
   tasks/s from the first message sent to the last row written, and the checks that none is
   lost and none ran twice (10,000 rows, 10,000 distinct task ids, exactly the ids sent).
3. Memory (``docker stats``) of web before and after all the load, and of each worker before
   and after each 10,000 tasks: the growth must stay under 50 MiB. A worker is read after a
   warm-up of 3,000 tasks: a task process forked from the main one shares its pages at first,
   and copies them as it runs (Python's reference counts write to every object it touches),
   which is a one-off cost per process, not a leak. The resident memory of each process of
   the worker (its main process, which is never recycled, and its task processes) is shown
   before and after.

Without wrk the web rows are skipped with a sentence saying how to install it.
"""

from __future__ import annotations

import configparser
import json
import os
import queue
import re
import shutil
import subprocess
import threading
import time
import typing as t
import urllib.error
import urllib.request
import uuid
from pathlib import Path

if t.TYPE_CHECKING:
    from .__main__ import Context

ROOT = Path(__file__).resolve().parent.parent
FILES = Path(__file__).resolve().parent / "stack"
# wrk's own reports of the last run ('make clean' removes them).
LOGS = ROOT / "benchmarks" / "results" / "stack"
# The tag the stack tests build: 'make build' reuses its layers, so a second build is quick.
IMAGE, TAG = "flasker-test", "dev"
UP_TIMEOUT = 300
CONNECTIONS, THREADS = 16, 2
HOUSES, CATS_PER_HOUSE = 50, 3
TASKS, QUICK_TASKS = 10_000, 2_000
# Tasks each worker container runs before its memory is read: every task process has then
# run tasks and been recycled at least once (WORKER_MAX_TASKS_PER_CHILD=1000 in
# services/worker/worker.env), so that "before" is a worker at work, not one fresh from
# its fork whose processes share all their pages with the main one.
WARMUP_TASKS, QUICK_WARMUP_TASKS = 3_000, 500
# Census tasks the busy producer keeps queued: several seconds of work for the worker.
BACKLOG = 2_000
MEMORY_BOUND_MIB = 50.0
# The wrk runs in order: the bare peers first, then the web role's page and API.
WEB_KEYS = ("hello", "template", "same", "page", "api")
# The compose service serving each (the web role's otherwise), and the peer of each ratio.
SERVICE_OF = {"hello": "hello", "template": "page", "same": "page"}
PEER_OF = {"template": "hello", "same": "hello", "page": "same", "api": "hello"}
WRK_MISSING = (
    "wrk is not installed, so the web role was not measured under load (its rows are left"
    " out): install it with 'apt-get install wrk' (Debian, Ubuntu) and run"
    " 'make bench BENCH_ARGS=\"-k stack\"' again."
)

Row = dict[str, t.Any]


# -- the stack -----------------------------------------------------------------------------------


def parse_env(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value
    return values


def docker_environ(**extra: str) -> dict[str, str]:
    """This process's environment without the developer's own stack settings.

    The shell wins over an env file in compose, so a WEB_PORT or FLASKER__* exported in the
    shell would otherwise change the stack under test.
    """
    drop = set(parse_env((ROOT / ".env.example").read_text())) | {"FLASKER_CONFIG"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("FLASKER__")}
    env.update(extra)
    return env


def execute(args: t.Sequence[str | os.PathLike[str]], *, timeout: float = 120,
            input: str | None = None, check: bool = True,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command from the repository's root; on failure, an error showing its output."""
    result = subprocess.run([str(a) for a in args], cwd=ROOT, env=env or docker_environ(),
                            input=input, text=True, capture_output=True, timeout=timeout,
                            check=False)
    if check and result.returncode != 0:
        raise RuntimeError(
            f"'{' '.join(map(str, args))}' exited {result.returncode}:\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def reference_modules() -> list[str]:
    """The reference app's ``[PROJECT] MODULES``, to which the override adds the benchmark's."""
    parser = configparser.ConfigParser(inline_comment_prefixes=("#",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(ROOT / "reference" / "default.cfg")
    return [m.strip() for m in parser["PROJECT"]["MODULES"].split(",") if m.strip()]


def reference_has_api() -> bool:
    return any("APIManager" in p.read_text() for p in (ROOT / "reference" / "app").rglob("*.py"))


class Stack:
    """One compose project: the stack, the bare peer, and the benchmark's task module."""

    def __init__(self, folder: Path, *, api_module: bool) -> None:
        self.name = f"flasker-bench-{uuid.uuid4().hex[:8]}"
        self.env_file = folder / "stack.env"
        execute(["make", "-s", str(self.env_file), f"ENV_FILE={self.env_file}"])
        values = parse_env(self.env_file.read_text())
        values.update(FLASKER_IMAGE=IMAGE, FLASKER_TAG=TAG, BIND_ADDRESS="127.0.0.1",
                      WEB_PORT="0", FLOWER_PORT="0", RESTART_POLICY="no")
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
        self.values = values
        self.override = folder / "compose.bench.yaml"
        # JSON is YAML: no YAML writer needed.
        user, db = values.get("POSTGRES_USER", "flasker"), values.get("POSTGRES_DB", "flasker")
        db_url = f"postgresql+psycopg://{user}:{values['POSTGRES_PASSWORD']}@postgres:5432/{db}"
        self.override.write_text(json.dumps(self.override_services(api_module, db_url), indent=2))

    @staticmethod
    def override_services(api_module: bool, db_url: str) -> dict[str, t.Any]:
        mount = {"type": "bind", "source": str(FILES), "target": "/bench", "read_only": True}
        modules = reference_modules()
        services: dict[str, t.Any] = {
            "worker": {
                "environment": {
                    "PYTHONPATH": "/bench",
                    "FLASKER__PROJECT__MODULES": ", ".join([*modules, "stacktasks"]),
                },
                "volumes": [mount],
            },
            # Flask's hello in the same image, with the web role's gunicorn settings.
            "hello": {
                "image": f"{IMAGE}:{TAG}",
                "entrypoint": ["python", "-m", "gunicorn"],
                "command": ["--config", "/app/services/web/gunicorn.conf.py",
                            "--chdir", "/bench", "hello:app"],
                "environment": {
                    "WEB_CONCURRENCY": "${WEB_CONCURRENCY:-2}",
                    "WEB_THREADS": "${WEB_THREADS:-4}",
                    "WEB_PROXY_HOPS": "${WEB_PROXY_HOPS:-0}",
                },
                "volumes": [mount],
                "ports": ["127.0.0.1::8000"],
                "restart": "no",
                "read_only": True,
                "tmpfs": ["/tmp"],
                "cap_drop": ["ALL"],
                "security_opt": ["no-new-privileges:true"],
                "healthcheck": {
                    "test": ["CMD", "python", "-c", "import urllib.request as r;"
                             " r.urlopen('http://127.0.0.1:8000/', timeout=5)"],
                    "interval": "2s", "timeout": "6s", "retries": 30,
                },
            },
            # The bare page (benchmarks/stack/page.py): the reference page's work without flasker
            # ('/'), and its template alone ('/template'); same image and gunicorn settings.
            "page": {
                "image": f"{IMAGE}:{TAG}",
                "entrypoint": ["python", "-m", "gunicorn"],
                "command": ["--config", "/app/services/web/gunicorn.conf.py",
                            "--chdir", "/bench", "page:app"],
                "environment": {
                    "WEB_CONCURRENCY": "${WEB_CONCURRENCY:-2}",
                    "WEB_THREADS": "${WEB_THREADS:-4}",
                    "WEB_PROXY_HOPS": "${WEB_PROXY_HOPS:-0}",
                    "PAGE_DB_URL": db_url,
                    "PAGE_SECRET_KEY": "${FLASKER__APP__SECRET_KEY}",
                },
                "volumes": [mount],
                "ports": ["127.0.0.1::8000"],
                "restart": "no",
                "depends_on": {"migrate": {"condition": "service_completed_successfully"}},
                "read_only": True,
                "tmpfs": ["/tmp"],
                "cap_drop": ["ALL"],
                "security_opt": ["no-new-privileges:true"],
                "healthcheck": {
                    "test": ["CMD", "python", "-c", "import urllib.request as r;"
                             " r.urlopen('http://127.0.0.1:8000/template', timeout=5)"],
                    "interval": "2s", "timeout": "6s", "retries": 30,
                },
            },
        }
        if api_module:
            services["web"] = {
                "environment": {
                    "PYTHONPATH": "/bench",
                    "FLASKER__PROJECT__MODULES": ", ".join([*modules, "stackapi"]),
                },
                "volumes": [mount],
            }
        return {"services": services}

    def command(self, *args: str) -> list[str]:
        return ["docker", "compose", "--project-name", self.name, "--project-directory",
                str(ROOT), "--file", str(ROOT / "compose.yaml"), "--file", str(self.override),
                "--env-file", str(self.env_file), *args]

    def compose(self, *args: str, timeout: float = 120, input: str | None = None,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        return execute(self.command(*args), timeout=timeout, input=input, check=check)

    def up(self, workers: int = 1) -> None:
        result = self.compose("up", "--detach", "--no-build", "--wait", "--wait-timeout",
                              str(UP_TIMEOUT), "--scale", f"worker={workers}",
                              timeout=UP_TIMEOUT + 120, check=False)
        if result.returncode != 0:
            ps = self.compose("ps", "--all", check=False).stdout
            logs = self.compose("logs", "--no-color", "--tail", "30", check=False).stdout
            raise RuntimeError(f"'docker compose up --wait' failed:\n{result.stderr[-3000:]}\n"
                               f"{ps}\n{logs[-6000:]}")

    def down(self) -> None:
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "40", timeout=240,
                     check=False)

    def url(self, service: str, port: int) -> str:
        return f"http://{self.compose('port', service, str(port)).stdout.strip()}"

    def shell(self, script: str, timeout: float = 600) -> dict[str, t.Any]:
        """Run ``script`` with 'flasker shell' in a one-off worker container; its JSON line."""
        result = self.compose("run", "--rm", "--no-deps", "-T", "worker", "shell",
                              input=script, timeout=timeout)
        return bench_json(result.stdout)

    def shell_process(self, script: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(self.command("run", "--rm", "--no-deps", "-T", "worker",
                                                "shell"),
                                   cwd=ROOT, env=docker_environ(), text=True,
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT)
        assert process.stdin is not None
        process.stdin.write(script)
        process.stdin.close()
        return process

    def sql(self, statement: str) -> list[list[str]]:
        """Rows of ``statement``, run by psql in the postgres container."""
        out = self.compose("exec", "-T", "postgres", "psql", "-U",
                           self.values.get("POSTGRES_USER", "flasker"), "-d",
                           self.values.get("POSTGRES_DB", "flasker"), "-v", "ON_ERROR_STOP=1",
                           "-AtF", "\t", "-c", statement).stdout
        return [line.split("\t") for line in out.splitlines() if line]

    def boots(self, service: str, since: float) -> int:
        """gunicorn workers the service booted since ``since`` (max_requests recycles them)."""
        logs = self.compose("logs", "--no-color", "--since", f"{since:.3f}", service,
                            timeout=300).stdout
        return logs.count("Booting worker with pid")

    def containers(self, service: str) -> list[str]:
        """The ids of the service's containers (one-off 'run' containers left out)."""
        return execute(["docker", "ps", "--quiet",
                    "--filter", f"label=com.docker.compose.project={self.name}",
                    "--filter", f"label=com.docker.compose.service={service}",
                    "--filter", "label=com.docker.compose.oneoff=False"]).stdout.split()

    def processes(self, service: str) -> dict[str, list[float]]:
        """The resident MiB of each process in each container of ``service``, by pid order."""
        found = {}
        for container in self.containers(service):
            name = execute(["docker", "inspect", "--format", "{{.Name}}", container]).stdout
            out = execute(["docker", "exec", container, "python", "-c", PROCESS_RSS]).stdout
            found[name.strip().lstrip("/").removeprefix(f"{self.name}-")] = json.loads(out)
        return found

    def memory(self, *services: str) -> dict[str, float]:
        """MiB in use by each container of ``services`` ('docker stats'), by container name."""
        ids = [i for s in services for i in self.containers(s)]
        out = execute(["docker", "stats", "--no-stream", "--format", "{{.Name}}\t{{.MemUsage}}",
                   *ids]).stdout
        usage = {}
        for line in out.splitlines():
            name, _, used = line.partition("\t")
            usage[name.removeprefix(f"{self.name}-")] = mebibytes(used.split("/")[0])
        return usage


# Resident MiB of every process of a container, by pid (the main process first).
PROCESS_RSS = """
import json, os, pathlib
rss = []
for status in sorted(pathlib.Path("/proc").glob("[0-9]*/status"), key=lambda p: int(p.parent.name)):
    if int(status.parent.name) == os.getpid():
        continue
    fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
    if "VmRSS" in fields:
        rss.append(round(int(fields["VmRSS"].split()[0]) / 1024, 1))
print(json.dumps(rss))
"""

UNITS = {"b": 1, "kib": 2**10, "mib": 2**20, "gib": 2**30, "kb": 1e3, "mb": 1e6, "gb": 1e9}


def mebibytes(text: str) -> float:
    match = re.fullmatch(r"\s*([\d.]+)\s*([A-Za-z]+)\s*", text)
    if not match or match[2].lower() not in UNITS:
        raise ValueError(f"'docker stats' gave the memory {text!r}, which is not a size.")
    return float(match[1]) * UNITS[match[2].lower()] / 2**20


def bench_json(output: str, marker: str = "BENCH_JSON") -> dict[str, t.Any]:
    for line in output.splitlines():
        if line.startswith(marker + " "):
            return t.cast(dict[str, t.Any], json.loads(line[len(marker) + 1:]))
    raise RuntimeError(f"The script printed no '{marker}' line:\n{output[-3000:]}")


# -- HTTP and wrk --------------------------------------------------------------------------------


def http(method: str, url: str, body: t.Any = None) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, t.cast(bytes, response.read())
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def seed(web: str) -> None:
    """50 houses of 3 cats each, made through the API; then check the page and the API."""
    for h in range(HOUSES):
        status, body = http("POST", f"{web}/api/houses/", {"name": f"House {h:03d}"})
        if status != 201:
            raise RuntimeError(f"POST /api/houses/ answered {status}: {body[:500]!r}")
        house = json.loads(body)["id"]
        for c in range(CATS_PER_HOUSE):
            status, body = http("POST", f"{web}/api/cats/",
                                {"name": f"Cat {h:03d}-{c}", "house_id": house})
            if status != 201:
                raise RuntimeError(f"POST /api/cats/ answered {status}: {body[:500]!r}")
    status, body = http("GET", f"{web}/api/houses/")
    page = json.loads(body)
    if status != 200 or len(page["items"]) != 20 or page.get("total") != HOUSES:
        raise RuntimeError(f"GET /api/houses/ answered {status} with {body[:500]!r}: expected"
                           f" a page of 20 of {HOUSES} houses.")
    status, body = http("GET", f"{web}/")
    if status != 200 or b"House 019" not in body or b"3 cats" not in body:
        raise RuntimeError(f"GET / answered {status}: expected the first 20 houses and their"
                           f" cats.\n{body[:1000]!r}")


def wrk(url: str, seconds: int, log: Path) -> dict[str, t.Any]:
    """wrk's figures for ``url``: requests/s, latency percentiles (ms) and errors."""
    result = subprocess.run(
        ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "10s",
         "--latency", "-s", str(FILES / "report.lua"), url],
        capture_output=True, text=True, timeout=seconds + 120, check=False)
    log.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise RuntimeError(f"wrk exited {result.returncode} for {url}:\n{result.stderr[-2000:]}")
    raw = bench_json(result.stdout, "WRK_JSON")
    socket_errors = raw["connect"] + raw["read"] + raw["write"] + raw["timeout"]
    return {
        "requests": raw["requests"],
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50": raw["p50_us"] / 1e3, "p99": raw["p99_us"] / 1e3, "max": raw["max_us"] / 1e3,
        "status_errors": raw["status"], "socket_errors": socket_errors,
        "errors": raw["status"] + socket_errors,
        "detail": f"connect {raw['connect']}, read {raw['read']}, write {raw['write']},"
                  f" timeout {raw['timeout']}, non-2xx/3xx {raw['status']}",
    }


# -- scripts run with 'flasker shell' in a one-off worker container ------------------------------

PRODUCE = """
import json
import time

import sqlalchemy as sa
from stacktasks import record, rows

rows.create(db.get_bind(), checkfirst=True)
db.execute(sa.text("TRUNCATE bench_task_rows"))
db.commit()
ids = []
started = time.time()
for seq in range({count}):
    ids.append(record.delay(seq).id)
sent = time.time()
print("BENCH_JSON " + json.dumps({{"started": started, "sent": sent, "ids": ids}}), flush=True)
"""

# Keeps BACKLOG census tasks queued until a row appears in bench_stop; then empties the queue.
BUSY = """
import json
import time

import sqlalchemy as sa
from app.tasks import census

db.execute(sa.text("CREATE TABLE IF NOT EXISTS bench_stop (at timestamptz DEFAULT now())"))
db.execute(sa.text("DELETE FROM bench_stop"))
db.commit()
queue = celery.conf.task_default_queue


def depth(conn):
    try:
        return conn.default_channel.queue_declare(queue=queue, passive=True).message_count
    except conn.channel_errors:  # Redis keeps no empty list: an empty queue is not found
        return 0


def stopped():
    found = db.execute(sa.text("SELECT count(*) FROM bench_stop")).scalar()
    db.rollback()
    return found > 0


sent = 0
with celery.connection_for_write() as conn:
    while depth(conn) < {backlog}:
        for _ in range(100):
            census.delay()
        sent += 100
    filled = {{"at": time.time(), "sent": sent, "depth": depth(conn)}}
    print("BENCH_FILLED " + json.dumps(filled), flush=True)
    lowest = filled["depth"]
    deadline = time.time() + {seconds}
    while not stopped() and time.time() < deadline:
        now = depth(conn)
        lowest = min(lowest, now)
        if now < {backlog}:
            for _ in range(min(100, {backlog} - now)):
                census.delay()
                sent += 1
        else:
            time.sleep(0.2)
    end = {{"at": time.time(), "sent": sent, "depth": depth(conn), "lowest": lowest}}
purged = celery.control.purge()
print("BENCH_JSON " + json.dumps({{"filled": filled, "end": end, "purged": purged}}), flush=True)
"""


class Busy:
    """The busy worker: a producer keeping the reference app's census tasks queued."""

    def __init__(self, stack: Stack, seconds: float) -> None:
        self.stack = stack
        self.process = stack.shell_process(BUSY.format(backlog=BACKLOG, seconds=int(seconds)))
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self.read, daemon=True).start()
        deadline = time.monotonic() + 300
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError("The busy producer did not fill the queue in 300 s:\n"
                                   + "".join(self.output)[-3000:]) from None
            if line.startswith("BENCH_FILLED "):
                return
            if self.process.poll() is not None and self.lines.empty():
                raise RuntimeError("The busy producer stopped:\n" + "".join(self.output)[-3000:])

    def read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            self.lines.put(line)
        self.lines.put("")

    def stop(self) -> dict[str, t.Any]:
        self.stack.sql("INSERT INTO bench_stop DEFAULT VALUES")
        self.process.wait(timeout=300)
        time.sleep(0.5)  # the reader thread's last lines
        found = bench_json("".join(self.output))
        filled, end = found["filled"], found["end"]
        ran = (end["sent"] - filled["sent"]) - (end["depth"] - filled["depth"])
        seconds = end["at"] - filled["at"]
        return {"ran": ran, "seconds": seconds, "rate": ran / seconds,
                "lowest": end["lowest"]}

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


# -- the measurements ----------------------------------------------------------------------------


def web_rows(results: dict[str, dict[str, t.Any]], state: str,
             urls: dict[str, str]) -> list[Row]:
    rows = []
    for key, label in (("hello", "bare gunicorn+Flask hello"),
                       ("template", "bare page, template only (ratio vs hello)"),
                       ("same", "bare page, same work (ratio vs hello)"),
                       ("page", "page / (ratio vs bare same work)"),
                       ("api", "API /api/houses/ (ratio vs hello)")):
        r = results[key]
        peer = PEER_OF.get(key)
        ratio = None if peer is None else r["rps"] / results[peer]["rps"]
        versus = ""
        if key == "page":
            versus = (f"; {r['rps'] / results['template']['rps']:.2f} of the bare template"
                      f" page, {r['rps'] / results['hello']['rps']:.2f} of the hello")
        rows.append({
            "name": f"stack web, worker {state}: {label}",
            "value": r["rps"], "unit": "req/s", "ratio": ratio, "target": "0 errors",
            "note": f"p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, max {r['max']:.0f} ms;"
                    f" {r['errors']} errors in {r['requests']:,} requests ({r['detail']});"
                    f" {r['boots']} gunicorn workers booted (max_requests); machine's load"
                    f" average {r['load']:.1f}{versus}",
            "p50_ms": r["p50"], "p99_ms": r["p99"], "errors": r["errors"],
            "requests": r["requests"], "url": urls[key], "boots": r["boots"],
        })
    return rows


def measure_web(stack: Stack, urls: dict[str, str], state: str,
                seconds: int) -> dict[str, dict[str, t.Any]]:
    found = {}
    for key in WEB_KEYS:
        print(f"   wrk {seconds} s on {key} ({urls[key]}), worker {state}", flush=True)
        started, load = time.time(), os.getloadavg()[0]
        found[key] = r = wrk(urls[key], seconds, LOGS / f"wrk-{state}-{key}.txt")
        r["load"] = (load + os.getloadavg()[0]) / 2
        r["boots"] = stack.boots(SERVICE_OF.get(key, "web"), started)
        print(f"     {r['rps']:.0f} req/s, p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms,"
              f" {r['errors']} errors, {r['boots']} gunicorn workers booted, load average"
              f" {r['load']:.1f}", flush=True)
    return found


WARMUP = """
import json
from app.tasks import census
results = [census.delay() for _ in range({count})]
for result in results:
    result.get(timeout=600)
print("BENCH_JSON " + json.dumps({{"warmed": len(results)}}), flush=True)
"""


def measure_tasks(stack: Stack, count: int, workers: int, warmup: int) -> dict[str, t.Any]:
    services = ("web", "worker")
    stack.shell(WARMUP.format(count=warmup * workers))
    time.sleep(2)
    before = stack.memory(*services)
    processes_before = stack.processes("worker")
    load = os.getloadavg()[0]
    sent = stack.shell(PRODUCE.format(count=count))
    print(f"   {count:,} tasks sent in {sent['sent'] - sent['started']:.1f} s", flush=True)
    last, last_change = -1, time.monotonic()
    while True:
        done = int(stack.sql("SELECT count(*) FROM bench_task_rows")[0][0])
        if done >= count:
            break
        if done != last:
            last, last_change = done, time.monotonic()
        elif time.monotonic() - last_change > 120:
            break  # no row for two minutes: report what was lost
        time.sleep(0.5)
    time.sleep(5)  # any late duplicate would show now
    rows, ids, seqs, first, end = stack.sql(
        "SELECT count(*), count(DISTINCT task_id), count(DISTINCT seq),"
        " extract(epoch FROM min(done_at)), extract(epoch FROM max(done_at))"
        " FROM bench_task_rows")[0]
    seen = {r[0] for r in stack.sql("SELECT DISTINCT task_id FROM bench_task_rows")}
    expected = set(sent["ids"])
    after = stack.memory(*services)
    processes_after = stack.processes("worker")
    seconds = float(end) - sent["started"]
    return {
        "workers": workers, "count": count, "rows": int(rows), "ids": int(ids),
        "seqs": int(seqs), "missing": len(expected - seen), "unknown": len(seen - expected),
        "twice": int(rows) - int(ids), "seconds": seconds, "rate": int(rows) / seconds,
        "enqueue": sent["sent"] - sent["started"], "first_row": float(first) - sent["started"],
        "before": before, "after": after, "load": (load + os.getloadavg()[0]) / 2,
        "processes": (processes_before, processes_after),
    }


def task_rows(found: list[dict[str, t.Any]]) -> list[Row]:
    rows = []
    one = found[0]["rate"]
    for r in found:
        containers = "1 worker container" if r["workers"] == 1 else \
            f"{r['workers']} worker containers"
        rows.append({
            "name": f"stack tasks, {containers}: {r['count']:,} end to end"
                    + ("" if r["workers"] == 1 else " (ratio vs 1)"),
            "value": r["rate"], "unit": "tasks/s",
            "ratio": None if r["workers"] == 1 else r["rate"] / one,
            "target": "none lost or twice",
            "note": f"{r['rows']:,} rows, {r['ids']:,} distinct task ids, {r['missing']} sent"
                    f" but missing, {r['twice']} twice; {r['seconds']:.1f} s from the first"
                    f" message to the last row (all sent in {r['enqueue']:.1f} s, first row"
                    f" after {r['first_row']:.2f} s); machine's load average {r['load']:.1f}",
        })
    return rows


def growth_rows(label: str, before: dict[str, float], after: dict[str, float],
                processes: tuple[dict[str, list[float]], dict[str, list[float]]] | None = None
                ) -> list[Row]:
    rows = []
    for name in sorted(before):
        if name not in after:
            continue
        growth = after[name] - before[name]
        note = f"{before[name]:.1f} MiB before, {after[name]:.1f} MiB after"
        if processes and name in processes[0] and name in processes[1]:
            note += (f"; resident MiB of each process (main first): {processes[0][name]}"
                     f" before, {processes[1][name]} after")
        rows.append({
            "name": f"stack memory: {name}, {label}", "value": growth, "unit": "MiB",
            "ratio": None, "target": f"< {MEMORY_BOUND_MIB:.0f} MiB", "note": note,
        })
    return rows


def failures(rows: list[Row], tasks: list[dict[str, t.Any]]) -> list[str]:
    found = []
    for r in rows:
        if r.get("errors"):
            found.append(f"{r['name']}: {r['errors']} errors")
        if r["unit"] == "MiB" and r["value"] >= MEMORY_BOUND_MIB:
            found.append(f"{r['name']}: grew {r['value']:.1f} MiB")
    for task in tasks:
        if task["rows"] != task["count"] or task["ids"] != task["count"] or task["missing"] \
                or task["unknown"]:
            found.append(f"{task['workers']} worker(s): {task['rows']} rows, {task['ids']}"
                         f" distinct ids for {task['count']} tasks sent ({task['missing']}"
                         f" missing, {task['unknown']} unknown)")
    return found


def docker_ready() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return execute(["docker", "info"], timeout=30, check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def run(ctx: Context) -> list[Row]:
    if not docker_ready():
        raise RuntimeError("No Docker engine answers 'docker info': the stack benchmark needs"
                           " one (start Docker, then run it again).")
    has_wrk = shutil.which("wrk") is not None
    if not has_wrk:
        print(f"   {WRK_MISSING}", flush=True)
    seconds = 10 if ctx.quick else 60
    count = QUICK_TASKS if ctx.quick else TASKS
    print(f"   building {IMAGE}:{TAG} ('make build')", flush=True)
    execute(["make", "-s", "build"], timeout=1800,
            env=docker_environ(FLASKER_IMAGE=IMAGE, FLASKER_TAG=TAG))
    api_module = not reference_has_api()
    LOGS.mkdir(parents=True, exist_ok=True)
    stack = Stack(ctx.tmp, api_module=api_module)
    rows: list[Row] = []
    memory: list[Row] = []
    tasks: list[dict[str, t.Any]] = []
    busy: Busy | None = None
    print(f"   starting the stack '{stack.name}'", flush=True)
    try:
        stack.up()
        web, hello = stack.url("web", 8000), stack.url("hello", 8000)
        bare = stack.url("page", 8000)
        seed(web)
        urls = {"hello": f"{hello}/", "template": f"{bare}/template", "same": f"{bare}/",
                "page": f"{web}/", "api": f"{web}/api/houses/"}
        status, body = http("GET", urls["hello"])
        if status != 200 or body != b"Hello, World!":
            raise RuntimeError(f"The hello peer answered {status}: {body[:200]!r}")
        web_before = stack.memory("web")
        if has_wrk:
            for key in WEB_KEYS:  # warm up: connections, templates, imports
                wrk(urls[key], 3, LOGS / f"wrk-warmup-{key}.txt")
            idle = measure_web(stack, urls, "idle", seconds)
            rows += web_rows(idle, "idle", urls)
            busy = Busy(stack, seconds * 3 + 300)
            loaded = measure_web(stack, urls, "busy", seconds)
            worked = busy.stop()
            busy = None
            rows += web_rows(loaded, "busy", urls)
            rows.append({
                "name": "stack worker busy during the wrk runs: census tasks",
                "value": worked["rate"], "unit": "tasks/s", "ratio": None, "target": None,
                "note": f"{worked['ran']:,} tasks in {worked['seconds']:.0f} s; the queue"
                        f" never fell below {worked['lowest']:,} (kept at {BACKLOG:,})",
            })
        time.sleep(2)
        web_after = stack.memory("web")
        memory += growth_rows("before and after all web load" if has_wrk else
                            "no web load (wrk missing)", web_before, web_after)
        for workers in (1, 2):
            if workers > 1:
                stack.up(workers)
            print(f"   {count:,} tasks with {workers} worker container(s)", flush=True)
            found = measure_tasks(stack, count, workers,
                                  QUICK_WARMUP_TASKS if ctx.quick else WARMUP_TASKS)
            tasks.append(found)
            print(f"     {found['rate']:.0f} tasks/s, {found['rows']:,} rows,"
                  f" {found['ids']:,} distinct ids", flush=True)
            before = {k: v for k, v in found["before"].items() if "worker" in k}
            after = {k: v for k, v in found["after"].items() if "worker" in k}
            memory += growth_rows(f"before and after {count:,} tasks ({workers} worker"
                                f" container{'s' if workers > 1 else ''})", before, after,
                                found["processes"])
    finally:
        if busy is not None:
            busy.kill()
        stack.down()
    rows += task_rows(tasks) + memory
    note = (" The reference app registers no APIManager: the benchmark added"
            " APIManager(add_all_models=True) to the web role (benchmarks/stack/stackapi.py).")
    if api_module:
        for r in rows:
            if "API" in r["name"]:
                r["note"] += note
    failed = failures(rows, tasks)
    if failed:
        for r in rows:
            print(f"   {r['name']}: {r['value']:.4g} {r['unit']}; {r['note']}", flush=True)
        raise AssertionError("The stack did not hold under load: " + "; ".join(failed) + ".")
    return [{k: r[k] for k in ("name", "value", "unit", "ratio", "target", "note")}
            for r in rows]
