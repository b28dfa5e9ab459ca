"""Every refusal: a security log line, then a friendly page or an RFC 9457 problem."""

from __future__ import annotations

import logging
import typing as t
from dataclasses import dataclass

from flask import Response, current_app, has_request_context, render_template, request

from ...problem import problem_response
from ..api import api_prefix
from .state import auth_state

security_log = logging.getLogger("flasker.security")


@dataclass(frozen=True)
class Reason:
    status: int
    title: str
    message: str
    #: The refusal is about the account: its page offers to sign in with another one.
    another_account: bool = False


REASONS: dict[str, Reason] = {
    "state_mismatch": Reason(
        400, "This sign-in link is no longer valid",
        "The sign-in was started in another browser, took too long, or its link was used"
        " already. Start again from the sign-in page."),
    "provider_error": Reason(
        400, "The sign-in was not completed",
        "The identity provider did not sign you in (you may have cancelled)."),
    "provider_unavailable": Reason(
        502, "The identity provider cannot be reached",
        "Signing in needs the identity provider, which did not answer. Try again in a moment."),
    "token_exchange_failed": Reason(
        400, "The sign-in was not completed",
        "The identity provider refused to confirm this sign-in. Start again from the sign-in"
        " page."),
    "invalid_id_token": Reason(
        403, "The sign-in could not be verified",
        "The identity provider's answer was not a valid ID token for this application."),
    "bad_signature": Reason(
        403, "The sign-in could not be verified",
        "The ID token's signature does not match the provider's keys."),
    "unknown_signing_key": Reason(
        403, "The sign-in could not be verified",
        "The ID token was signed with a key the provider does not publish."),
    "issuer_mismatch": Reason(
        403, "The sign-in could not be verified",
        "The ID token was issued by another identity provider."),
    "audience_mismatch": Reason(
        403, "The sign-in could not be verified",
        "The ID token was issued to another application."),
    "token_expired": Reason(
        403, "The sign-in could not be verified",
        "The ID token has expired. Check that this computer's clock is right, then try again."),
    "nonce_mismatch": Reason(
        403, "The sign-in could not be verified",
        "The ID token does not belong to this sign-in attempt."),
    "email_missing": Reason(
        403, "The sign-in could not be verified",
        "The identity provider did not tell this application your e-mail address, which it"
        " needs. Its administrator must set the provider up to share it."),
    "userinfo_failed": Reason(
        502, "The sign-in was not completed",
        "The identity provider did not answer when asked for your e-mail address. Try again"
        " in a moment."),
    "subject_mismatch": Reason(
        403, "The sign-in could not be verified",
        "The identity provider's account details are about another account than the one"
        " that signed in."),
    "email_unverified": Reason(
        403, "Your e-mail address is not verified",
        "The identity provider has not verified your account's e-mail address.",
        another_account=True),
    "hosted_domain_mismatch": Reason(
        403, "This account is not allowed",
        "Only accounts of this application's organisation may sign in.", another_account=True),
    "not_allowed": Reason(
        403, "This account is not allowed",
        "Your account is not on this application's list of allowed accounts. Ask its"
        " administrator to add it, or sign in with another account.", another_account=True),
    "account_mismatch": Reason(
        403, "This account is not allowed",
        "Another account already uses this e-mail address here. Ask this application's"
        " administrator to remove the old account.", another_account=True),
    "storage_unavailable": Reason(
        503, "Signing in is unavailable",
        "The sign-in could not be recorded. Try again in a moment."),
    "csrf_failed": Reason(
        403, "The form has expired",
        "This request did not carry a valid CSRF token. Reload the page and try again."),
    "unauthenticated": Reason(
        401, "Sign-in required",
        "Sign in, or send a personal API token as 'Authorization: Bearer <token>'."),
    "invalid_api_token": Reason(
        401, "Invalid API token",
        "The API token is unknown, expired or revoked, or its account is no longer allowed."),
    "token_not_found": Reason(
        404, "No such token", "This API token does not exist, or it is not yours."),
    # '{api}' is the API's prefix on the app (see Refusal.reason).
    "token_outside_api": Reason(
        401, "API tokens work under {api} only",
        "Personal API tokens are accepted under '{api}' only; sign in to use pages."),
}

