"""The stack on a one-node Docker Swarm: 'make deploy' from the private registry, then updates.

The module deploys deploy/swarm.yaml once, under a stack name of its own, from images pushed
to ../shared/containers/registry (127.0.0.1:5000): v1, then v2 (the same image, another
label), and 'broken', a release that starts but is never ready. It inits the swarm when this
engine is in none, and leaves it at the end only then; the stack, its volumes, the images and
the registry's tags go at the end.

Ports are published in host mode (PUBLISH_MODE=host): this kernel has no IPVS, so the routing
mesh and Swarm's virtual IPs answer nothing here (a published ingress port refuses every
connection); the stack's HAProxy finds web's tasks by DNS either way (deploy/swarm.yaml).

"None twice" is counted in the workers' logs, one "succeeded" line per execution: the
``receipt`` task's row is keyed by the task's id (ON CONFLICT DO NOTHING), so the table shows
a task lost, never one run twice.
"""

from __future__ import annotations

import datetime as dt
import functools
import http.client
import json
import re
import socket
import threading
import time
import typing as t
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from .conftest import wait_for
from .conftest_stack import build_image, make_env_file, run, stack_environ, stack_test
from .test_registry import REGISTRY, REGISTRY_SCRIPT, registry_up

pytestmark = [pytest.mark.docker, pytest.mark.swarm, stack_test]

DEPLOY_TIMEOUT = 300
LOAD_THREADS = 8
# Requests per second, all threads together. Each request is a new connection through
# docker-proxy (the published port on 127.0.0.1), which closes its own connection to the
# edge first: each leaves a host port in TIME_WAIT for 60 s, and 28,232 ports (32768-60999)
# allow about 470 new connections a second. Faster than that, docker-proxy runs out of
# ports and resets the client's connections: the machine's limit, not the stack's.
LOAD_RATE = 200
# The stand-in HAProxy (the stack's default is Docker Hub's haproxy image): Debian's package.
HAPROXY_DOCKERFILE = """\
ARG PYTHON_IMAGE
FROM ${PYTHON_IMAGE}
RUN apt-get update -qq \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy \\
 && rm -rf /var/lib/apt/lists/*
"""
# A release that starts and is never ready: gunicorn listens on 8001, the healthcheck asks
# 8000. Swarm must roll it back on its own.
BROKEN_DOCKERFILE = """\
FROM {base}
USER root
RUN sed 's/0.0.0.0:8000/0.0.0.0:8001/' /app/services/web/gunicorn.conf.py \\
      > /app/services/web/broken.conf.py
USER 10001:10001
ENV FLASKER_GUNICORN_CONFIG=/app/services/web/broken.conf.py
LABEL org.flasker.test.release=broken
"""


