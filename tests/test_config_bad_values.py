"""Bad configuration values, for every typed key: a sentence naming key, source and expectation.

The keys are read off their declarations (``PROJECT_OPTIONS``, ``ENGINE_OPTIONS``, the
extensions' ``options``, ``CACHE_OPTIONS``, Flask's typed defaults, Celery's ``NAMESPACES``),
so a key declared tomorrow is tried too; a converter this file has no bad value for stops
its collection with a message saying so, until one is added to :data:`BAD`.
"""

from __future__ import annotations

import os
import string
import subprocess
import typing as t
from dataclasses import dataclass
from pathlib import Path

import pytest
from celery.app.defaults import NAMESPACES, flatten
from flask import Flask
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from flasker import Project
from flasker.caching import CACHE_OPTIONS
from flasker.config import (
    DECLARED,
    ENV_PREFIX,
    Config,
    ConfigError,
    Option,
    load_config,
    to_bool,
    to_float,
    to_int,
    to_json,
    to_json_object,
    to_list,
    to_str,
)
from flasker.db import create_engine
from flasker.ext.api import APIManager
from flasker.ext.auth import GoogleAuthManager
from flasker.logs import log_settings
from flasker.tasks import celery_settings

from .conftest import FLASKER, SECRET, prepend_path, unique_package, write_project

# A bad value of each converter, and the sentence that ends the error.
BAD: dict[t.Callable[[str], t.Any], tuple[str, str]] = {
    to_bool: ("perhaps", "Not a boolean (true/false, yes/no, on/off or 1/0)."),
    to_int: ("many", "Not an integer."),
    to_float: ("fast", "Not a number."),
    to_json: ("[1, 2", "Not valid JSON."),
    to_json_object: ("[1, 2]", "Not a JSON object."),
    to_list: ("[unclosed", "The list is not valid JSON."),
}
# Keys whose converter checks more than a type, by 'SECTION.KEY'.
BAD_BY_KEY: dict[str, tuple[str, str]] = {
    "PROJECT.DB_URL": ("no-such-dialect://h/db", "Not a database URL such as"),
    "ENGINE.pool_reset_on_return": ("maybe", "Not one of 'rollback', 'commit', 'none'."),
    "PROJECT.STATIC_URL": ("static", "Not a URL path such as '/static'"),
    "PROJECT.MODULES": ("app.views, .relative", "'.relative' is not a module name such as"),
}

# Flask settings typed by flasker although their default (None) says nothing; the others are
# typed like their default, which this file reads off Flask.default_config.
FLASK_NONE_DEFAULTS = {
    "DEBUG": to_bool, "PROPAGATE_EXCEPTIONS": to_bool, "TRAP_BAD_REQUEST_ERRORS": to_bool,
    "TEMPLATES_AUTO_RELOAD": to_bool, "MAX_CONTENT_LENGTH": to_int,
    "SEND_FILE_MAX_AGE_DEFAULT": to_int, "PERMANENT_SESSION_LIFETIME": to_int,
}
# Celery's own types ('any' settings flasker types itself, too).
CELERY_TYPES: dict[str, t.Callable[[str], t.Any]] = {
    "bool": to_bool, "int": to_int, "float": to_float, "dict": to_json_object,
    "list": to_json, "tuple": to_json,  # a list is a comma list or JSON: '[' means JSON
}
CELERY_ANY = {"worker_concurrency": to_int}

# The extensions, each registered by a module of the project's MODULES.
EXTENSIONS: dict[str, tuple[type[t.Any], str]] = {
    "API": (APIManager, "from flasker.ext.api import APIManager as Ext\n"),
    "AUTH": (GoogleAuthManager, "from flasker.ext.auth import GoogleAuthManager as Ext\n"),
}


@dataclass(frozen=True)
class Case:
    """A typed key and a bad value for it."""

    section: str
    key: str  # as flasker names it in messages ('ENGINE.pool_size', 'CELERY.worker_concurrency')
    value: str
    expected: str
    at_start: bool = False  # checked when the project starts, not by load_config

    @property
    def variable(self) -> str:
        return f"{ENV_PREFIX}{self.section}__{self.key.upper()}"

    def __str__(self) -> str:
        return f"{self.section}.{self.key}"


def _bad(section: str, option_name: str, convert: t.Callable[[str], t.Any]) -> tuple[str, str]:
    found = BAD_BY_KEY.get(f"{section}.{option_name}") or BAD.get(convert)
    if found is None:
        raise AssertionError(f"No bad value known for '{section}.{option_name}': add its"
                             " converter to BAD or the key to BAD_BY_KEY.")
    return found


def _declared(section: str, options: t.Sequence[Option], at_start: bool) -> list[Case]:
    return [Case(section, o.name, *_bad(section, o.name, o.convert), at_start=at_start)
            for o in options if o.convert is not to_str]


