"""The auth routes: sign-in page, start, callback, sign-out, token page, ``/me``."""

from __future__ import annotations

import logging
import typing as t

from flask import Blueprint, current_app, jsonify, redirect, request, url_for
from flask_wtf.csrf import ValidationError, generate_csrf, validate_csrf
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from .login import current_user
from .protect import auth_method, unauthorized
from .redirects import safe_next
from .refusals import (
    Refusal,
    current_api_prefix,
    log_security_event,
    refuse,
    render_page,
    wants_json,
)
from .sessions import sign_in, sign_out
from .state import BLUEPRINT, auth_state
from .tokens import DEFAULT_DAYS, MAX_DAYS, TokenError, create_token, revoke, tokens_of

if t.TYPE_CHECKING:
    from flask import Response
    from flask.typing import ResponseReturnValue

    from .options import Settings

TOKEN_DAYS = (7, 30, 90, 365)


def _next_from_args() -> str:
    return safe_next(request.args.get("next"), forbidden_prefix=auth_state().settings.url_prefix)


def _check_form_csrf() -> Refusal | None:
    token = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token")
    try:
        validate_csrf(token)
    except ValidationError as e:
        email = current_user.email if current_user.is_authenticated else None
        return Refusal("csrf_failed", f"{request.method} {request.path}: {e.args[0]}",
                       email=email)
    return None


def login() -> ResponseReturnValue:
    """The sign-in page (already signed in: straight to ``next``)."""
    next_url = _next_from_args()
    if current_user.is_authenticated and auth_method() == "session":
        return redirect(next_url)
    return render_page("flasker_auth/login.html", next_url=next_url,
                       signed_out=request.args.get("signed_out") == "1")


def start() -> ResponseReturnValue:
    """Send the browser to the provider, with PKCE, a nonce and a single-use state.

    ``?another_account=1`` (the refusal page's retry) asks the provider to let the user
    choose another account, rather than sending back the one just refused.
    """
    state = auth_state()
    scheme = "https" if current_app.config.get("SESSION_COOKIE_SECURE") else request.scheme
    redirect_uri = url_for(f"{BLUEPRINT}.callback", _external=True, _scheme=scheme)
    next_url = _next_from_args()
    try:
        url = state.client.authorization_url(
            redirect_uri, next_url, another_account=request.args.get("another_account") == "1")
    except Refusal as refusal:
        return refuse(refusal, next_url=next_url)
    except SQLAlchemyError as e:
        return refuse(Refusal("storage_unavailable", f"{type(e).__name__}: {e}"),
                      next_url=next_url)
    return redirect(url)


def callback() -> ResponseReturnValue:
    """The provider's redirect: verify everything, then sign in with a fresh session."""
    state = auth_state()
    next_url: str | None = None
    try:
        identity, next_url = state.client.finish(request.args)
        if not state.settings.allow_list.allows(identity.email):
            raise Refusal("not_allowed", "not on the allow-list", email=identity.email,
                          sub=identity.sub)
        sign_in(state.engine, identity, current_app.permanent_session_lifetime)
    except Refusal as refusal:
        return refuse(refusal, next_url=next_url)
    except SQLAlchemyError as e:
        current_app.logger.exception("Signing in failed: the auth tables are unreachable.")
        return refuse(Refusal("storage_unavailable", f"{type(e).__name__}: {e}"),
                      next_url=next_url)
    log_security_event("signed_in", "sign-in succeeded", level=logging.INFO, email=identity.email,
                       sub=identity.sub)
    return redirect(safe_next(next_url, forbidden_prefix=state.settings.url_prefix))


def logout() -> ResponseReturnValue:
    """Sign out (POST with the CSRF token): the sign-in's row goes, the session is cleared."""
    refusal = _check_form_csrf()
    if refusal is not None:
        return refuse(refusal)
    email = current_user.email if current_user.is_authenticated else None
    sign_out(auth_state().engine)
    log_security_event("signed_out", "signed out", level=logging.INFO, email=email)
    if wants_json():
        return "", 204
    return redirect(url_for(f"{BLUEPRINT}.login", signed_out=1))


