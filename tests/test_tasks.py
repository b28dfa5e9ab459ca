"""Celery inside a flasker project: a real ``flasker worker`` consuming through Redis."""

from __future__ import annotations

import os
import typing as t
from pathlib import Path

import pytest
import sqlalchemy as sa
from celery.schedules import crontab

from flasker import Project
from flasker.tasks import celery_settings

from .conftest import SECRET, Process, prepend_path, unique_package, write_project

TASKS = """
import sqlalchemy as sa
from flask import current_app
from sqlalchemy import Column, Integer, Unicode

from flasker import current_project
from flasker import Model

celery = current_project.celery
db = current_project.db


class Entry(Model):
    id = Column(Integer, primary_key=True)
    text = Column(Unicode(64))


@celery.task
def record(text):
    db.add(Entry(text=text))
    return current_app.name


@celery.task
def record_then_fail(text):
    db.add(Entry(text=text))
    db.flush()
    raise ValueError("the task failed after writing " + text)


@celery.task
def count():
    return db.scalar(sa.select(sa.func.count()).select_from(Entry))
"""


@pytest.fixture
def task_project(tmp_path: Path, clean_pg: str, redis_url: str,
                 monkeypatch: pytest.MonkeyPatch) -> t.Iterator[Project]:
    package = unique_package()
    path = write_project(
        tmp_path,
        f"""
        [PROJECT]
        NAME = Tasks {package}
        MODULES = {package}.tasks
        DB_URL = {clean_pg}
        [CELERY]
        BROKER_URL = {redis_url}
        RESULT_BACKEND = {redis_url}
        """,
        {f"{package}/__init__.py": "", f"{package}/tasks.py": TASKS},
    )
    prepend_path(monkeypatch, str(tmp_path))
    project = Project(path, overrides={"APP": {"TESTING": True}})
    project.metadata.create_all(project.engine)
    yield project
    project.close()


@pytest.fixture
def worker(task_project: Project, spawn: t.Callable[..., Process]) -> Process:
    assert task_project.config.path is not None
    process = spawn(
        ["-c", str(task_project.config.path), "worker", "--concurrency", "2",
         "--", "-P", "prefork"],
        cwd=task_project.root,
        env={"FLASKER__APP__SECRET_KEY": SECRET},
    )
    # A ping through the broker proves the worker consumes.
    from .conftest import wait_for

    wait_for(lambda: task_project.celery.control.ping(timeout=0.5), timeout=60,
             what=f"the worker to answer a ping; its log:\n{process.log}")
    return process


def _task(project: Project, name: str) -> t.Any:
    return next(task for key, task in project.celery.tasks.items() if key.endswith("." + name))


def test_a_task_runs_in_the_app_context_and_commits(task_project: Project, worker: Process) -> None:
    result = _task(task_project, "record").delay("hello").get(timeout=30)
    assert result == task_project.app.name
    assert _task(task_project, "count").delay().get(timeout=30) == 1
    with task_project.engine.connect() as connection:
        texts = connection.execute(sa.text("SELECT text FROM entries")).scalars().all()
    assert texts == ["hello"]


def test_a_failing_task_is_rolled_back(task_project: Project, worker: Process) -> None:
    outcome = _task(task_project, "record_then_fail").delay("lost")
    with pytest.raises(ValueError, match="the task failed after writing lost"):
        outcome.get(timeout=30)
    assert _task(task_project, "count").delay().get(timeout=30) == 0


def test_the_worker_consumes_the_project_queue_under_its_node_name(
    task_project: Project, worker: Process
) -> None:
    queue = task_project.celery.conf.task_default_queue
    assert queue.startswith("tasks-proj-")
    active = task_project.celery.control.inspect(timeout=2).active_queues() or {}
    assert len(active) == 1
    node, queues = next(iter(active.items()))
    assert node.startswith(queue + "@")
    assert [q["name"] for q in queues] == [queue]


def test_reliable_defaults(task_project: Project) -> None:
    conf = task_project.celery.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    # Short, as live workers renew their lease (test_lease.py).
    assert conf.broker_transport_options["visibility_timeout"] == 30
    assert conf.worker_hijack_root_logger is False


