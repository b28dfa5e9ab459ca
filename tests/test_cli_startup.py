"""``flasker --help`` stays light: outside a project it imports neither SQLAlchemy nor Celery.

The speed itself is measured in ``benchmarks/bench_core.py`` (start-up); these tests check the
cause, the modules a fresh ``flasker`` process imports (``python -X importtime``), so a top-level
import that drags the ORM into the command line fails here, not only in a benchmark.
"""

from __future__ import annotations

import os
import subprocess
import sys
import typing as t
from importlib.metadata import version
from pathlib import Path

import pytest

import flasker
import flasker.util

from .conftest import FLASKER, SECRET, write_project

#: What the project machinery imports and the command list does not need. Flask is in the list
#: too: 'flasker --help' answers before Flask is imported, as the benchmark's figure says.
HEAVY = ("sqlalchemy", "sqlalchemy.orm", "celery", "kombu", "alembic", "flask", "werkzeug",
         "flasker.project", "flasker.models", "flasker.db", "flasker.tasks", "flasker.util.cache",
         "flasker.util.csv", "flasker.util.csvload")


def run_flasker(*args: str, cwd: Path) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run the ``flasker`` script as a user does; return the result and the modules it imported."""
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    env.pop("FLASKER_CONFIG", None)
    result = subprocess.run([FLASKER, *args], cwd=cwd, capture_output=True, text=True,
                            timeout=60, env=env)
    imported = {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:") and "|" in line}
    assert "flasker.cli" in imported, result.stderr[-2000:]  # the profile was read
    return result, imported


@pytest.mark.parametrize("args", [["--help"], ["-h"], []], ids=["--help", "-h", "no-command"])
def test_help_outside_a_project_imports_nothing_heavy(tmp_path: Path, args: list[str]) -> None:
    result, imported = run_flasker(*args, cwd=tmp_path)
    # Without a command, click shows the same help on stderr and exits with 2.
    assert result.returncode == (0 if args else 2), result.stderr[-2000:]
    shown = result.stdout if args else result.stderr
    assert "Usage: flasker [OPTIONS] COMMAND [ARGS]..." in shown
    assert "  worker  Run a Celery worker." in shown
    assert "Commands of the project" not in shown
    assert sorted(imported.intersection(HEAVY)) == []


def test_help_inside_a_project_still_lists_its_commands(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        f"[PROJECT]\nNAME = Startup Test\nMODULES = startup_views\n[APP]\nSECRET_KEY = {SECRET}\n",
        {"startup_views.py": """
            from flasker import current_project

            @current_project.app.cli.command("hello")
            def hello():
                '''Say hello from the project.'''
                print("hello from app.cli")
         """},
    )
    result, imported = run_flasker("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Commands of the project (its app and extensions):" in result.stdout
    assert "  hello" in result.stdout and "Say hello from the project." in result.stdout
    assert "flasker.project" in imported  # a project found is a project loaded

    said = subprocess.run([FLASKER, "hello"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, env={k: v for k, v in os.environ.items()
                                           if k != "FLASKER_CONFIG"})
    assert said.returncode == 0, said.stderr[-2000:]
    assert said.stdout == "hello from app.cli\n"


def test_public_names_import_on_first_use() -> None:
    code = (
        "import sys, flasker, flasker.util\n"
        "assert 'sqlalchemy' not in sys.modules, 'import flasker loaded SQLAlchemy'\n"
        "from flasker import *\n"
        "from flasker.util import *\n"
        "from flasker import Model, Project, current_project\n"
        "assert 'sqlalchemy.orm' in sys.modules\n"
        "print(Project.__module__, Model.__module__, SmartDictReader.__module__)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["flasker.project", "flasker.models", "flasker.util.csv"]


@pytest.mark.parametrize("package", [flasker, flasker.util], ids=["flasker", "flasker.util"])
def test_every_exported_name_is_there(package: t.Any) -> None:
    assert package.__all__ == sorted(package.__all__)
    for name in package.__all__:
        assert getattr(package, name) is not None
        assert name in dir(package)
    unknown = f"module '{package.__name__}' has no attribute 'Nope'"
    with pytest.raises(AttributeError, match=unknown):
        package.Nope  # noqa: B018


def test_version_is_the_installed_distributions() -> None:
    assert flasker.__version__ == version("flasker")