def _flask_cases() -> list[Case]:
    converters: dict[str, t.Callable[[str], t.Any]] = dict(FLASK_NONE_DEFAULTS)
    for key, default in Flask.default_config.items():
        typed = {bool: to_bool, int: to_int, float: to_float}.get(type(default))
        if typed is not None:
            converters[key] = typed
    return [Case("APP", key, *_bad("APP", key, convert))
            for key, convert in sorted(converters.items())]


def _celery_cases() -> list[Case]:
    cases = []
    for name, option in flatten(NAMESPACES):
        kind = option.type if isinstance(option.type, str) else option.type.__name__
        convert = CELERY_TYPES.get(kind) or CELERY_ANY.get(name)
        if convert is not None:
            cases.append(Case("CELERY", name, *_bad("CELERY", name, convert)))
    return cases


CORE = [case for section, options in DECLARED.items()
        for case in _declared(section, options, at_start=False)]
FLASK = _flask_cases()
CELERY = _celery_cases()
# Read when the project starts: the extensions' sections (each registered by a module), and
# the checks of text values beyond their type.
AT_START = [
    *[case for section, (ext, _) in EXTENSIONS.items()
      for case in _declared(section, ext.options, at_start=True)],
    Case("CACHE", "URL", "http://cache:6379", "Expected a redis://, rediss:// or unix:// URL",
         at_start=True),
    Case("PROJECT", "LOG_LEVEL", "LOUD", "Expected DEBUG, INFO, WARNING, ERROR or CRITICAL.",
         at_start=True),
    Case("PROJECT", "LOG_FORMAT", "xml", "Expected 'text' or 'json'.", at_start=True),
    Case("API", "URL_PREFIX", "/", "It must be a path of its own, such as '/api'.",
         at_start=True),
    Case("API", "PAGE_SIZE", "0", "It must be at least 1.", at_start=True),
]
LOADED = CORE + FLASK + CELERY


def test_every_typed_key_is_tried() -> None:
    keys = {str(case) for case in LOADED + AT_START}
    # A sample of each family, so that an empty list could not pass unnoticed.
    assert {"PROJECT.MODULES", "PROJECT.DB_URL", "ENGINE.pool_size", "ENGINE.connect_args",
            "ENGINE.pool_timeout", "APP.DEBUG", "APP.MAX_CONTENT_LENGTH", "APP.TESTING",
            "APP.MAX_FORM_PARTS", "CELERY.worker_concurrency", "CELERY.task_acks_late",
            "CELERY.beat_schedule", "CELERY.accept_content", "CELERY.beat_cron_starting_deadline",
            "API.PAGE_SIZE", "API.INCLUDE_TOTAL", "AUTH.PROTECT_ALL_VIEWS",
            "AUTH.AUTHORIZED_EMAILS", "CACHE.URL"} <= keys
    assert len(CELERY) > 100
    for options in (*DECLARED.values(), CACHE_OPTIONS, APIManager.options,
                    GoogleAuthManager.options):
        for option in options:
            assert option.convert is to_str or option.convert in BAD or any(
                k.endswith("." + option.name) for k in BAD_BY_KEY), option.name


# -- in the file, in the environment: load_config -----------------------------------------------


def _cfg(case: Case) -> tuple[str, int]:
    """The .cfg text with the bad value, and the line it is on."""
    if case.section == "PROJECT":
        return f"[PROJECT]\nNAME = Bad\n{case.key} = {case.value}\n", 3
    return f"[PROJECT]\nNAME = Bad\n[{case.section}]\n{case.key} = {case.value}\n", 4


def _check(message: str, case: Case, source: str) -> None:
    assert f"'{case}'" in message, message
    assert source in message, message
    assert case.expected in message, message
    if not case.at_start:
        assert f"has value {case.value!r} ({source}). {case.expected}" in message, message
    assert "Traceback" not in message