def instant(text: str) -> dt.datetime:
    """A time Docker reports (RFC 3339 with nanoseconds, which datetime does not read)."""
    return dt.datetime.fromisoformat(re.sub(r"(\.\d{6})\d*", r"\1", text).replace("Z", "+00:00"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Deployment:
    """The stack under test: its name, the images pushed, and how to run 'make deploy'."""

    stack: str
    image: str  # the registry's repository, without a tag
    env_file: Path
    environ: dict[str, str]
    web_port: int
    flower_port: int
    values: dict[str, str] = field(default_factory=dict)

    def deploy(self, tag: str, check: bool = True) -> t.Any:
        return run(["make", "-s", "deploy", f"REGISTRY={REGISTRY}", f"TAG={tag}",
                    f"STACK={self.stack}", f"ENV_FILE={self.env_file}",
                    f"DEPLOY_TIMEOUT={DEPLOY_TIMEOUT}"],
                   env=self.environ, timeout=DEPLOY_TIMEOUT + 120, check=check)

    def service(self, name: str) -> dict[str, t.Any]:
        out = run(["docker", "service", "inspect", f"{self.stack}_{name}"]).stdout
        return t.cast(dict[str, t.Any], json.loads(out)[0])

    def tasks(self, name: str, state: str | None = "running") -> list[dict[str, t.Any]]:
        """The service's tasks meant to be in ``state`` (every one: None), from the engine."""
        wanted = ["--filter", f"desired-state={state}"] if state else []
        ids = run(["docker", "service", "ps", "--quiet", *wanted,
                   f"{self.stack}_{name}"]).stdout.split()
        if not ids:
            return []
        return t.cast(list[dict[str, t.Any]],
                      json.loads(run(["docker", "inspect", *ids]).stdout))

    def container(self, name: str) -> str:
        """A running container of the service (one node: they are all on this engine)."""
        ids = run(["docker", "ps", "--quiet", "--filter",
                   f"label=com.docker.swarm.service.name={self.stack}_{name}"]).stdout.split()
        assert ids, f"no running container of {self.stack}_{name}"
        return ids[0]

    def shell(self, script: str) -> str:
        return run(["docker", "exec", "-i", self.container("web"), "flasker", "shell"],
                   input=script, timeout=180).stdout

    def sql(self, query: str) -> str:
        return run(["docker", "exec", self.container("postgres"), "psql", "-U",
                    self.values["POSTGRES_USER"], "-d", self.values["POSTGRES_DB"], "-tAc",
                    query]).stdout.strip()

    def receipts(self) -> int:
        return int(self.sql("SELECT count(*) FROM task_receipts"))

    def send(self, count: int, delay: float = 0.0) -> list[str]:
        """Queue ``count`` receipt tasks from a web container; their ids."""
        out = self.shell("import json\nfrom app.tasks import receipt\n"
                         f"ids = [receipt.delay({delay!r}).id for _ in range({count})]\n"
                         "print('IDS', json.dumps(ids))\n")
        line = next(x for x in out.splitlines() if x.startswith("IDS "))
        return t.cast(list[str], json.loads(line[4:]))

    def executions(self, ids: t.Collection[str]) -> dict[str, int]:
        """How many times each of ``ids`` ran to its end, from the workers' logs."""
        # Each container's own log, the stopped ones' too ('docker service logs' can hang on
        # the tasks of a finished update).
        containers = run(["docker", "ps", "--all", "--quiet", "--filter",
                          f"label=com.docker.swarm.service.name={self.stack}_worker"]
                         ).stdout.split()
        logs = "".join(run(["docker", "logs", c]).stderr for c in containers)
        wanted = set(ids)
        counts: dict[str, int] = {}
        for match in re.finditer(r"app\.tasks\.receipt\[([0-9a-f-]{36})\] succeeded", logs):
            if match.group(1) in wanted:
                counts[match.group(1)] = counts.get(match.group(1), 0) + 1
        return counts

    def web_image(self) -> str:
        return t.cast(str, self.service("web")["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"])

    def update_state(self, name: str) -> str | None:
        status = self.service(name).get("UpdateStatus")
        return t.cast(str, status["State"]) if status else None


def build_and_push(dockerfile: str, ref: str, args: t.Mapping[str, str] | None = None) -> None:
    build_args = [a for k, v in (args or {}).items() for a in ("--build-arg", f"{k}={v}")]
    run(["docker", "build", "--quiet", *build_args, "--tag", ref, "-"], input=dockerfile,
        timeout=600)
    if ref.startswith(REGISTRY):
        run(["docker", "push", "--quiet", ref], timeout=300)


@pytest.fixture(scope="module")
def swarm(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[Deployment]:
    image = build_image()  # skips (fails in CI) without a Docker engine
    created_swarm = run(["docker", "info", "--format", "{{.Swarm.LocalNodeState}}"]
                        ).stdout.strip() == "inactive"
    if created_swarm:
        run(["docker", "swarm", "init", "--advertise-addr", "127.0.0.1"])
    started_registry = not registry_up()
    if started_registry:
        run([REGISTRY_SCRIPT, "start"], timeout=300)
    suffix = uuid.uuid4().hex[:8]
    repository = f"{REGISTRY}/flasker-swarm-{suffix}"
    haproxy = f"flasker-swarm-haproxy-{suffix}:test"
    folder = tmp_path_factory.mktemp("swarm")
    env_file = folder / "env"
    deployment = Deployment(
        stack=f"swarm{suffix}", image=repository, env_file=env_file,
        environ={}, web_port=free_port(), flower_port=free_port())
    try:
        deployment.values = make_env_file(env_file)
        for release in ("v1", "v2"):
            build_and_push(f"FROM {image}\nLABEL org.flasker.test.release={release}\n",
                           f"{repository}:{release}")
        build_and_push(BROKEN_DOCKERFILE.format(base=f"{repository}:v1"),
                       f"{repository}:broken")
        environ = stack_environ()
        build_and_push(HAPROXY_DOCKERFILE, haproxy, {"PYTHON_IMAGE": environ["PYTHON_IMAGE"]})
        deployment.environ = stack_environ(
            FLASKER_IMAGE=repository.rpartition("/")[2], HAPROXY_IMAGE=haproxy,
            PUBLISH_MODE="host", WEB_PORT=str(deployment.web_port),
            FLOWER_PORT=str(deployment.flower_port))
        started = time.monotonic()
        deployment.deploy("v1")
        print(f"first deploy of v1: {time.monotonic() - started:.0f} s")
        yield deployment
    finally:
        try:
            run(["docker", "stack", "rm", deployment.stack], check=False)
            # Docker 20.10 leaves a removed job's containers behind ('make deploy' removes the
            # previous one's): the last migration job's go here, first.
            leftovers = run(["docker", "ps", "--all", "--quiet", "--filter",
                             f"label=com.docker.swarm.service.name={deployment.stack}_migrate"]
                            ).stdout.split()
            if leftovers:
                run(["docker", "rm", "--force", *leftovers])
            label = f"label=com.docker.stack.namespace={deployment.stack}"

            def gone() -> bool:
                return not any(run(["docker", kind, "ls", "--quiet", "--filter", label]
                                   ).stdout.split() for kind in ("network", "secret", "config")
                               ) and not run(["docker", "ps", "--all", "--quiet", "--filter",
                                              label]).stdout.split()
            wait_for(gone, timeout=120, interval=1, what=f"stack {deployment.stack} removed")
            # A volume goes once the engine has removed the last container that used it.
            wait_for(lambda: not [v for v in run(["docker", "volume", "ls", "--quiet", "--filter",
                                                   label]).stdout.split()
                                  if run(["docker", "volume", "rm", v], check=False).returncode],
                     timeout=60, interval=1, what=f"the volumes of {deployment.stack} removed")
            # (The engine may still be removing the last stopped task containers that use them.)
            wait_for(lambda: not [ref for ref in [*(f"{repository}:{r}" for r in ("broken", "v2",
                                                                                   "v1")), haproxy]
                                  if run(["docker", "image", "inspect", ref], check=False
                                         ).returncode == 0
                                  and run(["docker", "rmi", ref], check=False).returncode],
                     timeout=60, interval=2, what="the module's images removed")
            _delete_tags(repository)
        finally:
            # The swarm and the registry go back as they were, whatever failed above.
            if started_registry:
                run([REGISTRY_SCRIPT, "stop"], check=False)
            if created_swarm:
                run(["docker", "swarm", "leave", "--force"])


def _delete_tags(repository: str) -> None:
    """The registry forgets the module's images (their manifests; its blobs are shared)."""
    name = repository.partition("/")[2]
    accept = {"Accept": "application/vnd.docker.distribution.manifest.v2+json"}
    for tag in ("v1", "v2", "broken"):
        try:
            head = requests.head(f"http://{REGISTRY}/v2/{name}/manifests/{tag}", headers=accept,
                                 timeout=10)
            digest = head.headers.get("Docker-Content-Digest")
            if digest:
                requests.delete(f"http://{REGISTRY}/v2/{name}/manifests/{digest}", timeout=10)
        except requests.ConnectionError:
            return


class Load:
    """Steady GETs on web's /healthz through the published port, from threads, at most
    ``rate`` a second, until stopped.

    /healthz, not /readyz: a request that fails is then one the update lost, never a slow
    database check on two busy cores (/readyz answers 503 after 2 s).
    """

    def __init__(self, port: int, threads: int = LOAD_THREADS, path: str = "/healthz",
                 rate: float = LOAD_RATE) -> None:
        self.port, self.path = port, path
        self.interval = threads / rate  # each thread's
        self.ok = 0
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        due = time.monotonic()
        while not self.stopping.wait(max(0.0, due - time.monotonic())):
            due += self.interval
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                connection.request("GET", self.path)
                response = connection.getresponse()
                body = response.read()
                failure = None if response.status == 200 else (
                    f"{time.monotonic() - self.started:.1f} s: HTTP {response.status}: "
                    f"{body[:120]!r}")
            except (OSError, http.client.HTTPException) as e:
                failure = f"{time.monotonic() - self.started:.1f} s: {e!r}"
            finally:
                connection.close()
            with self.lock:
                if failure is None:
                    self.ok += 1
                else:
                    self.failures.append(failure)

    def __enter__(self) -> Load:
        self.started = time.monotonic()
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=30)
        self.duration = time.monotonic() - self.started


def test_make_deploy_runs_every_service_from_the_registry_with_docker_secrets(
        swarm: Deployment) -> None:
    # web, N=2, answers through the published port (the edge proxy).
    assert len(swarm.tasks("web")) == 2
    ready = requests.get(f"http://127.0.0.1:{swarm.web_port}/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "broker": "ok"}
    assert swarm.web_image().startswith(f"{swarm.image}:v1@sha256:")  # pinned by digest
    # Exactly one beat; flower answers, behind its password only.
    assert len(swarm.tasks("beat")) == 1
    flower = f"http://127.0.0.1:{swarm.flower_port}"
    assert requests.get(f"{flower}/healthcheck", timeout=10).status_code == 200
    assert requests.get(f"{flower}/workers", timeout=10).status_code == 401
    auth = (swarm.values["FLOWER_USER"], swarm.values["FLOWER_PASSWORD"])
    assert requests.get(f"{flower}/workers", auth=auth, timeout=10).status_code == 200

    # No secret in any service's definition; each app service reads Docker secrets.
    secrets = [swarm.values[k] for k in ("POSTGRES_PASSWORD", "REDIS_PASSWORD",
                                         "FLOWER_PASSWORD", "FLASKER__APP__SECRET_KEY")]
    for name in ("web", "worker", "beat", "flower", "postgres", "redis", "migrate"):
        spec = json.dumps(swarm.service(name)["Spec"])
        assert not [s for s in secrets if s in spec], f"a secret in {name}'s definition"
    web_spec = swarm.service("web")["Spec"]["TaskTemplate"]["ContainerSpec"]
    assert {s["SecretName"] for s in web_spec["Secrets"]} == {
        f"{swarm.stack}_{n}" for n in ("secret_key", "db_url", "broker_url", "result_backend")}
    assert "FLASKER__PROJECT__DB_URL_FILE=/run/secrets/db_url" in web_spec["Env"]

    # The migration job ran to its end before the first task of web was created.
    # (Attempts made while PostgreSQL was starting failed, and the job tried again.)
    job = swarm.tasks("migrate", state=None)
    done = [j for j in job if j["Status"]["State"] == "complete"]
    assert len(done) == 1 and {j["Status"]["State"] for j in job} <= {"complete", "failed"}
    web_created = min(instant(task["CreatedAt"]) for task in swarm.tasks("web"))
    assert instant(done[0]["Status"]["Timestamp"]) < web_created
    assert swarm.sql("SELECT count(*) FROM alembic_version") == "1"


def test_update_to_v2_under_load_fails_no_request_and_loses_no_task(swarm: Deployment) -> None:
    before = swarm.receipts()
    # Tasks running while the workers are replaced (stop-first, one at a time): 2 workers
    # of 2 processes run 4 at once, 1 s each, for about 40 s.
    sent = swarm.send(160, delay=1.0)
    with Load(swarm.web_port) as load:
        started = time.monotonic()
        out = swarm.deploy("v2").stdout
        update = time.monotonic() - started
    print(f"update to v2: {update:.0f} s; under load for {load.duration:.0f} s, "
          f"{LOAD_THREADS} threads, at most {LOAD_RATE}/s: {load.ok} requests answered 200, "
          f"{len(load.failures)} failed {load.failures[:5]}")
    assert "Deployed" in out
    # The edge proxy is not part of the update: its one task ran throughout.
    assert len(swarm.tasks("edge", state=None)) == 1
    assert load.ok > 100 and load.failures == [], (
        f"{len(load.failures)} failed, from {load.failures[0]} to {load.failures[-1]}; "
        f"the update took {update:.0f} s")
    assert swarm.web_image().startswith(f"{swarm.image}:v2@")
    assert swarm.service("worker")["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"
                                                                            ].startswith(
        f"{swarm.image}:v2@")
    assert swarm.update_state("web") == "completed"

    wait_for(lambda: swarm.receipts() - before == len(sent), timeout=180, interval=2,
             what=f"{len(sent)} receipts")
    runs = swarm.executions(sent)
    print(f"worker update: {len(sent)} tasks sent, {len(runs)} ran, "
          f"{sum(runs.values())} executions")
    assert set(runs) == set(sent)  # none lost
    # A task cancelled by a stopping worker is handed back and runs again elsewhere: its
    # first run never ended, so it is counted once.
    assert [i for i, n in runs.items() if n > 1] == []


def test_a_release_that_is_never_healthy_is_rolled_back_by_swarm(swarm: Deployment) -> None:
    previous = swarm.web_image()
    started = time.monotonic()
    result = swarm.deploy("broken", check=False)
    print(f"deploy of :broken ended after {time.monotonic() - started:.0f} s,"
          f" exit {result.returncode}")
    assert result.returncode != 0
    assert "Swarm rolled back" in result.stderr and "web" in result.stderr
    assert swarm.update_state("web") == "rollback_completed"
    assert swarm.web_image() == previous
    assert len(swarm.tasks("web")) == 2
    ready = requests.get(f"http://127.0.0.1:{swarm.web_port}/readyz", timeout=10)
    assert ready.status_code == 200


def reached(swarm: Deployment, count: int) -> bool:
    return swarm.receipts() >= count


def test_scaling_workers_runs_every_queued_task_once(swarm: Deployment) -> None:
    service = f"{swarm.stack}_worker"
    figures = {}
    for workers in (1, 2, 4):
        run(["docker", "service", "scale", "--detach", f"{service}=0"])
        wait_for(lambda: not swarm.tasks("worker"), timeout=120, interval=1,
                 what="no worker running")
        wait_for(lambda: not run(["docker", "ps", "--quiet", "--filter",
                                  f"label=com.docker.swarm.service.name={service}"]
                                 ).stdout.split(), timeout=120, interval=1,
                 what="every worker container stopped")
        before = swarm.receipts()
        sent = swarm.send(2000)
        run(["docker", "service", "scale", "--detach", f"{service}={workers}"])
        wait_for(functools.partial(reached, swarm, before + 1), timeout=120, interval=0.2,
                 what="the first receipt")
        first = time.monotonic()
        wait_for(functools.partial(reached, swarm, before + len(sent)), timeout=300,
                 interval=0.5, what="2000 receipts")
        elapsed = time.monotonic() - first
        runs = swarm.executions(sent)
        assert swarm.receipts() - before == len(sent)
        assert set(runs) == set(sent), f"{len(set(sent) - set(runs))} tasks not run"
        assert [i for i, n in runs.items() if n > 1] == []
        figures[workers] = len(sent) / elapsed
        print(f"{workers} worker(s): 2000 tasks in {elapsed:.1f} s,"
              f" {figures[workers]:.0f} tasks/s")
    run(["docker", "service", "scale", "--detach=false", f"{service}=2"], timeout=180)
    assert figures[4] > 0