def test_visibility_timeout_is_configurable(tmp_path: Path) -> None:
    path = write_project(tmp_path, """
        [PROJECT]
        NAME = vt
        [CELERY]
        broker_url = redis://redis:6379/0
        broker_transport_options = {"visibility_timeout": 7200}
    """)
    project = Project(path, overrides={"APP": {"TESTING": True}})
    assert project.celery.conf.broker_transport_options["visibility_timeout"] == 7200


def test_beat_schedule_from_the_config(tmp_path: Path) -> None:
    path = write_project(tmp_path, """
        [PROJECT]
        NAME = beat
        [CELERY]
        beat_schedule = {"every-minute": {"task": "a.b", "schedule": 60, "args": [1]},
            "nightly": {"task": "a.c", "schedule": "0 3 * * *"}}
    """)
    schedule = celery_settings(Project(path, overrides={"APP": {"TESTING": True}}).config)[
        "beat_schedule"
    ]
    assert schedule["every-minute"] == {"task": "a.b", "schedule": 60, "args": (1,)}
    assert schedule["nightly"]["schedule"] == crontab(minute="0", hour="3")


def test_a_bad_crontab_is_a_config_error(tmp_path: Path) -> None:
    from flasker import ConfigError

    path = write_project(tmp_path, """
        [PROJECT]
        NAME = beat
        [CELERY]
        beat_schedule = {"bad": {"task": "a.b", "schedule": "every day"}}
    """)
    with pytest.raises(ConfigError, match="'bad' has schedule 'every day'.*five fields"):
        Project(path, overrides={"APP": {"TESTING": True}}).celery  # noqa: B018


def test_sending_to_a_broker_that_is_down_fails_clearly(tmp_path: Path) -> None:
    from kombu.exceptions import OperationalError

    from .conftest import free_port

    port = free_port()
    path = write_project(tmp_path, f"""
        [PROJECT]
        NAME = down
        [CELERY]
        broker_url = redis://127.0.0.1:{port}/0
        task_publish_retry_policy = {{"max_retries": 1, "interval_start": 0, "interval_step": 0.1}}
    """)
    project = Project(path, overrides={"APP": {"TESTING": True}})
    with pytest.raises(OperationalError, match=f"{port}.*[Cc]onnection refused"):
        project.celery.send_task("anything", args=(1,))


def test_the_engine_pool_is_replaced_in_a_forked_child(tmp_path: Path) -> None:
    path = write_project(tmp_path, "[PROJECT]\nNAME = fork\n")
    project = Project(path, overrides={"APP": {"TESTING": True}})
    with project.engine.connect() as connection:
        connection.execute(sa.text("SELECT 1"))
    parent_pool = id(project.engine.pool)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child reports whether it got a fresh pool, then leaves at once
        os.write(write, b"fresh" if id(project.engine.pool) != parent_pool else b"shared")
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 16) == b"fresh"
    assert id(project.engine.pool) == parent_pool


def test_a_second_beat_of_the_project_refuses_to_start(
    task_project: Project, spawn: t.Callable[..., Process], tmp_path: Path
) -> None:
    """With Redis, the lock holds across hosts (each beat here has its own state folder)."""
    import redis

    from .conftest import wait_for

    assert task_project.config.path is not None
    config = ["-c", str(task_project.config.path)]
    first = spawn([*config, "beat"], cwd=task_project.root,
                  env={"FLASKER__PROJECT__STATE_FOLDER": str(tmp_path / "one"),
                       "FLASKER__APP__SECRET_KEY": SECRET})
    key = f"flasker:beat-lock:{task_project.celery.conf.task_default_queue}"
    client = redis.Redis.from_url(task_project.celery.conf.broker_url)
    try:
        wait_for(lambda: client.get(key), timeout=30, what=f"beat's lock; log {first.log}")
        second = spawn([*config, "beat"], cwd=task_project.root,
                       env={"FLASKER__PROJECT__STATE_FOLDER": str(tmp_path / "two"),
                            "FLASKER__APP__SECRET_KEY": SECRET})
        assert second.popen.wait(timeout=60) != 0
        assert "Another beat of this project is running" in second.output()
        assert client.ttl(key) > 0  # it expires if the beat holding it vanishes
        assert first.stop() == 0
        assert client.get(key) is None  # released on a clean stop
    finally:
        client.close()
