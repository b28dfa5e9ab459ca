"""The WSGI entry point for gunicorn: ``flasker.wsgi:app``, found through ``FLASKER_CONFIG``."""

from __future__ import annotations

from .config import find_config_file
from .logs import configure_logging
from .project import Project, prepare_import

_path = find_config_file()
prepare_import(_path.parent)
project = Project(_path, load_modules=False)
configure_logging(project.config)
project.start()
app = project.app
