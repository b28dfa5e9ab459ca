"""Typed thin wrappers around Flask-Login, which ships no type information."""

from __future__ import annotations

import typing as t

import flask_login

if t.TYPE_CHECKING:
    from flask import Flask

    from .models import AuthUserBase

F = t.TypeVar("F", bound=t.Callable[..., t.Any])

#: The signed-in ``AuthUser``, or Flask-Login's anonymous user (check
#: ``current_user.is_authenticated`` first).
current_user: AuthUserBase = t.cast("AuthUserBase", flask_login.current_user)


def login_required(view: F) -> F:
    """Flask-Login's decorator: the view needs a signed-in user (or a valid API token)."""
    return t.cast(F, flask_login.login_required(view))


def login_user(user: AuthUserBase) -> bool:
    """Put ``user`` in the session: never "remember me" (the sign-in ends with the browser)."""
    return bool(flask_login.login_user(user, remember=False, fresh=True))


def logout_user() -> None:
    flask_login.logout_user()


def new_login_manager(app: Flask, *, user_loader: t.Callable[[str], AuthUserBase | None],
                      request_loader: t.Callable[[t.Any], AuthUserBase | None],
                      unauthorized: t.Callable[[], t.Any]) -> t.Any:
    """A ``LoginManager`` set up on ``app`` with the given loaders and handler."""
    if getattr(app, "login_manager", None) is not None:
        raise RuntimeError(
            "The app already has a Flask-Login 'LoginManager' ('app.login_manager'):"
            " GoogleAuthManager sets up its own. Remove the other one, or use it instead of"
            " GoogleAuthManager."
        )
    manager = flask_login.LoginManager()
    manager.init_app(app)
    manager.user_loader(user_loader)
    manager.request_loader(request_loader)
    manager.unauthorized_handler(unauthorized)
    return manager
