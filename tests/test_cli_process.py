"""The command line as a person runs it: real processes, real HTTP, the embedded default."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import typing as t
from pathlib import Path

import pytest
import requests

from .conftest import FLASKER, Process, free_port, wait_for


def flasker(*args: str, cwd: Path, input: str | None = None,
            env: t.Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FLASKER, *args], cwd=cwd, input=input, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    """``flasker new celery demo`` then ``flasker db create``, as the quick start says."""
    result = flasker("new", "celery", "demo", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "demo"
    created = flasker("db", "create", cwd=folder)
    assert created.returncode == 0, created.stderr
    return folder


def _get(url: str) -> requests.Response:
    response = requests.get(url, timeout=5)
    response.raise_for_status()
    return response


def test_new_then_server_answers_http(demo: Path, spawn: t.Callable[..., Process]) -> None:
    port = free_port()
    server = spawn(["server", "--port", str(port)], cwd=demo)
    base = f"http://127.0.0.1:{port}"
    page = wait_for(lambda: _get(base + "/"), timeout=30, what=f"the server; log {server.log}")
    assert "<title>Demo</title>" in page.text
    assert "bootstrap.min.css" in page.text
    assert _get(base + "/static/bootstrap.min.css").text.startswith("@charset")

    session = requests.Session()
    form = session.get(base + "/", timeout=5).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert token is not None
    refused = session.post(base + "/notes", data={"text": "no token"}, timeout=5)
    assert refused.status_code == 400  # CSRF protection
    saved = session.post(base + "/notes", data={"text": "first note",
                                                "csrf_token": token.group(1)}, timeout=5)
    assert saved.status_code == 200
    assert "Note saved." in saved.text and "first note" in saved.text


def test_embedded_worker_and_beat_run_real_tasks(demo: Path, spawn: t.Callable[..., Process]
                                                 ) -> None:
    """No server at all: broker and results live in SQLite files in the state folder."""
    every_second = json.dumps({"tick": {"task": "app.tasks.tick", "schedule": 1}})
    env = {"FLASKER__CELERY__BEAT_SCHEDULE": every_second}
    worker = spawn(["worker", "--concurrency", "1"], cwd=demo, env=env)
    beat = spawn(["beat"], cwd=demo, env=env)

    script = "from app.tasks import add\nprint('result', add.delay(20, 22).get(timeout=60))\n"
    result = flasker("shell", cwd=demo, input=script, env=env)
    assert result.returncode == 0, f"{result.stderr}\n{worker.output()}"
    assert "result 42" in result.stdout

    def ticks() -> int:
        with sqlite3.connect(demo / "db.sqlite") as connection:
            return int(connection.execute(
                "SELECT count(*) FROM notes WHERE text = 'beat tick'").fetchone()[0])

    wait_for(lambda: ticks() >= 2, timeout=60,
             what=f"two beat ticks run by the worker; beat log {beat.log}")
    state = demo / ".flasker"
    assert (state / "broker.sqlite").is_file()
    assert (state / "beat-heartbeat").is_file()
    assert (state / "celerybeat.pid").is_file()

    second = spawn(["beat"], cwd=demo, env=env)
    assert second.popen.wait(timeout=60) != 0  # a single beat: the pid file refuses another
    assert "celerybeat.pid" in second.output() or "already" in second.output().lower()

    assert beat.stop() == 0
    assert worker.stop() == 0
    assert not (state / "celerybeat.pid").exists()


def test_web_serves_with_gunicorn(demo: Path, spawn: t.Callable[..., Process]) -> None:
    port = free_port()
    web = spawn(["web", "--bind", f"127.0.0.1:{port}", "--workers", "2"], cwd=demo)
    base = f"http://127.0.0.1:{port}"
    health = wait_for(lambda: _get(base + "/healthz"), timeout=30, what=f"gunicorn; log {web.log}")
    assert health.json() == {"status": "ok"}
    assert "<title>Demo</title>" in _get(base + "/").text
    assert web.stop() == 0
    assert "Booting worker" in web.output() and "Shutting down" in web.output()


def test_shell_reads_a_script_and_reports_failure(demo: Path) -> None:
    ok = flasker("shell", cwd=demo, input="print(Note.__tablename__, app.name)\n")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "notes demo"
    failed = flasker("shell", cwd=demo, input="1 / 0\n")
    assert failed.returncode == 1
    assert "ZeroDivisionError" in failed.stderr


def test_unknown_command_is_a_usage_error_not_a_traceback(tmp_path: Path) -> None:
    result = flasker("frobnicate", cwd=tmp_path)
    assert result.returncode == 2
    assert "No such command 'frobnicate'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_environment_value_stops_start_up_with_a_sentence(demo: Path) -> None:
    result = flasker("routes", cwd=demo, env={"FLASKER__ENGINE__POOL_SIZE": "lots"})
    assert result.returncode == 1
    assert ("Error: Config 'ENGINE.pool_size' has value 'lots' (environment variable"
            " 'FLASKER__ENGINE__POOL_SIZE'). Not an integer.") in result.stderr


def test_a_missing_secret_key_refuses_to_serve(demo: Path) -> None:
    cfg = demo / "default.cfg"
    cfg.write_text(re.sub(r"SECRET_KEY = \w+", "SECRET_KEY = change-me", cfg.read_text()))
    result = flasker("routes", cwd=demo)
    assert result.returncode == 1
    assert "'APP.SECRET_KEY' cannot be used outside debug and testing" in result.stderr
    assert "secrets.token_hex()" in result.stderr
