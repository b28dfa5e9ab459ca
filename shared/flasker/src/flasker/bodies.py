"""A request body the server cannot read is the client's error: 400, never a 500.

gunicorn raises ``InvalidChunkSize`` or ``ChunkMissingTerminator`` (its ``ParseException``)
or ``NoMoreData`` (an ``OSError``) from ``wsgi.input`` when a client sends broken chunked
encoding or closes the connection half-way through its body; other servers raise
``OSError``. Wherever the body is read (a form parsed by
Werkzeug, Flask-WTF's CSRF check, ``request.get_json()``, the API), that error becomes a
``400 Bad Request``, answered as every other 400 is: a page, or problem+json.
"""

from __future__ import annotations

import typing as t

from werkzeug.exceptions import BadRequest

if t.TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


class UnreadableBody(BadRequest):
    description = ("The request's body cannot be read: send it again with a valid"
                   " Content-Length or chunked encoding.")


class GuardedInput:
    """``wsgi.input`` whose read errors are a :class:`UnreadableBody`."""

    def __init__(self, stream: t.Any) -> None:
        self._stream = stream

    def _call(self, method: str, *args: t.Any) -> t.Any:
        try:
            return getattr(self._stream, method)(*args)
        except Exception as e:
            # gunicorn's errors are matched by their module: the app need not import gunicorn.
            if not (isinstance(e, OSError) or type(e).__module__ == "gunicorn.http.errors"):
                raise
            raise UnreadableBody(f"{UnreadableBody.description} ({e or type(e).__name__})") from e

    def read(self, *args: t.Any) -> bytes:
        return t.cast(bytes, self._call("read", *args))

    def readline(self, *args: t.Any) -> bytes:
        return t.cast(bytes, self._call("readline", *args))

    def readlines(self, *args: t.Any) -> list[bytes]:
        return t.cast("list[bytes]", self._call("readlines", *args))

    def __iter__(self) -> t.Iterator[bytes]:
        while line := self.readline():
            yield line


class GuardBodies:
    """WSGI middleware putting :class:`GuardedInput` around every request's body."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse
                 ) -> t.Iterable[bytes]:
        stream = environ.get("wsgi.input")
        if stream is not None:
            environ["wsgi.input"] = GuardedInput(stream)
        return self.app(environ, start_response)
