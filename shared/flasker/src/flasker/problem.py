"""RFC 9457 problem details: the one shape of every JSON error flasker answers over HTTP.

``{"type", "title", "status", "detail"}`` plus the extension members of the part that
answers (the API's ``errors`` list, the auth extension's ``code``), served as
``application/problem+json`` and never cached.
"""

from __future__ import annotations

import typing as t

from flask import Response, request

from .util.json import dumps

MIMETYPE = "application/problem+json"


def problem_response(status: int, title: str, detail: str, *, type: str = "about:blank",
                     headers: t.Mapping[str, str] | None = None,
                     **members: t.Any) -> Response:
    """A problem details response; ``members`` are extension members added to the body."""
    body = {"type": type, "title": title, "status": status, "detail": detail, **members}
    response = Response(dumps(body), status=status, mimetype=MIMETYPE)
    response.headers.update(headers or {})
    response.headers["Cache-Control"] = "no-store"
    return response


def wants_problem() -> bool:
    """Whether the current request's client wants problem details rather than a page.

    A JSON body, a bearer token, or an ``Accept`` header preferring JSON to HTML: browsers
    get pages, programs get JSON. (Under the API's prefix the API answers problems anyway.)
    """
    if request.is_json:
        return True
    if request.headers.get("Authorization", "").lower().startswith("bearer "):
        return True
    accept = request.accept_mimetypes
    return max(accept["application/json"], accept[MIMETYPE]) > accept["text/html"]
