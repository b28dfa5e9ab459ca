"""The precedence, lowest first: built-in defaults < the file < the environment < code."""

from __future__ import annotations

from pathlib import Path

import pytest

from flasker.config import load_config

from .conftest import write_project

CFG = """
[PROJECT]
NAME = From File
APP_FOLDER = file_app
[APP]
GREETING = file
[CELERY]
BROKER_URL = redis://file
"""


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return write_project(tmp_path, CFG)


def test_file_beats_defaults(path: Path) -> None:
    config = load_config(path, environ={})
    assert config.get("PROJECT", "APP_FOLDER") == "file_app"
    assert config.get("PROJECT", "APP_STATIC_FOLDER") == "static"


def test_environment_beats_file(path: Path) -> None:
    config = load_config(path, environ={
        "FLASKER__PROJECT__APP_FOLDER": "env_app",
        "FLASKER__APP__GREETING": "env",
        "FLASKER__CELERY__BROKER_URL": "redis://env",
    })
    assert config.get("PROJECT", "APP_FOLDER") == "env_app"
    assert config.get("APP", "GREETING") == "env"
    assert config.get("CELERY", "broker_url") == "redis://env"
    assert "FLASKER__CELERY__BROKER_URL" in str(config.source_of("CELERY", "broker_url"))


def test_environment_beats_defaults_without_a_file_key(path: Path) -> None:
    config = load_config(path, environ={"FLASKER__ENGINE__POOL_PRE_PING": "false"})
    assert config.get("ENGINE", "pool_pre_ping") is False


def test_code_beats_environment(path: Path) -> None:
    config = load_config(
        path,
        environ={"FLASKER__APP__GREETING": "env"},
        overrides={"APP": {"GREETING": "code"}, "project": {"APP_FOLDER": "code_app"}},
    )
    assert config.get("APP", "GREETING") == "code"
    assert config.get("PROJECT", "APP_FOLDER") == "code_app"
    assert str(config.source_of("APP", "GREETING")) == "code override"


def test_legacy_and_new_celery_names_are_one_key(path: Path) -> None:
    config = load_config(path, environ={"FLASKER__CELERY__broker_url": "redis://lower"})
    assert config["CELERY"] == {"broker_url": "redis://lower"}


def test_file_secret_beats_the_file_and_the_plain_variable_order_is_by_name(
    path: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "greeting"
    secret.write_text("from-secret")
    config = load_config(path, environ={"FLASKER__APP__GREETING_FILE": str(secret)})
    assert config.get("APP", "GREETING") == "from-secret"
