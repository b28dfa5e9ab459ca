"""The JSON API of the houses and their cats: /api/houses/, /api/cats/ (flasker.ext.api).

Its settings are the [API] section of default.cfg; with sign-in on, it takes the signed-in
browser's session (with its CSRF header) or a personal API token.
"""

from __future__ import annotations

from flasker import current_project
from flasker.ext.api import APIManager

from .models import Cat, House

api = current_project.register_manager(APIManager())
api.add_model(House)
api.add_model(Cat)
