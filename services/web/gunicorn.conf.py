"""gunicorn settings of the web role ('flasker web' reads them through FLASKER_GUNICORN_CONFIG).

Each knob comes from the environment (compose passes it from .env), with defaults fit
for a small server. The graceful timeout is chosen with compose's stop_grace_period:
see the comment at the top of compose.yaml.
"""

from __future__ import annotations

import os
import typing as t


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
worker_class = "gthread"
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
