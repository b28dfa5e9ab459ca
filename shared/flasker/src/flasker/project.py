"""The project: one configuration giving the Flask app, the engine, the session and Celery."""

from __future__ import annotations

import importlib
import sys
import typing as t
from functools import cached_property
from pathlib import Path

from flask import Flask

from .bodies import GuardBodies
from .caching import init_cache
from .config import (
    APP,
    PROJECT,
    SECRET_HOWTO,
    Config,
    ConfigError,
    load_config,
    slug,
    weak_secret_reason,
)
from .db import create_engine, create_session, init_app_session
from .globals import EXTENSION_KEY, project_context
from .health import init_health
from .models import new_registry
from .outages import init_outages
from .security import init_security
from .util.json_data import init_json

if t.TYPE_CHECKING:
    import os

    import sqlalchemy as sa
    from celery import Celery
    from sqlalchemy.orm import Session, registry, scoped_session

    from .config import Option, Source

Hook = t.Callable[["Project"], None]


class Manager(t.Protocol):
    """What ``register_manager`` needs of an extension (:class:`flasker.Extension` has it)."""

    def init_app(self, app: Flask, *, config_section: str | None = None) -> None: ...

    def before_startup(self, project: Project) -> None: ...

    def after_startup(self, project: Project) -> None: ...


M = t.TypeVar("M", bound=Manager)


class Project:
    """A flasker project, built from its configuration.

    Several projects may exist in one process (one per test, say); nothing happens
    at import time. ``project.app`` is the Flask app, ``project.celery`` the Celery
    app, ``project.db`` the session of the current request or task, and
    ``project.engine`` the SQLAlchemy engine, ``project.registry`` the SQLAlchemy
    registry in which its models are mapped (``project.metadata`` holds their tables).

    Creating a project configures no logging and touches no ``sys.path``: the
    ``flasker`` command and ``flasker.wsgi`` do both for the process they run (see
    :func:`prepare_import`).

    :param config_path: the ``.cfg`` file; found as ``flasker`` finds it when omitted.
    :param overrides: ``{"SECTION": {"KEY": value}}``, applied over file and environment.
    :param environ: the environment to read instead of ``os.environ``.
    :param load_modules: import ``[PROJECT] MODULES`` now (the normal case).
    """

    def __init__(self, config_path: str | os.PathLike[str] | None = None, *,
                 overrides: t.Mapping[str, t.Mapping[str, t.Any]] | None = None,
                 environ: t.Mapping[str, str] | None = None,
                 extra_options: t.Mapping[str, t.Sequence[Option]] | None = None,
                 load_modules: bool = True) -> None:
        self.config: Config = load_config(
            config_path, overrides=overrides, environ=environ, extra_options=extra_options
        )
        self.name: str = self.config.get(PROJECT, "NAME")
        self.root: Path = self.config.root
        self._before_startup: list[Hook] = []
        self._after_startup: list[Hook] = []
        self.started = False
        self._starting = False
        self.registry: registry = new_registry()
        self.metadata: sa.MetaData = self.registry.metadata
        self.app: Flask = self._create_app()
        self.engine: sa.Engine = create_engine(self.config)
        self.db: scoped_session[Session] = create_session(self.engine)
        init_app_session(self.app, self.db)
        if load_modules:
            self.start()

    def __repr__(self) -> str:
        return f"<Project {self.name!r} ({self.config.path})>"

    # -- the parts --------------------------------------------------------------------------

    def _create_app(self) -> Flask:
        folder = self.root / self.config.get(PROJECT, "APP_FOLDER")
        app = Flask(
            _import_name(self.name),
            root_path=str(folder),
            static_folder=self.config.get(PROJECT, "APP_STATIC_FOLDER"),
            template_folder=self.config.get(PROJECT, "APP_TEMPLATE_FOLDER"),
            static_url_path=self.config.get(PROJECT, "STATIC_URL"),
        )
        # A body larger than this is refused (413) before it is read: Flask sets no limit.
        # '[APP] MAX_CONTENT_LENGTH' (bytes) changes it.
        app.config["MAX_CONTENT_LENGTH"] = 16 * 1024 * 1024
        app.config.update(self.config[APP])
        app.config["FLASKER_PROJECT_NAME"] = self.name
        if not (app.debug or app.testing):
            reason = weak_secret_reason(app.config.get("SECRET_KEY"))
            if reason is not None:
                source = self.config.source_of(APP, "SECRET_KEY")
                where = f" ({source})" if source else ""
                raise ConfigError(
                    f"Config 'APP.SECRET_KEY' cannot be used outside debug and testing:"
                    f" {reason}{where}. {SECRET_HOWTO} and set it as 'SECRET_KEY' under [APP]"
                    f" or as the environment variable 'FLASKER__APP__SECRET_KEY'."
                )
        app.extensions[EXTENSION_KEY] = self
        app.shell_context_processor(self.shell_context)
        init_json(app)
        init_cache(app, self.config)
        init_health(app, self)
        init_outages(app, self)
        init_security(app, self.config)
        app.wsgi_app = GuardBodies(app.wsgi_app)  # type: ignore[method-assign]
        return app

    @cached_property
    def celery(self) -> Celery:
        """The project's Celery app (created on first use, as importing Celery takes time)."""
        from .tasks import create_celery  # noqa: PLC0415

        return create_celery(self)

    # -- start-up ---------------------------------------------------------------------------

    def before_startup(self, hook: Hook) -> Hook:
        """Register ``hook(project)`` to run before the MODULES are imported."""
        self._before_startup.append(hook)
        return hook

    def after_startup(self, hook: Hook) -> Hook:
        """Register ``hook(project)`` to run once the MODULES are imported.

        Registered after start-up, it runs at once.
        """
        if self.started:
            hook(self)
        else:
            self._after_startup.append(hook)
        return hook

    def start(self) -> None:
        """Import the MODULES in order, with ``current_project`` pointing here.

        They are imported from ``sys.path`` as any module is: a module already imported
        in this process is not run again, so two projects in one process use modules
        of different names.
        """
        if self.started:
            return
        modules: list[str] = self.config.get(PROJECT, "MODULES") or []
        source = self.config.source_of(PROJECT, "MODULES")
        _check_not_imported(modules, source)
        self._starting = True
        with project_context(self):
            try:
                for hook in self._before_startup:
                    hook(self)
                for name in modules:
                    _import(name, self.root, source)
                self.started = True
                for hook in self._after_startup:
                    hook(self)
            except BaseException:
                # The models of a project that failed to start are released with it.
                self.registry.dispose()
                self.started = self._starting = False
                raise

    def register_manager(self, manager: M, config_section: str | None = None) -> M:
        """Register an extension (a :class:`flasker.Extension`): ``manager.init_app(app)``.

        The extension reads its own section (``[API]``, ``[AUTH]``), or
        ``config_section`` when given; the section's values override the constructor's
        options. Its ``before_startup(project)`` runs before the MODULES are imported
        (when it is registered before :meth:`start`), its ``after_startup(project)``
        once they are.
        """
        section = config_section.upper() if config_section else None
        manager.init_app(self.app, config_section=section)
        if not self._starting:
            self.before_startup(manager.before_startup)
        self.after_startup(manager.after_startup)
        return manager

    def close(self) -> None:
        """Release the project: its session, its connections and its models' mappings."""
        self.db.remove()
        self.engine.dispose()
        self.registry.dispose()
        self.started = False

    # -- conveniences -----------------------------------------------------------------------

    def models(self) -> dict[str, type[t.Any]]:
        """The project's mapped classes, by class name."""
        return {m.class_.__name__: m.class_ for m in self.registry.mappers}

    def shell_context(self) -> dict[str, t.Any]:
        return {"project": self, "app": self.app, "celery": self.celery, "db": self.db,
                **self.models()}