def _signed_in_page() -> Response | None:
    """``None`` when a user signed in with the session, else the answer to give."""
    if current_user.is_authenticated and auth_method() == "session":
        return None
    return unauthorized()


def tokens() -> ResponseReturnValue:
    """The signed-in user's API tokens; POST makes one (shown once)."""
    answer = _signed_in_page()
    if answer is not None:
        return answer
    state = auth_state()
    new_secret = None
    error = None
    status = 200
    with Session(state.engine, expire_on_commit=False) as db, db.begin():
        user = db.get_one(state.models.AuthUser, current_user.id)
        if request.method == "POST":
            refusal = _check_form_csrf()
            if refusal is not None:
                return refuse(refusal)
            try:
                days = int(request.form.get("days", DEFAULT_DAYS))
                token, new_secret = create_token(db, user, days=days,
                                                 name=request.form.get("name", ""))
                log_security_event("token_created", f"token {token.id}", level=logging.INFO,
                                   email=user.email)
            except (TokenError, ValueError) as e:
                error = str(e) if isinstance(e, TokenError) else (
                    f"Choose how long the token lasts: 1 to {MAX_DAYS} days.")
                status = 400
        rows = tokens_of(db, user)
    return render_page("flasker_auth/tokens.html", status, user=current_user, tokens=rows,
                       new_secret=new_secret, error=error, token_days=TOKEN_DAYS,
                       default_days=DEFAULT_DAYS, api_prefix=current_api_prefix())


def revoke_token(token_id: int) -> ResponseReturnValue:
    """Revoke one of the signed-in user's tokens (POST with the CSRF token)."""
    answer = _signed_in_page()
    if answer is not None:
        return answer
    refusal = _check_form_csrf()
    if refusal is not None:
        return refuse(refusal)
    state = auth_state()
    with Session(state.engine) as db, db.begin():
        token = db.get(state.models.AuthToken, token_id)
        # Someone else's token is "not found", not "forbidden": its id tells nothing.
        if token is None or token.user_id != current_user.id:
            return refuse(Refusal("token_not_found", f"revoke of token {token_id}: not theirs",
                                  email=current_user.email))
        revoke(token)
        log_security_event("token_revoked", f"token {token.id}", level=logging.INFO,
                           email=current_user.email)
    return redirect(url_for(f"{BLUEPRINT}.tokens"))


def me() -> ResponseReturnValue:
    """The signed-in user and a fresh CSRF token, for scripts in pages."""
    if not current_user.is_authenticated:
        return unauthorized()
    response = jsonify(email=current_user.email, name=current_user.name,
                       picture=current_user.picture, auth=auth_method(),
                       csrf_token=generate_csrf() if auth_method() == "session" else None)
    response.headers["Cache-Control"] = "no-store"
    return response


def _security_headers(response: Response) -> Response:
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    # The callback's URL holds the authorization code; the sign-in page's holds 'next'.
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def create_blueprint(settings: Settings) -> Blueprint:
    """The auth routes under ``URL_PREFIX``; the callback at ``CALLBACK_URL`` below it."""
    # The pages' stylesheet is a static file: the Content-Security-Policy allows no inline style.
    bp = Blueprint(BLUEPRINT, __name__, template_folder="templates", static_folder="static",
                   url_prefix=settings.url_prefix)
    bp.add_url_rule("/login", "login", login, methods=["GET"])
    bp.add_url_rule("/start", "start", start, methods=["GET"])
    bp.add_url_rule(settings.callback_path, "callback", callback, methods=["GET"])
    bp.add_url_rule("/logout", "logout", logout, methods=["POST"])
    bp.add_url_rule("/tokens", "tokens", tokens, methods=["GET", "POST"])
    bp.add_url_rule("/tokens/<int:token_id>/revoke", "revoke_token", revoke_token,
                    methods=["POST"])
    bp.add_url_rule("/me", "me", me, methods=["GET"])
    bp.after_request(_security_headers)
    return bp
