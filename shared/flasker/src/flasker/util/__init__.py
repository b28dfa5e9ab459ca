"""Small tools flasker projects rely on: leaf helpers that import nothing of flasker's core."""

from __future__ import annotations

from .cache import Cacheable as Cacheable
from .cache import stored_property as stored_property
from .csv import CSVError as CSVError
from .csv import SmartDictReader as SmartDictReader
from .csv import load_csv as load_csv
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
