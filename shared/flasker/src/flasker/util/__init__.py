"""Small tools flasker projects rely on: leaf helpers that import nothing of flasker's core."""

from __future__ import annotations

import importlib
import sys
import typing as t

if t.TYPE_CHECKING:
    from .cache import Cacheable as Cacheable
    from .cache import stored_property as stored_property
    from .csv import CSVError as CSVError
    from .csv import SmartDictReader as SmartDictReader
    from .csvload import load_csv as load_csv
    from .dicts import Dict as Dict
    from .json_data import Jsonifiable as Jsonifiable
    from .json_data import to_json_data as to_json_data
    from .logging import Loggable as Loggable

__all__ = [
    "CSVError",
    "Cacheable",
    "Dict",
    "Jsonifiable",
    "Loggable",
    "SmartDictReader",
    "load_csv",
    "stored_property",
    "to_json_data",
]

# 'flasker.config' imports 'flasker.util.convert', which runs this module first: the
# names are imported on first use (PEP 562) so that the 'cache' and 'csv' helpers, and
# SQLAlchemy with them, stay out of 'flasker --help'. The imports above are for type checkers.
_MODULES = {
    "CSVError": ".csv",
    "Cacheable": ".cache",
    "Dict": ".dicts",
    "Jsonifiable": ".json_data",
    "Loggable": ".logging",
    "SmartDictReader": ".csv",
    "load_csv": ".csvload",
    "stored_property": ".cache",
    "to_json_data": ".json_data",
}


def __getattr__(name: str) -> t.Any:
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULES[name], __name__), name)
    setattr(sys.modules[__name__], name, value)  # later lookups find it here
    return value


def __dir__() -> list[str]:
    return sorted({*vars(sys.modules[__name__]), *__all__})
