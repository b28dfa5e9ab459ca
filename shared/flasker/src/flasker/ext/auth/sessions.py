"""Sign-ins: recorded server-side, rotated at login, never saved for bearer requests.

Flask's default session is a signed cookie, so "rotating" it means clearing it and
writing new content: nothing planted before the login survives, and the cookie
value changes. The sign-in itself is a row of ``auth_sessions`` whose random key
the cookie carries; signing out deletes the row, so a copied cookie stops working.
"""

from __future__ import annotations

import datetime as dt
import secrets
import typing as t

import sqlalchemy as sa
from flask import g, session
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .login import login_user, logout_user
from .models import SESSION_KEY_ATTR, AuthUserBase, auth_models, hash_secret, utcnow
from .refusals import Refusal

if t.TYPE_CHECKING:
    from flask import Flask, Response
    from flask.sessions import SessionInterface, SessionMixin

    from .oidc import Identity

NO_SESSION_ATTR = "flasker_auth_no_session"
VIA_ATTR = "flasker_auth_via"


class BearerAwareSessionInterface:
    """Wraps the app's session interface: a request carrying a bearer token saves no session.

    Scripts sending ``Authorization: Bearer`` get no ``Set-Cookie`` back, whatever
    the views put in the session.
    """

    def __init__(self, inner: SessionInterface) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> t.Any:
        return getattr(self.inner, name)

    def open_session(self, app: Flask, request: t.Any) -> SessionMixin | None:
        return self.inner.open_session(app, request)

    def make_null_session(self, app: Flask) -> t.Any:
        return self.inner.make_null_session(app)

    def is_null_session(self, obj: object) -> bool:
        return self.inner.is_null_session(obj)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        if g.get(NO_SESSION_ATTR):
            return
        self.inner.save_session(app, session, response)


def guard_session(app: Flask) -> None:
    """Install :class:`BearerAwareSessionInterface` (again, if the app replaced its interface)."""
    if not isinstance(app.session_interface, BearerAwareSessionInterface):
        app.session_interface = t.cast("SessionInterface",
                                       BearerAwareSessionInterface(app.session_interface))


def _session_factory(engine: sa.Engine) -> Session:
    # Objects stay readable after the commit: they outlive this short transaction.
    return Session(engine, expire_on_commit=False)


def _upsert_user(db: Session, identity: Identity) -> AuthUserBase:
    AuthUser = auth_models().AuthUser
    now = utcnow()
    user = db.scalars(sa.select(AuthUser).where(AuthUser.sub == identity.sub)).first()
    if user is None:
        other = db.scalars(sa.select(AuthUser).where(AuthUser.email == identity.email)).first()
        if other is not None:
            raise Refusal("account_mismatch",
                          f"user {other.id} has this e-mail with another subject",
                          email=identity.email, sub=identity.sub)
        user = AuthUser(sub=identity.sub, issuer=identity.issuer, email=identity.email)
        db.add(user)
    elif user.issuer != identity.issuer:
        raise Refusal("account_mismatch", f"user {user.id} came from issuer {user.issuer!r}",
                      email=identity.email, sub=identity.sub)
    elif user.email != identity.email:
        clash = db.scalars(sa.select(AuthUser).where(AuthUser.email == identity.email)).first()
        if clash is not None:
            raise Refusal("account_mismatch",
                          f"user {clash.id} already has the new address of user {user.id}",
                          email=identity.email, sub=identity.sub)
        user.email = identity.email
    user.name = identity.name
    user.picture = identity.picture
    user.hosted_domain = identity.hosted_domain
    user.last_login_at = now
    return user


def sign_in(engine: sa.Engine, identity: Identity, lifetime: dt.timedelta) -> AuthUserBase:
    """Record the user and a new sign-in, then rotate the session and log the user in."""
    AuthSession = auth_models().AuthSession
    key = secrets.token_urlsafe(32)
    previous = session.get("_user_id")
    now = utcnow()
    try:
        with _session_factory(engine) as db, db.begin():
            user = _upsert_user(db, identity)
            db.flush()
            # The sign-in this browser had before ends here; expired ones are swept.
            stale = AuthSession.expires_at <= now
            if isinstance(previous, str):
                stale = stale | (AuthSession.key_hash == hash_secret(previous))
            db.execute(sa.delete(AuthSession).where(stale))
            db.add(AuthSession(user_id=user.id, key_hash=hash_secret(key),
                               expires_at=now + lifetime))
    except IntegrityError as e:  # a simultaneous first sign-in with the same address
        raise Refusal("account_mismatch", f"conflicting sign-in: {e.orig}",
                      email=identity.email) from e
    rotate_session()
    setattr(g, SESSION_KEY_ATTR, key)
    setattr(g, VIA_ATTR, "session")
    login_user(user)
    return user


def rotate_session() -> None:
    """Drop everything the session held (and the CSRF token cached for it)."""
    session.clear()
    # Flask-WTF caches the token of the old session in g for the rest of the request.
    g.pop("csrf_token", None)


def sign_out(engine: sa.Engine) -> None:
    """Delete the current sign-in's row, log out and clear the session."""
    key = session.get("_user_id")
    if isinstance(key, str):
        AuthSession = auth_models().AuthSession
        with engine.begin() as connection:
            connection.execute(sa.delete(AuthSession).where(
                AuthSession.key_hash == hash_secret(key)))
    logout_user()
    rotate_session()


def load_session_user(db: Session, key: str) -> AuthUserBase | None:
    """The user of a live sign-in with this key, or ``None``."""
    models = auth_models()
    AuthUser, AuthSession = models.AuthUser, models.AuthSession
    stmt = (sa.select(AuthUser).join(AuthSession, AuthSession.user_id == AuthUser.id)
            .where(AuthSession.key_hash == hash_secret(key), AuthSession.expires_at > utcnow()))
    return db.scalars(stmt).first()
