"""RFC 9457 problem details: the one shape of every JSON error flasker answers over HTTP.

``{"type", "title", "status", "detail"}`` plus the extension members of the part that
answers (the API's ``errors`` list, the auth extension's ``code``), served as
``application/problem+json`` and never cached.
"""

from __future__ import annotations

import typing as t

from flask import Response

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
