"""The tables of the auth extension: users, their sign-ins, API tokens and pending logins.

Names start with ``Auth`` so they do not clash with an application's own ``User``.
Only hashes of secrets are stored: a copy of the database signs no one in.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import sqlalchemy as sa
from flask import g
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ...util.models import Model

SESSION_KEY_ATTR = "flasker_auth_session_key"


def utcnow() -> dt.datetime:
    """Now, in UTC, without a time zone (as every database stores it alike)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def hash_secret(secret: str) -> str:
    """SHA-256 of a high-entropy random secret (no salt needed: it cannot be guessed)."""
    return hashlib.sha256(secret.encode()).hexdigest()


class AuthUser(Model):
    """A person who signed in, keyed by the provider's stable subject (``sub``)."""

    id: Mapped[int] = mapped_column(primary_key=True)
    sub: Mapped[str] = mapped_column(sa.String(255), unique=True)
    issuer: Mapped[str] = mapped_column(sa.String(255))
    email: Mapped[str] = mapped_column(sa.String(320), unique=True)
    name: Mapped[str | None] = mapped_column(sa.String(255))
    picture: Mapped[str | None] = mapped_column(sa.String(2048))
    hosted_domain: Mapped[str | None] = mapped_column(sa.String(255))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    tokens: Mapped[list[AuthToken]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True)

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


class AuthSession(Model):
    """One sign-in of a user: the session cookie holds its key, the table its hash."""

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("auth_users.id", ondelete="CASCADE"),
                                         index=True)
    key_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]

    user: Mapped[AuthUser] = relationship()


class AuthToken(Model):
    """A personal API token, sent as ``Authorization: Bearer``; only its hash is kept."""

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

    user: Mapped[AuthUser] = relationship(back_populates="tokens")

    def status(self, now: dt.datetime | None = None) -> str:
        """``active``, ``expired`` or ``revoked``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at <= (now or utcnow()):
            return "expired"
        return "active"


class AuthLoginState(Model):
    """A sign-in in progress (PKCE verifier, nonce, ``next``), consumed once by the callback.

    Authlib keeps it in the session cookie by default, where a replayed old cookie
    would bring it back; here the cookie only names it.
    """

    key: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    value: Mapped[str] = mapped_column(sa.Text)
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)
