"""``Loggable``, and one logging configuration for web and worker (text or JSON lines)."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import typing as t
from pathlib import Path

import pytest
import requests

from flasker import ConfigError, Project
from flasker.config import load_config
from flasker.logs import HANDLER_NAME, configure_logging
from flasker.util import Loggable

from .conftest import (
    SECRET,
    Process,
    free_port,
    prepend_path,
    unique_package,
    wait_for,
    write_project,
)

# -- Loggable ----------------------------------------------------------------------------------


class Pump(Loggable):
    def __init__(self, name: str) -> None:
        self.name = name
        self.reprs = 0

    def __repr__(self) -> str:
        self.reprs += 1
        return f"<Pump {self.name}>"

    def start(self) -> None:
        self.info("started at %d%%", 50)


def test_logger_is_named_after_the_class() -> None:
    assert Pump("a").logger.name == "tests.test_util_logging.Pump"
    assert Pump("a").logger is logging.getLogger("tests.test_util_logging.Pump")


def test_messages_are_prefixed_with_the_repr(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="tests.test_util_logging.Pump")
    pump = Pump("p%s1")  # a '%' in the repr must not disturb the formatting
    pump.debug("checking")
    pump.start()
    pump.warning("100% full")  # no arguments: the message is not %-formatted
    try:
        raise RuntimeError("jammed")
    except RuntimeError:
        pump.error("failed: %s", "jammed", exc_info=True)
    records = caplog.records
    assert [r.getMessage() for r in records] == [
        "<Pump p%s1> checking", "<Pump p%s1> started at 50%", "<Pump p%s1> 100% full",
        "<Pump p%s1> failed: jammed",
    ]
    assert [r.levelname for r in records] == ["DEBUG", "INFO", "WARNING", "ERROR"]
    assert records[1].funcName == "start"  # the caller, not Loggable
    assert records[0].funcName == "test_messages_are_prefixed_with_the_repr"
    assert records[3].exc_info is not None and records[3].exc_info[0] is RuntimeError


def test_disabled_levels_cost_no_repr(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="tests.test_util_logging.Pump")
    pump = Pump("quiet")
    pump.debug("not shown %s", "x")
    pump.info("not shown")
    assert pump.reprs == 0
    pump.warning("shown")
    assert pump.reprs == 1
    assert caplog.records[-1].getMessage() == "<Pump quiet> shown"


# -- the configuration -------------------------------------------------------------------------


def _config(tmp_path: Path, fmt: str = "json", level: str = "INFO") -> t.Any:
    path = write_project(tmp_path, f"[PROJECT]\nNAME = Logs\nLOG_FORMAT = {fmt}\n"
                                   f"LOG_LEVEL = {level}\n")
    return load_config(path)


@pytest.fixture
def restore_logging() -> t.Iterator[None]:
    """Put the root logger back as it was: these tests install handlers of their own."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    others = {name: (list(logging.getLogger(name).handlers), logging.getLogger(name).propagate)
              for name in ("celery.task", "multiprocessing")}
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    for name, (handlers, propagate) in others.items():
        logging.getLogger(name).handlers[:] = handlers
        logging.getLogger(name).propagate = propagate


def test_json_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                    restore_logging: None) -> None:
    configure_logging(_config(tmp_path, "json", "debug"))
    log = logging.getLogger("tests.json")
    log.debug("with %s", "args", extra={"order": 7, "odd": object()})
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError:
        log.exception("it broke")
    lines = capsys.readouterr().err.splitlines()
    first, second = (json.loads(line) for line in lines[-2:])
    assert first["level"] == "DEBUG" and first["logger"] == "tests.json"
    assert first["message"] == "with args"
    assert first["order"] == 7 and first["odd"].startswith("<object object at")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["time"])
    assert "request_id" not in first and "task_id" not in first
    assert second["level"] == "ERROR"
    assert "ZeroDivisionError: division by zero" in second["exception"]


