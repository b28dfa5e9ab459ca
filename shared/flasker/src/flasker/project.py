"""The project: one configuration giving the Flask app, the engine, the session and Celery."""

from __future__ import annotations

import importlib
import sys
import typing as t
from functools import cached_property
from pathlib import Path

from flask import Flask

from .config import APP, PROJECT, SECRET_HOWTO, Config, ConfigError, load_config, weak_secret_reason
from .db import create_engine, create_session, init_app_session
from .globals import EXTENSION_KEY, project_context

if t.TYPE_CHECKING:
    import os

    import sqlalchemy as sa
    from celery import Celery
    from sqlalchemy.orm import Session, scoped_session

    from .config import Option

Hook = t.Callable[["Project"], None]


class Manager(t.Protocol):
    """What ``register_manager`` needs of an extension: Flask's ``init_app``."""

    def init_app(self, app: Flask, *, config_section: str | None = None) -> None: ...


M = t.TypeVar("M", bound=Manager)


class Project:
    """A flasker project, built from its configuration.

    Several projects may exist in one process (one per test, say); nothing happens
    at import time. ``project.app`` is the Flask app, ``project.celery`` the Celery
    app, ``project.db`` the session of the current request or task, and
    ``project.engine`` the SQLAlchemy engine.

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
        self.managers: list[Manager] = []
        self._before_startup: list[Hook] = []
        self._after_startup: list[Hook] = []
        self.started = False
        self._starting = False
        self.app: Flask = self._create_app()
        self.engine: sa.Engine = create_engine(self.config)
        self.db: scoped_session[Session] = create_session(self.engine)
        init_app_session(self.app, self.db)
        from .logs import configure_logging  # noqa: PLC0415

        configure_logging(self.config)
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
        from .health import init_health  # noqa: PLC0415
        from .util.cache import init_cache  # noqa: PLC0415
        from .util.jsonify import init_json  # noqa: PLC0415

        init_json(app)
        init_cache(app)
        init_health(app, self)
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
        """Import the MODULES in order, with ``current_project`` pointing here."""
        if self.started:
            return
        modules: list[str] = self.config.get(PROJECT, "MODULES") or []
        root = str(self.root)
        if root not in sys.path:
            sys.path.insert(0, root)
        _forget_modules(modules)
        self._starting = True
        with project_context(self):
            try:
                for hook in self._before_startup:
                    hook(self)
                for name in modules:
                    _import(name, root)
                self.started = True
                for hook in self._after_startup:
                    hook(self)
            except BaseException:
                # A project that failed to start is never closed, and a module that failed
                # half-way may leave models mapped half-way: drop its models now, so that they
                # break no other project's mappers in this process.
                _forget_modules(modules)
                self.started = self._starting = False
                raise

    def register_manager(self, manager: M, config_section: str | None = None) -> M:
        """Register an extension: ``manager.init_app(app, config_section=...)``.

        The section's values override the manager's constructor options. A manager's
        ``before_startup(project)`` runs before the MODULES are imported (when it is
        registered before :meth:`start`), its ``after_startup(project)`` once they are.
        """
        section = config_section.upper() if config_section else None
        manager.init_app(self.app, config_section=section)
        self.managers.append(manager)
        if hasattr(manager, "before_startup") and not self._starting:
            self.before_startup(manager.before_startup)
        if hasattr(manager, "after_startup"):
            self.after_startup(manager.after_startup)
        return manager

    def close(self) -> None:
        """Release the project: its session, its connections, and the models of its MODULES.

        Models live in the one registry of ``flasker.util.Model``; closing a project
        lets another one in the same process (the next test) declare tables of the
        same names.
        """
        self.db.remove()
        self.engine.dispose()
        if self.started:
            _forget_modules(self.config.get(PROJECT, "MODULES") or [])
            self.started = False

    # -- conveniences -----------------------------------------------------------------------

    def models(self) -> dict[str, type[t.Any]]:
        """The mapped classes of ``flasker.util.Model``, by class name."""
        from .util.models import Model  # noqa: PLC0415

        return {m.class_.__name__: m.class_ for m in Model.registry.mappers}

    def shell_context(self) -> dict[str, t.Any]:
        return {"project": self, "app": self.app, "celery": self.celery, "db": self.db,
                **self.models()}


def _import_name(name: str) -> str:
    from .tasks import slug  # noqa: PLC0415

    return slug(name).replace("-", "_")


def _import(name: str, root: str) -> None:
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name is not None and name.startswith(e.name):
            raise ConfigError(
                f"Config 'PROJECT.MODULES' names the module '{name}', which cannot"
                f" be imported from '{root}': {e}."
            ) from e
        raise


def _forget_modules(modules: t.Iterable[str]) -> None:
    """Drop the MODULES' packages from ``sys.modules`` so that this project imports them anew.

    A second project in the same process (another test, another folder) must run
    its modules' code against its own app. The models those modules mapped are
    removed from ``Model``'s registry with them.
    """
    tops = {m.split(".")[0] for m in modules} - {"flasker"}
    for name in [n for n in sys.modules if n.split(".")[0] in tops]:
        del sys.modules[name]
    from .util.models import forget_models  # noqa: PLC0415

    # By package, not by sys.modules: a module that failed to import is gone from there
    # already, but the classes it declared are still in the registry.
    forget_models(tops)
