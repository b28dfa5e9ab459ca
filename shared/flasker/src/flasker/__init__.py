"""flasker: Flask 3, SQLAlchemy 2 and Celery 5 behind one configuration file."""

from __future__ import annotations

import importlib
import sys
import typing as t

if t.TYPE_CHECKING:
    from .config import ConfigError as ConfigError
    from .config import Option as Option
    from .extension import Extension as Extension
    from .globals import current_project as current_project
    from .globals import has_project as has_project
    from .models import Model as Model
    from .models import Pagination as Pagination
    from .project import Project as Project

    __version__: str

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

# Every 'import flasker.x' runs this module first, the 'flasker' command included: the
# names are imported on first use (PEP 562) so that 'flasker --help' does not load
# SQLAlchemy's ORM and the project machinery. The imports above are for type checkers.
_MODULES = {
    "ConfigError": ".config",
    "Extension": ".extension",
    "Model": ".models",
    "Option": ".config",
    "Pagination": ".models",
    "Project": ".project",
    "current_project": ".globals",
    "has_project": ".globals",
}


def __getattr__(name: str) -> t.Any:
    if name == "__version__":
        from importlib.metadata import version  # noqa: PLC0415 (start-up cost)

        value: t.Any = version("flasker")
    elif name in _MODULES:
        value = getattr(importlib.import_module(_MODULES[name], __name__), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # Later lookups find it without calling this again. ('globals' would be the
    # 'flasker.globals' submodule here, once imported.)
    setattr(sys.modules[__name__], name, value)
    return value


def __dir__() -> list[str]:
    return sorted({*vars(sys.modules[__name__]), *__all__})
