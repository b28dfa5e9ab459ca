"""The WSGI entry point for gunicorn: ``flasker.wsgi:app``, found through ``FLASKER_CONFIG``."""

from __future__ import annotations

from .project import Project

project = Project()
app = project.app
