"""Small tools flasker projects rely on."""

from __future__ import annotations

from .cache import Cacheable as Cacheable
from .cache import cached_property as cached_property
from .csv import CSVError as CSVError
from .csv import SmartDictReader as SmartDictReader
from .csv import load_csv as load_csv
from .dicts import Dict as Dict
from .jsonify import Jsonifiable as Jsonifiable
from .jsonify import jsonify as jsonify
from .logging import Loggable as Loggable
from .models import Model as Model
from .models import Page as Page
from .models import table_name as table_name

__all__ = [
    "CSVError",
    "Cacheable",
    "Dict",
    "Jsonifiable",
    "Loggable",
    "Model",
    "Page",
    "SmartDictReader",
    "cached_property",
    "jsonify",
    "load_csv",
    "table_name",
]