@pytest.mark.parametrize("case", LOADED, ids=str)
def test_a_bad_value_in_the_file(tmp_path: Path, case: Case) -> None:
    text, line = _cfg(case)
    path = write_project(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    _check(str(info.value), case, f"{path}:{line}")


@pytest.mark.parametrize("case", LOADED, ids=str)
def test_a_bad_value_in_the_environment(tmp_path: Path, case: Case) -> None:
    path = write_project(tmp_path, "[PROJECT]\nNAME = Bad\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={case.variable: case.value})
    _check(str(info.value), case, f"environment variable '{case.variable}'")


def test_a_secret_in_a_bad_value_is_masked(tmp_path: Path) -> None:
    path = write_project(tmp_path, "[PROJECT]\nNAME = Bad\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={"FLASKER__PROJECT__DB_URL": "postgresq://u:hunter2@db/x"})
    assert "hunter2" not in str(info.value)
    assert "'postgresq://u:********@db/x'" in str(info.value)


# -- when the project starts: extensions, cache, logging ----------------------------------------


def _start_files(case: Case) -> tuple[str, dict[str, str]]:
    """MODULES registering the case's extension (none for the core sections)."""
    if case.section not in EXTENSIONS:
        return "", {}
    package = unique_package()
    module = (EXTENSIONS[case.section][1]
              + "from flasker import current_project\n"
              + "current_project.register_manager(Ext())\n")
    return f"MODULES = {package}.ext\n", {f"{package}/__init__.py": "", f"{package}/ext.py": module}


def _start_project(folder: Path, case: Case, in_file: bool) -> tuple[Path, str, dict[str, str]]:
    """Write the project; return its .cfg, the expected source and the environment to set."""
    modules, files = _start_files(case)
    head = f"[PROJECT]\nNAME = Bad\n{modules}[APP]\nSECRET_KEY = {SECRET}\n"
    if not in_file:
        path = write_project(folder, head, files)
        return path, f"environment variable '{case.variable}'", {case.variable: case.value}
    if case.section == "PROJECT":
        text = head.replace("NAME = Bad\n", f"NAME = Bad\n{case.key} = {case.value}\n")
        line = 3
    else:
        text = head + f"[{case.section}]\n{case.key} = {case.value}\n"
        line = text.count("\n")
    path = write_project(folder, text, files)
    return path, f"{path}:{line}", {}


def _start(path: Path, environ: t.Mapping[str, str]) -> None:
    """What every command does with the project: load it, read its logging settings."""
    project = Project(path, environ=environ, overrides={"APP": {"TESTING": True}})
    try:
        log_settings(project.config)
    finally:
        project.close()


@pytest.mark.parametrize("in_file", [True, False], ids=["file", "env"])
@pytest.mark.parametrize("case", AT_START, ids=str)
def test_a_bad_value_stops_the_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       case: Case, in_file: bool) -> None:
    path, source, env = _start_project(tmp_path, case, in_file)
    prepend_path(monkeypatch, tmp_path)
    with pytest.raises(ConfigError) as info:
        _start(path, env)
    _check(str(info.value), case, source)


# -- the command line -------------------------------------------------------------------------


def _cli_error(output: str, case: Case, source: str) -> None:
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, output
    _check(lines[0], case, source)


@pytest.mark.parametrize("in_file", [True, False], ids=["file", "env"])
@pytest.mark.parametrize("case", LOADED, ids=str)
def test_flasker_config_says_which_value_is_bad(runner: t.Any, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch, case: Case,
                                                in_file: bool) -> None:
    if in_file:
        text, line = _cfg(case)
        path = write_project(tmp_path, text)
        env, source = {}, f"{path}:{line}"
    else:
        path = write_project(tmp_path, "[PROJECT]\nNAME = Bad\n")
        env, source = {case.variable: case.value}, f"environment variable '{case.variable}'"
    monkeypatch.setenv("FLASKER_CONFIG", str(path))
    result = runner.invoke(["config"], env=env)
    assert result.exit_code == 1, result.output
    _cli_error(result.output, case, source)


@pytest.mark.parametrize("in_file", [True, False], ids=["file", "env"])
@pytest.mark.parametrize("case", AT_START, ids=str)
def test_a_command_loading_the_project_says_which_value_is_bad(
        runner: t.Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: Case,
        in_file: bool) -> None:
    # 'flasker config' reads the file and the environment without importing the project's
    # MODULES (so that it works when they are broken): a value checked at start-up stops
    # any command that loads the project, as 'flasker routes' does.
    path, source, env = _start_project(tmp_path, case, in_file)
    prepend_path(monkeypatch, tmp_path)
    monkeypatch.setenv("FLASKER_CONFIG", str(path))
    result = runner.invoke(["routes"], env=env)
    assert result.exit_code == 1, result.output
    _cli_error(result.output, case, source)


def _one_per_kind() -> list[Case]:
    """A case of each converter and each start-up check, for the real processes."""
    seen: set[str] = set()
    chosen = []
    for case in LOADED + AT_START:
        kind = case.expected if case.at_start else case.expected.split(" (")[0]
        if kind not in seen:
            seen.add(kind)
            chosen.append(case)
    return chosen


@pytest.mark.parametrize("case", _one_per_kind(), ids=str)
def test_a_real_flasker_process_prints_one_sentence(tmp_path: Path, case: Case) -> None:
    path, source, env = _start_project(tmp_path, case, in_file=False)
    command = "routes" if case.at_start else "config"
    result = subprocess.run([FLASKER, command], cwd=tmp_path, capture_output=True, text=True,
                            timeout=60, env={**os.environ, **env})
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == ""
    _cli_error(result.stderr, case, source)


# -- random environments --------------------------------------------------------------------

# The keys of each section: every declared or typed one, and a few free-form ones.
KEYS: dict[str, list[str]] = {
    section: sorted({c.key.upper() for c in LOADED + AT_START if c.section == section}
                    | {o.name.upper() for o in options})
    for section, options in [*DECLARED.items(), ("CACHE", CACHE_OPTIONS),
                             *((s, ext.options) for s, (ext, _) in EXTENSIONS.items())]
}
KEYS["APP"] = sorted({c.key for c in FLASK} | {"SECRET_KEY", "SERVER_NAME", "GREETING"})
KEYS["CELERY"] = sorted({c.key.upper() for c in CELERY}
                        | {"BROKER_URL", "CELERY_RESULT_BACKEND", "RESULT_BACKEND",
                           "TASK_ROUTES", "CELERYD_CONCURRENCY"})
TYPED_LOOKING = ["true", "False", "None", "null", "0", "-1", "+7", "007", "1_000", "1.5", "1e999",
                 "nan", "inf", "[]", "[1", "{}", '{"a": 1}', '{"a": {"task": 1}}', '["a", 2]',
                 "[[1]]", " ", "", "redis://", "reddis://x", "sqlite:///", "::", "%(x)s", "\t1\n",
                 "postgresql+psycopg://u:p@h:99999/d", "*/5 * * * *", "a,b,,c", "\u00e9t\u00e9",
                 "\U0001f600", "9" * 400]
# What the environment can hold: any bytes but NUL, decoded as Python decodes os.environ.
ENV_TEXT = st.binary(max_size=40).filter(lambda b: b"\x00" not in b).map(os.fsdecode)
NAME_TEXT = st.text(string.ascii_letters + string.digits + "_", max_size=24)


def _rarely(draw: st.DrawFn, common: st.SearchStrategy[str], rare: st.SearchStrategy[str],
            one_in: int) -> str:
    return draw(rare) if draw(st.integers(1, one_in)) == 1 else draw(common)


@st.composite
def overlays(draw: st.DrawFn, most: int = 6) -> dict[str, str]:
    """A few FLASKER__* variables: mostly real sections and keys, some of each malformed."""
    env: dict[str, str] = {}
    for _ in range(draw(st.integers(1, most))):
        section = _rarely(draw, st.sampled_from(sorted(KEYS)), NAME_TEXT, 10)
        key = _rarely(draw, st.sampled_from(KEYS.get(section) or ["KEY"]), NAME_TEXT, 8)
        if draw(st.integers(1, 12)) == 1:
            key += "_FILE"
        name = _rarely(draw, st.just(f"{ENV_PREFIX}{section}__{key}"),
                       NAME_TEXT.map(lambda rest: ENV_PREFIX + rest), 15)
        env[name] = _rarely(draw, st.sampled_from(TYPED_LOOKING), ENV_TEXT, 3)
    return env


def _refusal_names_a_variable(error: ConfigError, env: t.Mapping[str, str]) -> None:
    message = str(error)
    event("refused: " + ("a malformed name" if "is not of the form" in message else
                         "an unknown key" if message.startswith("Unknown key") else
                         "a file that cannot be read" if "cannot be read" in message else
                         "a bad value"))
    assert message and "Traceback" not in message
    assert any(name in message for name in env), (message, env)


@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(env=overlays())
def test_random_environments_load_or_say_which_variable_is_bad(
        tmp_path: Path, env: dict[str, str]) -> None:
    path = write_project(tmp_path, "[PROJECT]\nNAME = Random\n")
    try:
        config = load_config(path, environ=env)
    except ConfigError as e:
        _refusal_names_a_variable(e, env)
    else:
        assert isinstance(config, Config)
        event("loaded")


@settings(max_examples=120, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(env=overlays(most=3))
# Found by this test: a value checked against another's named neither variable.
@example(env={"FLASKER__PROJECT__TASK_RETRY_BACKOFF_MAX": "\t1\n"})
def test_random_environments_start_or_say_which_variable_is_bad(
        tmp_path: Path, env: dict[str, str]) -> None:
    # Beyond reading: the app, the engine, the Celery settings and the logging settings are
    # made from what was read, as 'flasker web' and 'flasker worker' make them.
    path = write_project(tmp_path, "[PROJECT]\nNAME = Random\n")
    # The state folder and SQLite files land in this test's folder, wherever a value says.
    env = {k: v for k, v in env.items() if "FOLDER" not in k and "DB_URL" not in k}
    try:
        project = Project(path, environ=env, overrides={"APP": {"TESTING": True}})
        try:
            celery_settings(project.config)
            log_settings(project.config)
            create_engine(project.config).dispose()
            event("started")
        finally:
            project.close()
    except ConfigError as e:
        _refusal_names_a_variable(e, env)
