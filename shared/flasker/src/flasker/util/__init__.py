"""Small tools flasker projects rely on."""

from __future__ import annotations

from .models import Model as Model
from .models import Page as Page
from .models import table_name as table_name

__all__ = [
    "Model",
    "Page",
    "table_name",
]
