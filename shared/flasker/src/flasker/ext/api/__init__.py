"""Every model of a flasker project as a JSON API: see :class:`APIManager`."""

from __future__ import annotations

from .manager import OPTIONS as OPTIONS
from .manager import APIManager as APIManager
from .problems import Problem as Problem

__all__ = [
    "OPTIONS",
    "APIManager",
    "Problem",
]
