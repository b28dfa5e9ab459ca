"""The REST API over the reference app's models, for a reference app that registers none.

``bench_stack.py`` adds this module to the web role's ``[PROJECT] MODULES`` only when
``reference/app`` has no ``APIManager`` of its own, so that ``/api/houses/`` can be measured.
"""

from __future__ import annotations

from flasker import current_project
from flasker.ext.api import APIManager

current_project.register_manager(APIManager(add_all_models=True))