def prepare_import(root: Path) -> None:
    """Put the project's folder first on ``sys.path``, as ``flask``'s command line does.

    The ``flasker`` command and ``flasker.wsgi`` call it, so that the MODULES of the
    ``.cfg`` found are imported from beside it.
    """
    folder = str(root)
    if folder not in sys.path:
        sys.path.insert(0, folder)


def _import_name(name: str) -> str:
    return slug(name).replace("-", "_")


def _check_not_imported(modules: t.Sequence[str], source: Source | None = None) -> None:
    """Refuse MODULES that this process imported already: they would not run for this project.

    A module runs once per process, against the project that imported it; its routes,
    tasks and models belong to that project. A second project must not silently get none.
    """
    imported = [name for name in modules if name in sys.modules]
    if imported:
        raise ConfigError(
            f"Config 'PROJECT.MODULES' ({source}) names the module '{imported[0]}', which this"
            " process has imported already (for another project, or before this project started): a"
            " module runs once per process, so its routes, tasks and models belong to that"
            " first import. Give each project of one process modules of its own names, and"
            " let the project import its MODULES (do not import them beforehand)."
        )


def _import(name: str, root: Path, source: Source | None = None) -> None:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name is not None and name.startswith(e.name):
            raise ConfigError(
                f"Config 'PROJECT.MODULES' ({source}) names the module '{name}', which cannot be"
                f" imported: {e}. The 'flasker' command imports MODULES from the project's folder"
                f" ('{root}'); in your own code, put that folder on 'sys.path' first."
            ) from e
        raise
