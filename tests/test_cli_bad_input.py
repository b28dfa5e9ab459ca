"""Wrong commands, options, files and values: a usage error (2) or an error (1), one sentence,
never a traceback; through click's runner and in a real ``flasker`` process."""

from __future__ import annotations

import os
import subprocess
import typing as t
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import FLASKER, SECRET, free_port, prepend_path, unique_package, write_project


@dataclass(frozen=True)
class Bad:
    """A command line, the exit status it must end with, and what its error says."""

    args: tuple[str, ...]
    status: int
    says: str

    def __str__(self) -> str:
        return " ".join(self.args) or "(nothing)"


# Run in an empty folder, or where the argument names a file of its own.
WITHOUT_PROJECT = [
    Bad(("serve",), 2, "No such command 'serve'. Did you mean 'server'?"),
    Bad(("confg",), 2, "No such command 'confg'. Did you mean 'config'?"),
    Bad(("xyzzy",), 2, "No such command 'xyzzy'."),
    Bad(("db", "creat"), 2, "No such command 'creat'. (Did you mean one of: 'create'"),
    Bad(("ping", "urll"), 2, "Did you mean 'url'?"),
    Bad(("--bogus",), 2, "No such option '--bogus'."),
    Bad(("server", "--prot", "1"), 2, "No such option '--prot'. (Did you mean one of:"),
    Bad(("server", "--port", "abc"), 2, "'abc' is not a valid integer."),
    Bad(("worker", "--concurrency", "many"), 2, "'many' is not a valid integer."),
    Bad(("web", "-w", "x"), 2, "'x' is not a valid integer."),
    Bad(("new", "django"), 2, "'django' is not one of 'basic', 'celery'."),
    Bad(("new", "basic", "a-file"), 2, "Directory 'a-file' is a file."),
    Bad(("new", "celery", "/proc/flasker-test/new"), 1, "Cannot write the project into"),
    Bad(("ping", "url", "not-a-url"), 2, "The URL 'not-a-url' must start with 'http://'"),
    Bad(("ping", "url", "http://127.0.0.1:PORT/"), 1, "cannot be reached"),
    Bad(("ping", "url", "http://[::1"), 2, "The URL 'http://[::1' is not a valid URL"),
    Bad(("ping", "url", "http://h:99999/"), 2, "The URL 'http://h:99999/' is not a valid URL"),
    Bad(("ping", "url", "http:///readyz"), 2, "The URL 'http:///readyz' is not a valid URL"),
    Bad(("ping", "url", "http://127.0.0.1/", "--timeout", "0"), 2, "not in the range x>=0.1"),
    Bad(("ping", "worker", "--timeout", "-1"), 2, "not in the range x>=0.1"),
    Bad(("ping", "beat", "--max-age", "soon"), 2, "'soon' is not a valid float range."),
    Bad(("-c",), 2, "Option '-c' requires an argument."),
    Bad(("-c", "missing.cfg", "config"), 1,
        "The configuration file 'missing.cfg' named by the '--config' option does not exist."),
    Bad(("-c", "a-folder", "config"), 2, "File 'a-folder' is a directory."),
    Bad(("-c", "cfg/binary.cfg", "config"), 1, "is not UTF-8 text"),
    Bad(("-c", "cfg/not-ini.cfg", "config"), 1,
        "cannot be parsed: File contains no section headers."),
    Bad(("-c", "cfg/no-name.cfg", "routes"), 1, "Config 'PROJECT.NAME' is required"),
    Bad(("config",), 1, "No configuration file found"),
    Bad(("routes",), 1, "No configuration file found"),
]

# Run in a project folder with one model, 'Gadget', and its table.
WITH_PROJECT = [
    Bad(("config", "-s", "NOPE"), 2, "The configuration has no section [NOPE]; its sections:"),
    Bad(("routes", "extra"), 2, "Got unexpected extra argument (extra)"),
    Bad(("load",), 2, "Missing argument 'MODEL'."),
    Bad(("load", "Gadget"), 2, "Missing argument 'FILE'."),
    Bad(("load", "Gadget", "missing.csv"), 2, "File 'missing.csv' does not exist."),
    Bad(("load", "Gadget", "a-folder"), 2, "File 'a-folder' is a directory."),
    Bad(("load", "Gadget", "binary.csv"), 2, "'binary.csv' cannot be decoded as utf-8"),
    Bad(("load", "Gadget", "empty.csv"), 2, "'empty.csv' is empty: its first line must name"),
    Bad(("load", "Gadget", "bad-column.csv"), 2, "The column 'nope' of 'bad-column.csv' is not"),
    Bad(("load", "Gadget", "bad-value.csv"), 1,
        "Line 2 of 'bad-value.csv': field 'id' has value 'x': not an integer."),
    Bad(("load", "Gadget", "unterminated.csv"), 1, "malformed CSV"),
    Bad(("load", "Gadgt", "bad-value.csv"), 2, "No model named 'Gadgt'. Did you mean 'Gadget'?"),
    Bad(("load", "Gadget", "bad-value.csv", "--encoding", "klingon"), 2,
        "Unknown encoding 'klingon'."),
    Bad(("load", "Gadget", "bad-value.csv", "--batch", "0"), 2, "0 is not in the range x>=1."),
    Bad(("load", "Gadget", "bad-value.csv", "--on-error", "maybe"), 2,
        "'maybe' is not one of 'skip', 'stop'."),
    Bad(("db", "upgrade", "nonsense"), 1, "Alembic: Can't locate revision identified by"
                                          " 'nonsense'."),
    Bad(("db", "revision"), 2, "Missing option '-m' / '--message'."),
    Bad(("db", "drop", "--yes", "--force"), 2, "No such option '--force'."),
]

