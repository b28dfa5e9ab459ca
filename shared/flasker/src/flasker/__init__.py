"""flasker: Flask 3, SQLAlchemy 2 and Celery 5 behind one configuration file.

Names are imported on first use, so that ``import flasker`` (and ``flasker --help``)
stays fast and has no side effects.
"""

from __future__ import annotations

import importlib
import typing as t

if t.TYPE_CHECKING:
    from .config import ConfigError as ConfigError
    from .globals import current_project as current_project
    from .globals import has_project as has_project
    from .project import Project as Project

__version__ = "0.1.0"

_LAZY = {
    "ConfigError": ".config",
    "Project": ".project",
    "current_project": ".globals",
    "has_project": ".globals",
}

__all__ = [
    "ConfigError",
    "Project",
    "__version__",
    "current_project",
    "has_project",
]


def __getattr__(name: str) -> t.Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'flasker' has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
