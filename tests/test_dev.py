"""Development mode ('make dev'): compose.dev.yaml on top of compose.yaml.

The stack test runs 'make dev' in a copy of the build context (the repository's own files
are never edited), edits a view and a task there and sees both over HTTP and through the
worker, changes the Dockerfile and sees the services recreated from the rebuilt image (the
dependencies' files rebuild it too), stops it as Ctrl+C does, then serves the same image with
compose.yaml alone and finds no debugger in its error page.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import time
import typing as t
import uuid
from pathlib import Path

import pytest
import requests

from .conftest import ROOT, unavailable, wait_for
from .conftest_stack import make_env_file, require_docker, run, stack_environ, stack_test

# What the image's build and the stack's files need (see .dockerignore and the Makefile).
CONTEXT = ("Dockerfile", "compose.yaml", "compose.dev.yaml", "Makefile", ".env.example",
           ".dockerignore", "services", "reference", "shared/flasker/pyproject.toml",
           "shared/flasker/README.md", "shared/flasker/src", "requirements.lock",
           "requirements.in")
DEV_FILES = ("compose.yaml", "compose.dev.yaml")
# The Werkzeug debugger's page: its title, and the URL of its resources and console.
DEBUGGER_MARKS = ("Werkzeug Debugger", "__debugger__")
EDITED_VIEW = '''

@app.get("/dev-probe")
def dev_probe() -> str:
    return "probe {marker}"


@app.get("/dev-boom")
def dev_boom() -> str:
    raise RuntimeError("dev boom {marker}")
'''
EDITED_TASK = '''

@celery.task
def dev_probe() -> str:
    return "task {marker}"
'''
SEND_PROBE = """\
from app.tasks import dev_probe
try:
    print("RESULT", dev_probe.apply_async(expires=10).get(timeout=10))
except Exception as e:  # an old worker knows no such task, or is restarting
    print("RESULT", type(e).__name__)
"""
# Bounds of the waits: a first build from a warm cache and the stack's start; an edit seen.
START_TIMEOUT = 420
EDIT_TIMEOUT = 30
TASK_TIMEOUT = 90
REBUILD_TIMEOUT = 300


def copy_context(folder: Path) -> Path:
    """Copy what the stack is built from into ``folder``, so that the test edits only that."""
    ignore = shutil.ignore_patterns("__pycache__", "*.py[cod]", "*.egg-info", ".flasker",
                                    "*.sqlite")
    for name in CONTEXT:
        source, target = ROOT / name, folder / name
        if source.is_dir():
            shutil.copytree(source, target, ignore=ignore)
        elif source.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return folder


def compose_config(folder: Path, env_file: Path, *files: str) -> dict[str, t.Any]:
    out = run(["docker", "compose", "--project-directory", folder,
               *[a for f in files for a in ("--file", folder / f)], "--env-file", env_file,
               "config", "--format", "json"], env=stack_environ(), cwd=folder).stdout
    return t.cast(dict[str, t.Any], json.loads(out))


def host_ips(service: dict[str, t.Any]) -> set[str]:
    return {p.get("host_ip", "0.0.0.0") for p in service.get("ports", [])}


def watch_rules(service: dict[str, t.Any], folder: Path) -> set[tuple[str, str]]:
    """(path relative to the project, action) of each of the service's Compose Watch rules."""
    rules = service.get("develop", {}).get("watch", [])
    return {(str(Path(r["path"]).relative_to(folder)), r["action"]) for r in rules}


@pytest.mark.docker
def test_dev_config_is_the_stack_with_a_debugger_on_loopback(tmp_path: Path) -> None:
    if shutil.which("docker") is None:
        unavailable("the docker CLI is not installed")
    env_file = tmp_path / "stack.env"
    values = make_env_file(env_file)
    # Open to the network on purpose: the dev mode must still publish on loopback only.
    env_file.write_text("".join(f"{k}={v}\n" for k, v in
                                {**values, "BIND_ADDRESS": "0.0.0.0"}.items()))
    normal = compose_config(ROOT, env_file, "compose.yaml")["services"]
    dev = compose_config(ROOT, env_file, *DEV_FILES)["services"]

    # compose.yaml alone: gunicorn, no debug flag anywhere, ports on BIND_ADDRESS.
    assert normal["web"]["command"] == ["web"]
    for name in ("web", "worker", "beat", "flower", "migrate"):
        environment = normal[name].get("environment", {})
        assert not {"FLASK_DEBUG", "FLASKER__APP__DEBUG"} & set(environment), name
        assert "develop" not in normal[name], name
    assert host_ips(normal["web"]) == {"0.0.0.0"}

    # The dev mode: Flask's server with its debugger, published on 127.0.0.1 only.
    assert dev["web"]["command"][0] == "server" and "--debug" in dev["web"]["command"]
    assert host_ips(dev["web"]) == host_ips(dev["flower"]) == {"127.0.0.1"}
    for name in ("web", "worker", "beat"):
        service = dev[name]
        assert service["read_only"] is True, f"{name} keeps its read-only root filesystem"
        assert service["cap_drop"] == ["ALL"]
        mounts = {(v["target"], v.get("read_only", False)) for v in service["volumes"]
                  if v["type"] == "bind"}
        assert mounts == {("/app/reference", True)}, name
    assert {"/var/lib/flasker"} <= {v["target"] for v in dev["beat"]["volumes"]}
    for name in ("worker", "beat"):
        assert watch_rules(dev[name], ROOT) == {("reference", "restart")}
    assert watch_rules(dev["web"], ROOT) == {
        ("shared/flasker/pyproject.toml", "rebuild"), ("requirements.lock", "rebuild"),
        ("shared/flasker/src", "rebuild"), ("Dockerfile", "rebuild")}


