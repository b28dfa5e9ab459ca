"""Celery tasks: each runs inside the Flask app context with its own database session,
committed when the task succeeds and rolled back when it fails."""

from __future__ import annotations

import datetime as dt
import time
import typing as t

import sqlalchemy as sa
from celery import Task
from sqlalchemy.dialects import postgresql, sqlite

from flasker import current_project

from .models import BeatRun, Cat, House, TaskReceipt

celery = current_project.celery
db = current_project.db

MAX_DELAY = 300.0
# INSERT ... ON CONFLICT DO NOTHING, in the database's own dialect.
INSERT_NEW: dict[str, t.Any] = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


@celery.task
def census(delay: float = 0.0) -> dict[str, int]:
    """Count the houses and cats; the page enqueues it and shows the result.

    ``delay`` (seconds, at most 300) makes it a long task, to watch a worker's
    shutdown hand it back to the queue.
    """
    time.sleep(min(max(float(delay), 0.0), MAX_DELAY))
    houses = db.scalar(sa.select(sa.func.count()).select_from(House)) or 0
    cats = db.scalar(sa.select(sa.func.count()).select_from(Cat)) or 0
    return {"houses": houses, "cats": cats}


@celery.task
def tick() -> int:
    """The periodic task (BEAT_SCHEDULE in default.cfg): records when beat last ran it."""
    run, _ = BeatRun.get_or_create(name="tick", defaults={"runs": 0,
                                                          "ran_at": dt.datetime.now(dt.UTC)})
    run.ran_at = dt.datetime.now(dt.UTC)
    run.runs += 1
    return run.runs


@celery.task(bind=True)
def receipt(self: Task, delay: float = 0.0) -> str:
    """Leave one row keyed by this task's id: an idempotent task, as the README shows.

    A task runs at least once: its worker may die after the work and before the
    acknowledgement, and another worker runs it again. That run finds the receipt and
    adds none. The stack's fault tests send many and count the receipts.
    """
    time.sleep(min(max(float(delay), 0.0), MAX_DELAY))
    insert = INSERT_NEW[db.get_bind().dialect.name]
    db.execute(insert(TaskReceipt).values(task_id=self.request.id).on_conflict_do_nothing())
    return t.cast(str, self.request.id)
