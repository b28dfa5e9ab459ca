"""The tables of the auth extension: users, their sign-ins, API tokens and pending logins.

Models belong to a project, so the tables are declared per project:
:func:`declare_models` maps four thin classes (``AuthUser``, ``AuthSession``,
``AuthToken``, ``AuthLoginState``) in the project's registry, on the typed abstract
bases below, and :func:`auth_models` returns them for the current app::

    from flasker.ext.auth import auth_models

    AuthUser = auth_models().AuthUser
    emails = db.scalars(sa.select(AuthUser.email)).all()

``GoogleAuthManager`` declares them when it is set up; a module of the project's
MODULES may call :func:`declare_models` itself, so that the tables stay in
``project.metadata`` (and in the migrations) while the extension is switched off.

Names start with ``Auth`` so they do not clash with an application's own ``User``.
Only hashes of secrets are stored: a copy of the database signs no one in.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import typing as t
from contextlib import nullcontext
from dataclasses import dataclass

import sqlalchemy as sa
from flask import Flask, current_app, g
from sqlalchemy.orm import Mapped, declared_attr, mapped_column, relationship

from ...globals import EXTENSION_KEY as PROJECT_KEY
from ...globals import current_project, project_context
from ...models import Model

if t.TYPE_CHECKING:
    from ...project import Project

#: The key of a project's :class:`AuthModels` in ``app.extensions``.
MODELS_KEY = "flasker_auth_models"
SESSION_KEY_ATTR = "flasker_auth_session_key"


def utcnow() -> dt.datetime:
    """Now, in UTC, without a time zone (as every database stores it alike)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def hash_secret(secret: str) -> str:
    """SHA-256 of a high-entropy random secret (no salt needed: it cannot be guessed)."""
    return hashlib.sha256(secret.encode()).hexdigest()


# -- the typed, abstract bases: columns and behaviour, mapped per project -------------------------


class AuthUserBase(Model):
    """A person who signed in, keyed by the provider's stable subject (``sub``)."""

    __abstract__ = True
    __tablename__ = "auth_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    sub: Mapped[str] = mapped_column(sa.String(255), unique=True)
    issuer: Mapped[str] = mapped_column(sa.String(255))
    email: Mapped[str] = mapped_column(sa.String(320), unique=True)
    name: Mapped[str | None] = mapped_column(sa.String(255))
    picture: Mapped[str | None] = mapped_column(sa.String(2048))
    hosted_domain: Mapped[str | None] = mapped_column(sa.String(255))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    @declared_attr
    def tokens(cls) -> Mapped[list[AuthTokenBase]]:
        # By class name, resolved in the registry of the project that maps the class.
        return relationship("AuthToken", back_populates="user", cascade="all, delete-orphan",
                            passive_deletes=True)

    # -- what Flask-Login asks of a user --------------------------------------------------

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_active(self) -> bool:
        return True

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        """The key of the current sign-in, which Flask-Login keeps in the session.

        Not the user's id: the key names a row of ``auth_sessions``, so signing out
        (deleting the row) makes a copied cookie worthless.
        """
        key = g.get(SESSION_KEY_ATTR)
        if not isinstance(key, str):
            raise RuntimeError(
                "AuthUser.get_id() has no sign-in to name: sign users in through"
                " GoogleAuthManager's routes rather than calling 'flask_login.login_user'."
            )
        return key


class AuthSessionBase(Model):
    """One sign-in of a user: the session cookie holds its key, the table its hash."""

    __abstract__ = True
    __tablename__ = "auth_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("auth_users.id", ondelete="CASCADE"),
                                         index=True)
    key_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]

    @declared_attr
    def user(cls) -> Mapped[AuthUserBase]:
        return relationship("AuthUser")


class AuthTokenBase(Model):
    """A personal API token, sent as ``Authorization: Bearer``; only its hash is kept."""

    __abstract__ = True
    __tablename__ = "auth_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("auth_users.id", ondelete="CASCADE"),
                                         index=True)
    name: Mapped[str] = mapped_column(sa.String(100), default="")
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    prefix: Mapped[str] = mapped_column(sa.String(16))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    last_used_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]

    @declared_attr
    def user(cls) -> Mapped[AuthUserBase]:
        return relationship("AuthUser", back_populates="tokens")

    def status(self, now: dt.datetime | None = None) -> str:
        """``active``, ``expired`` or ``revoked``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at <= (now or utcnow()):
            return "expired"
        return "active"


class AuthLoginStateBase(Model):
    """A sign-in in progress (PKCE verifier, nonce, ``next``), consumed once by the callback.

    Authlib keeps it in the session cookie by default, where a replayed old cookie
    would bring it back; here the cookie only names it.
    """

    __abstract__ = True
    __tablename__ = "auth_login_states"

    key: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    value: Mapped[str] = mapped_column(sa.Text)
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)


# -- one set of mapped classes per project ------------------------------------------------------


@dataclass(frozen=True)
class AuthModels:
    """The auth extension's mapped classes of one project, by their class names."""

    AuthUser: type[AuthUserBase]
    AuthSession: type[AuthSessionBase]
    AuthToken: type[AuthTokenBase]
    AuthLoginState: type[AuthLoginStateBase]


def declare_models(project: Project | None = None) -> AuthModels:
    """Map the auth tables in the registry of ``project`` (``current_project`` by default).

    Called once per project by ``GoogleAuthManager``; calling it again (or before the
    extension is registered) returns the same classes.
    """
    target = project if project is not None else current_project
    extensions = target.app.extensions
    declared = extensions.get(MODELS_KEY)
    if declared is not None:
        return t.cast(AuthModels, declared)
    # A model is mapped in the registry of the current project: make it the given one.
    with project_context(project) if project is not None else nullcontext():

        class AuthUser(AuthUserBase):
            __doc__ = AuthUserBase.__doc__

        class AuthSession(AuthSessionBase):
            __doc__ = AuthSessionBase.__doc__

        class AuthToken(AuthTokenBase):
            __doc__ = AuthTokenBase.__doc__

        class AuthLoginState(AuthLoginStateBase):
            __doc__ = AuthLoginStateBase.__doc__

    models = AuthModels(AuthUser, AuthSession, AuthToken, AuthLoginState)
    extensions[MODELS_KEY] = models
    return models


def auth_models(app: Flask | None = None) -> AuthModels:
    """The auth models of ``app`` (the current app by default)."""
    target = app if app is not None else current_app
    models = target.extensions.get(MODELS_KEY)
    if models is None:
        if PROJECT_KEY not in target.extensions:
            raise RuntimeError(f"The app '{target.name}' is not a flasker project's app: the"
                               " auth models belong to a project.")
        raise RuntimeError(
            f"The auth models are not declared on the app '{target.name}'. Register"
            " 'GoogleAuthManager' (which declares them), or call"
            " 'flasker.ext.auth.declare_models()' in a module of the project's MODULES."
        )
    return t.cast(AuthModels, models)
