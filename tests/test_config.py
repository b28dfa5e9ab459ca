"""Reading the configuration: locating the file, typing values, reporting bad ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from flasker.config import (
    ConfigError,
    ConfigNotFound,
    find_config_file,
    load_config,
    mask,
    weak_secret_reason,
)

from .conftest import write_project

SAMPLE = """
[PROJECT]
NAME = My Project
MODULES = app.views, app.tasks
DB_URL = sqlite:///db/db.sqlite
[APP]
DEBUG = True
[CELERY]
BROKER_URL = redis://
"""


def test_the_sample_of_the_issue_reads_as_typed_values(tmp_path: Path) -> None:
    config = load_config(write_project(tmp_path, SAMPLE), environ={})
    assert config.get("PROJECT", "NAME") == "My Project"
    assert config.get("PROJECT", "MODULES") == ["app.views", "app.tasks"]
    assert config.get("APP", "DEBUG") is True
    assert config.get("CELERY", "broker_url") == "redis://"
    assert config.root == tmp_path


def test_defaults_are_present_and_sourced(tmp_path: Path) -> None:
    config = load_config(write_project(tmp_path, "[PROJECT]\nNAME = x\n"), environ={})
    assert config.get("PROJECT", "APP_FOLDER") == "app"
    assert config.get("PROJECT", "APP_STATIC_FOLDER") == "static"
    assert config.get("PROJECT", "APP_TEMPLATE_FOLDER") == "templates"
    assert config.get("ENGINE", "pool_pre_ping") is True
    assert str(config.source_of("ENGINE", "pool_pre_ping")) == "built-in default"
    assert str(config.source_of("PROJECT", "NAME")) == f"{tmp_path / 'default.cfg'}:2"


def test_find_config_uses_option_then_environment_then_the_only_cfg(tmp_path: Path) -> None:
    one = write_project(tmp_path / "one", "[PROJECT]\nNAME = one\n")
    two = write_project(tmp_path / "two", "[PROJECT]\nNAME = two\n")
    assert find_config_file(one, environ={"FLASKER_CONFIG": str(two)}) == one
    assert find_config_file(None, environ={"FLASKER_CONFIG": str(two)}) == two
    assert find_config_file(None, environ={}, cwd=tmp_path / "one") == one


def test_several_cfg_files_are_an_error_listing_them(tmp_path: Path) -> None:
    (tmp_path / "a.cfg").write_text("[PROJECT]\nNAME = a\n")
    (tmp_path / "b.cfg").write_text("[PROJECT]\nNAME = b\n")
    with pytest.raises(ConfigNotFound, match=r"Several configuration files.*'a.cfg', 'b.cfg'"):
        find_config_file(None, environ={}, cwd=tmp_path)


def test_no_cfg_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigNotFound, match="flasker new"):
        find_config_file(None, environ={}, cwd=tmp_path)
    with pytest.raises(ConfigNotFound, match="FLASKER_CONFIG"):
        find_config_file(None, environ={"FLASKER_CONFIG": str(tmp_path / "missing.cfg")})


def test_name_is_required(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'PROJECT.NAME' is required.*FLASKER__PROJECT__NAME"):
        load_config(write_project(tmp_path, "[PROJECT]\nMODULES = a\n"), environ={})


def test_misspelt_project_key_suggests_the_nearest(tmp_path: Path) -> None:
    path = write_project(tmp_path, "[PROJECT]\nNAME = x\nMODULE = app.views\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    message = str(info.value)
    assert "Unknown key 'MODULE' in section [PROJECT]" in message
    assert f"{path}:3" in message
    assert "Did you mean 'MODULES'?" in message


def test_misspelt_engine_key_from_environment_names_the_variable(tmp_path: Path) -> None:
    path = write_project(tmp_path, "[PROJECT]\nNAME = x\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={"FLASKER__ENGINE__POOL_SIZ": "5"})
    assert "environment variable 'FLASKER__ENGINE__POOL_SIZ'" in str(info.value)
    assert "Did you mean 'pool_size'?" in str(info.value)


@pytest.mark.parametrize(
    ("section", "line", "expected"),
    [
        ("ENGINE", "pool_size = many", ". Not an integer."),
        ("ENGINE", "echo = perhaps", ". Not a boolean (true/false, yes/no, on/off or 1/0)."),
        ("ENGINE", "echo = t", ". Not a boolean (true/false, yes/no, on/off or 1/0)."),
        ("ENGINE", "pool_timeout = inf", ". Not a number."),
        ("APP", "DEBUG = sometimes", ". Not a boolean (true/false, yes/no, on/off or 1/0)."),
        ("APP", "MAX_CONTENT_LENGTH = big", ". Not an integer."),
        ("CELERY", "worker_concurrency = four", ". Not an integer."),
        ("CELERY", "beat_schedule = [1, 2]", ". Not a JSON object."),
        ("ENGINE", "connect_args = {timeout: 3}", ". Not valid JSON."),
    ],
)
def test_a_bad_value_names_key_place_value_and_expectation(
    tmp_path: Path, section: str, line: str, expected: str
) -> None:
    path = write_project(tmp_path, f"[PROJECT]\nNAME = x\n[{section}]\n{line}\n")
    key, _, value = (part.strip() for part in line.partition("="))
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    message = str(info.value)
    assert f"'{section}.{key}'" in message
    assert repr(value) in message
    assert f"{path}:4" in message
    assert message.endswith(expected)


def test_a_list_is_comma_separated_or_a_json_array(tmp_path: Path) -> None:
    path = write_project(tmp_path, '[PROJECT]\nNAME = x\nMODULES = ["app.views", "app.tasks"]\n')
    assert load_config(path, environ={}).get("PROJECT", "MODULES") == ["app.views", "app.tasks"]
    path.write_text("[PROJECT]\nNAME = x\nMODULES = [app.views\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert str(info.value) == (f"Config 'PROJECT.MODULES' has value '[app.views' ({path}:3)."
                               " The list is not valid JSON.")


def test_flask_and_celery_values_parse_as_json_else_strings(tmp_path: Path) -> None:
    path = write_project(tmp_path, """
        [PROJECT]
        NAME = x
        [APP]
        SECRET_KEY = 12345678901234567890
        MY_LIMITS = {"a": 1}
        GREETING = hello world
        NOTHING = None
        [CELERY]
        CELERY_RESULT_BACKEND = redis://localhost/1
        task_routes = {"a.b": {"queue": "q"}}
        accept_content = json, pickle
    """)
    config = load_config(path, environ={})
    assert config.get("APP", "SECRET_KEY") == "12345678901234567890"  # declared a string
    assert config.get("APP", "MY_LIMITS") == {"a": 1}
    assert config.get("APP", "GREETING") == "hello world"
    assert config.get("APP", "NOTHING") is None
    assert config.get("CELERY", "result_backend") == "redis://localhost/1"  # legacy name mapped
    assert config.get("CELERY", "task_routes") == {"a.b": {"queue": "q"}}
    assert config.get("CELERY", "accept_content") == ["json", "pickle"]


def test_engine_section_is_typed(tmp_path: Path) -> None:
    path = write_project(tmp_path, """
        [PROJECT]
        NAME = x
        [ENGINE]
        pool_size = 7
        echo = yes
        pool_timeout = 2.5
        connect_args = {"timeout": 3}
    """)
    engine = load_config(path, environ={})["ENGINE"]
    assert engine["pool_size"] == 7
    assert engine["echo"] is True
    assert engine["pool_timeout"] == 2.5
    assert engine["connect_args"] == {"timeout": 3}


def test_file_secret_from_a_docker_secret(tmp_path: Path) -> None:
    path = write_project(tmp_path, "[PROJECT]\nNAME = x\n")
    secret = tmp_path / "secret_key"
    secret.write_text("s3cr3t-from-a-file-0123456789\n")
    config = load_config(path, environ={"FLASKER__APP__SECRET_KEY_FILE": str(secret)})
    assert config.get("APP", "SECRET_KEY") == "s3cr3t-from-a-file-0123456789"
    assert str(secret) in str(config.source_of("APP", "SECRET_KEY"))


def test_missing_secret_file_is_a_clear_error(tmp_path: Path) -> None:
    path = write_project(tmp_path, "[PROJECT]\nNAME = x\n")
    with pytest.raises(ConfigError, match=r"FLASKER__APP__SECRET_KEY_FILE.*cannot be read"):
        load_config(path, environ={"FLASKER__APP__SECRET_KEY_FILE": str(tmp_path / "nope")})


def test_a_section_named_only_in_the_environment_exists(tmp_path: Path) -> None:
    path = write_project(tmp_path, "[PROJECT]\nNAME = x\n")
    config = load_config(path, environ={"FLASKER__AUTH__CLIENT_ID": "abc"})
    assert "AUTH" in config
    assert config["AUTH"] == {"CLIENT_ID": "abc"}


def test_malformed_variable_name_is_refused(tmp_path: Path) -> None:
    path = write_project(tmp_path, "[PROJECT]\nNAME = x\n")
    with pytest.raises(ConfigError, match="FLASKER__<SECTION>__<KEY>"):
        load_config(path, environ={"FLASKER__APPDEBUG": "1"})


def test_unparsable_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "default.cfg"
    path.write_text("NAME = outside any section\n")
    with pytest.raises(ConfigError, match="cannot be parsed"):
        load_config(path, environ={})


def test_mask_hides_secrets_and_url_passwords() -> None:
    assert mask("SECRET_KEY", "abc") == "********"
    assert mask("CLIENT_SECRET", "abc") == "********"
    assert mask("broker_url", "redis://:hunter2@redis:6379/0") == "redis://:********@redis:6379/0"
    assert mask("DB_URL", "postgresql://u:pw@h/db") == "postgresql://u:********@h/db"
    assert mask("DB_URL", "sqlite:///x.db") == "sqlite:///x.db"
    assert mask("KEYS", ["a"]) == ["a"]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "not set"),
        ("", "not set"),
        ("change-me-in-production-please", "placeholder"),
        ("dev", "placeholder"),
        ("short-key", "shorter than 16"),
        ("9f2c5e0a6b1d4c8e9f2c5e0a6b1d4c8e", None),
    ],
)
def test_weak_secret_reasons(value: str | None, reason: str | None) -> None:
    found = weak_secret_reason(value)
    if reason is None:
        assert found is None
    else:
        assert found is not None and reason in found
