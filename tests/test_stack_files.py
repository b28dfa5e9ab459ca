"""One source of truth: the repository's stack is flasker's templates, rendered for its app.

``flasker new`` renders the same templates (``flasker/scaffold/stack/``) for a new project,
so the stack a project gets and the stack these tests run cannot drift apart: a change goes
into the templates, and ``make stack`` writes the repository's files from them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import typing as t
from pathlib import Path

import pytest

from flasker.scaffold import REFERENCE, STACK, Layout, stack_files

from .conftest import ROOT, unavailable
from .conftest_stack import stack_environ

REFERENCE_FILES = sorted(stack_files(REFERENCE))


@pytest.mark.parametrize("relative", REFERENCE_FILES, ids=str)
def test_the_repositorys_file_is_the_rendered_template(relative: Path) -> None:
    expected = stack_files(REFERENCE)[relative]
    actual = (ROOT / relative).read_bytes()
    assert actual == expected, (
        f"'{relative}' differs from flasker's stack template rendered for the reference app:"
        f" edit shared/flasker/src/flasker/scaffold/stack/ instead, then run 'make stack'."
    )


def test_every_stack_file_of_the_repository_comes_from_a_template() -> None:
    written = {p.as_posix() for p in REFERENCE_FILES}
    services = {p.relative_to(ROOT).as_posix() for p in (ROOT / "services").rglob("*")
                if p.is_file() and "__pycache__" not in p.parts}
    assert services <= written
    assert {"Dockerfile", "compose.yaml", "Makefile", ".env.example", ".dockerignore",
            "requirements.lock"} <= written


def test_make_stack_writes_the_files_the_repository_holds(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "flasker.scaffold", str(tmp_path)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    for relative in REFERENCE_FILES:
        assert (tmp_path / relative).read_bytes() == (ROOT / relative).read_bytes(), relative
    # A second run has nothing to write.
    again = subprocess.run([sys.executable, "-m", "flasker.scaffold", str(tmp_path)],
                           capture_output=True, text=True, check=True)
    assert again.stdout == ""


def test_a_new_projects_stack_has_no_template_syntax_left() -> None:
    files = stack_files(Layout(name="acme", title="Acme", wheel="flasker-1.0-py3-none-any.whl"))
    assert set(files) == set(REFERENCE_FILES)
    for relative, content in files.items():
        text = content.decode("utf-8")
        assert "{=" not in text and "=}" not in text, relative
        assert not [line for line in text.splitlines() if line.lstrip().startswith("#%")]
    assert b"vendor/flasker-1.0-py3-none-any.whl" in files[Path("Makefile")]


def test_templates_are_stored_without_a_leading_dot() -> None:
    # setuptools' package-data globs skip hidden files: a '.env.example' would be missing
    # from flasker's wheel, and from every project written by an installed flasker.
    assert not [p for p in STACK.rglob(".*")]


# -- a new project's stack, without building it ------------------------------------------------


@pytest.fixture
def acme(tmp_path: Path, runner: t.Any) -> Path:
    """A project written by 'flasker new celery acme', with its stack."""
    result = runner.invoke(["new", "celery", str(tmp_path / "acme")])
    assert result.exit_code == 0, result.output
    return tmp_path / "acme"


def test_a_new_projects_dockerfile_passes_hadolint(acme: Path) -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        unavailable("hadolint is not installed (pip install 'flasker[test]' brings it)")
    result = subprocess.run([hadolint, "Dockerfile"], cwd=acme, capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.docker
def test_a_new_projects_compose_file_is_valid(acme: Path) -> None:
    if shutil.which("docker") is None:
        unavailable("the docker CLI is not installed")
    env = stack_environ()
    result = subprocess.run(["docker", "compose", "--env-file", ".env.example", "config",
                             "--format", "json"], cwd=acme, env=env, capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    assert config["name"] == "acme"
    assert config["services"]["web"]["image"] == "acme:dev"
    assert config["services"]["web"]["build"]["context"] == str(acme)
    assert {"web", "worker", "beat", "flower", "migrate", "postgres", "redis"} <= set(
        config["services"])
    # Development mode: the app folder mounted read-only, Flask's server on 127.0.0.1.
    result = subprocess.run(["docker", "compose", "--env-file", ".env.example", "--file",
                             "compose.yaml", "--file", "compose.dev.yaml", "config", "--format",
                             "json"], cwd=acme, env=env, capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr
    web = json.loads(result.stdout)["services"]["web"]
    assert web["command"][:2] == ["server", "--host"]
    assert [(v["source"], v["target"], v.get("read_only")) for v in web["volumes"]] == [
        (str(acme / "app"), "/app/app", True)]
    assert [p["host_ip"] for p in web["ports"]] == ["127.0.0.1"]


def test_a_new_projects_make_help_lists_the_stack_targets(acme: Path) -> None:
    result = subprocess.run(["make", "help"], cwd=acme, capture_output=True, text=True,
                            check=True)
    targets = {line.split()[1] for line in result.stdout.splitlines() if line.strip()}
    assert {"test", "up", "down", "logs", "ps", "shell", "migrate", "backup", "restore",
            "build", "push", "lock"} <= targets
    assert not {"bench", "lint", "stack"} & targets  # the repository's own