class DevStack:
    """'docker compose up --build --watch' of a copied project, under a name of its own."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.name = f"flasker-test-dev-{uuid.uuid4().hex[:8]}"
        self.image = f"flasker-test-{self.name[-8:]}"
        self.env_file = folder / "stack.env"
        values = make_env_file(self.env_file)
        values.update(FLASKER_IMAGE=self.image, FLASKER_TAG="dev", BIND_ADDRESS="0.0.0.0",
                      WEB_PORT="0", FLOWER_PORT="0", RESTART_POLICY="no",
                      FLASKER__APP__SESSION_COOKIE_SECURE="false")
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
        self.log = folder / "watch.log"
        self.watch: subprocess.Popen[bytes] | None = None
        self.images: set[str] = set()

    def args(self, *files: str) -> list[str]:
        return ["docker", "compose", "--project-name", self.name, "--project-directory",
                str(self.folder), *[a for f in files for a in ("--file", str(self.folder / f))],
                "--env-file", str(self.env_file)]

    def compose(self, *args: str, files: t.Sequence[str] = DEV_FILES, timeout: float = 120,
                input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run([*self.args(*files), *args], env=stack_environ(), timeout=timeout,
                   input=input, check=check, cwd=self.folder)

    def start_watch(self) -> None:
        """'make dev', as a developer runs it, in a session of its own (see stop_watch)."""
        compose = f"docker compose --project-name {self.name}"
        with self.log.open("wb") as log:
            self.watch = subprocess.Popen(
                ["make", "-s", "dev", f"ENV_FILE={self.env_file}", f"COMPOSE={compose}"],
                cwd=self.folder, env=stack_environ(), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)

    def stop_watch(self) -> None:
        """Ctrl+C: SIGINT to make and compose, then wait until every process of theirs ended."""
        if self.watch is None:
            return
        watch, self.watch = self.watch, None
        deadline = time.monotonic() + 90
        sent: int = signal.SIGINT
        while True:
            watch.poll()  # reaped, or make would stay in the group as a zombie
            try:
                os.killpg(watch.pid, sent)
            except ProcessLookupError:
                return  # compose has stopped the containers and exited
            sent = signal.SIGKILL if time.monotonic() > deadline else 0
            time.sleep(1)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def builds(self) -> int:
        """How many times Compose Watch has rebuilt the image so far."""
        return self.output().count("successfully built")

    def container(self, service: str, files: t.Sequence[str] = DEV_FILES) -> str:
        container = self.compose("ps", "--all", "--quiet", service, files=files).stdout.strip()
        assert container, f"no {service} container"
        return container

    def image_of(self, container: str) -> tuple[str, str]:
        """The container's image id and that image's test label; the id is removed at the end."""
        image, label = run(["docker", "inspect", "--format",
                            '{{.Image}} {{index .Config.Labels "org.flasker.dev-test"}}',
                            container]).stdout.split(" ", 1)
        self.images.add(image)
        return image, label.strip()

    def web_url(self, files: t.Sequence[str] = DEV_FILES) -> str:
        return f"http://{self.compose('port', 'web', '8000', files=files).stdout.strip()}"

    def shell(self, script: str) -> str:
        return self.compose("exec", "-T", "web", "flasker", "shell", input=script,
                            timeout=90).stdout

    def down(self) -> None:
        self.stop_watch()
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "20", timeout=180,
                     check=False)
        # The images this test built (the first one is untagged by the rebuild).
        for image in (f"{self.image}:dev", *self.images):
            run(["docker", "image", "rm", image], check=False)


def get(url: str) -> requests.Response:
    return requests.get(url, timeout=10)


def answers(url: str, text: str) -> bool:
    try:
        return get(url).text == text
    except requests.RequestException:
        return False


def built_since(stack: DevStack, builds: int) -> bool:
    return stack.builds() > builds


def wait_healthy(stack: DevStack, files: t.Sequence[str] = DEV_FILES) -> str:
    """Wait until web answers its readiness check; its URL."""
    def ready() -> str | None:
        if stack.watch is not None and stack.watch.poll() is not None:
            raise AssertionError(f"'make dev' exited {stack.watch.returncode}:\n"
                                 f"{stack.output()[-6000:]}")
        url = stack.web_url(files)
        return url if get(f"{url}/readyz").status_code == 200 else None
    return t.cast(str, wait_for(ready, timeout=START_TIMEOUT, interval=2,
                                what="web to answer /readyz"))


@pytest.mark.docker
@stack_test
def test_dev_mode_serves_edits_and_rebuilds(tmp_path: Path) -> None:
    require_docker()
    stack = DevStack(copy_context(tmp_path / "project"))
    marker = uuid.uuid4().hex[:8]
    started = time.monotonic()
    try:
        stack.start_watch()
        url = wait_healthy(stack)
        # Published on loopback only, though this stack's BIND_ADDRESS is 0.0.0.0.
        assert url.startswith("http://127.0.0.1:"), url
        first_image, _ = stack.image_of(stack.container("web"))
        assert stack.compose("exec", "-T", "web", "id", "-u").stdout.strip() == "10001"
        assert get(f"{url}/dev-probe").status_code == 404

        # A view and a task edited together (one restart of the worker, as on saving both).
        with (stack.folder / "reference/app/views.py").open("a") as views:
            views.write(EDITED_VIEW.format(marker=marker))
        with (stack.folder / "reference/app/tasks.py").open("a") as tasks:
            tasks.write(EDITED_TASK.format(marker=marker))
        edited = time.monotonic()
        # The view is served without a rebuild: the reloader of Flask's server.
        wait_for(lambda: answers(f"{url}/dev-probe", f"probe {marker}"), timeout=EDIT_TIMEOUT,
                 interval=0.5, what="the edited view to be served")
        view_seconds = time.monotonic() - edited
        # Its error page is the Werkzeug debugger, in this mode only.
        boom = get(f"{url}/dev-boom")
        assert boom.status_code == 500
        assert all(mark in boom.text for mark in DEBUGGER_MARKS), boom.text[:2000]
        assert f"dev boom {marker}" in boom.text
        # The task reaches the worker: Compose Watch restarts it on the change.
        wait_for(lambda: f"RESULT task {marker}" in stack.shell(SEND_PROBE),
                 timeout=TASK_TIMEOUT, interval=1, what="the worker to run the edited task")
        task_seconds = time.monotonic() - edited

        # A changed Dockerfile rebuilds the image, and the services are recreated from it.
        with (stack.folder / "Dockerfile").open("a") as dockerfile:
            dockerfile.write(f'\nLABEL org.flasker.dev-test="{marker}"\n')

        wait_for(lambda: stack.image_of(stack.container("web"))[1] == marker,
                 timeout=REBUILD_TIMEOUT, interval=2, what="web on the rebuilt image")
        assert "Rebuilding service(s)" in stack.output()
        url = wait_healthy(stack)
        assert get(f"{url}/dev-probe").text == f"probe {marker}"
        rebuilt_image, _ = stack.image_of(stack.container("web"))
        assert rebuilt_image != first_image
        # The dependencies' files rebuild too (unchanged, they leave the image as it is).
        for name in ("requirements.lock", "shared/flasker/pyproject.toml"):
            builds = stack.builds()
            os.utime(stack.folder / name)
            wait_for(functools.partial(built_since, stack, builds),
                     timeout=REBUILD_TIMEOUT, interval=1, what=f"a rebuild after {name}")
        for service in ("worker", "beat"):
            assert stack.image_of(stack.container(service)) == (rebuilt_image, marker), (
                f"{service} is recreated from the rebuilt image")

        # The same image under compose.yaml alone: gunicorn, and no debugger in its errors.
        stack.stop_watch()
        assert stack.compose("ps", "--quiet").stdout.strip() == "", "Ctrl+C stops the stack"
        stack.compose("up", "--detach", "--no-build", "--wait", "--wait-timeout", "180", "web",
                      files=("compose.yaml",), timeout=300)
        url = stack.web_url(("compose.yaml",))
        assert get(f"{url}/dev-probe").text == f"probe {marker}"
        boom = get(f"{url}/dev-boom")
        assert boom.status_code == 500
        assert not any(mark in boom.text for mark in DEBUGGER_MARKS), boom.text[:2000]
        assert f"dev boom {marker}" not in boom.text
        env = stack.compose("exec", "-T", "web", "printenv", files=("compose.yaml",)).stdout
        assert "FLASK_DEBUG=" not in env and "FLASKER__APP__DEBUG=" not in env
        print(f"view served {view_seconds:.1f} s after the edit, task run {task_seconds:.1f} s"
              f" after; test {time.monotonic() - started:.0f} s")
    except BaseException:
        print(stack.output()[-8000:])
        raise
    finally:
        stack.down()