#: ``token_outside_api`` on an app that serves no API: tokens are accepted nowhere.
NO_API = Reason(
    401, "API tokens are not accepted here",
    "This application serves no API, so personal API tokens are accepted nowhere; sign in"
    " to use its pages.")


class Refusal(Exception):
    """Why a request is refused: ``code`` is a key of :data:`REASONS`; ``detail`` is logged."""

    def __init__(self, code: str, detail: str = "", **fields: t.Any) -> None:
        if code not in REASONS:
            raise ValueError(f"Unknown refusal code {code!r}: add it to REASONS.")
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail
        self.fields = fields
        #: Where the refused sign-in was to go: the refusal page's retry goes there too.
        self.next_url: str | None = None

    @property
    def reason(self) -> Reason:
        """What the user is told; messages about the API name its prefix on this app."""
        reason = REASONS[self.code]
        if self.code != "token_outside_api":
            return reason
        prefix = current_api_prefix()
        if prefix is None:
            return NO_API
        return Reason(reason.status, reason.title.format(api=prefix),
                      reason.message.format(api=prefix))


def log_security_event(event: str, detail: str = "", level: int = logging.WARNING,
                       **fields: t.Any) -> None:
    """One line on the ``flasker.security`` logger: event, detail, client and fields.

    The record carries ``security_event`` (the event's code) for filters and tests.
    """
    context: dict[str, t.Any] = {}
    if has_request_context():
        context = {"remote_addr": request.remote_addr, "path": request.path}
    context.update({k: v for k, v in fields.items() if v is not None})
    message = detail or (REASONS[event].message if event in REASONS else "")
    rendered = " ".join(f"{k}={v!r}" for k, v in context.items())
    security_log.log(level, "%s: %s [%s]", event, message, rendered,
                     extra={"security_event": event})


def current_api_prefix() -> str | None:
    """Where the current app's API lives, asked of the API extension at each request.

    Asked, not remembered: the API may be registered after the auth extension.
    ``None`` when the app serves no API.
    """
    return api_prefix(current_app)


def is_api_request() -> bool:
    """Whether the request is under the API's prefix (never, on an app without an API).

    Bearer tokens are accepted there only, and there a signed-in browser's writes must
    carry the CSRF token in a header.
    """
    prefix = current_api_prefix()
    if prefix is None:
        return False
    return request.path == prefix or request.path.startswith(prefix + "/")


def wants_json() -> bool:
    """API paths, JSON bodies, clients preferring JSON and bearer clients get problem+json."""
    if is_api_request() or request.is_json:
        return True
    if request.headers.get("Authorization", "").lower().startswith("bearer "):
        return True
    accept = request.accept_mimetypes
    return accept["application/json"] > accept["text/html"]


def problem(status: int, title: str, detail: str, *, code: str | None = None,
            headers: t.Mapping[str, str] | None = None) -> Response:
    """An RFC 9457 problem details response, with the refusal's ``code`` when there is one."""
    members = {"code": code} if code else {}
    return problem_response(status, title, detail, headers=headers, **members)


def render_page(template: str, status: int = 200, **context: t.Any) -> Response:
    """Render one of the extension's pages (``flasker_auth/*.html``), never cached."""
    state = auth_state()
    page = render_template(template, bootstrap_url=state.bootstrap_url,
                           provider_name=state.settings.provider_name,
                           auth_prefix=state.settings.url_prefix, **context)
    response = Response(page, status=status, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    return response


def refuse(refusal: Refusal, *, headers: t.Mapping[str, str] | None = None,
           level: int = logging.WARNING, next_url: str | None = None) -> Response:
    """Log ``refusal`` as a security event and answer with a page or a problem.

    ``next_url``: where the refused sign-in was to go, unless the refusal knows it; the
    page's links to sign in again keep it.
    """
    reason = refusal.reason
    log_security_event(refusal.code, refusal.detail, level=level, **refusal.fields)
    if wants_json():
        return problem(reason.status, reason.title, reason.message, code=refusal.code,
                       headers=headers)
    next_url = refusal.next_url or next_url
    response = render_page("flasker_auth/refused.html", reason.status, reason=reason,
                           code=refusal.code, next_url=None if next_url == "/" else next_url)
    response.headers.update(headers or {})
    return response