def test_text_lines_carry_the_request_id(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         restore_logging: None, project: Project) -> None:
    configure_logging(_config(tmp_path, "text"))
    log = logging.getLogger("tests.text")
    with project.app.test_request_context(headers={"X-Request-ID": "req-42"}):
        log.info("inside")
    with project.app.test_request_context(headers={"X-Request-ID": "bad id\twith tab"}):
        log.info("invented")
        log.info("same again")
    log.info("outside")
    lines = capsys.readouterr().err.splitlines()[-4:]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d [\d:,]+ INFO    tests.text \[req-42\]: inside", lines[0])
    invented = re.search(r"tests.text \[([0-9a-f]{32})\]: invented$", lines[1])
    assert invented is not None  # an unsafe header is replaced by an id of our own
    assert lines[2].endswith(f"[{invented.group(1)}]: same again")  # one id per request
    assert lines[3].endswith(" INFO    tests.text: outside")


def test_configuring_again_replaces_the_handler(tmp_path: Path, restore_logging: None) -> None:
    configure_logging(_config(tmp_path, "text"))
    configure_logging(_config(tmp_path, "json", "WARNING"))
    root = logging.getLogger()
    ours = [h for h in root.handlers if h.get_name() == HANDLER_NAME]
    assert len(ours) == 1
    assert root.level == logging.WARNING
    # Celery's task logger and billiard's logger have it too, and do not propagate twice.
    task_logger = logging.getLogger("celery.task")
    assert ours[0] in task_logger.handlers and not task_logger.propagate


@pytest.mark.parametrize(("key", "value", "message"), [
    ("LOG_FORMAT", "xml", r"Config 'PROJECT.LOG_FORMAT' has value 'xml' \(.*default.cfg:2\)."
                          r" Expected 'text' or 'json'."),
    ("LOG_LEVEL", "LOUD", r"Config 'PROJECT.LOG_LEVEL' has value 'LOUD' \(.*default.cfg:2\)."
                          r" Expected DEBUG, INFO, WARNING, ERROR or CRITICAL."),
])
def test_bad_log_settings_stop_start_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        runner: t.Any, key: str, value: str, message: str,
                                        restore_logging: None) -> None:
    # Logging is configured by the process that starts (the 'flasker' command, the WSGI
    # module), not by 'Project()': that is where a bad value stops it.
    path = write_project(tmp_path, f"[PROJECT]\n{key} = {value}\nNAME = Logs\n"
                                   f"[APP]\nSECRET_KEY = {SECRET}\n")
    with pytest.raises(ConfigError, match=message):
        configure_logging(load_config(path))
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(["routes"])
    assert result.exit_code == 1
    assert re.search(f"Error: {message}", result.output), result.output


# -- real processes: the web server, a Celery worker, gunicorn ---------------------------------

APP = """
import logging

from celery.utils.log import get_task_logger

from flasker import current_project

app = current_project.app
celery = current_project.celery


@app.get("/hello")
def hello():
    logging.getLogger("app.views").info("hello from a view")
    return "hi"


@celery.task(name="{package}.shout")
def shout(word):
    get_task_logger(__name__).info("task says %s", word)
    logging.getLogger("app.work").warning("plain logger in a task")
    return word.upper()
"""


@pytest.fixture
def json_project(tmp_path: Path, redis_url: str,
                 monkeypatch: pytest.MonkeyPatch) -> t.Iterator[Project]:
    package = unique_package()
    path = write_project(
        tmp_path,
        f"""
        [PROJECT]
        NAME = Logs {package}
        MODULES = {package}.app
        DB_URL = sqlite:///{tmp_path / 'db.sqlite'}
        LOG_FORMAT = json
        [APP]
        SECRET_KEY = {SECRET}
        [CELERY]
        BROKER_URL = {redis_url}
        RESULT_BACKEND = {redis_url}
        """,
        {f"{package}/__init__.py": "", f"{package}/app.py": APP.replace("{package}", package)},
    )
    prepend_path(monkeypatch, str(tmp_path))
    project = Project(path)
    yield project
    project.close()


