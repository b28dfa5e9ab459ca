"""RFC 9457 problem details: the one shape of every error under the API's prefix.

A body is ``{"type", "title", "status", "detail", "errors": [{"field", "reason"}]}``
served as ``application/problem+json``. :class:`Problem` is raised by the API's
code and by hooks; :func:`from_exception` turns anything else (an HTTP error of
Flask or Werkzeug, a database error, a backing service that cannot be reached) into one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from flask import Response, current_app, has_request_context, request
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException

from ...outages import DATABASE, find_outage, log_outage, retry_after_headers
from ...problem import MIMETYPE as MIMETYPE
from ...problem import problem_response

TYPE_PREFIX = "tag:flasker,2024:api/"

logger = logging.getLogger("flasker.api")

# The catalogue: slug → (status, title). The slug, prefixed, is the problem's "type".
CATALOGUE: dict[str, tuple[int, str]] = {
    "malformed-json": (400, "Malformed JSON"),
    "invalid-parameter": (400, "Invalid query parameter"),
    "page-too-large": (400, "Page too large"),
    "invalid-header": (400, "Invalid header"),
    "forbidden": (403, "Forbidden"),
    "not-found": (404, "Not Found"),
    "method-not-allowed": (405, "Method Not Allowed"),
    "conflict": (409, "Conflict"),
    "precondition-failed": (412, "Precondition Failed"),
    "payload-too-large": (413, "Payload Too Large"),
    "unsupported-media-type": (415, "Unsupported Media Type"),
    "invalid-input": (422, "Invalid input"),
    "internal-error": (500, "Internal Server Error"),
    "database-unavailable": (503, "Database unavailable"),
    "service-unavailable": (503, "Service unavailable"),
}

# The entry that stands for an HTTP error raised by Flask or Werkzeug (400 has several).
_BY_STATUS = {status: slug for slug, (status, _title) in CATALOGUE.items() if status != 400}


@dataclass
class FieldError:
    """One reason a request was refused, tied to the field (or parameter) at fault."""

    field: str
    reason: str


@dataclass
class Problem(Exception):
    """An API error, answered as problem details; build one with :meth:`of`.

    ``type`` is ``about:blank`` for a plain HTTP error, else a tag URI naming an entry
    of :data:`CATALOGUE`.
    """

    status: int
    title: str
    detail: str
    errors: list[FieldError] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    type: str = "about:blank"

    def __post_init__(self) -> None:
        super().__init__(self.detail)

    @classmethod
    def of(cls, slug: str, detail: str, errors: list[FieldError] | None = None,
           headers: dict[str, str] | None = None) -> Problem:
        """The problem of the catalogue's entry ``slug``, with a sentence saying what to do."""
        try:
            status, title = CATALOGUE[slug]
        except KeyError:
            raise ValueError(
                f"Unknown problem '{slug}': use one of {', '.join(sorted(CATALOGUE))}."
            ) from None
        return cls(status, title, detail, errors or [], headers or {}, TYPE_PREFIX + slug)

    def response(self) -> Response:
        return problem_response(
            self.status, self.title, self.detail, type=self.type, headers=self.headers,
            errors=[{"field": e.field, "reason": e.reason} for e in self.errors],
        )


def invalid_input(errors: list[FieldError], detail: str | None = None) -> Problem:
    """A 422 listing every field at fault."""
    if detail is None:
        named = ", ".join(f"'{e.field}' {e.reason}" for e in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        detail = f"The input was refused: {named}{more}."
    return Problem.of("invalid-input", detail, errors)


def parameter(name: str, reason: str, detail: str | None = None) -> Problem:
    """A 400 for a query parameter that cannot be used."""
    return Problem.of("invalid-parameter", detail or f"The query parameter '{name}' {reason}.",
                   [FieldError(name, reason)])


def not_found(detail: str) -> Problem:
    return Problem.of("not-found", detail)


def from_exception(error: BaseException) -> Problem:
    """The problem that stands for any exception raised while serving the API."""
    if isinstance(error, Problem):
        return error
    if isinstance(error, HTTPException):
        return _from_http(error)
    if isinstance(error, sa_exc.IntegrityError):
        return _conflict(error)
    if isinstance(error, sa_exc.DataError):
        reason = _first_line(error.orig)
        return Problem.of("invalid-input", f"The database refused a value: {reason}.",
                       [FieldError("", reason)])
    outage = find_outage(error)  # the database, the broker... cannot be reached
    if outage is not None:
        log_outage(current_app, outage, "the API answered 503")
        slug = "database-unavailable" if outage.service == DATABASE else "service-unavailable"
        return Problem.of(slug, outage.detail, headers=retry_after_headers(current_app))
    if isinstance(error, sa_exc.StatementError) and not isinstance(error, sa_exc.DBAPIError):
        # A value that a column type's bind processor refused (a custom TypeDecorator).
        reason = _first_line(error.orig)
        return Problem.of("invalid-input", f"A value cannot be stored: {reason}.",
                       [FieldError("", reason)])
    logger.exception("unexpected error in the API", exc_info=error)
    return Problem.of("internal-error",
                   "The server failed to answer this request; the error has been logged.")


def _from_http(error: HTTPException) -> Problem:
    status = error.code or 500
    slug = _BY_STATUS.get(status)
    detail = error.description or error.name
    # Keep what the error says in its headers (WWW-Authenticate, Retry-After...).
    headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
    if status == 405:
        allowed = getattr(error, "valid_methods", None) or []
        headers["Allow"] = ", ".join(allowed)
        detail = (f"The method is not allowed here; allowed: {', '.join(allowed)}."
                  if allowed else "The method is not allowed here.")
    if status == 404:
        detail = "There is nothing at this URL: see the endpoints listed at the API's root."
    if status == 413:
        limit = request.max_content_length if has_request_context() else None
        detail = (f"The request's body is larger than the {limit:,} bytes this server accepts."
                  if limit else "The request's body is larger than this server accepts.")
    if status == 400 and "json" in (error.description or "").lower():
        slug = "malformed-json"
    if slug is None:
        # An HTTP error the catalogue does not list (from another extension, say): keep its
        # status and name, with the type 'about:blank' as RFC 9457 says.
        return Problem(status, error.name, detail, headers=headers)
    return Problem.of(slug, detail, headers=headers)


def _conflict(error: sa_exc.IntegrityError) -> Problem:
    orig = error.orig
    reason = _first_line(orig)
    field_name = ""
    diag = getattr(orig, "diag", None)
    if diag is not None:  # psycopg names the column, or the constraint
        field_name = diag.column_name or diag.constraint_name or ""
        reason = diag.message_detail or diag.message_primary or reason
    elif ": " in reason and "constraint failed" in reason:
        # SQLite says 'UNIQUE constraint failed: table.column, table.column'.
        columns = reason.split(": ", 1)[1]
        field_name = ", ".join(c.rsplit(".", 1)[-1] for c in columns.split(", "))
    return Problem.of("conflict",
                   f"The change conflicts with the data already stored: {reason}. Nothing was"
                   " changed.", [FieldError(field_name, reason)])


def _first_line(error: BaseException | None) -> str:
    text = str(error).strip() if error is not None else ""
    return text.splitlines()[0] if text else "unknown error"
