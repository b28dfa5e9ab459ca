"""The stack tests' shared parts: the image built once per session, 'docker compose' runs.

Registered for every test by ``pytest_plugins`` in ``conftest.py``; ``test_stack.py``,
``test_stack_browser.py`` and ``test_registry.py`` ask for the ``stack`` fixture by name
and import the helpers (``run``, ``stack_environ``, ``build_image``, ``Stack``, ...).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import typing as t
import uuid
from pathlib import Path

import pytest

from .conftest import ROOT, unavailable

TEST_IMAGE = "flasker-test"
TEST_TAG = "dev"
UP_TIMEOUT = 300
# Long enough for a cold build of the image and a stack's start on CI's two cores.
stack_test = pytest.mark.timeout(1800)


# -- running things ----------------------------------------------------------------------------


def run(args: t.Sequence[str | os.PathLike[str]], *, env: t.Mapping[str, str] | None = None,
        timeout: float = 120, input: str | None = None, check: bool = True,
        cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure, an assertion that shows its output."""
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=env, input=input, text=True,
                            capture_output=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, args))} exited {result.returncode}\n"
            f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"
        )
    return result


def example_variables() -> dict[str, str]:
    """The variables .env.example sets (commented ones excluded)."""
    return parse_env((ROOT / ".env.example").read_text())


def parse_env(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value
    return values


def stack_environ(**extra: str) -> dict[str, str]:
    """The environment of docker and make: the developer's own stack settings left out.

    The shell wins over an env file in compose, so a FLASKER__* or WEB_PORT exported in
    the developer's shell would otherwise change the stack under test.
    """
    drop = set(example_variables()) | {"FLASKER_CONFIG"}
    env = {k: v for k, v in os.environ.items()
           if k not in drop and not k.startswith("FLASKER__")}
    env.update(extra)
    return env


def docker_ready() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return run(["docker", "info"], timeout=30, check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def require_docker() -> None:
    if not docker_ready():
        unavailable("no Docker engine answers 'docker info' (CI runs these tests with one)")


# The image build_image made in this session; test_registry.py clears it when it removes
# that image, so that the next stack test builds it again.
built_images: dict[str, str] = {}


def build_image() -> str:
    """Build the stack's image with 'make build', once per test session; return its name."""
    require_docker()
    if "image" not in built_images:
        run(["make", "-s", "build"], timeout=1500,
            env=stack_environ(FLASKER_IMAGE=TEST_IMAGE, FLASKER_TAG=TEST_TAG))
        built_images["image"] = f"{TEST_IMAGE}:{TEST_TAG}"
    return built_images["image"]


def make_env_file(path: Path) -> dict[str, str]:
    """Write an env file as 'make up' does (fresh secrets), and return its values."""
    run(["make", "-s", str(path), f"ENV_FILE={path}"], env=stack_environ())
    return parse_env(path.read_text())


class Stack:
    """One compose project of the stack, under its own name, with its own env file."""

    def __init__(self, folder: Path) -> None:
        self.name = f"flasker-test-{uuid.uuid4().hex[:8]}"
        self.env_file = folder / "stack.env"
        values = make_env_file(self.env_file)
        # Ports chosen by Docker, so that the test never collides with a running stack.
        values.update(FLASKER_IMAGE=TEST_IMAGE, FLASKER_TAG=TEST_TAG, BIND_ADDRESS="127.0.0.1",
                      WEB_PORT="0", FLOWER_PORT="0", RESTART_POLICY="no")
        # The tests' HTTP client (requests), unlike a browser, keeps no Secure cookie of
        # http://127.0.0.1: without the session cookie no form would pass its CSRF check.
        # test_faults_lockdown.py puts the default back and checks the cookie's flags.
        values["FLASKER__APP__SESSION_COOKIE_SECURE"] = "false"
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
        self.values = values

    def compose(self, *args: str, timeout: float = 120, input: str | None = None,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(["docker", "compose", "--project-name", self.name, "--project-directory",
                    ROOT, "--file", ROOT / "compose.yaml", "--env-file", self.env_file, *args],
                   env=stack_environ(), timeout=timeout, input=input, check=check)

    def up(self) -> None:
        result = self.compose("up", "--detach", "--no-build", "--wait", "--wait-timeout",
                              str(UP_TIMEOUT), timeout=UP_TIMEOUT + 120, check=False)
        if result.returncode != 0:
            report = self.report()
            self.down()
            raise AssertionError(f"'docker compose up --wait' failed:\n{result.stderr[-3000:]}"
                                 f"\n{report}")

    def report(self) -> str:
        """The state and recent logs of every container, for a failure message."""
        ps = self.compose("ps", "--all", check=False).stdout
        logs = self.compose("logs", "--no-color", "--tail", "40", check=False).stdout
        return f"--- ps\n{ps}\n--- logs\n{logs[-8000:]}"

    def down(self) -> None:
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "40", timeout=180,
                     check=False)

    def url(self, service: str, port: int) -> str:
        address = self.compose("port", service, str(port)).stdout.strip()
        return f"http://{address}"

    def containers(self) -> list[dict[str, t.Any]]:
        out = self.compose("ps", "--all", "--format", "json").stdout
        # One JSON object per line (compose 2.21+), or one array (older releases).
        text = out.strip()
        if text.startswith("["):
            return t.cast(list[dict[str, t.Any]], json.loads(text))
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def shell(self, script: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``script`` with 'flasker shell' in the web container, from standard input."""
        return self.compose("exec", "-T", "web", "flasker", "shell", input=script, timeout=90,
                            check=check)

    def leftovers(self) -> dict[str, list[str]]:
        """Containers, networks and volumes Docker still holds for this project."""
        label = f"label=com.docker.compose.project={self.name}"
        found = {}
        for kind, cmd in (("containers", ["docker", "ps", "--all", "--quiet"]),
                          ("networks", ["docker", "network", "ls", "--quiet"]),
                          ("volumes", ["docker", "volume", "ls", "--quiet"])):
            found[kind] = run([*cmd, "--filter", label]).stdout.split()
        return found


def start_stack(folder: Path) -> Stack:
    build_image()
    stack = Stack(folder)
    stack.up()
    return stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> t.Iterator[Stack]:
    """A stack of its own for each test module, taken down with its volumes at the end."""
    running = start_stack(tmp_path_factory.mktemp("stack"))
    yield running
    running.down()
