"""The ``current_project`` proxy, built as Flask's ``current_app`` is."""

from __future__ import annotations

import typing as t
from contextlib import contextmanager
from contextvars import ContextVar

from flask import current_app, has_app_context
from werkzeug.local import LocalProxy

if t.TYPE_CHECKING:
    from collections.abc import Iterator

    from .project import Project

EXTENSION_KEY = "flasker"

_no_project_msg = """\
Working outside of a flasker project.

'current_project' works while the project imports its MODULES, and inside the
application context of its Flask app (a request, a Celery task, 'flasker shell').
Push one with 'with project.app.app_context():', or use the Project object directly.\
"""

_cv_project: ContextVar[Project] = ContextVar("flasker.project")


def _find_project() -> Project:
    project = _cv_project.get(None)
    if project is not None:
        return project
    if has_app_context():
        found = current_app.extensions.get(EXTENSION_KEY)
        if found is not None:
            return t.cast("Project", found)
    raise RuntimeError(_no_project_msg)


def has_project() -> bool:
    """Whether ``current_project`` points at a project here."""
    try:
        _find_project()
    except RuntimeError:
        return False
    return True


@contextmanager
def project_context(project: Project) -> Iterator[Project]:
    """Make ``project`` the ``current_project`` for the duration of the block."""
    token = _cv_project.set(project)
    try:
        yield project
    finally:
        _cv_project.reset(token)


current_project: Project = LocalProxy(_find_project)  # type: ignore[assignment]
