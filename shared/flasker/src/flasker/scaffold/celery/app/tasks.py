"""Celery tasks: each runs inside the Flask app context with its own database session,
committed when the task succeeds and rolled back when it fails."""

from __future__ import annotations

from flasker import current_project

from .models import Note

celery = current_project.celery
db = current_project.db


@celery.task
def add(x: int, y: int) -> int:
    """The sample task: the page enqueues it and shows its result."""
    return x + y


@celery.task
def tick() -> int:
    """A periodic task (see BEAT_SCHEDULE in default.cfg): records that beat ran."""
    db.add(Note(text="beat tick"))
    return db.query(Note).count()