def _json_lines(process: Process) -> list[dict[str, t.Any]]:
    entries = []
    for line in process.output().splitlines():
        if line.startswith("{"):
            entries.append(json.loads(line))
    return entries


def _entry(process: Process, message: str) -> dict[str, t.Any]:
    def find() -> dict[str, t.Any] | None:
        return next((e for e in _json_lines(process) if e["message"] == message), None)

    return t.cast("dict[str, t.Any]",
                  wait_for(find, timeout=30, what=f"{message!r} in {process.log}"))


def test_the_web_server_writes_json_lines_with_the_request_id(
        json_project: Project, spawn: t.Callable[..., Process]) -> None:
    port = free_port()
    server = spawn(["server", "--port", str(port)], cwd=json_project.root)
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: requests.get(base + "/healthz", timeout=2).ok, timeout=30,
             what=f"the server; log {server.log}")
    assert requests.get(base + "/hello", headers={"X-Request-ID": "web-1"}, timeout=5).text == "hi"
    entry = _entry(server, "hello from a view")
    assert entry["request_id"] == "web-1"
    assert entry["level"] == "INFO" and entry["logger"] == "app.views"
    # Every line the server logged is JSON (werkzeug's request lines too).
    assert any(e["logger"] == "werkzeug" and "GET /hello" in e["message"]
               for e in _json_lines(server))


def test_a_worker_writes_json_lines_with_the_task_id(
        json_project: Project, spawn: t.Callable[..., Process]) -> None:
    worker = spawn(["worker", "--concurrency", "1", "--", "-P", "prefork"],
                   cwd=json_project.root)
    wait_for(lambda: json_project.celery.control.ping(timeout=0.5), timeout=60,
             what=f"the worker to answer a ping; its log {worker.log}")
    package = json_project.config.get("PROJECT", "MODULES")[0].split(".")[0]
    result = json_project.celery.send_task(f"{package}.shout", args=["hey"])
    assert result.get(timeout=30) == "HEY"
    said = _entry(worker, "task says hey")
    assert said["task_id"] == result.id
    assert said["task_name"] == f"{package}.shout"
    assert said["level"] == "INFO"
    plain = _entry(worker, "plain logger in a task")
    assert plain["task_id"] == result.id and plain["logger"] == "app.work"
    # Celery's own lines go through the same handler.
    assert any(e["logger"].startswith("celery") and result.id in e["message"]
               for e in _json_lines(worker))
    lines = [line for line in worker.output().splitlines() if "task says hey" in line]
    assert len(lines) == 1  # once, not once per handler


def test_gunicorn_logs_through_the_same_handler(json_project: Project, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "gunicorn.log"
    env = {**os.environ, "FLASKER_CONFIG": str(json_project.config.path)}
    with log.open("wb") as out:
        popen = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--logger-class", "flasker.logs.GunicornLogger",
             "--bind", f"127.0.0.1:{port}", "--workers", "1", "flasker.wsgi:app"],
            cwd=json_project.root, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_for(lambda: requests.get(base + "/healthz", timeout=2).ok, timeout=30,
                     what=f"gunicorn; log {log}")
            requests.get(base + "/hello", headers={"X-Request-ID": "guni-1"}, timeout=5)
            wait_for(lambda: "hello from a view" in log.read_text(), timeout=10)
        finally:
            os.killpg(popen.pid, signal.SIGTERM)
            popen.wait(30)
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert any(e["logger"] == "gunicorn.error" and e["message"].startswith("Listening at")
               for e in entries)
    view = next(e for e in entries if e["message"] == "hello from a view")
    assert view["request_id"] == "guni-1"
    assert all(line.startswith("{") for line in log.read_text().splitlines() if line.strip())
