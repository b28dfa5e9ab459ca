"""``GoogleAuthManager``: the extension object, set up on an app by ``init_app``."""

from __future__ import annotations

import logging
import typing as t
from pathlib import Path

from flask_wtf.csrf import generate_csrf

from ...globals import EXTENSION_KEY as PROJECT_KEY
from .cli import create_cli
from .login import new_login_manager
from .oidc import OIDCClient
from .options import check_secret_key, resolve_settings
from .protect import gate, load_user_from_request, load_user_from_session, unauthorized
from .refusals import security_log
from .sessions import guard_session
from .state import EXTENSION_KEY, AuthState
from .views import create_blueprint

if t.TYPE_CHECKING:
    from collections.abc import Iterable

    from flask import Flask

    from ...config import Config
    from ...project import Project

log = logging.getLogger(__name__)


class GoogleAuthManager:
    """Restrict a flasker app to allowed Google accounts (any OpenID Connect provider works).

    Options given here are defaults; the config section passed to
    ``register_manager(..., config_section="AUTH")`` overrides them::

        current_project.register_manager(
            GoogleAuthManager(authorized_emails=["alice@example.com"]), config_section="AUTH")
    """

    def __init__(self, app: Flask | None = None, *, client_id: str | None = None,
                 client_secret: str | None = None,
                 authorized_emails: Iterable[str] | str | None = None,
                 authorized_domains: Iterable[str] | str | None = None,
                 hosted_domain: str | None = None, protect_all_views: bool | None = None,
                 url_prefix: str | None = None, callback_url: str | None = None,
                 metadata_url: str | None = None) -> None:
        self.options: dict[str, t.Any] = {
            "CLIENT_ID": client_id,
            "CLIENT_SECRET": client_secret,
            "AUTHORIZED_EMAILS": (list(authorized_emails)
                                  if authorized_emails is not None
                                  and not isinstance(authorized_emails, str)
                                  else authorized_emails),
            "AUTHORIZED_DOMAINS": (list(authorized_domains)
                                   if authorized_domains is not None
                                   and not isinstance(authorized_domains, str)
                                   else authorized_domains),
            "HOSTED_DOMAIN": hosted_domain,
            "PROTECT_ALL_VIEWS": protect_all_views,
            "URL_PREFIX": url_prefix,
            "CALLBACK_URL": callback_url,
            "METADATA_URL": metadata_url,
        }
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask, *, config_section: str | None = None) -> None:
        """Set up sign-in on ``app``: options, routes, the gate, the loaders, ``flasker auth``."""
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError(
                f"GoogleAuthManager is already registered on the app {app.name!r}: register it"
                " once per app (change its options in the config section rather than"
                " registering it again)."
            )
        project: Project | None = app.extensions.get(PROJECT_KEY)
        if project is None:
            raise RuntimeError(
                "GoogleAuthManager needs a flasker project: register it with"
                " 'current_project.register_manager(GoogleAuthManager(), config_section=\"AUTH\")'"
                " rather than on a bare Flask app."
            )
        settings = resolve_settings(project.config, config_section, self.options,
                                    testing=app.testing)
        if not app.testing:
            check_secret_key(app.config, project.config)
        _secure_cookies(app, project.config)
        login_manager = new_login_manager(app, user_loader=load_user_from_session,
                                          request_loader=load_user_from_request,
                                          unauthorized=unauthorized)
        client = OIDCClient(settings, project.engine, app)
        app.register_blueprint(create_blueprint(settings))
        app.before_request(gate)
        guard_session(app)
        # Pages post forms and API calls with it (Flask-WTF's CSRFProtect sets the same one).
        app.jinja_env.globals.setdefault("csrf_token", generate_csrf)
        app.cli.add_command(create_cli(app))
        app.extensions[EXTENSION_KEY] = AuthState(
            manager=self, project=project, settings=settings, client=client,
            login_manager=login_manager, bootstrap_url=_bootstrap_url(app))
        if settings.allow_list.empty:
            security_log.warning(
                "empty_allow_list: AUTHORIZED_EMAILS and AUTHORIZED_DOMAINS are both empty,"
                " so no one can sign in to %r. List the allowed accounts.", project.name,
                extra={"security_event": "empty_allow_list"})

    def after_startup(self, project: Project) -> None:
        """Once the MODULES ran: keep bearer requests cookie-less if they replaced the sessions."""
        if EXTENSION_KEY in project.app.extensions:
            guard_session(project.app)


def _bootstrap_url(app: Flask) -> str | None:
    """The app's own Bootstrap (the scaffold ships one); the pages work without it."""
    if app.static_folder and (Path(app.static_folder) / "bootstrap.min.css").is_file():
        return f"{app.static_url_path}/bootstrap.min.css"
    return None


def _secure_cookies(app: Flask, config: Config) -> None:
    """HttpOnly, SameSite=Lax and, outside development, Secure session cookies.

    SameSite must be Lax, not Strict: the provider's redirect back is a cross-site
    navigation, and a Strict cookie would not come with it. An explicit
    ``SESSION_COOKIE_SECURE = false`` (plain-HTTP hosts) is kept, with a warning.
    """
    development = app.debug or app.testing
    for prefix in ("SESSION_COOKIE", "REMEMBER_COOKIE"):
        app.config[f"{prefix}_HTTPONLY"] = True
        if app.config.get(f"{prefix}_SAMESITE") != "Lax":
            app.config[f"{prefix}_SAMESITE"] = "Lax"
        explicit = config.source_of("APP", f"{prefix}_SECURE") is not None
        if not explicit:
            app.config[f"{prefix}_SECURE"] = not development
        elif not app.config.get(f"{prefix}_SECURE") and not development:
            security_log.warning(
                "insecure_cookie: %s_SECURE is false outside development: the session"
                " cookie will travel over plain HTTP.", prefix,
                extra={"security_event": "insecure_cookie"})
