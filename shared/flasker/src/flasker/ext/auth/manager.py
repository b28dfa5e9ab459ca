"""``GoogleAuthManager``: the extension object, on :class:`flasker.Extension`."""

from __future__ import annotations

import typing as t
from pathlib import Path

from flask_wtf.csrf import generate_csrf

from ...extension import Extension
from ...security import COOKIE_PREFIXES
from .cli import create_cli
from .login import new_login_manager
from .models import declare_models
from .options import OPTIONS, check_secret_key, check_settings
from .protect import gate, load_user_from_request, load_user_from_session, unauthorized
from .refusals import security_log
from .sessions import guard_session
from .state import EXTENSION_KEY, AuthState
from .views import create_blueprint

if t.TYPE_CHECKING:
    from collections.abc import Iterable

    from flask import Flask

    from ...project import Project


class GoogleAuthManager(Extension):
    """Restrict a flasker app to allowed Google accounts, or another OpenID Connect provider's.

    The provider must offer the authorization code flow with PKCE, ID tokens signed per
    its JWKS, and ``email``/``email_verified`` in the ID token or from its userinfo
    endpoint (see the README's "Other OpenID Connect providers").

    It reads ``[AUTH]`` however it is registered; options given here are defaults, which
    the section overrides::

        current_project.register_manager(
            GoogleAuthManager(authorized_emails=["alice@example.com"]))

    Setting it up declares the auth tables in the project (see :func:`declare_models`).
    """

    name = EXTENSION_KEY
    config_section = "AUTH"
    options = OPTIONS

    def __init__(self, app: Flask | None = None, *, config_section: str | None = None,
                 client_id: str | None = None, client_secret: str | None = None,
                 authorized_emails: Iterable[str] | str | None = None,
                 authorized_domains: Iterable[str] | str | None = None,
                 hosted_domain: str | None = None, protect_all_views: bool | None = None,
                 url_prefix: str | None = None, callback_url: str | None = None,
                 metadata_url: str | None = None, provider_name: str | None = None) -> None:
        super().__init__(
            app, config_section=config_section, client_id=client_id,
            client_secret=client_secret, authorized_emails=_listed(authorized_emails),
            authorized_domains=_listed(authorized_domains), hosted_domain=hosted_domain,
            protect_all_views=protect_all_views, url_prefix=url_prefix,
            callback_url=callback_url, metadata_url=metadata_url, provider_name=provider_name)

    def setup(self, app: Flask, project: Project, settings: dict[str, t.Any],
              section: str) -> AuthState:
        """Sign-in on ``app``: the tables, routes, the gate, the loaders, ``flasker auth``."""
        checked = check_settings(settings, config=project.config, section=section,
                                 constructor=self.defaults, testing=app.testing)
        if not app.testing:
            check_secret_key(app.config, project.config)
        models = declare_models(project)
        _lax_cookies(app)
        login_manager = new_login_manager(app, user_loader=load_user_from_session,
                                          request_loader=load_user_from_request,
                                          unauthorized=unauthorized)
        # Authlib, joserfc and requests are heavy, and most of a web worker's start-up: only
        # an app that signs in imports them (the reference app imports this package always).
        from .oidc import OIDCClient  # noqa: PLC0415

        client = OIDCClient(checked, project.engine, app, models.AuthLoginState.__table__)
        app.register_blueprint(create_blueprint(checked))
        app.before_request(gate)
        guard_session(app)
        # Pages post forms and API calls with it (Flask-WTF's CSRFProtect sets the same one).
        app.jinja_env.globals.setdefault("csrf_token", generate_csrf)
        app.cli.add_command(create_cli(app))
        if checked.allow_list.empty:
            security_log.warning(
                "empty_allow_list: AUTHORIZED_EMAILS and AUTHORIZED_DOMAINS are both empty,"
                " so no one can sign in to %r. List the allowed accounts.", project.name,
                extra={"security_event": "empty_allow_list"})
        return AuthState(manager=self, project=project, settings=checked, models=models,
                         client=client, login_manager=login_manager,
                         bootstrap_url=_bootstrap_url(app))

    def after_startup(self, project: Project) -> None:
        """Once the MODULES ran: keep bearer requests cookie-less if they replaced the sessions."""
        if EXTENSION_KEY in project.app.extensions:
            guard_session(project.app)


def _listed(values: Iterable[str] | str | None) -> list[str] | str | None:
    """A constructor's allow-list as a list (a string is a comma list, parsed later)."""
    if values is None or isinstance(values, str):
        return values
    return list(values)


def _bootstrap_url(app: Flask) -> str | None:
    """The app's own Bootstrap (the scaffold ships one); the pages work without it."""
    if app.static_folder and (Path(app.static_folder) / "bootstrap.min.css").is_file():
        return f"{app.static_url_path}/bootstrap.min.css"
    return None


def _lax_cookies(app: Flask) -> None:
    """SameSite=Lax, not Strict: the provider's redirect back is a cross-site navigation.

    A Strict cookie would not come with it, and the sign-in could not be finished. The
    rest (HttpOnly, Secure outside development) is set for every app by
    :func:`flasker.security.secure_cookies`.
    """
    for prefix in COOKIE_PREFIXES:
        if app.config.get(f"{prefix}_SAMESITE") == "Strict":
            app.config[f"{prefix}_SAMESITE"] = "Lax"
