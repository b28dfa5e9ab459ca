"""Security headers on every response, and session cookies fit for production.

Every project's app gets them (:meth:`flasker.Project._create_app` calls
:func:`init_security`), set by the ``[SECURITY]`` section:

- ``Content-Security-Policy``: strict by default (``'self'`` only, no inline script or
  style, no framing), so an injected ``<script>`` does not run;
- ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy``;
- ``Strict-Transport-Security``, only on responses to HTTPS requests (``request.is_secure``,
  which honours the proxy headers that the deployment trusts), as browsers ignore it over
  plain HTTP and a site reached over HTTP by mistake must not be pinned to HTTPS by it.

A header the view (or an extension's hook) set is kept: the headers are defaults,
added last. Cookies: Flask's session cookie (and Flask-Login's remember-me cookie) is
HttpOnly and SameSite=Lax, and Secure outside debug and testing, unless ``[APP]`` sets
the key itself; an explicit weaker value outside development is logged as a warning.
"""

from __future__ import annotations

import difflib
import logging
import re
import typing as t
from dataclasses import dataclass

from flask import request

from .config import APP, Config, ConfigError, Option, section_options, to_bool, to_int
from .util.convert import sentence

if t.TYPE_CHECKING:
    from flask import Flask, Response

SECURITY = "SECURITY"
EXTENSION_KEY = "flasker_security"

#: What the pages of flasker's scaffold and reference app need, and nothing more: their
#: own scripts, styles and images (Bootstrap's CSS draws a few icons as ``data:`` URIs),
#: forms posted to the app itself, and no framing by any site.
DEFAULT_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
               " object-src 'none'; frame-ancestors 'none'; base-uri 'self';"
               " form-action 'self'")
DEFAULT_REFERRER_POLICY = "strict-origin-when-cross-origin"
#: One year, as browsers' HSTS preload lists ask of a site at the least.
DEFAULT_HSTS_MAX_AGE = 31_536_000

security_log = logging.getLogger("flasker.security")

# The directives of CSP Level 3 (and the few older ones browsers still read).
_DIRECTIVES = frozenset({
    "default-src", "script-src", "script-src-elem", "script-src-attr", "style-src",
    "style-src-elem", "style-src-attr", "img-src", "font-src", "connect-src", "media-src",
    "object-src", "frame-src", "child-src", "worker-src", "manifest-src", "fenced-frame-src",
    "base-uri", "form-action", "frame-ancestors", "sandbox", "report-uri", "report-to",
    "upgrade-insecure-requests", "block-all-mixed-content", "require-trusted-types-for",
    "trusted-types", "webrtc",
})
# Keywords that mean something only in quotes: unquoted, 'self' names a host called "self".
_KEYWORDS = frozenset({
    "self", "none", "unsafe-inline", "unsafe-eval", "unsafe-hashes", "strict-dynamic",
    "report-sample", "wasm-unsafe-eval", "unsafe-allow-redirects", "inline-speculation-rules",
})
_DIRECTIVE_NAME = re.compile(r"[a-z][a-z0-9-]*")
_REFERRER_POLICIES = frozenset({
    "no-referrer", "no-referrer-when-downgrade", "origin", "origin-when-cross-origin",
    "same-origin", "strict-origin", "strict-origin-when-cross-origin", "unsafe-url",
})


