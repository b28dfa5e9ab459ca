"""The per-app state of the auth extension, kept in ``app.extensions["flasker_auth"]``."""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

from flask import Flask, current_app

from ..api.openapi import Security

if t.TYPE_CHECKING:
    import sqlalchemy as sa

    from ...project import Project
    from .manager import GoogleAuthManager
    from .models import AuthModels
    from .oidc import OIDCClient
    from .options import Settings

EXTENSION_KEY = "flasker_auth"
BLUEPRINT = "flasker_auth"
#: Where a signed-in browser's API writes carry the CSRF token (the first is documented).
CSRF_HEADERS = ("X-CSRF-Token", "X-CSRFToken")


@dataclass
class AuthState:
    """What one app's auth needs at request time."""

    manager: GoogleAuthManager
    project: Project
    settings: Settings
    models: AuthModels
    client: OIDCClient
    login_manager: t.Any
    bootstrap_url: str | None

    @property
    def engine(self) -> sa.Engine:
        return self.project.engine

    def openapi_security(self) -> Security:
        """How the API's callers sign in, for the API's OpenAPI document.

        A personal API token as a bearer token (accepted under the API's prefix only), or
        a signed-in browser's session cookie, whose writes carry the CSRF token in a header.
        """
        cookie = str(self.project.app.config.get("SESSION_COOKIE_NAME") or "session")
        anyone: list[dict[str, list[str]]] = [] if self.settings.protect_all_views else [{}]
        return Security(
            schemes={
                "bearer": {"type": "http", "scheme": "bearer", "description":
                           "A personal API token ('flasker auth token create'), as"
                           " 'Authorization: Bearer <token>'."},
                "session": {"type": "apiKey", "in": "cookie", "name": cookie,
                            "description": "The session cookie of a signed-in browser."},
                "csrf": {"type": "apiKey", "in": "header", "name": CSRF_HEADERS[0],
                         "description": "The page's CSRF token ('csrf_token()' in a template),"
                                        " required with the session cookie on writes."},
            },
            read=[{"bearer": []}, {"session": []}, *anyone],
            write=[{"bearer": []}, {"session": [], "csrf": []}, *anyone],
            required=self.settings.protect_all_views,
        )


def auth_state(app: Flask | None = None) -> AuthState:
    """The state of ``app`` (the current app by default)."""
    target = app if app is not None else current_app
    state = target.extensions.get(EXTENSION_KEY)
    if state is None:
        raise RuntimeError(
            f"GoogleAuthManager is not registered on the app '{target.name}': call"
            " 'current_project.register_manager(GoogleAuthManager())' in one of the"
            " project's MODULES."
        )
    return t.cast(AuthState, state)
