"""CORS on the API: which other sites' pages may call it from a browser (``[API] CORS_*``).

Off unless ``CORS_ORIGINS`` lists origins, and only under the API's prefix. A
preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) is
answered by the endpoint's own ``OPTIONS``, which asks for no authorization: its
``Allow`` becomes ``Access-Control-Allow-Methods``. Every response under the prefix
says ``Vary: Origin``, since what it allows depends on the page that asks.
"""

from __future__ import annotations

import re
import typing as t
from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import Response, request

from ...config import ConfigError

#: Request headers a page may send by default: bearer tokens, JSON bodies, the validators,
#: the CSRF token of a session and the upsert preference.
ALLOW_HEADERS = ["Authorization", "Content-Type", "If-Match", "If-None-Match", "Prefer",
                 "X-CSRF-Token"]
#: Response headers a page may read by default, beyond the CORS-safelisted ones.
EXPOSE_HEADERS = ["ETag", "Link", "Location"]

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # a header name (RFC 9110, 5.1)
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class CORS:
    """The CORS policy of one app's API, checked once at start-up."""

    origins: frozenset[str]
    any_origin: bool
    credentials: bool
    max_age: int
    allow_headers: str
    expose_headers: str

    @classmethod
    def from_settings(cls, options: t.Mapping[str, t.Any], section: str,
                      where: t.Callable[[str], str]) -> CORS | None:
        """The policy of the ``CORS_*`` options, or ``None`` when ``CORS_ORIGINS`` is empty."""

        def error(key: str, value: t.Any, reason: str) -> ConfigError:
            if isinstance(value, list | tuple):  # a list, as it was written: 'a, b'
                value = ", ".join(str(v) for v in value)
            return ConfigError(f"Config '{section}.{key}' has value {value!r}{where(key)}."
                               f" {reason}")

        raw = list(options["CORS_ORIGINS"] or [])
        given = [str(o).strip() for o in raw if str(o).strip()]
        if not given:
            return None
        any_origin = "*" in given
        if any_origin and len(given) > 1:
            raise error("CORS_ORIGINS", raw, "'*' allows every origin: give it alone, or list"
                        " the exact origins without it.")
        origins = frozenset() if any_origin else frozenset(
            _origin(o, lambda reason: error("CORS_ORIGINS", raw, reason)) for o in given)
        credentials = bool(options["CORS_COOKIES"])
        if credentials and any_origin:
            raise error("CORS_COOKIES", "true", f"Browsers never send cookies or"
                        f" credentials to an API that allows every origin ('{section}."
                        "CORS_ORIGINS' is '*'): list the exact origins that may send them in"
                        " CORS_ORIGINS, or set CORS_COOKIES to false.")
        max_age = options["CORS_MAX_AGE"]
        if max_age < 0:
            raise error("CORS_MAX_AGE", max_age, "It must be 0 or more (seconds a browser may"
                        " keep the answer to a preflight).")
        headers: dict[str, str] = {}
        for key in ("CORS_ALLOW_HEADERS", "CORS_EXPOSE_HEADERS"):
            names = [str(n).strip() for n in options[key] or [] if str(n).strip()]
            for name in names:
                if not _TOKEN.fullmatch(name):
                    raise error(key, options[key], f"{name!r} is not a header name.")
                if name == "*" and credentials:
                    raise error(key, options[key], "'*' means every header only without"
                                " credentials (CORS_COOKIES is true): name the headers.")
            headers[key] = ", ".join(names)
        return cls(origins, any_origin, credentials, max_age, headers["CORS_ALLOW_HEADERS"],
                   headers["CORS_EXPOSE_HEADERS"])

    def allow_origin(self, origin: str) -> str | None:
        """The ``Access-Control-Allow-Origin`` for a request from ``origin`` (``None``: none)."""
        if self.any_origin:
            return "*"
        return origin if origin.lower() in self.origins else None

    def apply(self, response: Response) -> None:
        """Add the CORS headers of the current request to ``response``."""
        response.vary.add("Origin")
        origin = request.headers.get("Origin")
        allowed = self.allow_origin(origin) if origin else None
        if allowed is None:
            return
        headers = response.headers
        headers["Access-Control-Allow-Origin"] = allowed
        if self.credentials:
            headers["Access-Control-Allow-Credentials"] = "true"
        preflight = (request.method == "OPTIONS"
                     and "Access-Control-Request-Method" in request.headers)
        if not preflight:
            if self.expose_headers:
                headers["Access-Control-Expose-Headers"] = self.expose_headers
            return
        if 200 <= response.status_code < 300 and "Allow" in headers:
            headers["Access-Control-Allow-Methods"] = headers["Allow"]
            if self.allow_headers:
                headers["Access-Control-Allow-Headers"] = self.allow_headers
            headers["Access-Control-Max-Age"] = str(self.max_age)


def _origin(text: str, error: t.Callable[[str], ConfigError]) -> str:
    """An origin as browsers send it: lower case, without its scheme's default port."""
    if text.lower() == "null":
        raise error("'null' is the origin of sandboxed frames and local files, which any"
                    " page can take on: it cannot be allowed.")
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if (not parts.scheme or not parts.hostname or parts.path or parts.query or parts.fragment
            or "@" in parts.netloc or port == -1 or text.endswith(("?", "#"))):
        raise error(f"{text!r} is not an origin: write scheme://host[:port], without a path"
                    " nor a final '/', as in 'https://app.example.com'.")
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address keeps its brackets
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS.get(parts.scheme.lower()):
        host = f"{host}:{port}"
    return f"{parts.scheme.lower()}://{host}"
