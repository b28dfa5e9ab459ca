"""flasker: Flask 3, SQLAlchemy 2 and Celery 5 behind one configuration file."""

from __future__ import annotations

from importlib.metadata import version

from .config import ConfigError, Option
from .extension import Extension
from .globals import current_project, has_project
from .models import Model, Pagination
from .project import Project

__version__ = version("flasker")

__all__ = [
    "ConfigError",
    "Extension",
    "Model",
    "Option",
    "Pagination",
    "Project",
    "__version__",
    "current_project",
    "has_project",
]
