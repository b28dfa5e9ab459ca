"""End to end: a project written by ``flasker new`` tests itself and runs as its own stack.

In a temporary folder: ``flasker new celery acme``, then, there, ``make test`` (the
project's own tests, on the flasker wheel it vendored) and ``make up`` (its image built
from that wheel, under a unique compose project name, on ports Docker chooses): the page
answers, the worker runs a task, beat ticks; ``make down``. The stack is always taken down
with its volumes, and its image removed.
"""

from __future__ import annotations

import time
import typing as t
import uuid
from pathlib import Path

import pytest
import requests

from .conftest import FLASKER, wait_for
from .conftest_stack import UP_TIMEOUT, require_docker, run, stack_environ, stack_test

pytestmark = [pytest.mark.docker, stack_test]


class Project:
    """The new project's folder, its compose project name and its environment."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        suffix = uuid.uuid4().hex[:8]
        self.name = f"flasker-test-new-{suffix}"
        self.image = f"flasker-test-new-{suffix}"
        # The shell wins over .env in compose: ports chosen by Docker, no restarts, and
        # session cookies over plain HTTP (the test's client keeps no Secure cookie).
        self.env = stack_environ(
            COMPOSE_PROJECT_NAME=self.name, FLASKER_IMAGE=self.image, FLASKER_TAG="dev",
            BIND_ADDRESS="127.0.0.1", WEB_PORT="0", FLOWER_PORT="0", RESTART_POLICY="no",
            FLASKER__APP__SESSION_COOKIE_SECURE="false",
        )

    def make(self, target: str, timeout: float) -> str:
        return run(["make", target], cwd=self.folder, env=self.env, timeout=timeout).stdout

    def compose(self, *args: str, input: str | None = None, timeout: float = 120,
                check: bool = True) -> t.Any:
        return run(["docker", "compose", "--env-file", ".env", *args], cwd=self.folder,
                   env=self.env, input=input, timeout=timeout, check=check)

    def shell(self, script: str) -> str:
        return t.cast(str, self.compose("exec", "-T", "web", "flasker", "shell",
                                        input=script, timeout=120).stdout)

    def value(self, script: str, key: str) -> str:
        out = self.shell(script)
        line = next((x for x in out.splitlines() if x.startswith(key)), None)
        assert line is not None, f"no {key} line in the shell's output:\n{out}"
        return line.split(maxsplit=1)[1]

    def report(self) -> str:
        ps = self.compose("ps", "--all", check=False).stdout
        logs = self.compose("logs", "--no-color", "--tail", "60", check=False).stdout
        return f"--- ps\n{ps}\n--- logs\n{logs[-8000:]}"

    def remove(self) -> None:
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "30",
                     timeout=180, check=False)
        run(["docker", "image", "rm", "--force", f"{self.image}:dev"], check=False)


TICKS = """
import sqlalchemy as sa
from flasker import current_project
from app.models import Note
print("TICKS", current_project.db.scalar(
    sa.select(sa.func.count()).select_from(Note).where(Note.text == "beat tick")))
"""


def test_a_new_project_tests_itself_and_runs_as_its_own_stack(tmp_path: Path) -> None:
    require_docker()
    durations: dict[str, float] = {}
    started = time.monotonic()
    run([FLASKER, "new", "celery", "acme"], cwd=tmp_path)
    project = Project(tmp_path / "acme")
    assert (project.folder / "compose.yaml").is_file()

    mark = time.monotonic()
    out = project.make("test", timeout=900)
    durations["make test"] = time.monotonic() - mark
    assert " passed" in out and " failed" not in out, out[-3000:]
    # The flasker that 'make test' installed from the wheel (not editable) packs itself into
    # the very same bytes: a project written by a project's flasker gets the same wheel.
    run([project.folder / ".venv" / "bin" / "flasker", "new", "celery", "again"], cwd=tmp_path)
    wheel = next((project.folder / "vendor").glob("flasker-*.whl"))
    assert (tmp_path / "again" / "vendor" / wheel.name).read_bytes() == wheel.read_bytes()

    try:
        mark = time.monotonic()
        try:
            out = project.make("up", timeout=UP_TIMEOUT + 1200)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{project.report()}") from None
        durations["make up"] = time.monotonic() - mark
        assert "The stack is up and healthy." in out
        assert {"web", "worker", "beat", "flower", "postgres", "redis"} <= set(
            project.compose("ps", "--services", "--status", "running").stdout.split())

        # The page answers, served by this project's app from its image.
        address = project.compose("port", "web", "8000").stdout.strip()
        page = requests.get(f"http://{address}/", timeout=10)
        assert page.status_code == 200
        assert "Acme" in page.text
        # The migrate service made the tables.
        assert project.value(TICKS, "TICKS").isdigit()

        # The worker runs a task sent through Redis.
        result = project.value("from app.tasks import add\n"
                               "print('RESULT', add.delay(2, 3).get(timeout=60))\n", "RESULT")
        assert result == "5"

        # Beat is alive and its schedule (a tick every 30 s) reaches the worker.
        project.compose("exec", "-T", "beat", "flasker", "ping", "beat")
        wait_for(lambda: int(project.value(TICKS, "TICKS")) >= 1, timeout=120, interval=5,
                 what="the first 'beat tick' note")

        mark = time.monotonic()
        project.make("down", timeout=180)
        durations["make down"] = time.monotonic() - mark
        assert project.compose("ps", "--all", "--quiet").stdout.strip() == ""
    finally:
        project.remove()
    durations["total"] = time.monotonic() - started
    print("durations:", ", ".join(f"{k} {v:.0f} s" for k, v in durations.items()))
