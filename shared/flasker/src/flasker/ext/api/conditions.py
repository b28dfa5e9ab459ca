"""Entity tags and ``If-Match``: the API's validators and its one write precondition.

A GET of an object, a page or a relationship carries ``ETag: "<sha1 of the body>"``, a
strong validator (the bytes of the body, whatever the database). A write sent with
``If-Match`` is carried out only when the list names the ETag that a GET of the same
URL without query parameters would give at that moment (RFC 9110, section 13.1.1:
strong comparison, so a weak tag ``W/"..."`` never matches; ``*`` matches any current
object); else it is answered 412. The views compare it once the object is loaded and
locked, so that no other write slips in between the comparison and the change.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from flask import request

from .problems import FieldError, Problem

HEADER = "If-Match"

# entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE; etagc = "!" / %x23-7E / obs-text (RFC 9110).
_TAG = '(W/)?"([\\x21\\x23-\\x7e\\x80-\\xff]*)"'
_ANY_TAG = _TAG.replace("(", "(?:")
#: The header's grammar, ``"*" / #entity-tag`` (a list may be empty, or hold empty items,
#: as RFC 9110 5.6.1 says), as the OpenAPI document gives it: the server reads exactly what
#: the document admits. Each blank can be read one way only, so matching takes linear time.
PATTERN = (f"^[ \\t]*(\\*[ \\t]*|({_ANY_TAG}[ \\t]*)?"
           f"(,[ \\t]*({_ANY_TAG}[ \\t]*)?)*)$")
_HEADER = re.compile(PATTERN)
_TAGS = re.compile(_TAG)


def etag_of(body: bytes) -> str:
    """The entity tag (unquoted) of a response body."""
    # A validator, not a secret: SHA-1 is the fastest digest here (as Werkzeug's ETags).
    return hashlib.sha1(body, usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class IfMatch:
    """The ``If-Match`` of a request: ``*``, or the strong tags it lists (weak ones never match)."""

    any: bool
    strong: frozenset[str]


def if_match() -> IfMatch | None:
    """The request's ``If-Match`` (``None`` without one); a malformed one is a 400."""
    values = request.headers.getlist(HEADER)
    if not values:
        return None
    text = ", ".join(values)
    if not _HEADER.fullmatch(text):
        raise _malformed(text)
    if text.strip(" \t") == "*":
        return IfMatch(True, frozenset())
    return IfMatch(False, frozenset(tag for weak, tag in _TAGS.findall(text) if not weak))


def _malformed(text: str) -> Problem:
    reason = f"is {text!r}, not '*' nor a list of quoted entity tags"
    return Problem.of("invalid-header",
                      f"The header '{HEADER}' {reason}: send the ETag of your last GET as it"
                      ' came, quotes included (If-Match: "3f2a..."), or \'*\'.',
                      [FieldError(HEADER, reason)])


def precondition_failed(what: str) -> Problem:
    """The 412 of a write whose ``If-Match`` names none of the object's current tags."""
    return Problem.of("precondition-failed",
                      f"{what} has changed since you read it (its ETag is not one that"
                      f" '{HEADER}' names): nothing was changed. GET it again, apply your"
                      f" change to what it is now, and send its new ETag in '{HEADER}'.",
                      [FieldError(HEADER, "names none of the current ETags")])
