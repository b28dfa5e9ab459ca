"""The contract of a flasker extension: Flask's ``init_app`` pattern and one config section.

An extension declares the section it reads by default (``[API]``, ``[AUTH]``) and the
keys it accepts. However it is registered (``Ext(app)``, ``ext.init_app(app)`` or
``project.register_manager(ext)``) the section is read once, at ``init_app``: the
constructor's options are defaults, the section wins, and an unknown key in it is a
:class:`~flasker.ConfigError` that suggests the nearest valid one.
"""

from __future__ import annotations

import typing as t

from .config import Option, section_options
from .globals import EXTENSION_KEY as PROJECT_KEY

if t.TYPE_CHECKING:
    from flask import Flask

    from .project import Project


class Extension:
    """Base class of flasker's extensions and of third-party ones.

    A subclass sets :attr:`name` (its key in ``app.extensions``), :attr:`config_section`
    and :attr:`options`, keeps its constructor's options in :attr:`defaults`, and
    implements :meth:`setup`. Per-app state is what :meth:`setup` returns, kept in
    ``app.extensions[name]``; the extension object keeps no app. ``before_startup``
    and ``after_startup`` are hooks around the import of the project's MODULES.

    ::

        class Greeter(Extension):
            name = "greeter"
            config_section = "GREETER"
            options = (Option("GREETING", to_str, "Hello"),)

            def setup(self, app, project, settings):
                app.add_url_rule("/hello", "hello", lambda: settings["GREETING"])
                return settings
    """

    #: The key of the extension's state in ``app.extensions``.
    name: t.ClassVar[str]
    #: The section read when no other is given.
    config_section: t.ClassVar[str]
    #: The keys the section may hold.
    options: t.ClassVar[tuple[Option, ...]] = ()

    def __init__(self, app: Flask | None = None, *, config_section: str | None = None,
                 **defaults: t.Any) -> None:
        #: Constructor options by option name: below the config section, above the defaults.
        self.defaults: dict[str, t.Any] = {k.upper(): v for k, v in defaults.items()}
        self.section = (config_section or self.config_section).upper()
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask, *, config_section: str | None = None) -> None:
        """Set the extension up on ``app``, the Flask app of a flasker project.

        :param config_section: read this section instead of the extension's own.
        """
        kind = type(self).__name__
        if self.name in app.extensions:
            raise RuntimeError(
                f"A {kind} is already registered on the app '{app.name}'. Register it once"
                " per app: 'project.register_manager(...)' calls 'init_app' for you, so do"
                " not call 'init_app' as well."
            )
        project: Project | None = app.extensions.get(PROJECT_KEY)
        if project is None:
            raise RuntimeError(
                f"The app '{app.name}' is not a flasker project's app. Register the {kind}"
                " with 'current_project.register_manager(...)' in a module of the project's"
                " MODULES, or pass 'project.app'."
            )
        section = (config_section or self.section).upper()
        settings = section_options(project.config, section, self.options, self.defaults)
        app.extensions[self.name] = self.setup(app, project, settings, section)

    def setup(self, app: Flask, project: Project, settings: dict[str, t.Any],
              section: str) -> object:
        """Register what the extension adds to ``app``; return its per-app state.

        :param settings: the section's values by option name, converted and complete.
        :param section: the section they were read from, for error messages.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement 'setup'.")

    def state(self, app: Flask) -> t.Any:
        """The per-app state :meth:`setup` returned for ``app``."""
        try:
            return app.extensions[self.name]
        except KeyError:
            raise RuntimeError(
                f"The {type(self).__name__} is not registered on the app '{app.name}'. Did"
                " you forget to call 'project.register_manager(...)'?"
            ) from None

    def before_startup(self, project: Project) -> None:
        """Run before the project imports its MODULES (when registered before that)."""

    def after_startup(self, project: Project) -> None:
        """Run once the project has imported its MODULES (at once when registered later)."""
