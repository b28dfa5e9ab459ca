"""Where to send a user after signing in: only a path of this site, never another site."""

from __future__ import annotations

import unicodedata
from urllib.parse import quote, unquote, urlsplit

DEFAULT = "/"
MAX_LENGTH = 2048
_PATH_SAFE = "/:@!$&'()*+,;=-._~"


def _suspicious(path: str) -> bool:
    """A path a browser or a proxy could read as another host (checked on every decoding)."""
    if not path.startswith("/") or path.startswith("//"):
        return True
    if "\\" in path or "//" in path:
        return True
    # Browsers drop tabs and newlines inside URLs ('/\t/evil.com' becomes '//evil.com').
    return any(unicodedata.category(c)[0] in ("C", "Z") for c in path)


def safe_next(value: str | None, *, forbidden_prefix: str | None = None) -> str:
    """``value`` when it is a same-site relative path (with its query), else ``'/'``.

    Refused: absolute and scheme-relative URLs (``https://x``, ``//x``, ``https:x``),
    backslashes (``/\\x``), control characters and blanks, and all of those once
    percent-decoded (``/%2F%2Fx``). ``forbidden_prefix`` (the auth routes) is refused
    too, so that signing in never lands on the sign-in or sign-out page.
    """
    if not value or len(value) > MAX_LENGTH:
        return DEFAULT
    try:
        parts = urlsplit(value)
    except ValueError:
        return DEFAULT
    if parts.scheme or parts.netloc or parts.fragment:
        return DEFAULT
    if any(unicodedata.category(c)[0] in ("C", "Z") for c in value):
        return DEFAULT
    # The raw path, not urlsplit's: '///x' splits into an empty host and the path '/x'.
    path = value.split("?", 1)[0]
    for _ in range(4):  # a few rounds of decoding catch double encoding
        if _suspicious(path):
            return DEFAULT
        decoded = unquote(path)
        if decoded == path:
            break
        path = decoded
    else:
        return DEFAULT
    if forbidden_prefix and (path == forbidden_prefix or path.startswith(forbidden_prefix + "/")):
        return DEFAULT
    return value


def request_target(script_root: str, path: str, query_string: bytes) -> str:
    """The current request as a relative URL (``path?query``), percent-encoded again."""
    target = quote(script_root + path, safe=_PATH_SAFE)
    if query_string:
        target += "?" + query_string.decode("latin-1")
    return target