def to_csp(text: str) -> str:
    """A Content-Security-Policy: directives separated by ``;``, on one line or several.

    Whitespace (new lines of a ``.cfg`` value too) becomes single spaces; empty text
    means no header. A misspelt directive or an unquoted keyword is refused, as the
    browser would silently ignore it and the policy would be weaker than it reads.
    """
    policy = " ".join(text.split())
    if not policy:
        return ""
    if not all(" " <= c <= "~" for c in policy):
        raise ValueError("not a Content-Security-Policy: a header holds printable ASCII only")
    seen: set[str] = set()
    directives = []
    for part in policy.split(";"):
        tokens = part.split()
        if not tokens:
            continue
        name = tokens[0].lower()
        if not _DIRECTIVE_NAME.fullmatch(name) or name not in _DIRECTIVES:
            close = difflib.get_close_matches(name, sorted(_DIRECTIVES), n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ValueError(f"'{tokens[0]}' is not a Content-Security-Policy directive{hint};"
                             " directives are separated by ';', such as"
                             " \"default-src 'self'; img-src 'self' data:\"")
        if name in seen:
            raise ValueError(f"the directive '{name}' appears twice: browsers would ignore the"
                             " second one; give its sources once")
        seen.add(name)
        for source in tokens[1:]:
            if source.lower() in _KEYWORDS:
                raise ValueError(f"the keyword {source!r} of '{name}' must be in single quotes"
                                 f" ('{source.lower()}'): unquoted, it names a host")
        directives.append(" ".join([name, *tokens[1:]]))
    return "; ".join(directives)


def to_referrer_policy(text: str) -> str:
    """A Referrer-Policy: one of the standard values, or a comma list of them; empty for none."""
    values = [v.strip().lower() for v in text.split(",") if v.strip()]
    unknown = [v for v in values if v not in _REFERRER_POLICIES]
    if unknown:
        raise ValueError(f"{unknown[0]!r} is not a Referrer-Policy; expected one of"
                         f" {', '.join(sorted(_REFERRER_POLICIES))}")
    return ", ".join(values)


def to_max_age(text: str) -> int:
    """Whole seconds, 0 or more."""
    value = to_int(text)
    if value < 0:
        raise ValueError("not a number of seconds: expected 0 (no header) or more,"
                         f" such as {DEFAULT_HSTS_MAX_AGE} (a year)")
    return value


SECURITY_OPTIONS: tuple[Option, ...] = (
    Option("HEADERS", to_bool, True,
           "Add the security headers to every response (false: a proxy in front adds them)."),
    Option("CONTENT_SECURITY_POLICY", to_csp, DEFAULT_CSP,
           "The Content-Security-Policy header; empty for none."),
    Option("REFERRER_POLICY", to_referrer_policy, DEFAULT_REFERRER_POLICY,
           "The Referrer-Policy header; empty for none."),
    Option("HSTS_MAX_AGE", to_max_age, DEFAULT_HSTS_MAX_AGE,
           "Seconds of Strict-Transport-Security, sent over HTTPS only; 0 for none."),
    Option("HSTS_INCLUDE_SUBDOMAINS", to_bool, False,
           "Add 'includeSubDomains' to Strict-Transport-Security."),
)


@dataclass(frozen=True)
class SecuritySettings:
    """The ``[SECURITY]`` section, resolved: the headers every response gets."""

    headers: tuple[tuple[str, str], ...]
    hsts: str | None

    def apply(self, response: Response) -> Response:
        """Add the headers that the response does not have yet."""
        headers = response.headers
        # One pass over the response's few headers: Werkzeug's 'setdefault' looks each name
        # up and raises, then catches, a KeyError for every header missing (some 5 µs each).
        present = {name.lower() for name in headers.keys()}
        headers.extend([(name, value) for name, value in self.headers
                        if name.lower() not in present])
        if self.hsts is not None and "strict-transport-security" not in present \
                and request.is_secure:
            headers.add("Strict-Transport-Security", self.hsts)
        return response


def _text(value: t.Any) -> str:
    """A value given in code, as the text the converters read (``True`` → ``true``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def security_settings(config: Config) -> SecuritySettings:
    """Resolve ``[SECURITY]``: a bad value or an unknown key raises a ``ConfigError``."""
    values = section_options(config, SECURITY, SECURITY_OPTIONS)
    # Values given in code are taken as given by the configuration: check them here too.
    for option in SECURITY_OPTIONS:
        value = values[option.name]
        try:
            values[option.name] = option.convert(_text(value))
        except ValueError as e:
            source = config.source_of(SECURITY, option.name) or "built-in default"
            raise ConfigError(f"Config '{SECURITY}.{option.name}' has value {value!r}"
                              f" ({source}). {sentence(e)}") from None
    if not values["HEADERS"]:
        return SecuritySettings(headers=(), hsts=None)
    headers = [("X-Content-Type-Options", "nosniff")]
    if values["CONTENT_SECURITY_POLICY"]:
        headers.append(("Content-Security-Policy", values["CONTENT_SECURITY_POLICY"]))
    if values["REFERRER_POLICY"]:
        headers.append(("Referrer-Policy", values["REFERRER_POLICY"]))
    hsts = None
    if values["HSTS_MAX_AGE"]:
        hsts = f"max-age={values['HSTS_MAX_AGE']}"
        if values["HSTS_INCLUDE_SUBDOMAINS"]:
            hsts += "; includeSubDomains"
    return SecuritySettings(headers=tuple(headers), hsts=hsts)


# -- cookies ----------------------------------------------------------------------------------

#: Flask's session cookie, and Flask-Login's remember-me cookie (the auth extension's).
COOKIE_PREFIXES = ("SESSION_COOKIE", "REMEMBER_COOKIE")


def secure_cookies(app: Flask, config: Config) -> None:
    """HttpOnly, SameSite=Lax and, outside debug and testing, Secure cookies.

    Only the keys that ``[APP]`` leaves unset are set: an explicit value is kept, with a
    warning when it is weaker outside development (``SESSION_COOKIE_SECURE = false`` for
    a host served over plain HTTP, say). Browsers keep Secure cookies of
    ``http://localhost`` and ``http://127.0.0.1`` too, so a stack tried on this machine
    works; another host needs HTTPS in front.
    """
    development = app.debug or app.testing
    for prefix in COOKIE_PREFIXES:
        for key, value in (("HTTPONLY", True), ("SAMESITE", "Lax"), ("SECURE", not development)):
            name = f"{prefix}_{key}"
            if config.source_of(APP, name) is None:
                app.config[name] = value
        if development:
            continue
        for reason in _weaker_than_default(app, prefix):
            security_log.warning(
                "insecure_cookie: %s outside development: the cookie is less protected"
                " (from scripts, other sites or plain HTTP). Remove the key from [APP] to get"
                " the safe default.", reason, extra={"security_event": "insecure_cookie"})


def _weaker_than_default(app: Flask, prefix: str) -> list[str]:
    httponly, samesite, secure = (app.config.get(f"{prefix}_{key}")
                                  for key in ("HTTPONLY", "SAMESITE", "SECURE"))
    reasons = []
    if not httponly:
        reasons.append(f"{prefix}_HTTPONLY is false")
    if samesite not in ("Lax", "Strict"):
        reasons.append(f"{prefix}_SAMESITE is {samesite!r}")
    if not secure:
        reasons.append(f"{prefix}_SECURE is false")
    return reasons


def plain_http_cookies(app: Flask, config: Config) -> None:
    """Cookies without Secure, unless ``[APP]`` asks for it: for Flask's development server.

    ``flasker server`` speaks plain HTTP only; a browser on another machine would drop
    a Secure cookie, and with it the session and every form's CSRF token.
    """
    for prefix in COOKIE_PREFIXES:
        if config.source_of(APP, f"{prefix}_SECURE") is None:
            app.config[f"{prefix}_SECURE"] = False


def init_security(app: Flask, config: Config) -> SecuritySettings:
    """Read ``[SECURITY]`` (a bad value stops start-up), set the cookies, add the headers.

    Called first thing, so that the headers hook runs last: Flask runs ``after_request``
    functions in the reverse order of registration, and a header set before it is kept.
    """
    settings = security_settings(config)
    secure_cookies(app, config)
    app.extensions[EXTENSION_KEY] = settings
    app.after_request(settings.apply)
    return settings
