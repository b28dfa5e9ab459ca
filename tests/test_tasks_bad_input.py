"""Tasks sent with bad arguments, through a real ``flasker worker`` on Redis: each fails cleanly
(FAILURE with the error, one JSON log line naming the task), and the worker stays up: it
answers a ping and runs the next task."""

from __future__ import annotations

import json
import re
import typing as t
import uuid
from collections.abc import Iterator

import pytest
from kombu.exceptions import EncodeError

from flasker import Project

from .conftest import SECRET, Process, prepend_path, unique_package, wait_for, write_project

TASKS = """
from sqlalchemy import Column, Integer, Unicode

from flasker import Model, current_project

celery = current_project.celery
db = current_project.db


class Note(Model):
    id = Column(Integer, primary_key=True)
    text = Column(Unicode(64))


@celery.task
def add(a, b):
    return a + b


@celery.task
def record(text):
    db.add(Note(text=text))
    db.flush()
    return text


@celery.task
def unserializable_result():
    return object()
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Project]:
    """A project of its own queue on the session's Redis, its notes in SQLite."""
    package = unique_package()
    folder = tmp_path_factory.mktemp("tasks")
    path = write_project(folder, f"""
        [PROJECT]
        NAME = Bad tasks {package}
        MODULES = {package}.tasks
        LOG_FORMAT = json
        [APP]
        SECRET_KEY = {SECRET}
        [CELERY]
        BROKER_URL = {redis_url}
        RESULT_BACKEND = {redis_url}
    """, {f"{package}/__init__.py": "", f"{package}/tasks.py": TASKS})
    with pytest.MonkeyPatch.context() as patch:
        prepend_path(patch, folder)  # as 'flasker' does, for the MODULES of this project
        project = Project(path, overrides={"APP": {"TESTING": True}})
        project.metadata.create_all(project.engine)
        yield project
        project.close()


@pytest.fixture(scope="module")
def worker(project: Project) -> Iterator[Process]:
    assert project.config.path is not None
    node = f"bad-tasks-{uuid.uuid4().hex[:6]}@%h"
    process = Process(["-c", str(project.config.path), "worker", "--concurrency", "2",
                       "--", "-P", "prefork", "-n", node], cwd=project.root)
    try:
        wait_for(lambda: project.celery.control.ping(timeout=0.5), timeout=60,
                 what=f"the worker to answer a ping; its log:\n{process.log}")
        yield process
    finally:
        process.stop()


def _name(project: Project, short: str) -> str:
    return str(next(name for name in project.celery.tasks if name.endswith("." + short)))


def _lines_about(process: Process, task_id: str) -> list[dict[str, t.Any]]:
    """The worker's JSON log lines that name the task."""
    found = []
    for line in process.output().splitlines():
        if task_id in line:
            found.append(json.loads(line))
    return found


def _still_up(project: Project, worker: Process) -> None:
    """The worker process lives, answers a ping and runs the next task."""
    assert worker.popen.poll() is None, worker.output()[-2000:]
    replies = project.celery.control.ping(timeout=2)
    assert replies, "the worker did not answer a ping"
    assert project.celery.send_task(_name(project, "add"), args=[2, 3]).get(timeout=30) == 5
    assert project.celery.send_task(_name(project, "record"), args=["next"]).get(
        timeout=30) == "next"


@pytest.mark.parametrize(("args", "kwargs", "says"), [
    ([1], {}, "missing 1 required positional argument: 'b'"),
    ([1, 2, 3], {}, "takes 2 positional arguments but 3 were given"),
    ([1, 2], {"c": 3}, "got an unexpected keyword argument 'c'"),
    ([1, "two"], {}, "unsupported operand type(s) for +: 'int' and 'str'"),
    ([None, {"a": 1}], {}, "unsupported operand type(s) for +: 'NoneType' and 'dict'"),
], ids=["too few", "too many", "unknown keyword", "wrong type", "null and object"])
def test_a_task_with_bad_arguments_fails_cleanly(project: Project, worker: Process,
                                                 args: list[t.Any], kwargs: dict[str, t.Any],
                                                 says: str) -> None:
    # send_task, as another service would send it: no signature check on the sending side.
    result = project.celery.send_task(_name(project, "add"), args=args, kwargs=kwargs)
    with pytest.raises(TypeError, match=re.escape(says)):
        result.get(timeout=30)
    assert result.state == "FAILURE"
    assert isinstance(result.result, TypeError)
    wait_for(lambda: [line for line in _lines_about(worker, result.id)
                      if line["level"] == "ERROR"],
             timeout=10, what="the worker's log line about the task")
    errors = [line for line in _lines_about(worker, result.id) if line["level"] == "ERROR"]
    assert len(errors) == 1, errors
    assert errors[0]["task_id"] == result.id
    assert "TypeError" in errors[0]["message"] and says in errors[0]["message"]
    _still_up(project, worker)


def test_the_sending_side_checks_what_it_can(project: Project, worker: Process) -> None:
    add = project.celery.tasks[_name(project, "add")]
    # Celery checks the signature before sending (task 'typing'), and JSON before publishing:
    # nothing reaches the broker, the caller gets the error at once.
    with pytest.raises(TypeError, match="missing 1 required positional argument"):
        add.delay(1)
    with pytest.raises(EncodeError, match="not JSON serializable"):
        add.delay(object(), 1)
    with pytest.raises(EncodeError):
        add.delay({1, 2}, 1)
    _still_up(project, worker)


def test_a_result_that_cannot_be_stored_fails_the_task(project: Project,
                                                       worker: Process) -> None:
    result = project.celery.send_task(_name(project, "unserializable_result"))
    with pytest.raises(Exception, match="not JSON serializable"):
        result.get(timeout=30)
    assert result.state == "FAILURE"
    _still_up(project, worker)


def test_an_unknown_task_is_logged_and_dropped(project: Project, worker: Process) -> None:
    result = project.celery.send_task("no.such.task", args=[1])
    wait_for(lambda: _lines_about(worker, result.id), timeout=10,
             what="the worker's log line about the unknown task")
    lines = _lines_about(worker, result.id)
    assert len(lines) == 1, lines
    assert lines[0]["level"] == "ERROR"
    assert "Received unregistered task of type 'no.such.task'" in lines[0]["message"]
    _still_up(project, worker)


def test_a_message_the_worker_refuses_to_decode(project: Project, worker: Process) -> None:
    # Pickle is not in accept_content: a message in it is refused, never unpickled.
    result = project.celery.send_task(_name(project, "add"), args=[1, 2], serializer="pickle")
    wait_for(lambda: "Refusing to deserialize untrusted content of type pickle"
             in worker.output(), timeout=10, what="the worker's refusal")
    assert result.state == "PENDING"  # dropped: never run, never stored
    _still_up(project, worker)


def test_the_worker_log_holds_no_bare_traceback(project: Project, worker: Process) -> None:
    """Last: every failure above is one JSON line, its traceback inside it.

    Besides those lines, the worker prints only Celery's start-up banner (and, run as root
    as in a bare CI runner, Celery's warning about that).
    """
    lines = worker.output().splitlines()
    bare = [line for line in lines if not line.startswith("{")]
    assert not [line for line in bare if "Traceback" in line or line.startswith("  File ")]
    logged = [json.loads(line) for line in lines if line.startswith("{")]
    assert sum("Refusing to deserialize" in entry["message"] for entry in logged) == 1
    assert sum("raised unexpected: TypeError" in entry["message"] for entry in logged) == 5
