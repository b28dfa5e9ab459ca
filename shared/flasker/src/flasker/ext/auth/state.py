"""The per-app state of the auth extension, kept in ``app.extensions["flasker_auth"]``."""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

from flask import Flask, current_app

if t.TYPE_CHECKING:
    import sqlalchemy as sa

    from ...project import Project
    from .manager import GoogleAuthManager
    from .oidc import OIDCClient
    from .options import Settings

EXTENSION_KEY = "flasker_auth"
BLUEPRINT = "flasker_auth"


@dataclass
class AuthState:
    """What one app's auth needs at request time."""

    manager: GoogleAuthManager
    project: Project
    settings: Settings
    client: OIDCClient
    login_manager: t.Any
    bootstrap_url: str | None

    @property
    def engine(self) -> sa.Engine:
        return self.project.engine


def auth_state(app: Flask | None = None) -> AuthState:
    """The state of ``app`` (the current app by default)."""
    target = app if app is not None else current_app
    state = target.extensions.get(EXTENSION_KEY)
    if state is None:
        raise RuntimeError(
            "GoogleAuthManager is not registered on this app: call"
            " 'current_project.register_manager(GoogleAuthManager(...), config_section=\"AUTH\")'"
            " in one of the project's MODULES."
        )
    return t.cast(AuthState, state)
