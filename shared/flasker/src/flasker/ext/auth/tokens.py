"""Personal API tokens: made and revoked by the CLI or the token page, stored hashed.

The functions work on the current app's tables (:func:`auth_models`): call them in a
request, or inside ``app.app_context()``.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import typing as t

import sqlalchemy as sa

from .allowlist import normalise_email
from .models import AuthTokenBase, AuthUserBase, auth_models, hash_secret, utcnow

if t.TYPE_CHECKING:
    from sqlalchemy.orm import Session

#: Tokens start with this, so that secret scanners and people recognise them.
TOKEN_PREFIX = "flk_"
DEFAULT_DAYS = 30
MAX_DAYS = 3650
MAX_NAME = 100
#: ``last_used_at`` is written at most this often, not on every request.
LAST_USED_PRECISION = dt.timedelta(minutes=1)
_TOKEN_RE = re.compile(re.escape(TOKEN_PREFIX) + r"[A-Za-z0-9_-]{43}")


class TokenError(ValueError):
    """A token cannot be made or found as asked; the message says why."""


def looks_like_token(value: str) -> bool:
    return bool(_TOKEN_RE.fullmatch(value))


def parse_bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else ``None``."""
    if not header:
        return None
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credentials.strip() or None


def create_token(db: Session, user: AuthUserBase, *, days: int = DEFAULT_DAYS,
                 name: str = "") -> tuple[AuthTokenBase, str]:
    """Make a token for ``user``: the row, and the secret (shown once, never stored)."""
    if not 1 <= days <= MAX_DAYS:
        raise TokenError(f"A token lasts from 1 to {MAX_DAYS} days, not {days}.")
    name = name.strip()
    if len(name) > MAX_NAME:
        raise TokenError(f"A token's name has at most {MAX_NAME} characters.")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = auth_models().AuthToken(user_id=user.id, name=name, token_hash=hash_secret(secret),
                                    prefix=secret[: len(TOKEN_PREFIX) + 6],
                                    expires_at=utcnow() + dt.timedelta(days=days))
    db.add(token)
    db.flush()
    return token, secret


def find_by_secret(db: Session, secret: str) -> AuthTokenBase | None:
    if not looks_like_token(secret):
        return None
    AuthToken = auth_models().AuthToken
    return db.scalars(sa.select(AuthToken).where(AuthToken.token_hash == hash_secret(secret))
                      ).first()


def user_by_email(db: Session, email: str) -> AuthUserBase:
    """The user with this address (normalised); :class:`TokenError` when none signed in."""
    AuthUser = auth_models().AuthUser
    normalised = normalise_email(email)
    user = None
    if normalised is not None:
        user = db.scalars(sa.select(AuthUser).where(AuthUser.email == normalised)).first()
    if user is None:
        raise TokenError(f"No user with the e-mail address {email!r} has signed in yet: users"
                         " appear after their first sign-in ('flasker auth users' lists them).")
    return user


def revoke(token: AuthTokenBase) -> bool:
    """Revoke ``token``; ``False`` when it was revoked already."""
    if token.revoked_at is not None:
        return False
    token.revoked_at = utcnow()
    return True


def tokens_of(db: Session, user: AuthUserBase | None = None) -> list[AuthTokenBase]:
    AuthToken = auth_models().AuthToken
    stmt = sa.select(AuthToken).order_by(AuthToken.id)
    if user is not None:
        stmt = stmt.where(AuthToken.user_id == user.id)
    return list(db.scalars(stmt))


def touch(engine: sa.Engine, token: AuthTokenBase) -> None:
    """Record the token's use (at most once per :data:`LAST_USED_PRECISION`)."""
    now = utcnow()
    if token.last_used_at is not None and now - token.last_used_at < LAST_USED_PRECISION:
        return
    AuthToken = type(token)
    with engine.begin() as connection:
        connection.execute(sa.update(AuthToken).where(AuthToken.id == token.id)
                           .values(last_used_at=now))
