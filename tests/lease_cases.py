"""What the two lease test modules share: a project with the ``chore`` task, and its workers.

``chore`` records its start at once (committed, so that a start is seen even if its process
is killed next), sleeps, then leaves one row keyed by the task's id (``ON CONFLICT DO
NOTHING``, as the README advises): a test sees both "nothing lost" and how often a task ran.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import typing as t
from pathlib import Path

import sqlalchemy as sa

from flasker import Project
from flasker.tasks import celery_settings

from .conftest import SECRET, Process, prepend_path, unique_package, wait_for, write_project

TASKS = """
import os
import time

import sqlalchemy as sa
from sqlalchemy import Column, Integer, Unicode
from sqlalchemy.dialects import postgresql, sqlite

from flasker import Model, current_project

celery = current_project.celery
db = current_project.db
INSERT = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


class Receipt(Model):
    task_id = Column(Unicode(64), primary_key=True)


class Start(Model):
    id = Column(Integer, primary_key=True)
    task_id = Column(Unicode(64))
    pid = Column(Integer)


@celery.task(bind=True)
def chore(self, seconds=0.0):
    with current_project.engine.begin() as connection:
        connection.execute(sa.insert(Start.__table__).values(task_id=self.request.id,
                                                             pid=os.getpid()))
    time.sleep(seconds)
    insert = INSERT[db.get_bind().dialect.name]
    db.execute(insert(Receipt).values(task_id=self.request.id).on_conflict_do_nothing())
"""


def write_tasks_project(folder: Path, monkeypatch: t.Any, celery: str = "",
                        project: str = "") -> Project:
    """A project in ``folder`` whose module holds ``chore``, its tables created."""
    package = unique_package()
    path = write_project(folder, f"""
        [PROJECT]
        NAME = Lease {package}
        MODULES = {package}.tasks
        STATE_FOLDER = {folder / 'state'}
        {project}
        [CELERY]
        {celery}
        """, {f"{package}/__init__.py": "", f"{package}/tasks.py": TASKS})
    prepend_path(monkeypatch, folder)
    made = Project(path, overrides={"APP": {"TESTING": True}})
    made.metadata.create_all(made.engine)
    return made


def settings_of(folder: Path, celery: str = "") -> dict[str, t.Any]:
    """Celery's settings of a project whose ``[CELERY]`` section is ``celery``."""
    path = write_project(folder, f"[PROJECT]\nNAME = lease\n[CELERY]\n{celery}\n")
    return celery_settings(Project(path, overrides={"APP": {"TESTING": True}}).config)


class Tasks:
    """A project with the ``chore`` task, its tables, and its workers."""

    def __init__(self, project: Project, spawn: t.Callable[..., Process],
                 env: t.Mapping[str, str] | None = None) -> None:
        self.project = project
        self._spawn = spawn
        self.env = {"FLASKER__APP__SECRET_KEY": SECRET, **(env or {})}
        self.workers: list[Process] = []
        self.chore = next(task for name, task in project.celery.tasks.items()
                          if name.endswith(".chore"))

    def worker(self, node: str, concurrency: int = 2, **env: str) -> Process:
        """``flasker worker`` as node ``node@lease``, once it says it is ready."""
        assert self.project.config.path is not None
        process = self._spawn(["-c", str(self.project.config.path), "worker",
                               "--concurrency", str(concurrency), "--", "-n", f"{node}@lease"],
                              cwd=self.project.root, env={**self.env, **env})
        self.workers.append(process)
        wait_for(lambda: f"{node}@lease ready." in process.output(), timeout=60,
                 what=f"worker {node}; its log: {process.log}")
        return process

    def stop_workers(self) -> None:
        """SIGTERM to each worker's main process, as ``docker stop`` does, all at once.

        Not to their process groups (the ``spawn`` fixture's way): a task process killed
        while it holds the pool's queue lock leaves Celery's main process waiting for it at
        exit, until the fixture's SIGKILL 20 s later.
        """
        running = [w for w in self.workers if w.popen.poll() is None]
        for worker in running:
            worker.popen.send_signal(signal.SIGTERM)
        for worker in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.popen.wait(timeout=20)

    def count(self, table: str) -> int:
        with self.project.engine.connect() as connection:
            return int(connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())

    def ids(self, table: str) -> set[str]:
        with self.project.engine.connect() as connection:
            return set(connection.execute(sa.text(f"SELECT task_id FROM {table}")).scalars())

    def starts(self, task_id: str) -> list[int]:
        """The pids of the processes that started ``task_id``, in order."""
        with self.project.engine.connect() as connection:
            return list(connection.execute(
                sa.text("SELECT pid FROM starts WHERE task_id = :id ORDER BY id"),
                {"id": task_id}).scalars())