MODEL = """
from sqlalchemy import Column, Integer, Unicode
from flasker import Model

class Gadget(Model):
    id = Column(Integer, primary_key=True)
    name = Column(Unicode(32))
"""


def _files(folder: Path) -> None:
    """The wrong files the cases name."""
    (folder / "a-folder").mkdir()
    (folder / "cfg").mkdir()  # beside no .cfg: a folder holds one project's
    (folder / "a-file").write_text("not a folder\n")
    (folder / "cfg" / "binary.cfg").write_bytes(bytes(range(128, 256)) * 4)
    (folder / "cfg" / "not-ini.cfg").write_text("NAME = outside any section\n")
    (folder / "cfg" / "no-name.cfg").write_text("[PROJECT]\nMODULES = a\n")
    (folder / "binary.csv").write_bytes(b"\xff\xfe\x00\x01" * 64)
    (folder / "empty.csv").write_text("")
    (folder / "bad-column.csv").write_text("nope,name\n1,a\n")
    (folder / "bad-value.csv").write_text("id,name\nx,a\n")
    (folder / "unterminated.csv").write_text('id,name\n1,"never closed\n')


@pytest.fixture
def empty(tmp_path: Path) -> Path:
    folder = tmp_path / "empty"
    folder.mkdir()
    _files(folder)
    return folder


@pytest.fixture(scope="module")
def project_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One project for the module: no case writes anything (a refused load rolls back)."""
    package = unique_package()
    folder = tmp_path_factory.mktemp("project")
    write_project(folder, f"""
        [PROJECT]
        NAME = Bad Input
        MODULES = {package}.models
        [APP]
        SECRET_KEY = {SECRET}
    """, {f"{package}/__init__.py": "", f"{package}/models.py": MODEL})
    _files(folder)
    created = subprocess.run([FLASKER, "db", "create"], cwd=folder, capture_output=True,
                             text=True, timeout=60, env=_clean_env())
    assert created.returncode == 0, created.stderr
    return folder


def _args(bad: Bad) -> list[str]:
    # A port that nothing listens on: a refused connection, at once.
    return [a.replace("PORT", str(free_port())) for a in bad.args]


def _check(bad: Bad, status: int, output: str) -> None:
    assert status == bad.status, output
    assert "Traceback" not in output, output
    assert bad.says in output, output
    errors = [line for line in output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, output  # one sentence, after click's usage lines


def _clean_env() -> dict[str, str]:
    """This process's environment without the variables that choose a project."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith("FLASKER__") and k != "FLASKER_CONFIG"}


def _in_process(runner: t.Any, monkeypatch: pytest.MonkeyPatch, folder: Path, bad: Bad) -> None:
    monkeypatch.chdir(folder)
    # A command that finds its project sets FLASKER_CONFIG for its children: undone after.
    monkeypatch.setenv("FLASKER_CONFIG", "")
    monkeypatch.delenv("FLASKER_CONFIG")
    prepend_path(monkeypatch, folder)  # as 'flasker' does, undone after the test
    result = runner.invoke(_args(bad))
    # An exception click did not turn into a message would be here (and exit status 1).
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        result.exception)
    _check(bad, result.exit_code, result.output)


def _subprocess(folder: Path, bad: Bad) -> None:
    result = subprocess.run([FLASKER, *_args(bad)], cwd=folder, capture_output=True, text=True,
                            timeout=60, env=_clean_env(), stdin=subprocess.DEVNULL)
    _check(bad, result.returncode, result.stderr)


@pytest.mark.parametrize("bad", WITHOUT_PROJECT, ids=str)
def test_without_a_project_in_process(runner: t.Any, monkeypatch: pytest.MonkeyPatch,
                                      empty: Path, bad: Bad) -> None:
    _in_process(runner, monkeypatch, empty, bad)


@pytest.mark.parametrize("bad", WITH_PROJECT, ids=str)
def test_in_a_project_in_process(runner: t.Any, monkeypatch: pytest.MonkeyPatch,
                                 project_folder: Path, bad: Bad) -> None:
    _in_process(runner, monkeypatch, project_folder, bad)


@pytest.mark.parametrize("bad", WITHOUT_PROJECT, ids=str)
def test_without_a_project_in_a_real_process(empty: Path, bad: Bad) -> None:
    _subprocess(empty, bad)


def test_in_a_project_in_a_real_process(project_folder: Path) -> None:
    # One test for every case: each command runs in a process of its own anyway.
    for bad in WITH_PROJECT:
        _subprocess(project_folder, bad)
    # The refused loads wrote nothing.
    shown = subprocess.run([FLASKER, "shell"], cwd=project_folder, capture_output=True,
                           text=True, timeout=60, env=_clean_env(),
                           input="print('rows:', db.query(Gadget).count())\n")
    assert shown.returncode == 0, shown.stderr
    assert "rows: 0" in shown.stdout
