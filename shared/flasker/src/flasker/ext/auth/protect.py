"""Who gets in: the user loaders, the gate in front of every view, CSRF on the session API."""

from __future__ import annotations

import logging
import typing as t

from flask import current_app, g, redirect, request, url_for
from flask_wtf.csrf import ValidationError, validate_csrf

from .login import current_user
from .models import SESSION_KEY_ATTR, AuthUserBase
from .redirects import request_target
from .refusals import Refusal, is_api_request, log_security_event, refuse, wants_json
from .sessions import NO_SESSION_ATTR, VIA_ATTR, load_session_user
from .state import BLUEPRINT, CSRF_HEADERS, auth_state
from .tokens import find_by_secret, parse_bearer, touch

if t.TYPE_CHECKING:
    from flask import Response

    from .options import Settings

F = t.TypeVar("F", bound=t.Callable[..., t.Any])

#: The attribute marking a view as public (flasker's health checks carry it too).
PUBLIC_ATTR = "flasker_public"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
BEARER_ERROR_ATTR = "flasker_auth_bearer_error"


def public(view: F) -> F:
    """Mark a view (function or ``View`` class) as open to everyone under PROTECT_ALL_VIEWS."""
    setattr(view, PUBLIC_ATTR, True)
    return view


def is_public_endpoint(endpoint: str | None) -> bool:
    if endpoint is None:
        return False
    if endpoint == "static" or endpoint.endswith(".static") or endpoint.startswith(BLUEPRINT + "."):
        return True
    view = current_app.view_functions.get(endpoint)
    view_class = getattr(view, "view_class", None)
    return bool(getattr(view, PUBLIC_ATTR, False) or getattr(view_class, PUBLIC_ATTR, False))


def is_auth_path(settings: Settings) -> bool:
    prefix = settings.url_prefix
    return request.path == prefix or request.path.startswith(prefix + "/")


def allowed_now(settings: Settings, user: AuthUserBase) -> bool:
    """Whether ``user`` is still allowed (the allow-list may have changed since the sign-in)."""
    if not settings.allow_list.allows(user.email):
        return False
    return settings.hosted_domain is None or user.hosted_domain == settings.hosted_domain


def auth_method() -> str | None:
    """How the current request's user signed in: ``"session"``, ``"token"`` or ``None``."""
    if not current_user.is_authenticated:  # loads the user, which sets how
        return None
    return t.cast("str | None", g.get(VIA_ATTR))


# -- the loaders Flask-Login calls --------------------------------------------------------------


def load_user_from_session(key: str) -> AuthUserBase | None:
    """Flask-Login's ``user_loader``: the session holds the key of a sign-in."""
    if parse_bearer(request.headers.get("Authorization")) is not None:
        return None  # a bearer request is the script's, whatever cookie comes with it
    state = auth_state()
    user = load_session_user(state.project.db(), key)
    if user is None:
        return None
    if not allowed_now(state.settings, user):
        log_security_event("access_revoked", "signed-in user no longer on the allow-list",
                           email=user.email)
        return None
    setattr(g, SESSION_KEY_ATTR, key)
    setattr(g, VIA_ATTR, "session")
    return user


def load_user_from_request(_request: t.Any) -> AuthUserBase | None:
    """Flask-Login's ``request_loader``: a personal API token under the API prefix."""
    secret = parse_bearer(request.headers.get("Authorization"))
    if secret is None:
        return None
    if not is_api_request():
        setattr(g, BEARER_ERROR_ATTR, "token_outside_api")
        log_security_event("token_outside_api", "API token sent outside the API")
        return None
    state = auth_state()
    token = find_by_secret(state.project.db(), secret)
    problem = "unknown token" if token is None else None
    if token is not None and token.status() != "active":
        problem = f"{token.status()} token {token.id}"
    elif token is not None and not allowed_now(state.settings, token.user):
        problem = f"token {token.id} of {token.user.email}, no longer on the allow-list"
    if token is None or problem is not None:
        setattr(g, BEARER_ERROR_ATTR, "invalid_api_token")
        log_security_event("invalid_api_token", t.cast(str, problem),
                           token_prefix=secret[:10])
        return None
    touch(state.engine, token)
    setattr(g, VIA_ATTR, "token")
    return token.user


# -- the gate ---------------------------------------------------------------------------------


def _realm() -> str:
    name = str(current_app.config.get("FLASKER_PROJECT_NAME") or current_app.name)
    return name.replace("\\", "").replace('"', "'")


def unauthorized() -> Response:
    """No signed-in user: HTML goes to the sign-in page, the API gets a 401 problem."""
    error = g.get(BEARER_ERROR_ATTR)
    if wants_json() or error is not None:
        code = error or "unauthenticated"
        challenge = f'Bearer realm="{_realm()}"'
        if error is not None:
            challenge += ', error="invalid_token"'
        # Invalid tokens were logged by the loader as warnings already.
        return refuse(Refusal(code, "no valid credentials"), level=logging.INFO,
                      headers={"WWW-Authenticate": challenge})
    target = request_target(request.script_root, request.path, request.query_string)
    return t.cast("Response", redirect(url_for(f"{BLUEPRINT}.login", next=target)))


def check_api_csrf() -> Refusal | None:
    """A session-authenticated unsafe API request must carry the CSRF token in a header."""
    if auth_method() != "session":
        return None
    token = next((request.headers[h] for h in CSRF_HEADERS if h in request.headers), None)
    try:
        validate_csrf(token)
    except ValidationError as e:
        return Refusal("csrf_failed", f"{request.method} {request.path}: {e.args[0]}",
                       email=current_user.email)
    return None


def gate() -> Response | None:
    """``before_request``: protect every view but the exempt ones; CSRF on the session API."""
    state = auth_state()
    if request.headers.get("Authorization", "").lower().startswith("bearer"):
        setattr(g, NO_SESSION_ATTR, True)
    if request.method == "OPTIONS" or is_auth_path(state.settings):
        return None
    if is_api_request() and request.method not in SAFE_METHODS:
        refusal = check_api_csrf()
        if refusal is not None:
            return refuse(refusal)
    if not state.settings.protect_all_views or is_public_endpoint(request.endpoint):
        return None
    if current_user.is_authenticated:
        return None
    return unauthorized()
