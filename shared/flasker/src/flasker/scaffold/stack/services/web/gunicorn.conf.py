"""gunicorn settings of the web role ('flasker web' reads them through FLASKER_GUNICORN_CONFIG).

Each knob comes from the environment (compose passes it from .env), with defaults fit
for a small server. The graceful timeout is chosen with compose's stop_grace_period:
see the comment at the top of compose.yaml.
"""

from __future__ import annotations

import json
import os
import re
import time
import typing as t

from gunicorn.http2 import negotiation
from gunicorn.workers import gthread


def _int(name: str, default: int, minimum: int = 0) -> int:
    """An integer from the environment; a bad value stops gunicorn with a sentence saying why."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise SystemExit(
            f"gunicorn: the environment variable '{name}' has value {raw!r}: expected a whole"
            f" number of at least {minimum}, such as {default}."
        )
    return value


# The container's port; compose publishes it as WEB_PORT on BIND_ADDRESS.
bind = ["0.0.0.0:8000"]
# Processes (one per core is a good start) and threads per process (requests in flight).
workers = _int("WEB_CONCURRENCY", 2, 1)
threads = _int("WEB_THREADS", 4, 1)
# The worker class is gthread's, reading each request's head without holding a thread: see
# 'worker_class = ThreadWorker' at the end. A client must send its request line and headers within
# HEADER_TIMEOUT seconds of connecting (or of its previous request), else it gets 408.
HEADER_TIMEOUT = _int("WEB_HEADER_TIMEOUT", 10, 1)
# A request taking longer than this kills its worker (and logs the stack).
timeout = _int("WEB_TIMEOUT", 30, 1)
# On SIGTERM, requests in flight get this long to finish: below stop_grace_period (30 s).
graceful_timeout = _int("WEB_GRACEFUL_TIMEOUT", 25, 1)
keepalive = 5
# Recycle each worker after this many requests (jittered, so that they do not all restart
# together): a slow leak in the app cannot grow without bound.
max_requests = _int("WEB_MAX_REQUESTS", 1000)
max_requests_jitter = max(1, max_requests // 10) if max_requests else 0
# The heartbeat file of each worker: /dev/shm is memory, never a slow or read-only disk.
worker_tmp_dir = "/dev/shm"
# No control socket (gunicornc): nothing in the container uses it, and $HOME is read-only.
control_socket_disable = True
accesslog = "-"
errorlog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms "%(a)s"'
# Reverse proxies in front of the app whose X-Forwarded-For/-Proto/-Host/-Prefix headers are
# trusted (werkzeug's ProxyFix); 0 means none: those headers are ignored, as any client could
# forge them.
proxy_hops = _int("WEB_PROXY_HOPS", 0)
# gunicorn's own X-Forwarded-Proto handling follows the same rule, whatever the peer's address.
forwarded_allow_ips = "*" if proxy_hops else ""

def post_worker_init(worker: t.Any) -> None:
    """Wrap the app in ProxyFix in each worker, once the app is loaded there."""
    if proxy_hops:
        from werkzeug.middleware.proxy_fix import ProxyFix

        worker.wsgi = ProxyFix(worker.wsgi, x_for=proxy_hops, x_proto=proxy_hops,
                               x_host=proxy_hops, x_prefix=proxy_hops)


# -- the worker -------------------------------------------------------------------------------

# Where a request's head ends; past _HEAD_LIMIT bytes gunicorn's own limits answer (414, 431).
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_HEAD_LIMIT = 64 * 1024


class _Captured:
    """Stands for a client's socket while gunicorn writes its own error page there."""

    def __init__(self) -> None:
        self.data = b""

    def gettimeout(self) -> float:
        return 0.0

    def setblocking(self, flag: bool) -> None:
        pass

    def sendall(self, data: bytes) -> None:
        self.data += data


def _problem(status: int, title: str, detail: str) -> bytes:
    """An HTTP response of problem details (RFC 9457), as the app answers its own errors."""
    body = json.dumps({"type": "about:blank", "title": title, "status": status,
                       "detail": detail}).encode()
    head = (f"HTTP/1.1 {status} {title}\r\nConnection: close\r\n"
            f"Content-Type: application/problem+json\r\nCache-Control: no-store\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode("latin-1") + body


class ThreadWorker(gthread.ThreadWorker):  # type: ignore[misc]
    """gunicorn's gthread worker, for clients that misbehave.

    A slow client holds no thread: gthread hands a connection to a thread as soon as it
    is readable, and that thread then blocks until the whole request head has come, so
    a few clients sending it a byte a second (slowloris) would take every thread and
    stall the app. Here each turn of a thread reads only what has arrived, without
    blocking; the connection goes back to the poller until the head is complete, and
    gets 408 if that takes longer than 'WEB_HEADER_TIMEOUT'. A request gunicorn refuses
    before the app sees it (a malformed header, a line too long) is answered with
    problem details, as the app answers its own errors, instead of an HTML page.
    """

    def handle(self, conn: t.Any) -> t.Any:
        if self.cfg.is_ssl or conn.is_http2 or negotiation.prior_knowledge_allowed(
                self.cfg, conn.client):
            return super().handle(conn)  # bytes read here would be missed by TLS or HTTP/2
        head: bytes = getattr(conn, "flasker_head", b"")
        since: float = getattr(conn, "flasker_since", None) or time.monotonic()
        ended = False
        try:
            conn.sock.setblocking(False)
            while len(head) < _HEAD_LIMIT:
                chunk = conn.sock.recv(65536)
                if not chunk:
                    ended = True
                    break
                head += chunk
        except BlockingIOError:
            pass
        except OSError:
            ended = True  # reset: gunicorn's own reading will find out and close
        buffered = conn.parser.unreader.take_buffered() if conn.parser is not None else b""
        data = buffered + head
        if ended or len(data) >= _HEAD_LIMIT or _HEAD_END.search(data):
            conn.flasker_head, conn.flasker_since = b"", None
            conn.init()  # no-op for a kept-alive connection
            conn.parser.unreader.unread(data)
            return super().handle(conn)
        if conn.parser is not None:
            conn.parser.unreader.unread(buffered)
        if time.monotonic() - since > HEADER_TIMEOUT:
            self.log.warning("Closed the connection of %s: its request's head did not come"
                             " within %d s (a slow or stalled client).",
                             conn.client[0] if conn.client else "?", HEADER_TIMEOUT)
            self._answer(conn.sock, _problem(
                408, "Request Timeout", f"The request's head did not come within"
                f" {HEADER_TIMEOUT} s; send it again."))
            return False
        conn.flasker_head, conn.flasker_since = head, since
        return gthread._DEFER  # back to the poller until more of it comes

    def handle_error(self, req: t.Any, client: t.Any, addr: t.Any, exc: BaseException) -> None:
        captured = _Captured()
        super().handle_error(req, captured, addr, exc)  # gunicorn's status, log and access log
        status_line = captured.data.split(b"\r\n", 1)[0].decode("latin-1")
        _, status, title = (status_line.split(" ", 2) + ["", ""])[:3]
        if not status.isdigit():
            status, title = "400", "Bad Request"
        detail = (f"The request was refused before reaching the app: {exc}."
                  if int(status) < 500 else "The server failed to answer this request.")
        self._answer(client, _problem(int(status), title, detail))

    @staticmethod
    def _answer(sock: t.Any, response: bytes) -> None:
        try:
            sock.setblocking(True)
            sock.settimeout(2)
            sock.sendall(response)
        except OSError:
            pass  # the client is gone


worker_class = ThreadWorker  # gunicorn logs 'Using worker: ThreadWorker'
