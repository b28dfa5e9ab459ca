"""Every model of a flasker project as a JSON API: see :class:`APIManager`."""

from __future__ import annotations

from .manager import OPTIONS as OPTIONS
from .manager import APIManager as APIManager
from .manager import api_prefix as api_prefix
from .problems import Problem as Problem

__all__ = [
    "OPTIONS",
    "APIManager",
    "Problem",
    "api_prefix",
]
